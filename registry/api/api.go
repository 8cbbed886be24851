// Package api holds the registry's OpenAPI 3 document.
package api

import _ "embed"

// OpenAPI is registry/api/openapi.json.
//
//go:embed openapi.json
var OpenAPI []byte
