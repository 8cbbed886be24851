package settings

import (
	"os"
	"path/filepath"
	"reflect"
	"testing"
)

// FuzzLoad feeds Load any settings file. It must end with an error or with
// settings that validate and survive Save and Load unchanged.
func FuzzLoad(f *testing.F) {
	f.Add([]byte(`{"registry_url":"https://registry.example.org","rp_id":"example.org","min_pin_length":8,"cred_protect":3}`))
	f.Add([]byte(`{"practice":true,"helpdesk_recipients":["age1xyz"],"piv_cert_mode":"csr","csr_dir":"/tmp"}`))
	f.Add([]byte(`{"min_pin_length":-1}`))
	f.Add([]byte(`{"unknown":1}`))
	f.Add([]byte(`{}{}`))
	f.Add([]byte(`[`))
	f.Fuzz(func(t *testing.T, data []byte) {
		dir := t.TempDir()
		p := filepath.Join(dir, "settings.json")
		if err := os.WriteFile(p, data, 0o600); err != nil {
			t.Fatal(err)
		}
		s, err := Load(p)
		if err != nil {
			return
		}
		if err := s.Validate(); err != nil {
			t.Fatalf("Load gave settings that do not validate: %v", err)
		}
		p2 := filepath.Join(dir, "again.json")
		if err := Save(p2, s); err != nil {
			t.Fatalf("saving loaded settings: %v", err)
		}
		s2, err := Load(p2)
		if err != nil || !reflect.DeepEqual(s, s2) {
			t.Fatalf("round trip: %+v != %+v (%v)", s, s2, err)
		}
	})
}
