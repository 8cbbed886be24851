package client_test

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"database/sql"
	"errors"
	"fmt"
	"net/url"
	"path/filepath"
	"testing"

	"github.com/keydesk/keydesk/registry"
	"github.com/keydesk/keydesk/registry/client"
	"github.com/keydesk/keydesk/registry/credential"
	"github.com/keydesk/keydesk/registry/regtest"
)

var bin string

func TestMain(m *testing.M) { regtest.RunTests(m, &bin) }

var ctx = context.Background()

// testRegistry is a keydesk-registry process on a fresh state directory,
// with a client for each admin token made for it.
type testRegistry struct {
	State string
	P     *regtest.Process
	// Clients has one client per admin name given to startRegistry, each
	// with its own outbox; Client is the first.
	Clients []*client.Client
	Client  *client.Client
}

// startRegistry makes an admin token for each name in admins ("desk" when
// none), starts a registry process on a fresh state directory and opens a
// client per token. When the test ends the clients are closed and the
// process is stopped; a test that starts the registry again stops the new
// process itself.
func startRegistry(t *testing.T, admins ...string) *testRegistry {
	t.Helper()
	if len(admins) == 0 {
		admins = []string{"desk"}
	}
	r := &testRegistry{State: t.TempDir()}
	toks := make([]string, len(admins))
	for i, name := range admins {
		tok, err := regtest.Token(bin, r.State, "admin", name, "")
		if err != nil {
			t.Fatal(err)
		}
		toks[i] = tok
	}
	p, err := regtest.Start(bin, r.State)
	if err != nil {
		t.Fatal(err)
	}
	r.P = p
	t.Cleanup(p.Stop)
	outboxes := t.TempDir()
	for i, name := range admins {
		c, err := client.New(p.URL, toks[i], client.Options{OutboxPath: filepath.Join(outboxes, name+"-outbox.db")})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		r.Clients = append(r.Clients, c)
	}
	r.Client = r.Clients[0]
	return r
}

func enrolment(i int) client.Enrolment {
	k, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	return client.Enrolment{
		User:  client.EnrolUser{ExternalID: fmt.Sprintf("user-%04d", i), DisplayName: fmt.Sprintf("User %d", i)},
		Key:   client.EnrolKey{Serial: fmt.Sprintf("%08d", 10000000+i), KeySets: []string{"yk5-2026"}},
		FIDO2: []client.FIDO2Credential{{CredentialID: []byte(fmt.Sprintf("cred-%d", i)), PublicKey: credential.COSEKeyES256(&k.PublicKey), RPID: "example.org", CredProtect: 2}},
	}
}

