package backup

import (
	"bytes"
	"testing"

	"filippo.io/age"
	"filippo.io/age/armor"

	"github.com/keydesk/keydesk/registry"
)

// FuzzOpen feeds Open bundles from outside: the file as found (armor and
// age header) and, since anyone holding the helpdesk's public recipient can
// seal a bundle, any content sealed properly to the identity. Open must end
// with an error or an export in the bundle format, never panic.
func FuzzOpen(f *testing.F) {
	id, err := age.GenerateX25519Identity()
	if err != nil {
		f.Fatal(err)
	}
	seal := func(plain []byte) []byte {
		var b bytes.Buffer
		aw := armor.NewWriter(&b)
		w, err := age.Encrypt(aw, id.Recipient())
		if err != nil {
			f.Fatal(err)
		}
		w.Write(plain)
		w.Close()
		aw.Close()
		return b.Bytes()
	}
	good := []byte(`{"format":"` + registry.ExportFormat + `","scope":"user","exported_at":"2026-12-01T00:00:00Z"}`)
	f.Add(seal(good), good)
	f.Add([]byte("-----BEGIN AGE ENCRYPTED FILE-----\n-----END AGE ENCRYPTED FILE-----\n"), []byte(`{"format":"other"}`))
	f.Add([]byte{}, []byte(`{"format":"`+registry.ExportFormat+`","unknown":1}`))
	f.Add([]byte("age-encryption.org/v1\n-> X25519 AAAA\n--- AAAA\n"), []byte(`[`))
	f.Fuzz(func(t *testing.T, file, plain []byte) {
		for _, in := range [][]byte{file, seal(plain)} {
			x, err := Open(bytes.NewReader(in), id.String())
			if err == nil && (x == nil || x.Format != registry.ExportFormat) {
				t.Fatalf("opened a bundle that is not %s: %+v", registry.ExportFormat, x)
			}
		}
	})
}
