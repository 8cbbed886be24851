package fido2_test

import (
	"crypto/sha256"
	"os"
	"path/filepath"
	"testing"

	libfido2 "github.com/keys-pub/go-libfido2"

	"github.com/keydesk/keydesk/device/virtual"
	"github.com/keydesk/keydesk/device/virtual/fido2"
)

// A key's credentials and PIN survive a restart through State.
func TestStateSurvivesRestart(t *testing.T) {
	dir := t.TempDir()
	link := filepath.Join(dir, "fido")
	key := virtual.NewKey(virtual.DefaultIdentity(5000001))
	changed := make(chan struct{}, 100)
	key.OnChange(func() { changed <- struct{}{} })
	app, err := fido2.Start(key, nil, link)
	if err != nil {
		t.Fatal(err)
	}
	dev, err := libfido2.NewDevice(app.Path())
	if err != nil {
		t.Fatal(err)
	}
	if err := dev.SetPIN("424242", ""); err != nil {
		t.Fatal(err)
	}
	<-changed // persistence hook fired
	cdh := sha256.Sum256([]byte("restart"))
	att, err := dev.MakeCredential(cdh[:], libfido2.RelyingParty{ID: "keydesk.example"}, libfido2.User{ID: []byte("u"), Name: "u"}, libfido2.ES256, "424242", &libfido2.MakeCredentialOpts{RK: libfido2.True})
	if err != nil {
		t.Fatal(err)
	}
	state, err := app.State()
	if err != nil {
		t.Fatal(err)
	}
	app.Close()
	if _, err := os.Lstat(link); !os.IsNotExist(err) {
		t.Fatalf("link after Close: %v", err)
	}

	key2 := virtual.NewKey(virtual.DefaultIdentity(5000001))
	app2, err := fido2.Start(key2, state, link)
	if err != nil {
		t.Fatal(err)
	}
	defer app2.Close()
	dev2, _ := libfido2.NewDevice(app2.Path())
	creds, err := dev2.Credentials("keydesk.example", "424242")
	if err != nil || len(creds) != 1 || string(creds[0].ID) != string(att.CredentialID) {
		t.Fatalf("credentials after restart: %v %v", creds, err)
	}
	if _, err := dev2.Assertion("keydesk.example", cdh[:], [][]byte{att.CredentialID}, "", nil); err != nil {
		t.Fatalf("assertion after restart: %v", err)
	}
	if _, err := fido2.Start(virtual.NewKey(virtual.DefaultIdentity(1)), []byte("{"), filepath.Join(dir, "bad")); err == nil {
		t.Fatal("a corrupt state was accepted")
	}
}
