package audit

import (
	"bytes"
	"crypto/ed25519"
	"encoding/pem"
	"os"
	"path/filepath"
	"testing"
)

// FuzzLoadKeyFile: whatever sits in the state directory's audit key file,
// LoadOrCreateKey returns the key it holds or an error, and never replaces
// a file it could not read (that would sign checkpoints with a new key and
// orphan every earlier one).
func FuzzLoadKeyFile(f *testing.F) {
	f.Add(pem.EncodeToMemory(&pem.Block{Type: "ED25519 PRIVATE KEY", Bytes: bytes.Repeat([]byte{7}, ed25519.SeedSize)}))
	f.Add(pem.EncodeToMemory(&pem.Block{Type: "ED25519 PRIVATE KEY", Bytes: []byte{1, 2, 3}}))
	f.Add(pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: bytes.Repeat([]byte{7}, ed25519.SeedSize)}))
	f.Add([]byte("-----BEGIN ED25519 PRIVATE KEY-----\n"))
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, content []byte) {
		dir := t.TempDir()
		p := filepath.Join(dir, keyFile)
		if err := os.WriteFile(p, content, 0o600); err != nil {
			t.Fatal(err)
		}
		k, err := LoadOrCreateKey(dir)
		after, rerr := os.ReadFile(p)
		if rerr != nil || !bytes.Equal(after, content) {
			t.Fatalf("the key file was changed (%v)", rerr)
		}
		if err != nil {
			return
		}
		blk, _ := pem.Decode(content)
		if blk == nil || !bytes.Equal(k.Seed(), blk.Bytes) {
			t.Fatal("a key that is not the file's")
		}
	})
}
