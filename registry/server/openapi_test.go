package server_test

import (
	"encoding/json"
	"fmt"
	"path/filepath"
	"sort"
	"strings"
	"testing"

	"github.com/keydesk/keydesk/registry/api"
	"github.com/keydesk/keydesk/registry/credential"
	"github.com/keydesk/keydesk/registry/server"
	"github.com/keydesk/keydesk/registry/store/sqlstore"
)

type openapiDoc struct {
	Paths      map[string]map[string]openapiOp `json:"paths"`
	Components struct {
		Schemas map[string]schema `json:"schemas"`
	} `json:"components"`
}

type openapiOp struct {
	Roles     []string                   `json:"x-roles"`
	Responses map[string]json.RawMessage `json:"responses"`
}

type schema struct {
	Ref      string            `json:"$ref"`
	Required []string          `json:"required"`
	Props    map[string]schema `json:"properties"`
	Type     string            `json:"type"`
}

func loadDoc(t *testing.T) openapiDoc {
	var d openapiDoc
	if err := json.Unmarshal(api.OpenAPI, &d); err != nil {
		t.Fatal(err)
	}
	return d
}

func (d openapiDoc) resolve(s schema) schema {
	for s.Ref != "" {
		s = d.Components.Schemas[strings.TrimPrefix(s.Ref, "#/components/schemas/")]
	}
	return s
}

