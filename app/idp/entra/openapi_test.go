package entra

import (
	"encoding/json"
	"fmt"
	"os"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"go.yaml.in/yaml/v3"
)

// oaSchema is the subset of the OpenAPI 3.0.1 Schema Object (OAS 3.0.1
// §4.7.24) the extract in testdata uses.
type oaSchema struct {
	Ref                  string               `yaml:"$ref"`
	Type                 string               `yaml:"type"`
	Format               string               `yaml:"format"`
	Pattern              string               `yaml:"pattern"`
	Nullable             bool                 `yaml:"nullable"`
	Enum                 []string             `yaml:"enum"`
	Required             []string             `yaml:"required"`
	Properties           map[string]*oaSchema `yaml:"properties"`
	AdditionalProperties *oaSchema            `yaml:"additionalProperties"`
	Items                *oaSchema            `yaml:"items"`
	AllOf                []*oaSchema          `yaml:"allOf"`
	Minimum              *float64             `yaml:"minimum"`
}

type oaMedia struct {
	Schema *oaSchema `yaml:"schema"`
}

type oaResponse struct {
	Ref     string             `yaml:"$ref"`
	Content map[string]oaMedia `yaml:"content"`
}

type oaOperation struct {
	OperationID string                `yaml:"operationId"`
	Responses   map[string]oaResponse `yaml:"responses"`
}

// openAPI is the extract of Microsoft's Graph v1.0 OpenAPI description
// (testdata/graph-v1.0-fido2.openapi.yml; source in testdata/README.md).
type openAPI struct {
	Paths      map[string]map[string]*oaOperation `yaml:"paths"`
	Components struct {
		Schemas   map[string]*oaSchema  `yaml:"schemas"`
		Responses map[string]oaResponse `yaml:"responses"`
	} `yaml:"components"`
	// beyond are members Graph's v1.0 API reference documents and the
	// description at the extract's commit lacks, by schema: they are
	// checked as strings instead of refused. Each is a disagreement noted
	// in testdata/README.md.
	beyond map[string][]string
}

// The paths the connector calls, as the description names them.
const (
	oaList   = "/users/{user-id}/authentication/fido2Methods"
	oaMethod = "/users/{user-id}/authentication/fido2Methods/{fido2AuthenticationMethod-id}"
)

func loadOpenAPI(t testing.TB) *openAPI {
	t.Helper()
	b, err := os.ReadFile("testdata/graph-v1.0-fido2.openapi.yml")
	if err != nil {
		t.Fatal(err)
	}
	var d openAPI
	if err := yaml.Unmarshal(b, &d); err != nil {
		t.Fatal(err)
	}
	if d.Paths[oaList]["get"] == nil || d.Paths[oaMethod]["delete"] == nil || d.Components.Schemas["microsoft.graph.fido2AuthenticationMethod"] == nil {
		t.Fatal("the OpenAPI extract lacks the fido2Methods operations; the extract is broken")
	}
	d.beyond = map[string][]string{
		// passkeyType (deviceBound, synced) came to v1.0 after the commit.
		"microsoft.graph.fido2AuthenticationMethod": {"passkeyType"},
		// Graph's error answers carry these as strings
		// (learn.microsoft.com/graph/errors); the description types every
		// extra member of InnerError as an object.
		"microsoft.graph.ODataErrors.InnerError": {"date", "request-id", "client-request-id"},
	}
	return &d
}

func (d *openAPI) resolve(s *oaSchema) (*oaSchema, string, error) {
	name := ""
	for s != nil && s.Ref != "" {
		n, ok := strings.CutPrefix(s.Ref, "#/components/schemas/")
		if !ok || d.Components.Schemas[n] == nil {
			return nil, "", fmt.Errorf("reference %s is not in the extract", s.Ref)
		}
		name, s = n, d.Components.Schemas[n]
	}
	return s, name, nil
}

// flatten reads allOf as Microsoft's generator (OpenAPI.NET.OData) means
// it, inheritance: the parts' properties and required members together,
// and the additionalProperties of the most derived part.
func (d *openAPI) flatten(s *oaSchema, name string) (props map[string]*oaSchema, required []string, extra *oaSchema, names []string, err error) {
	props = map[string]*oaSchema{}
	var walk func(s *oaSchema, name string) error
	walk = func(s *oaSchema, name string) error {
		s, n, err := d.resolve(s)
		if err != nil {
			return err
		}
		if n != "" {
			name = n
		}
		if name != "" {
			names = append(names, name)
		}
		for _, p := range s.AllOf {
			if err := walk(p, ""); err != nil {
				return err
			}
		}
		for k, v := range s.Properties {
			props[k] = v
		}
		required = append(required, s.Required...)
		if s.AdditionalProperties != nil {
			extra = s.AdditionalProperties
		}
		return nil
	}
	err = walk(s, name)
	return
}

