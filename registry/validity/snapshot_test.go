package validity

import (
	"encoding/hex"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"reflect"
	"testing"

	"github.com/keydesk/keydesk/registry"
)

// synthetic returns validity rows for users×perUser credentials shaped like
// the registry's: registry ids, 64-byte credential ids, 77-byte COSE ES256
// keys, 8-digit serials, one rp id.
func synthetic(seed uint64, users, perUser int) []registry.ValidCredential {
	rng := rand.New(rand.NewPCG(seed, 1))
	id := func(prefix string) string {
		var b [12]byte
		for i := range b {
			b[i] = byte(rng.Uint32())
		}
		return prefix + "_" + hex.EncodeToString(b[:])
	}
	rows := make([]registry.ValidCredential, 0, users*perUser)
	for u := 0; u < users; u++ {
		uid := id("usr")
		ext := fmt.Sprintf("emp-%07d", u)
		for k := 0; k < perUser; k++ {
			cid := make([]byte, 64)
			for i := range cid {
				cid[i] = byte(rng.Uint32())
			}
			// A canonical COSE ES256 key (the x and y need not be on the
			// curve for the replica, which never parses them).
			pub := append([]byte(nil), es256Prefix...)
			for range 32 {
				pub = append(pub, byte(rng.Uint32()))
			}
			pub = append(pub, es256Mid...)
			for range 32 {
				pub = append(pub, byte(rng.Uint32()))
			}
			rows = append(rows, registry.ValidCredential{UserID: uid, ExternalID: ext, KeyID: id("key"), Serial: fmt.Sprintf("%08d", rng.IntN(1e8)), Kind: "fido2", CredentialID: cid, RPID: "login.example.org", PublicKey: pub})
		}
	}
	return rows
}

func TestIDEncoding(t *testing.T) {
	for _, id := range []string{"usr_0123456789abcdef01234567", "key_ffffffffffffffffffffffff", "a_000000000000000000000000", "legacy-42", "usr_0123456789ABCDEF01234567", "usr_0123456789abcdef0123456", ""} {
		b, err := appendID(nil, id)
		if err != nil {
			t.Fatalf("%q: %v", id, err)
		}
		if idLen(b) != len(b) || decodeID(b) != id {
			t.Errorf("%q: decodes to %q (len %d of %d)", id, decodeID(b), idLen(b), len(b))
		}
	}
	if _, err := appendID(nil, string(make([]byte, 200))); err == nil {
		t.Error("a 200-byte id was taken")
	}
}

