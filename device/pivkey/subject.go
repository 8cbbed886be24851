package pivkey

import (
	"crypto/x509/pkix"
	"errors"
	"fmt"
	"strings"
)

// ParseSubject reads a certificate subject written as "CN=ada,O=Example"
// for CSR and SelfSign: comma-separated KEY=value parts with the
// attributes CN, O, OU and C (RFC 5280 §4.1.2.4), keys in either case.
// O, OU and C may repeat.
func ParseSubject(s string) (pkix.Name, error) {
	var n pkix.Name
	if strings.TrimSpace(s) == "" {
		return n, errors.New("give a subject, like CN=ada,O=Example")
	}
	for _, part := range strings.Split(s, ",") {
		k, v, ok := strings.Cut(strings.TrimSpace(part), "=")
		k, v = strings.ToUpper(strings.TrimSpace(k)), strings.TrimSpace(v)
		if !ok || v == "" {
			return n, fmt.Errorf("subject part %q: write it as KEY=value, like CN=ada", part)
		}
		switch k {
		case "CN":
			n.CommonName = v
		case "O":
			n.Organization = append(n.Organization, v)
		case "OU":
			n.OrganizationalUnit = append(n.OrganizationalUnit, v)
		case "C":
			n.Country = append(n.Country, v)
		default:
			return n, fmt.Errorf("subject attribute %q is not one keydesk writes (CN, O, OU, C)", k)
		}
	}
	return n, nil
}