// routes of the real server (the in-process instance only lists them).
func serverRoutes(t *testing.T) []server.Route {
	st, err := sqlstore.Open(t.Context(), filepath.Join(t.TempDir(), "r.db"), sqlstore.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	return server.New(st, server.Options{}).Routes()
}

// TestOpenAPIMatchesRoutes: every documented operation is served and every
// served route is documented, with the same roles.
func TestOpenAPIMatchesRoutes(t *testing.T) {
	d := loadDoc(t)
	doc := map[string][]string{}
	for p, ops := range d.Paths {
		for m, op := range ops {
			doc[strings.ToUpper(m)+" "+p] = op.Roles
		}
	}
	served := map[string][]string{}
	for _, r := range serverRoutes(t) {
		roles := []string{}
		for _, ro := range r.Roles {
			roles = append(roles, string(ro))
		}
		if r.Public {
			roles = []string{"public"}
		}
		served[r.Method+" "+r.Pattern] = roles
	}
	for k, roles := range served {
		dr, ok := doc[k]
		if !ok {
			t.Errorf("%s is served but not documented", k)
			continue
		}
		sort.Strings(roles)
		sort.Strings(dr)
		if fmt.Sprint(roles) != fmt.Sprint(dr) {
			t.Errorf("%s: served roles %v, documented %v", k, roles, dr)
		}
	}
	for k := range doc {
		if _, ok := served[k]; !ok {
			t.Errorf("%s is documented but not served", k)
		}
	}
}

// TestRoleMatrix calls every endpoint of a real registry process as every
// role (and with no token, and as a self token on someone else's records),
// checks allow/deny against the route table, and checks each response's
// status is documented and a success carries the documented required fields.
func TestRoleMatrix(t *testing.T) {
	// Every route is called without a token: more failures than the
	// default lockout allows from one address.
	r := start(t, "--auth-failures", "10000")
	d := loadDoc(t)
	n := 0
	uniq := func() string { n++; return fmt.Sprintf("m%d", n) }
	type caller struct {
		name, tok string
		role      string
		own       bool
	}
	callers := []caller{{"none", "", "", false}, {"admin", r.admin, "admin", true}, {"helpdesk", r.helpdesk, "helpdesk", true}, {"self-own", r.selfA, "self", true}, {"self-other", r.selfA, "self", false}, {"authserver", r.authserver, "authserver", true}}
	for _, rt := range serverRoutes(t) {
		for _, c := range callers {
			t.Run(rt.Method+" "+rt.Pattern+" as "+c.name, func(t *testing.T) {
				user, key := r.userA, r.keyA
				if !c.own {
					user, key = r.userB, r.keyB
				}
				path := strings.NewReplacer("{id}", user, "{kind}", "piv-puk", "{name}", "no-such-token").Replace(rt.Pattern)
				if strings.HasPrefix(rt.Pattern, "/v1/keys/") {
					path = strings.NewReplacer("{id}", key, "{kind}", "piv-puk").Replace(rt.Pattern)
				}
				var body any
				var hdr []string
				switch rt.Method + " " + rt.Pattern {
				case "POST /v1/users":
					body = map[string]any{"external_id": uniq()}
				case "PATCH /v1/users/{id}":
					body, hdr = map[string]any{"display_name": "x"}, []string{"If-Match", `"v99"`}
				case "POST /v1/users/{id}/access-passes":
					body = map[string]any{"reason": "lost key", "validity": "8h"}
				case "POST /v1/enrolments":
					body = map[string]any{"user": map[string]any{"external_id": uniq()}, "key": map[string]any{"serial": uniq()}}
				case "POST /v1/keys/{id}/status":
					body, hdr = map[string]any{"status": "suspended"}, []string{"If-Match", `"v99"`}
				case "POST /v1/keys/{id}/fido2":
					body = map[string]any{"credential_id": []byte(uniq()), "public_key": credential.COSEKeyES256(&p256.PublicKey), "rp_id": "example.org"}
				case "POST /v1/keys/{id}/piv":
					body = map[string]any{"slot": "9c", "public_key": pkixDER(&p256.PublicKey)}
				case "PUT /v1/keys/{id}/escrow/{kind}":
					body = map[string]any{"blob": []byte("age-encryption.org/v1 ...")}
				case "POST /v1/challenges":
					body = map[string]any{"key_id": key, "kind": "piv", "credential_id": r.pivA}
				case "POST /v1/access-passes/redeem":
					body = map[string]any{"pass": "not-a-pass"}
				case "POST /v1/tokens/{name}/revoke":
					body = map[string]any{}
				case "POST /v1/verifications":
					body = map[string]any{"challenge_id": "ch_unknown", "piv": map[string]any{"signature": []byte{1}}}
				case "GET /v1/keys":
					path = "/v1/keys?serial=100"
				case "POST /v1/keys/{id}/fido2/reset":
					body = map[string]any{"reason": "role matrix"}
				case "POST /v1/keys/{id}/recovery-events":
					body = map[string]any{"action": "diagnosed"}
				case "POST /v1/import":
					body = map[string]any{"format": "keydesk-registry-export/1", "scope": "user"}
				}
				if p, b, ok := r.migrationCall(rt.Method + " " + rt.Pattern); ok {
					path, body = p, b
				}
				res := r.do(c.tok, rt.Method, path, body, hdr...)
				allowed := rt.Public
				for _, ro := range rt.Roles {
					allowed = allowed || string(ro) == c.role
				}
				// Self tokens are further limited to their own records on
				// routes that name a user or key.
				scoped := strings.Contains(rt.Pattern, "{id}") || rt.Pattern == "/v1/challenges"
				switch {
				case c.tok == "" && !rt.Public:
					if res.status != 401 {
						t.Fatalf("no token: %d %s", res.status, res.raw)
					}
				case !allowed:
					if res.status != 403 {
						t.Fatalf("role %s not allowed, got %d %s", c.role, res.status, res.raw)
					}
				case c.role == "self" && !c.own && scoped:
					if res.status != 403 {
						t.Fatalf("self token on another user's record: %d %s", res.status, res.raw)
					}
				default:
					if res.status == 401 || res.status == 403 || res.status >= 500 {
						t.Fatalf("allowed call refused: %d %s", res.status, res.raw)
					}
				}
				op := d.Paths[rt.Pattern][strings.ToLower(rt.Method)]
				raw, ok := op.Responses[fmt.Sprint(res.status)]
				if !ok {
					t.Fatalf("status %d not documented for %s %s (%s)", res.status, rt.Method, rt.Pattern, res.raw)
				}
				var rd struct {
					Content map[string]struct {
						Schema schema `json:"schema"`
					} `json:"content"`
				}
				json.Unmarshal(raw, &rd)
				sc := d.resolve(rd.Content["application/json"].Schema)
				for _, f := range sc.Required {
					if _, ok := res.body[f]; !ok {
						t.Fatalf("response %d lacks required field %q: %s", res.status, f, res.raw)
					}
				}
			})
		}
	}
}