// validate checks a JSON value (numbers as json.Number) against a schema
// with OpenAPI 3.0 semantics: type, nullable, enum, format date-time and
// pattern, minimum, required, properties, additionalProperties (a member
// not declared must match it: in Microsoft's description, an object),
// items. OData control information (@odata.*) not declared is skipped
// (OData JSON Format v4.01 §4.5).
func (d *openAPI) validate(v any, s *oaSchema, at string) error {
	s, name, err := d.resolve(s)
	if err != nil {
		return fmt.Errorf("%s: %w", at, err)
	}
	if v == nil {
		if s.Nullable || len(s.AllOf) > 0 {
			return nil
		}
		return fmt.Errorf("%s: null, but the schema is not nullable", at)
	}
	if len(s.AllOf) > 0 || s.Type == "object" || s.Properties != nil {
		obj, ok := v.(map[string]any)
		if !ok {
			return fmt.Errorf("%s: %T, want an object", at, v)
		}
		props, required, extra, names, err := d.flatten(s, name)
		if err != nil {
			return fmt.Errorf("%s: %w", at, err)
		}
		for _, r := range required {
			if _, ok := obj[r]; !ok {
				return fmt.Errorf("%s: the required member %q is missing", at, r)
			}
		}
		for k, mv := range obj {
			if p := props[k]; p != nil {
				if err := d.validate(mv, p, at+"."+k); err != nil {
					return err
				}
				continue
			}
			if strings.HasPrefix(k, "@odata.") {
				continue
			}
			if d.isBeyond(names, k) {
				if _, ok := mv.(string); !ok {
					return fmt.Errorf("%s.%s: %T, want a string", at, k, mv)
				}
				continue
			}
			if extra == nil {
				continue
			}
			if err := d.validate(mv, extra, at+"."+k); err != nil {
				return fmt.Errorf("%s.%s is not declared (%v), so it must match additionalProperties: %w", at, k, names, err)
			}
		}
		return nil
	}
	switch s.Type {
	case "string":
		str, ok := v.(string)
		if !ok {
			return fmt.Errorf("%s: %T, want a string", at, v)
		}
		if len(s.Enum) > 0 && !slices.Contains(s.Enum, str) {
			return fmt.Errorf("%s: %q is not one of %v", at, str, s.Enum)
		}
		if s.Format == "date-time" {
			if _, err := time.Parse(time.RFC3339Nano, str); err != nil {
				return fmt.Errorf("%s: %q is not a date-time", at, str)
			}
		}
		if s.Pattern != "" {
			re, err := regexp.Compile(s.Pattern)
			if err != nil {
				return fmt.Errorf("%s: pattern %q: %w", at, s.Pattern, err)
			}
			if !re.MatchString(str) {
				return fmt.Errorf("%s: %q does not match %s", at, str, s.Pattern)
			}
		}
	case "boolean":
		if _, ok := v.(bool); !ok {
			return fmt.Errorf("%s: %T, want a boolean", at, v)
		}
	case "integer", "number":
		n, ok := v.(json.Number)
		if !ok {
			return fmt.Errorf("%s: %T, want a number", at, v)
		}
		f, err := n.Float64()
		if err != nil {
			return fmt.Errorf("%s: %w", at, err)
		}
		if _, err := n.Int64(); s.Type == "integer" && err != nil {
			return fmt.Errorf("%s: %s is not an integer", at, n)
		}
		if s.Minimum != nil && f < *s.Minimum {
			return fmt.Errorf("%s: %s is below %v", at, n, *s.Minimum)
		}
	case "array":
		arr, ok := v.([]any)
		if !ok {
			return fmt.Errorf("%s: %T, want an array", at, v)
		}
		for i, e := range arr {
			if err := d.validate(e, s.Items, fmt.Sprintf("%s[%d]", at, i)); err != nil {
				return err
			}
		}
	case "":
		// no type: anything
	default:
		return fmt.Errorf("%s: the validator does not know type %q", at, s.Type)
	}
	return nil
}

func (d *openAPI) isBeyond(names []string, member string) bool {
	for _, n := range names {
		if slices.Contains(d.beyond[n], member) {
			return true
		}
	}
	return false
}

func decodeJSON(body []byte) (any, error) {
	dec := json.NewDecoder(strings.NewReader(string(body)))
	dec.UseNumber()
	var v any
	if err := dec.Decode(&v); err != nil {
		return nil, err
	}
	return v, nil
}

// validateSchema checks a JSON body against a named component schema.
func (d *openAPI) validateSchema(body []byte, name string) error {
	v, err := decodeJSON(body)
	if err != nil {
		return err
	}
	return d.validate(v, &oaSchema{Ref: "#/components/schemas/" + name}, name)
}

// responseSchema is the schema of a response object, or nil when it has
// no content.
func (d *openAPI) responseSchema(r oaResponse) (*oaSchema, error) {
	if n, ok := strings.CutPrefix(r.Ref, "#/components/responses/"); ok {
		cr, found := d.Components.Responses[n]
		if !found {
			return nil, fmt.Errorf("response %s is not in the extract", r.Ref)
		}
		r = cr
	}
	if r.Content == nil {
		return nil, nil
	}
	m, ok := r.Content["application/json"]
	if !ok {
		return nil, fmt.Errorf("no application/json content")
	}
	return m.Schema, nil
}