// TestOutboxSurvivesRegistryKill queues 1,000 enrolments while the registry
// is down, starts it, SIGKILLs it in the middle of the replay, restarts it on
// the same state and replays again: every enrolment lands exactly once and
// the audit log verifies.
func TestOutboxSurvivesRegistryKill(t *testing.T) {
	const n = 1000
	r := startRegistry(t)
	state, p, c := r.State, r.P, r.Client
	var err error
	u, _ := url.Parse(p.URL)
	p.Kill() // down before anything is queued
	for i := 0; i < n; i++ {
		if _, err := c.QueueEnrolment(ctx, enrolment(i)); err != nil {
			t.Fatal(err)
		}
	}
	if err := c.Flush(ctx, nil); !errors.Is(err, client.ErrUnreachable) {
		t.Fatalf("flush with registry down: %v", err)
	}
	if pend, _ := c.Entries(ctx, client.Pending); len(pend) != n {
		t.Fatalf("%d pending after a failed flush", len(pend))
	}

	p, err = regtest.Start(bin, state, "--listen", u.Host)
	if err != nil {
		t.Fatal(err)
	}
	killAt := make(chan struct{})
	killed := make(chan struct{})
	go func() { <-killAt; p.Kill(); close(killed) }()
	settled := 0
	err = c.Flush(ctx, func(pr client.Progress) {
		settled = pr.Done
		if pr.Entry.State != client.Done {
			t.Errorf("entry %d: %s %s", pr.Entry.Seq, pr.Entry.State, pr.Entry.Error)
		}
		if pr.Done == 300 {
			close(killAt)
		}
	})
	<-killed
	if !errors.Is(err, client.ErrUnreachable) {
		t.Fatalf("flush across a kill: %v (settled %d)", err, settled)
	}
	if settled >= n {
		t.Fatalf("registry was not killed mid-replay (settled %d)", settled)
	}
	t.Logf("registry killed after %d of %d enrolments settled", settled, n)

	p, err = regtest.Start(bin, state, "--listen", u.Host)
	if err != nil {
		t.Fatal(err)
	}
	defer p.Stop()
	if err := c.Flush(ctx, nil); err != nil {
		t.Fatal(err)
	}
	all, _ := c.Entries(ctx, "")
	for _, e := range all {
		if e.State != client.Done {
			t.Fatalf("entry %d ended %s: %s", e.Seq, e.State, e.Error)
		}
	}
	// Exactly once: 1,000 users, each with exactly one key.
	seen := map[string]bool{}
	after := ""
	for {
		us, next, err := c.Users(ctx, after, 500)
		if err != nil {
			t.Fatal(err)
		}
		for _, u := range us {
			if seen[u.ExternalID] {
				t.Fatalf("user %s twice", u.ExternalID)
			}
			seen[u.ExternalID] = true
		}
		if next == "" {
			break
		}
		after = next
	}
	if len(seen) != n {
		t.Fatalf("%d users registered, want %d", len(seen), n)
	}
	// The keys wait for proof of possession: none is valid yet.
	v, err := c.Validity(ctx, "")
	if err != nil || len(v.Credentials) != 0 {
		t.Fatalf("validity: %d credentials, %v", len(v.Credentials), err)
	}
	// The feed holds exactly one change set per enrolment, each with one
	// key and one FIDO2 credential.
	sets := map[int64]bool{}
	created := map[string]int{}
	cur := ""
	for {
		ch, err := c.Changes(ctx, cur, 5000)
		if err != nil {
			t.Fatal(err)
		}
		for _, x := range ch.Changes {
			sets[x.Seq] = true
			if x.Op == "create" {
				created[x.Entity]++
			}
		}
		cur = ch.Cursor
		if !ch.More {
			break
		}
	}
	if len(sets) != n || created["key"] != n || created["fido2_credential"] != n {
		t.Fatalf("%d change sets, %d keys, %d credentials; want %d of each", len(sets), created["key"], created["fido2_credential"], n)
	}
	p.Stop()
	if out, err := regtest.AuditVerify(bin, state); err != nil {
		t.Fatalf("audit verify: %v %s", err, out)
	}
}

// TestOutboxConflictSurfaced: an enrolment that conflicts with the
// registry's state is kept as a conflict with the registry's answer, and the
// registry's record is not overwritten; later entries still go through.
func TestOutboxConflictSurfaced(t *testing.T) {
	c := startRegistry(t).Client
	first, err := c.Enrol(ctx, enrolment(1))
	if err != nil {
		t.Fatal(err)
	}
	clash := enrolment(2)
	clash.Key.Serial = first.Key.Serial // same physical key, someone else
	c.QueueEnrolment(ctx, clash)
	c.QueueEnrolment(ctx, enrolment(3))
	var states []client.EntryState
	if err := c.Flush(ctx, func(pr client.Progress) { states = append(states, pr.Entry.State) }); err != nil {
		t.Fatal(err)
	}
	if len(states) != 2 || states[0] != client.Conflict || states[1] != client.Done {
		t.Fatalf("states %v", states)
	}
	conf, _ := c.Entries(ctx, client.Conflict)
	if len(conf) != 1 || conf[0].Status != 409 || len(conf[0].Response) == 0 {
		t.Fatalf("conflict entry: %+v", conf)
	}
	keys, err := c.UserKeys(ctx, first.User.ID)
	if err != nil || len(keys) != 1 || keys[0].ID != first.Key.ID {
		t.Fatalf("original owner's key changed: %+v %v", keys, err)
	}
}

