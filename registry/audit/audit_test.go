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

// TestVerifyLogAnchors: the newest entry must be signed, the chain must end
// at the head row and contain every witnessed head, and a rejected pending
// row fails verification.
func TestVerifyLogAnchors(t *testing.T) {
	_, key, _ := ed25519.GenerateKey(rand.Reader)
	pub := key.Public().(ed25519.PublicKey)
	es, cs := chain(t, key, 6)
	head := &Head{Seq: 6, Hash: es[5].Hash}
	full := Log{Entries: es, Checkpoints: cs, Head: head, Witnesses: []Checkpoint{cs[5]}}
	if r, err := VerifyLog(full, pub); err != nil || r.Signed.Seq != 6 {
		t.Fatalf("%+v %v", r, err)
	}
	seqOf := func(l Log) int64 {
		t.Helper()
		_, err := VerifyLog(l, pub)
		var te *TamperError
		if !errors.As(err, &te) || !errors.Is(err, ErrTampered) {
			t.Fatalf("want a TamperError, got %v", err)
		}
		return te.Seq
	}
	// Entries after the last checkpoint are not covered.
	if s := seqOf(Log{Entries: es, Checkpoints: cs[:3]}); s != 4 {
		t.Fatalf("uncovered: %d", s)
	}
	// Truncated: one entry and its checkpoint gone, the head row says 6.
	if s := seqOf(Log{Entries: es[:5], Checkpoints: cs[:5], Head: head}); s != 6 {
		t.Fatalf("truncated against the head: %d", s)
	}
	// Truncated with the head row edited to match: the witness says 6.
	if s := seqOf(Log{Entries: es[:5], Checkpoints: cs[:5], Head: &Head{Seq: 5, Hash: es[4].Hash}, Witnesses: []Checkpoint{cs[5]}}); s != 6 {
		t.Fatalf("truncated against the witness: %d", s)
	}
	// A witness with a different hash for its entry: rewritten.
	w := Sign(key, 4, make([]byte, 32))
	if s := seqOf(Log{Entries: es, Checkpoints: cs, Witnesses: []Checkpoint{w}}); s != 4 {
		t.Fatalf("rewritten against the witness: %d", s)
	}
	// A witness not signed by the key.
	_, other, _ := ed25519.GenerateKey(rand.Reader)
	if s := seqOf(Log{Entries: es, Checkpoints: cs, Witnesses: []Checkpoint{Sign(other, 6, es[5].Hash)}}); s != 6 {
		t.Fatalf("foreign witness: %d", s)
	}
	_, err := VerifyLog(Log{Entries: es, Checkpoints: cs, Rejected: []Rejected{{ID: 9, Actor: "admin:forged", Action: "key.break_glass"}}}, pub)
	var te *TamperError
	if !errors.As(err, &te) || te.Pending != 9 {
		t.Fatalf("rejected pending row: %v", err)
	}
}

func TestWitness(t *testing.T) {
	dir := t.TempDir()
	_, key, _ := ed25519.GenerateKey(rand.Reader)
	pub := key.Public().(ed25519.PublicKey)
	es, cs := chain(t, key, 3)
	w, err := OpenWitness(dir, pub)
	if err != nil {
		t.Fatal(err)
	}
	if err := w.Record(cs[2], false); err != nil {
		t.Fatal(err)
	}
	// An older checkpoint recorded late does not move the witness back.
	if err := w.Record(cs[1], false); err != nil {
		t.Fatal(err)
	}
	w2, err := OpenWitness(dir, pub)
	if err != nil {
		t.Fatal(err)
	}
	if c, ok := w2.Latest(); !ok || c.Seq != 3 || string(c.Hash) != string(es[2].Hash) {
		t.Fatalf("reopened witness: %+v %v", c, ok)
	}
	otherPub, _, _ := ed25519.GenerateKey(rand.Reader)
	if _, err := OpenWitness(dir, otherPub); err == nil {
		t.Fatal("a witness signed by another key was accepted")
	}
	// A restore replaces the chain: the witness follows it back.
	if err := w.Record(cs[0], true); err != nil {
		t.Fatal(err)
	}
	if c, _ := ReadHead(w.Path()); c.Seq != 1 {
		t.Fatalf("after a rewrite the witness holds %d", c.Seq)
	}
}

func TestPendingMAC(t *testing.T) {
	_, key, _ := ed25519.GenerateKey(rand.Reader)
	k := PendingKey(key)
	e := Entry{Time: 1, Actor: "helpdesk:desk", Action: "verification", Payload: []byte(`{}`)}
	m := PendingMAC(k, &e)
	e2 := e
	e2.Actor = "admin:forged"
	if string(PendingMAC(k, &e2)) == string(m) {
		t.Fatal("the MAC does not cover the actor")
	}
	_, other, _ := ed25519.GenerateKey(rand.Reader)
	if string(PendingMAC(PendingKey(other), &e)) == string(m) {
		t.Fatal("the MAC does not depend on the signing key")
	}
}