// validateAnswer checks an answer to a described operation: a 2xx against
// the operation's 2XX response (no body where it has no content), any
// other status against its default response (Graph's OData error).
func (d *openAPI) validateAnswer(path, method string, status int, body []byte) error {
	op := d.Paths[path][method]
	if op == nil {
		return fmt.Errorf("%s %s is not described", strings.ToUpper(method), path)
	}
	key := "default"
	if status >= 200 && status < 300 {
		key = "2XX"
	}
	r, ok := op.Responses[key]
	if !ok {
		return fmt.Errorf("%s has no %s response", op.OperationID, key)
	}
	s, err := d.responseSchema(r)
	if err != nil {
		return fmt.Errorf("%s %s: %w", op.OperationID, key, err)
	}
	if s == nil {
		if len(strings.TrimSpace(string(body))) > 0 {
			return fmt.Errorf("%s %s has no content, the answer has a body", op.OperationID, key)
		}
		return nil
	}
	v, err := decodeJSON(body)
	if err != nil {
		return fmt.Errorf("%s %s: %w", op.OperationID, key, err)
	}
	return d.validate(v, s, op.OperationID)
}

// validateError checks an error answer against the description's shared
// error response (components/responses/error).
func (d *openAPI) validateError(body []byte) error {
	s, err := d.responseSchema(oaResponse{Ref: "#/components/responses/error"})
	if err != nil {
		return err
	}
	v, err := decodeJSON(body)
	if err != nil {
		return err
	}
	return d.validate(v, s, "error")
}

// TestOpenAPIValidatorCatchesMistakes: the OpenAPI check used on every
// body and answer rejects what breaks the description.
func TestOpenAPIValidatorCatchesMistakes(t *testing.T) {
	d := loadOpenAPI(t)
	good := `{"displayName":"YubiKey 5C NFC 31000001","publicKeyCredential":{"id":"AQID","response":{"clientDataJSON":"e30","attestationObject":"oA"},"clientExtensionResults":{}}}`
	if err := d.validateSchema([]byte(good), "microsoft.graph.fido2AuthenticationMethod"); err != nil {
		t.Fatalf("a body that keeps the description: %v", err)
	}
	for name, bad := range map[string]string{
		"misspelt member":           `{"displayname":"k","publicKeyCredential":{}}`,
		"number for a string":       `{"displayName":7}`,
		"string for an object":      `{"publicKeyCredential":"AQID"}`,
		"enum not a member":         `{"attestationLevel":"sortOf"}`,
		"bad date-time":             `{"createdDateTime":"2026-12-06 12:00"}`,
		"id not a string":           `{"id":12}`,
		"certificates not an array": `{"attestationCertificates":"MIIB"}`,
		"passkeyType not a string":  `{"passkeyType":{}}`,
	} {
		if err := d.validateSchema([]byte(bad), "microsoft.graph.fido2AuthenticationMethod"); err == nil {
			t.Errorf("%s: %s passes the validator", name, bad)
		}
	}
	page := `{"value":[{"id":"m1","displayName":"k","attestationLevel":"attested","createdDateTime":"2026-12-06T12:00:00Z"}],"@odata.nextLink":"https://graph.microsoft.com/v1.0/next"}`
	if err := d.validateAnswer(oaList, "get", 200, []byte(page)); err != nil {
		t.Fatalf("a listing that keeps the description: %v", err)
	}
	for name, bad := range map[string]string{
		"value not an array":  `{"value":{}}`,
		"nextLink not string": `{"value":[],"@odata.nextLink":1}`,
		"bad item":            `{"value":[{"aaGuid":5}]}`,
	} {
		if err := d.validateAnswer(oaList, "get", 200, []byte(bad)); err == nil {
			t.Errorf("listing %s: %s passes the validator", name, bad)
		}
	}
	if err := d.validateAnswer(oaMethod, "delete", 204, nil); err != nil {
		t.Fatalf("a 204 to DELETE: %v", err)
	}
	if err := d.validateAnswer(oaMethod, "delete", 204, []byte(`{}`)); err == nil {
		t.Error("a body on the DELETE answer passes")
	}
	if err := d.validateAnswer(oaList, "post", 201, []byte(good)); err == nil {
		t.Error("POST fido2Methods is described, though the description at the extract's commit has no POST")
	}
	errBody := `{"error":{"code":"accessDenied","message":"no","innerError":{"date":"2026-12-06T12:00:00","request-id":"r"}}}`
	if err := d.validateError([]byte(errBody)); err != nil {
		t.Fatalf("an error that keeps the description: %v", err)
	}
	for name, bad := range map[string]string{
		"no code":         `{"error":{"message":"no"}}`,
		"no error":        `{"code":"accessDenied","message":"no"}`,
		"message number":  `{"error":{"code":"x","message":3}}`,
		"details object":  `{"error":{"code":"x","message":"y","details":{}}}`,
		"innerError list": `{"error":{"code":"x","message":"y","innerError":[]}}`,
	} {
		if err := d.validateError([]byte(bad)); err == nil {
			t.Errorf("error %s: %s passes the validator", name, bad)
		}
	}
}