// TestOutboxQueuesEveryOfflineWrite: status changes, escrow puts and added
// credentials queued while the registry is down are replayed in queue order
// exactly once (each escrow put depends on the one before it); a status
// change based on a stale version comes back as a conflict with the
// registry's current key, and nothing of it is written.
func TestOutboxQueuesEveryOfflineWrite(t *testing.T) {
	r := startRegistry(t)
	state, p, c := r.State, r.P, r.Client
	var err error
	u, _ := url.Parse(p.URL)
	en, err := c.Enrol(ctx, enrolment(1))
	if err != nil {
		t.Fatal(err)
	}
	keyID := en.Key.ID
	p.Stop()

	k2, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	queued := []func() (client.Entry, error){
		func() (client.Entry, error) { return c.QueueEscrow(ctx, keyID, "piv-puk", []byte("age v1"), 0) },
		func() (client.Entry, error) { return c.QueueEscrow(ctx, keyID, "piv-puk", []byte("age v2"), 1) },
		func() (client.Entry, error) {
			return c.QueuePIV(ctx, keyID, client.PIVSlot{Slot: "9c", PublicKey: pkix(t, &k2.PublicKey)})
		},
		func() (client.Entry, error) {
			return c.QueueFIDO2(ctx, keyID, client.FIDO2Credential{CredentialID: []byte("second"), PublicKey: credential.COSEKeyES256(&k2.PublicKey), RPID: "example.org"})
		},
		func() (client.Entry, error) {
			return c.QueueKeyStatus(ctx, keyID, en.Key.Version, registry.KeySuspended, "")
		},
		// Based on the version before the suspension: stale when replayed.
		func() (client.Entry, error) {
			return c.QueueKeyStatus(ctx, keyID, en.Key.Version, registry.KeyRetired, "")
		},
	}
	for _, q := range queued {
		if _, err := q(); err != nil {
			t.Fatal(err)
		}
	}
	if err := c.Flush(ctx, nil); !errors.Is(err, client.ErrUnreachable) {
		t.Fatalf("flush while down: %v", err)
	}
	p, err = regtest.Start(bin, state, "--listen", u.Host)
	if err != nil {
		t.Fatal(err)
	}
	defer p.Stop()
	var kinds []string
	var states []client.EntryState
	if err := c.Flush(ctx, func(pr client.Progress) {
		kinds, states = append(kinds, pr.Entry.Kind), append(states, pr.Entry.State)
	}); err != nil {
		t.Fatal(err)
	}
	if fmt.Sprint(kinds) != "[escrow escrow piv fido2 key-status key-status]" ||
		fmt.Sprint(states) != "[done done done done done conflict]" {
		t.Fatalf("replay: kinds %v states %v", kinds, states)
	}
	conf, _ := c.Entries(ctx, client.Conflict)
	if len(conf) != 1 || conf[0].Status != 409 || !bytes.Contains(conf[0].Response, []byte(`"status":"suspended"`)) {
		t.Fatalf("conflict entry: %+v", conf)
	}
	// A second flush sends nothing again.
	if err := c.Flush(ctx, func(pr client.Progress) { t.Errorf("resent entry %d", pr.Entry.Seq) }); err != nil {
		t.Fatal(err)
	}
	e, err := c.Escrow(ctx, keyID, "piv-puk")
	if err != nil || string(e.Blob) != "age v2" || e.Version != 2 {
		t.Fatalf("escrow: %+v %v", e, err)
	}
	k, err := c.Key(ctx, keyID)
	if err != nil || k.Status != registry.KeySuspended || len(k.PIV) != 1 || len(k.FIDO2) != 2 {
		t.Fatalf("key after replay: %+v %v", k, err)
	}
}

func pkix(t *testing.T, pub any) []byte {
	b, err := x509.MarshalPKIXPublicKey(pub)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// TestOutboxUpgradesOldFile: an outbox written before queued writes had
// kinds and headers opens, and its pending enrolment is kept.
func TestOutboxUpgradesOldFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "outbox.db")
	db, err := sql.Open("sqlite", "file:"+path)
	if err != nil {
		t.Fatal(err)
	}
	for _, q := range []string{
		`CREATE TABLE outbox (seq INTEGER PRIMARY KEY AUTOINCREMENT, idem_key TEXT NOT NULL UNIQUE, method TEXT NOT NULL, path TEXT NOT NULL,
		 body BLOB NOT NULL, state TEXT NOT NULL, status INTEGER NOT NULL DEFAULT 0, response BLOB, error TEXT NOT NULL DEFAULT '', queued_at INTEGER NOT NULL)`,
		`INSERT INTO outbox (idem_key, method, path, body, state, queued_at) VALUES ('k1', 'POST', '/v1/enrolments', '{}', 'pending', 1)`,
	} {
		if _, err := db.Exec(q); err != nil {
			t.Fatal(err)
		}
	}
	db.Close()
	c, err := client.New("http://127.0.0.1:1", "t", client.Options{OutboxPath: path})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	es, err := c.Entries(ctx, client.Pending)
	if err != nil || len(es) != 1 || es[0].Kind != "enrolment" || es[0].Key != "k1" || len(es[0].Header) != 0 {
		t.Fatalf("%+v %v", es, err)
	}
}
