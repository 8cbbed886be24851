package attest_test

import (
	"encoding/pem"
	"os"
	"testing"

	"github.com/keydesk/keydesk/registry/attest"
)

// FuzzTrustRootsFile: the --trust-roots file is read by AddPEM; any content
// gives an error or adds certificates, and never panics.
func FuzzTrustRootsFile(f *testing.F) {
	for _, name := range []string{"roots/yubico-piv.pem", "roots/yubico-fido.pem", "roots/practice-piv.pem"} {
		b, err := os.ReadFile(name)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	f.Add([]byte("-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n"))
	f.Add(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: []byte{0x30, 0x03, 0x02, 0x01, 0x01}}))
	f.Add(pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: []byte{1}}))
	f.Add([]byte("not pem"))
	f.Fuzz(func(t *testing.T, b []byte) {
		r := attest.Yubico()
		if err := r.AddPEM(b); err != nil {
			return
		}
		if blk, _ := pem.Decode(b); blk == nil {
			t.Fatal("accepted a file with no PEM block")
		}
	})
}