func TestSnapshotRoundTrip(t *testing.T) {
	rows := synthetic(7, 300, 2)
	rows = append(rows, registry.ValidCredential{UserID: "usr_aaaaaaaaaaaaaaaaaaaaaaaa", ExternalID: "p", KeyID: "key_bbbbbbbbbbbbbbbbbbbbbbbb", Serial: "1", Kind: "piv", Slot: "9a", PublicKey: []byte{1, 2, 3}})
	rows[1].PublicKey = []byte{0xa5, 1, 2, 3, 4} // not the canonical layout: kept as is
	v, err := buildView(rows, 42)
	if err != nil {
		t.Fatal(err)
	}
	if v.users != 301 || v.creds != 601 {
		t.Fatalf("view holds %d users, %d credentials", v.users, v.creds)
	}
	path := filepath.Join(t.TempDir(), "validity.snap")
	l := &learned{keyOwner: map[string]string{"key_x": "usr_y"}, credKey: map[string]string{"fc_1": "key_x"}}
	if err := writeSnapshot(path, v, l, 99); err != nil {
		t.Fatal(err)
	}
	if fi, _ := os.Stat(path); fi.Mode().Perm() != 0o600 {
		t.Errorf("snapshot mode %v", fi.Mode().Perm())
	}
	got, gl, last, err := readSnapshot(path)
	if err != nil {
		t.Fatal(err)
	}
	if got.cursor != 42 || last != 99 || !reflect.DeepEqual(gl, l) || got.users != 301 || got.creds != 601 {
		t.Fatalf("read back cursor %d last %d learned %v users %d creds %d", got.cursor, last, gl, got.users, got.creds)
	}
	for _, u := range []string{rows[0].UserID, rows[1].UserID, rows[len(rows)-1].UserID} {
		want := []registry.ValidCredential{}
		for _, c := range rows {
			if c.UserID == u {
				want = append(want, c)
			}
		}
		dec, err := decodeRecord(got.record(u), got.rps)
		if err != nil || !reflect.DeepEqual(dec.Creds, want) {
			t.Fatalf("user %s decodes to %+v, %v; want %+v", u, dec.Creds, err, want)
		}
	}
	for _, c := range rows {
		rec := got.record(c.UserID)
		if rec == nil {
			t.Fatalf("user %s missing", c.UserID)
		}
		if c.Kind == "fido2" && !hasCredential(rec, c.CredentialID) {
			t.Fatalf("credential of %s missing", c.UserID)
		}
		if hasCredential(rec, []byte("nope")) {
			t.Fatal("an unknown credential is held")
		}
	}
	// One flipped byte anywhere is caught by the checksum.
	b, _ := os.ReadFile(path)
	b[len(b)/2] ^= 1
	os.WriteFile(path, b, 0o600)
	if _, _, _, err := readSnapshot(path); !errors.Is(err, errCorrupt) {
		t.Fatalf("corrupt snapshot read: %v", err)
	}
}

// TestOverlayAndCompaction: users changed after the arena was built are
// answered from the overlay, and compaction keeps every answer.
func TestOverlayAndCompaction(t *testing.T) {
	rows := synthetic(3, 50, 2)
	v, err := buildView(rows, 1)
	if err != nil {
		t.Fatal(err)
	}
	r := &Replica{opt: Options{CompactAt: 1 << 30}.withDefaults(), rps: (&rpTable{names: v.rps}).clone(), learned: &learned{keyOwner: map[string]string{}, credKey: map[string]string{}}}
	r.view.Store(v)
	gone, changed := rows[0].UserID, rows[2].UserID
	extra := rows[2]
	extra.KeyID, extra.CredentialID = "key_cccccccccccccccccccccccc", []byte("new-credential")
	newUser := registry.ValidCredential{UserID: "usr_dddddddddddddddddddddddd", ExternalID: "new", KeyID: "key_eeeeeeeeeeeeeeeeeeeeeeee", Kind: "fido2", CredentialID: []byte("c"), RPID: "other.example", PublicKey: []byte{9}}
	if err := r.apply(map[string][]registry.ValidCredential{gone: nil, changed: {rows[2], rows[3], extra}, newUser.UserID: {newUser}}, 2); err != nil {
		t.Fatal(err)
	}
	check := func(stage string) {
		t.Helper()
		if d := r.Allowed(gone, rows[0].CredentialID); d.Known {
			t.Errorf("%s: removed user still known", stage)
		}
		if d := r.Allowed(changed, []byte("new-credential")); !d.Known {
			t.Errorf("%s: added credential unknown", stage)
		}
		if d := r.Allowed(newUser.UserID, []byte("c")); !d.Known {
			t.Errorf("%s: new user unknown", stage)
		}
		if d := r.Allowed(rows[10].UserID, rows[10].CredentialID); !d.Known {
			t.Errorf("%s: untouched user unknown", stage)
		}
		if got := r.Credentials(newUser.UserID); len(got) != 1 || got[0].RPID != "other.example" {
			t.Errorf("%s: new user's credentials %+v", stage, got)
		}
		if s := r.Status(); s.Users != 50 || s.Credentials != 100 {
			t.Errorf("%s: %d users, %d credentials", stage, s.Users, s.Credentials)
		}
	}
	check("overlay")
	c, err := compact(r.view.Load())
	if err != nil {
		t.Fatal(err)
	}
	r.view.Store(c)
	check("compacted")
}
