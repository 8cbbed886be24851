package entra

import (
	"encoding/base64"
	"encoding/json"
	"encoding/xml"
	"fmt"
	"os"
	"strings"
	"testing"
	"time"
)

// csdl is the subset of OData CSDL (OASIS OData v4.01 CSDL XML) the
// extract in testdata uses: enum, complex and entity types with their
// properties and base types.
type csdl struct {
	types map[string]*csdlType
}

type csdlType struct {
	Name     string     `xml:"Name,attr"`
	BaseType string     `xml:"BaseType,attr"`
	OpenType bool       `xml:"OpenType,attr"`
	Props    []csdlProp `xml:"Property"`
	Members  []struct {
		Name string `xml:"Name,attr"`
	} `xml:"Member"`
	enum bool
}

type csdlProp struct {
	Name     string `xml:"Name,attr"`
	Type     string `xml:"Type,attr"`
	Nullable string `xml:"Nullable,attr"`
}

func loadContract(t *testing.T) *csdl {
	t.Helper()
	b, err := os.ReadFile("testdata/graph-v1.0-fido2.csdl.xml")
	if err != nil {
		t.Fatal(err)
	}
	var doc struct {
		Schema struct {
			Enums    []*csdlType `xml:"EnumType"`
			Complex  []*csdlType `xml:"ComplexType"`
			Entities []*csdlType `xml:"EntityType"`
		} `xml:"DataServices>Schema"`
	}
	if err := xml.Unmarshal(b, &doc); err != nil {
		t.Fatal(err)
	}
	c := &csdl{types: map[string]*csdlType{}}
	for _, e := range doc.Schema.Enums {
		e.enum = true
		c.types["graph."+e.Name] = e
	}
	for _, ts := range [][]*csdlType{doc.Schema.Complex, doc.Schema.Entities} {
		for _, ty := range ts {
			c.types["graph."+ty.Name] = ty
		}
	}
	if len(c.types) < 15 {
		t.Fatalf("contract has %d types; the extract is broken", len(c.types))
	}
	return c
}

// props is a type's properties with its base types'.
func (c *csdl) props(name string) (map[string]csdlProp, bool, error) {
	out := map[string]csdlProp{}
	open := false
	for n := name; n != ""; {
		ty := c.types[n]
		if ty == nil {
			return nil, false, fmt.Errorf("type %s is not in the contract", n)
		}
		open = open || ty.OpenType
		for _, p := range ty.Props {
			out[p.Name] = p
		}
		n = ty.BaseType
	}
	return out, open, nil
}

// validate checks a JSON value against a CSDL type: every member is a
// declared property (unless the type is open) of the declared type;
// strings, booleans, integers, date-times, enums and collections are
// checked for their JSON shape. at names the place for the message.
func (c *csdl) validate(v any, typ, at string) error {
	if v == nil {
		return nil // nullability is checked by the caller where it matters
	}
	if inner, ok := strings.CutPrefix(typ, "Collection("); ok {
		arr, ok := v.([]any)
		if !ok {
			return fmt.Errorf("%s: %T, want an array of %s", at, v, typ)
		}
		inner = strings.TrimSuffix(inner, ")")
		for i, e := range arr {
			if err := c.validate(e, inner, fmt.Sprintf("%s[%d]", at, i)); err != nil {
				return err
			}
		}
		return nil
	}
	switch typ {
	case "Edm.String":
		if _, ok := v.(string); !ok {
			return fmt.Errorf("%s: %T, want a string", at, v)
		}
		return nil
	case "Edm.Boolean":
		if _, ok := v.(bool); !ok {
			return fmt.Errorf("%s: %T, want a boolean", at, v)
		}
		return nil
	case "Edm.Int32", "Edm.Int64":
		n, ok := v.(json.Number)
		if !ok {
			return fmt.Errorf("%s: %T, want an integer", at, v)
		}
		if _, err := n.Int64(); err != nil {
			return fmt.Errorf("%s: %s is not an integer", at, n)
		}
		return nil
	case "Edm.DateTimeOffset":
		s, ok := v.(string)
		if !ok {
			return fmt.Errorf("%s: %T, want a date-time string", at, v)
		}
		if _, err := time.Parse(time.RFC3339Nano, s); err != nil {
			return fmt.Errorf("%s: %q is not an RFC 3339 date-time", at, s)
		}
		return nil
	}
	ty := c.types[typ]
	if ty == nil {
		return fmt.Errorf("%s: type %s is not in the contract", at, typ)
	}
	if ty.enum {
		s, ok := v.(string)
		if !ok {
			return fmt.Errorf("%s: %T, want a %s member name", at, v, typ)
		}
		for _, m := range ty.Members {
			if m.Name == s {
				return nil
			}
		}
		return fmt.Errorf("%s: %q is not a member of %s", at, s, typ)
	}
	obj, ok := v.(map[string]any)
	if !ok {
		return fmt.Errorf("%s: %T, want an object of %s", at, v, typ)
	}
	props, open, err := c.props(typ)
	if err != nil {
		return fmt.Errorf("%s: %w", at, err)
	}
	for k, mv := range obj {
		if strings.HasPrefix(k, "@odata.") {
			continue // OData control information
		}
		p, ok := props[k]
		if !ok {
			if open {
				continue
			}
			return fmt.Errorf("%s.%s: %s has no such property", at, k, typ)
		}
		if mv == nil && p.Nullable == "false" {
			return fmt.Errorf("%s.%s: null, but %s.%s is not nullable", at, k, typ, k)
		}
		if err := c.validate(mv, p.Type, at+"."+k); err != nil {
			return err
		}
	}
	return nil
}

