package audit

import (
	"crypto/ed25519"
	"crypto/rand"
	"errors"
	"testing"
)

func chain(t *testing.T, key ed25519.PrivateKey, n int) ([]Entry, []Checkpoint) {
	var es []Entry
	var cs []Checkpoint
	var prev []byte
	for i := 0; i < n; i++ {
		e := Entry{Time: int64(i), Actor: "admin:a", Action: "user.create", Payload: []byte(`{"n":1}`)}
		Seal(&e, int64(i), prev)
		prev = e.Hash
		es = append(es, e)
		cs = append(cs, Sign(key, e.Seq, e.Hash))
	}
	return es, cs
}

func TestVerify(t *testing.T) {
	_, key, _ := ed25519.GenerateKey(rand.Reader)
	pub := key.Public().(ed25519.PublicKey)
	es, cs := chain(t, key, 5)
	if r, err := Verify(es, cs, pub); err != nil || r.Entries != 5 {
		t.Fatalf("%+v %v", r, err)
	}
	var te *TamperError

	deleted := append(append([]Entry{}, es[:2]...), es[3:]...)
	if _, err := Verify(deleted, cs, pub); !errors.As(err, &te) || te.Seq != 4 {
		t.Fatalf("deleted row: %v", err)
	}

	// An attacker rewrites entry 3 and recomputes every later hash: the
	// chain is consistent again but no longer matches the signatures.
	forged := append([]Entry{}, es...)
	forged[2].Actor = "mallory"
	prev := forged[1].Hash
	for i := 2; i < len(forged); i++ {
		Seal(&forged[i], int64(i), prev)
		prev = forged[i].Hash
	}
	if _, err := Verify(forged, cs, pub); !errors.As(err, &te) || te.Seq != 3 {
		t.Fatalf("recomputed chain: %v", err)
	}

	// Checkpoints signed by another key.
	_, other, _ := ed25519.GenerateKey(rand.Reader)
	_, cs2 := chain(t, other, 5)
	if _, err := Verify(es, cs2, pub); err == nil {
		t.Fatal("foreign checkpoints accepted")
	}
	if _, err := Verify(es, nil, pub); !errors.Is(err, ErrNoCheckpoint) {
		t.Fatalf("no checkpoints: %v", err)
	}
}

func TestLoadOrCreateKey(t *testing.T) {
	dir := t.TempDir()
	a, err := LoadOrCreateKey(dir)
	if err != nil {
		t.Fatal(err)
	}
	b, err := LoadOrCreateKey(dir)
	if err != nil || !a.Equal(b) {
		t.Fatalf("second load: %v", err)
	}
}
