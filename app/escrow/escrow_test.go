package escrow

import (
	"bytes"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"
)

func sample() PIVSecrets {
	return PIVSecrets{
		Serial:        31234567,
		PUK:           "83920174",
		ManagementKey: bytes.Repeat([]byte{0xA5}, 24),
		Algorithm:     "aes192",
		Created:       time.Date(2026, 11, 25, 9, 0, 0, 0, time.UTC),
	}
}

func TestSealOpenEveryRecipient(t *testing.T) {
	id1, r1, _ := NewIdentity()
	id2, r2, _ := NewIdentity()
	other, _, _ := NewIdentity()
	blob, err := Seal(sample(), []string{r1, " " + r2 + " "})
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.HasPrefix(blob, []byte("-----BEGIN AGE ENCRYPTED FILE-----")) {
		t.Fatalf("not armored: %q", blob[:40])
	}
	for _, secret := range []string{"83920174", "a5a5a5a5", "A5A5A5A5"} {
		if bytes.Contains(blob, []byte(secret)) {
			t.Fatalf("blob contains %q in clear", secret)
		}
	}
	for _, id := range []string{id1, id2} {
		got, err := Open(blob, id)
		if err != nil {
			t.Fatal(err)
		}
		want := sample()
		if got.PUK != want.PUK || !bytes.Equal(got.ManagementKey, want.ManagementKey) || got.Serial != want.Serial || !got.Created.Equal(want.Created) {
			t.Fatalf("round trip: got %+v", got)
		}
	}
	if _, err := Open(blob, other); !errors.Is(err, ErrWrongIdentity) {
		t.Fatalf("Open with a stranger's identity: %v, want ErrWrongIdentity", err)
	}
}

func TestSealRefusesNobody(t *testing.T) {
	if _, err := Seal(sample(), nil); !errors.Is(err, ErrNoRecipients) {
		t.Fatalf("Seal to nobody: %v", err)
	}
	if _, err := Seal(sample(), []string{"age1notarecipient"}); err == nil {
		t.Fatal("Seal accepted a malformed recipient")
	}
}

func TestStringNeverShowsSecrets(t *testing.T) {
	s := sample()
	for _, out := range []string{s.String(), fmt.Sprintf("%v", s), fmt.Sprintf("%+v", s), fmt.Sprintf("%#v", s)} {
		if strings.Contains(out, s.PUK) || strings.Contains(strings.ToLower(out), "a5a5") {
			t.Fatalf("formatted secrets leak: %s", out)
		}
	}
}

func TestOpenRejectsTamperedBlob(t *testing.T) {
	id, r, _ := NewIdentity()
	blob, _ := Seal(sample(), []string{r})
	lines := strings.Split(string(blob), "\n")
	mid := len(lines) / 2
	b := []byte(lines[mid])
	if b[3] == 'A' {
		b[3] = 'B'
	} else {
		b[3] = 'A'
	}
	lines[mid] = string(b)
	if _, err := Open([]byte(strings.Join(lines, "\n")), id); err == nil {
		t.Fatal("Open accepted a tampered blob")
	}
}

func FuzzOpen(f *testing.F) {
	id, r, _ := NewIdentity()
	blob, _ := Seal(sample(), []string{r})
	f.Add(blob)
	f.Add([]byte("-----BEGIN AGE ENCRYPTED FILE-----\n-----END AGE ENCRYPTED FILE-----\n"))
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, data []byte) {
		s, err := Open(data, id)
		if err == nil && s.Serial != sample().Serial {
			t.Fatalf("opened forged blob: %v", s)
		}
	})
}