func (c *csdl) validateJSON(body []byte, typ string) error {
	d := json.NewDecoder(strings.NewReader(string(body)))
	d.UseNumber()
	var v any
	if err := d.Decode(&v); err != nil {
		return err
	}
	return c.validate(v, typ, typ)
}

// checkBinaryMembers checks what the CSDL cannot: the metadata types the
// binary members of webauthnPublicKeyCredential as Edm.String, and the
// v1.0 API reference (resources/webauthnpublickeycredential,
// resources/webauthnauthenticatorattestationresponse) says they are
// base64url encoded. keydesk sends them without padding (RFC 4648 §5),
// as WebAuthn's JSON serialisation does.
func checkBinaryMembers(body []byte) error {
	var fm struct {
		PublicKeyCredential *struct {
			ID       *string `json:"id"`
			Response *struct {
				ClientDataJSON    *string `json:"clientDataJSON"`
				AttestationObject *string `json:"attestationObject"`
			} `json:"response"`
		} `json:"publicKeyCredential"`
	}
	if err := json.Unmarshal(body, &fm); err != nil {
		return err
	}
	pkc := fm.PublicKeyCredential
	if pkc == nil || pkc.ID == nil || pkc.Response == nil || pkc.Response.ClientDataJSON == nil || pkc.Response.AttestationObject == nil {
		return fmt.Errorf("publicKeyCredential needs id, response.clientDataJSON and response.attestationObject")
	}
	for name, v := range map[string]string{"publicKeyCredential.id": *pkc.ID,
		"publicKeyCredential.response.clientDataJSON":    *pkc.Response.ClientDataJSON,
		"publicKeyCredential.response.attestationObject": *pkc.Response.AttestationObject} {
		if v == "" {
			return fmt.Errorf("%s is empty", name)
		}
		if _, err := base64.RawURLEncoding.DecodeString(v); err != nil {
			return fmt.Errorf("%s is not base64url without padding: %w", name, err)
		}
	}
	return nil
}

// TestContractValidatorCatchesMistakes: the validator used on every body
// the connector sends does reject bodies that break the contract.
func TestContractValidatorCatchesMistakes(t *testing.T) {
	c := loadContract(t)
	good := `{"displayName":"YubiKey 5C NFC 31000001","publicKeyCredential":{"id":"AQID","response":{"clientDataJSON":"e30","attestationObject":"oA"},"clientExtensionResults":{"anything":true}}}`
	if err := c.validateJSON([]byte(good), "graph.fido2AuthenticationMethod"); err != nil {
		t.Fatalf("a body that keeps the contract: %v", err)
	}
	for name, bad := range map[string]string{
		"unknown member":         `{"displayName":"k","publicKey":{}}`,
		"misspelt nested member": `{"publicKeyCredential":{"id":"AQID","response":{"clientDataJson":"e30"}}}`,
		"number for a string":    `{"displayName":7}`,
		"object for a string":    `{"publicKeyCredential":{"id":{"raw":"AQID"}}}`,
		"array for an object":    `{"publicKeyCredential":[]}`,
		"enum not a member":      `{"attestationLevel":"sortOf"}`,
		"bad date-time":          `{"createdDateTime":"yesterday"}`,
		"null non-nullable id":   `{"id":null}`,
	} {
		if err := c.validateJSON([]byte(bad), "graph.fido2AuthenticationMethod"); err == nil {
			t.Errorf("%s: %s passes the validator", name, bad)
		}
	}
	if err := checkBinaryMembers([]byte(good)); err != nil {
		t.Fatalf("binary members of a good body: %v", err)
	}
	for name, bad := range map[string]string{
		"standard base64":      `{"publicKeyCredential":{"id":"+/8=","response":{"clientDataJSON":"e30","attestationObject":"oA"}}}`,
		"padding":              `{"publicKeyCredential":{"id":"AQID","response":{"clientDataJSON":"e30=","attestationObject":"oA"}}}`,
		"no attestationObject": `{"publicKeyCredential":{"id":"AQID","response":{"clientDataJSON":"e30"}}}`,
		"empty id":             `{"publicKeyCredential":{"id":"","response":{"clientDataJSON":"e30","attestationObject":"oA"}}}`,
	} {
		if err := checkBinaryMembers([]byte(bad)); err == nil {
			t.Errorf("%s: %s passes the binary-member check", name, bad)
		}
	}
}
