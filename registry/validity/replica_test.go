package validity_test

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	crand "crypto/rand"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/keydesk/keydesk/registry"
	"github.com/keydesk/keydesk/registry/client"
	"github.com/keydesk/keydesk/registry/credential"
	"github.com/keydesk/keydesk/registry/pgtest"
	"github.com/keydesk/keydesk/registry/regtest"
	"github.com/keydesk/keydesk/registry/validity"
)

var (
	bin string
	ctx = context.Background()

	pgOnce sync.Once
	pg     *pgtest.Server
	pgErr  error
)

func TestMain(m *testing.M) {
	regtest.RunTests(m, &bin, func() {
		if pg != nil {
			pg.Stop()
		}
	})
}

// eachBackend runs f against a registry on SQLite and one on a real
// PostgreSQL (skipped only outside CI when PostgreSQL is not installed).
func eachBackend(t *testing.T, f func(t *testing.T, dsn string)) {
	t.Run("sqlite", func(t *testing.T) { f(t, "") })
	t.Run("postgres", func(t *testing.T) {
		pgOnce.Do(func() { pg, pgErr = pgtest.Start() })
		if errors.Is(pgErr, pgtest.ErrNoPostgres) && os.Getenv("CI") == "" {
			t.Skipf("skipping: %v", pgErr)
		}
		if pgErr != nil {
			t.Fatal(pgErr)
		}
		dsn, err := pg.NewDatabase()
		if err != nil {
			t.Fatal(err)
		}
		f(t, dsn)
	})
}

// reg is a keydesk-registry process with an admin client and an
// authserver token.
type reg struct {
	t         *testing.T
	state     string
	dbArgs    []string
	p         *regtest.Process
	host      string
	admin     *client.Client
	adminTok  string
	authToken string
}

func token(t *testing.T, state string, dbArgs []string, role, name string) string {
	t.Helper()
	args := append([]string{"token", "create", "--state", state, "--role", role, "--name", name}, dbArgs...)
	out, err := exec.Command(bin, args...).Output()
	if err != nil {
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			t.Fatalf("token create: %v: %s", err, ee.Stderr)
		}
		t.Fatal(err)
	}
	tok := strings.TrimSpace(string(out))
	regtest.Secret(tok)
	return tok
}

func startReg(t *testing.T, dsn string) *reg {
	t.Helper()
	r := &reg{t: t, state: t.TempDir()}
	if dsn != "" {
		r.dbArgs = []string{"--db", dsn}
	}
	r.adminTok = token(t, r.state, r.dbArgs, "admin", "desk")
	r.authToken = token(t, r.state, r.dbArgs, "authserver", "login-1")
	p, err := regtest.Start(bin, r.state, r.dbArgs...)
	if err != nil {
		t.Fatal(err)
	}
	r.p = p
	u, _ := url.Parse(p.URL)
	r.host = u.Host
	t.Cleanup(func() { r.p.Stop() })
	c, err := client.New(p.URL, r.adminTok, client.Options{OutboxPath: filepath.Join(t.TempDir(), "outbox.db")})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	r.admin = c
	return r
}

// restart starts the registry again on the same state and address.
func (r *reg) restart() {
	r.t.Helper()
	p, err := regtest.Start(bin, r.state, append([]string{"--listen", r.host}, r.dbArgs...)...)
	if err != nil {
		r.t.Fatal(err)
	}
	r.p = p
}

// do sends one admin request and returns the status and body.
func (r *reg) do(method, path string, body any, hdr ...string) (int, []byte) {
	r.t.Helper()
	j, _ := json.Marshal(body)
	req, _ := http.NewRequest(method, r.p.URL+path, bytes.NewReader(j))
	req.Header.Set("Authorization", "Bearer "+r.adminTok)
	req.Header.Set("Content-Type", "application/json")
	var k [8]byte
	crand.Read(k[:])
	req.Header.Set("Idempotency-Key", fmt.Sprintf("t-%x", k))
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		r.t.Fatal(err)
	}
	defer res.Body.Close()
	raw, _ := io.ReadAll(res.Body)
	return res.StatusCode, raw
}

func fido2(rng *rand.Rand) client.FIDO2Credential {
	k, _ := ecdsa.GenerateKey(elliptic.P256(), crand.Reader)
	id := make([]byte, 16+rng.IntN(48))
	for i := range id {
		id[i] = byte(rng.Uint32())
	}
	return client.FIDO2Credential{CredentialID: id, PublicKey: credential.COSEKeyES256(&k.PublicKey), RPID: "login.example.org", CredProtect: 2}
}

func piv() client.PIVSlot {
	k, _ := ecdsa.GenerateKey(elliptic.P256(), crand.Reader)
	der, _ := x509.MarshalPKIXPublicKey(k.Public())
	return client.PIVSlot{Slot: "9a", PublicKey: der}
}

// world is what the randomized test knows of the registry.
type world struct {
	users []string // user ids
	keys  []*wkey
	n     int
}

type wkey struct {
	id, owner string
	version   int64
	status    registry.KeyStatus
}

// enrol registers a new key (pending) for a new user or for owner.
func (w *world) enrol(t *testing.T, r *reg, rng *rand.Rand, owner string) *wkey {
	t.Helper()
	w.n++
	e := client.Enrolment{
		User:  client.EnrolUser{ExternalID: fmt.Sprintf("emp-%05d", w.n)},
		Key:   client.EnrolKey{Serial: fmt.Sprintf("%08d", 20000000+w.n)},
		FIDO2: []client.FIDO2Credential{fido2(rng)},
	}
	if owner != "" {
		u, err := r.admin.User(ctx, owner)
		if err != nil {
			t.Fatal(err)
		}
		e.User.ExternalID = u.ExternalID
	}
	if rng.IntN(4) == 0 {
		e.PIV = []client.PIVSlot{piv()}
	}
	if rng.IntN(4) == 0 {
		e.FIDO2 = append(e.FIDO2, fido2(rng))
	}
	got, err := r.admin.Enrol(ctx, e)
	if err != nil {
		t.Fatal(err)
	}
	if owner == "" {
		w.users = append(w.users, got.User.ID)
	}
	k := &wkey{id: got.Key.ID, owner: got.User.ID, version: got.Key.Version, status: got.Key.Status}
	w.keys = append(w.keys, k)
	return k
}

// setStatus moves k; false when the registry refused (nothing changed).
func (w *world) setStatus(t *testing.T, r *reg, k *wkey, to registry.KeyStatus) bool {
	t.Helper()
	got, err := r.admin.SetKeyStatus(ctx, k.id, k.version, to, "validity replica test")
	var ae *client.APIError
	if errors.As(err, &ae) {
		if ae.Status == http.StatusConflict {
			if d, err := r.admin.Key(ctx, k.id); err == nil {
				k.version, k.status = d.Version, d.Status
			}
		}
		return false
	}
	if err != nil {
		t.Fatal(err)
	}
	k.version, k.status = got.Version, got.Status
	return true
}

// change makes one random change set; false when the registry refused it.
func (w *world) change(t *testing.T, r *reg, rng *rand.Rand) bool {
	t.Helper()
	pick := func(st ...registry.KeyStatus) *wkey {
		var c []*wkey
		for _, k := range w.keys {
			for _, s := range st {
				if k.status == s {
					c = append(c, k)
				}
			}
		}
		if len(c) == 0 {
			return nil
		}
		return c[rng.IntN(len(c))]
	}
	switch op := rng.IntN(20); {
	case op < 4 || len(w.users) == 0:
		w.enrol(t, r, rng, "")
	case op < 6:
		w.enrol(t, r, rng, w.users[rng.IntN(len(w.users))])
	case op < 11:
		k := pick(registry.KeyPending, registry.KeySuspended)
		if k == nil {
			return false
		}
		return w.setStatus(t, r, k, registry.KeyActive)
	case op < 14:
		k := pick(registry.KeyActive)
		if k == nil {
			return false
		}
		to := []registry.KeyStatus{registry.KeySuspended, registry.KeyLost, registry.KeyRevoked, registry.KeyRetired}[rng.IntN(4)]
		return w.setStatus(t, r, k, to)
	case op < 17:
		// Lost, revoked and retired keys take no new credentials.
		k := pick(registry.KeyPending, registry.KeyActive, registry.KeySuspended)
		if k == nil {
			return false
		}
		st, body := r.do("POST", "/v1/keys/"+k.id+"/fido2", fido2(rng))
		if st != http.StatusCreated {
			t.Fatalf("adding a credential: %d %s", st, body)
		}
	default:
		uid := w.users[rng.IntN(len(w.users))]
		u, err := r.admin.User(ctx, uid)
		if err != nil {
			t.Fatal(err)
		}
		to := "suspended"
		if u.Status != registry.UserActive {
			to = "active"
		}
		// Suspending a user who holds a valid credential is break-glass.
		st, body := r.do("PATCH", "/v1/users/"+uid, map[string]string{"status": to, "break_glass_reason": "validity replica test"}, "If-Match", fmt.Sprintf(`"v%d"`, u.Version))
		if st != http.StatusOK {
			t.Fatalf("changing user status: %d %s", st, body)
		}
	}
	return true
}

func normalise(rows []registry.ValidCredential) []registry.ValidCredential {
	out := append([]registry.ValidCredential{}, rows...)
	sort.SliceStable(out, func(i, j int) bool {
		a, b := out[i], out[j]
		if a.UserID != b.UserID {
			return a.UserID < b.UserID
		}
		if a.KeyID != b.KeyID {
			return a.KeyID < b.KeyID
		}
		if a.Kind != b.Kind {
			return a.Kind < b.Kind
		}
		return string(a.CredentialID)+a.Slot < string(b.CredentialID)+b.Slot
	})
	return out
}

// same fails unless the replica holds exactly GET /v1/validity.
func same(t *testing.T, r *reg, rep *validity.Replica, step int) {
	t.Helper()
	want, err := r.admin.Validity(ctx, "")
	if err != nil {
		t.Fatal(err)
	}
	got, err := rep.Snapshot()
	if err != nil {
		t.Fatal(err)
	}
	if got.Version != want.Version {
		t.Fatalf("step %d: replica at change set %d, registry's view at %d", step, got.Version, want.Version)
	}
	g, w := normalise(got.Credentials), normalise(want.Credentials)
	if !reflect.DeepEqual(g, w) {
		t.Fatalf("step %d (change set %d): replica holds %d credentials, registry %d; first difference: %s", step, want.Version, len(g), len(w), firstDiff(g, w))
	}
	// Allowed agrees with the rows, one FIDO2 credential each.
	for _, c := range w {
		if c.Kind == "fido2" && !rep.Allowed(c.UserID, c.CredentialID).Allowed {
			t.Fatalf("step %d: Allowed refuses %s's valid credential", step, c.UserID)
		}
	}
}

func firstDiff(g, w []registry.ValidCredential) string {
	for i := 0; i < max(len(g), len(w)); i++ {
		switch {
		case i >= len(g):
			return fmt.Sprintf("replica lacks %+v", w[i])
		case i >= len(w):
			return fmt.Sprintf("replica has extra %+v", g[i])
		case !reflect.DeepEqual(g[i], w[i]):
			return fmt.Sprintf("replica %+v, registry %+v", g[i], w[i])
		}
	}
	return "none"
}

// TestReplicaFollowsFeed makes 1,000 random change sets (new users and
// keys, activations, suspensions, losses, revocations, retirements,
// credentials added, users suspended and restored) through the API and,
// after each, syncs the replica and compares it with GET /v1/validity. The
// replica loads the whole view once, at the start, and follows the feed for
// everything after.
func TestReplicaFollowsFeed(t *testing.T) {
	eachBackend(t, func(t *testing.T, dsn string) {
		r := startReg(t, dsn)
		rep, err := validity.Open(validity.Options{URL: r.p.URL, Token: r.authToken, Dir: t.TempDir()})
		if err != nil {
			t.Fatal(err)
		}
		defer rep.Close()
		if err := rep.Sync(ctx); err != nil {
			t.Fatal(err)
		}
		rng := rand.New(rand.NewPCG(2026, 12))
		w := &world{}
		const changes = 1000
		for done, step := 0, 0; done < changes; step++ {
			if !w.change(t, r, rng) {
				continue
			}
			done++
			if err := rep.Sync(ctx); err != nil {
				t.Fatalf("change %d: %v", done, err)
			}
			same(t, r, rep, done)
		}
		st := rep.Status()
		if st.FullLoads != 1 {
			t.Errorf("replica loaded the whole view %d times; want once, then the feed", st.FullLoads)
		}
		t.Logf("%d change sets; replica holds %d users, %d credentials at change set %d", changes, st.Users, st.Credentials, st.Cursor)
	})
}

// activeUsers enrols n users, each with one active key.
func activeUsers(t *testing.T, r *reg, w *world, rng *rand.Rand, n int) []*wkey {
	t.Helper()
	var ks []*wkey
	for range n {
		k := w.enrol(t, r, rng, "")
		if !w.setStatus(t, r, k, registry.KeyActive) {
			t.Fatal("activating a new key was refused")
		}
		ks = append(ks, k)
	}
	return ks
}

// credentialOf is one valid FIDO2 credential of k's owner on k.
func credentialOf(t *testing.T, r *reg, k *wkey) []byte {
	t.Helper()
	v, err := r.admin.Validity(ctx, k.owner)
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range v.Credentials {
		if c.KeyID == k.id && c.Kind == "fido2" {
			return c.CredentialID
		}
	}
	t.Fatalf("key %s has no valid credential", k.id)
	return nil
}

// TestReplicaRestartsFromDisk: a replica closed and opened again answers
// from its snapshot before it reaches the registry, then catches up from its
// cursor through the feed, without loading the whole view again.
func TestReplicaRestartsFromDisk(t *testing.T) {
	eachBackend(t, func(t *testing.T, dsn string) {
		r := startReg(t, dsn)
		dir := t.TempDir()
		opt := validity.Options{URL: r.p.URL, Token: r.authToken, Dir: dir}
		rep, err := validity.Open(opt)
		if err != nil {
			t.Fatal(err)
		}
		rng := rand.New(rand.NewPCG(7, 7))
		w := &world{}
		ks := activeUsers(t, r, w, rng, 20)
		if err := rep.Sync(ctx); err != nil {
			t.Fatal(err)
		}
		same(t, r, rep, 0)
		before := rep.Status()
		if err := rep.Close(); err != nil {
			t.Fatal(err)
		}
		fi, err := os.Stat(filepath.Join(dir, "validity.snap"))
		if err != nil {
			t.Fatal(err)
		}
		if fi.Mode().Perm() != 0o600 {
			t.Errorf("snapshot mode %v, want 0600", fi.Mode().Perm())
		}

		// While the replica is down: a key is lost, new users arrive.
		lost := ks[3]
		lostCred := credentialOf(t, r, lost)
		if !w.setStatus(t, r, lost, registry.KeyLost) {
			t.Fatal("marking a key lost was refused")
		}
		fresh := activeUsers(t, r, w, rng, 5)

		rep, err = validity.Open(opt)
		if err != nil {
			t.Fatal(err)
		}
		defer rep.Close()
		st := rep.Status()
		if !st.Resumed || st.Cursor != before.Cursor || st.Credentials != before.Credentials || st.FullLoads != 0 {
			t.Fatalf("reopened replica: %+v; before closing: %+v", st, before)
		}
		// From disk alone: the lost key is still held (the replica has not
		// seen the change yet), the new users are not.
		if !rep.Allowed(lost.owner, lostCred).Known {
			t.Error("the snapshot lost a credential")
		}
		if rep.Allowed(fresh[0].owner, credentialOf(t, r, fresh[0])).Known {
			t.Error("the snapshot holds a credential enrolled after it was written")
		}
		if err := rep.Sync(ctx); err != nil {
			t.Fatal(err)
		}
		same(t, r, rep, 1)
		if st := rep.Status(); st.FullLoads != 0 || st.Cursor <= before.Cursor {
			t.Fatalf("after catching up: %+v; want the feed followed from cursor %d with no full load", st, before.Cursor)
		}
		if rep.Allowed(lost.owner, lostCred).Allowed {
			t.Error("a lost key is still allowed after the sync")
		}
	})
}

// TestReplicaServesLastKnownGood: with the registry killed, the replica
// keeps answering from its last view and reports its age; past StaleAfter it
// is degraded and answers by its policy: by default known-valid credentials
// are still accepted and unknown ones refused; a replica configured to fail
// closed refuses both. Once the registry is back, one sync clears it.
func TestReplicaServesLastKnownGood(t *testing.T) {
	eachBackend(t, func(t *testing.T, dsn string) {
		r := startReg(t, dsn)
		rng := rand.New(rand.NewPCG(5, 5))
		w := &world{}
		ks := activeUsers(t, r, w, rng, 4)
		var mu sync.Mutex
		now := time.Date(2026, 12, 6, 9, 0, 0, 0, time.UTC)
		clock := func() time.Time { mu.Lock(); defer mu.Unlock(); return now }
		advance := func(d time.Duration) { mu.Lock(); now = now.Add(d); mu.Unlock() }
		open := func(p validity.Policy) *validity.Replica {
			rep, err := validity.Open(validity.Options{URL: r.p.URL, Token: r.authToken, Dir: t.TempDir(), StaleAfter: time.Minute, Policy: p, Now: clock})
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { rep.Close() })
			if err := rep.Sync(ctx); err != nil {
				t.Fatal(err)
			}
			return rep
		}
		def := open(validity.Policy{})
		closed := open(validity.Policy{KnownValid: validity.FailClosed})
		known := credentialOf(t, r, ks[0])
		// Enrolled while the replicas can still see the registry, but never
		// synced: unknown to them.
		late := activeUsers(t, r, w, rng, 1)[0]
		lateCred := credentialOf(t, r, late)

		r.p.Kill()
		advance(20 * time.Second)
		err := def.Sync(ctx)
		if !errors.Is(err, validity.ErrUnreachable) {
			t.Fatalf("sync with the registry killed: %v", err)
		}
		st := def.Status()
		if st.Degraded || st.Age != 20*time.Second || st.LastError == "" || st.Users != 4 {
			t.Fatalf("20 s after the last sync: %+v", st)
		}
		if d := def.Allowed(ks[0].owner, known); !d.Allowed || !d.Known || d.Degraded || d.Age != 20*time.Second {
			t.Fatalf("known credential within the bound: %+v", d)
		}

		advance(time.Minute)
		def.Sync(ctx)
		if st := def.Status(); !st.Degraded || st.Age != 80*time.Second {
			t.Fatalf("80 s after the last sync: %+v", st)
		}
		if d := def.Allowed(ks[0].owner, known); !d.Allowed || !d.Degraded {
			t.Errorf("default policy, degraded, known-valid credential: %+v", d)
		}
		if d := def.Allowed(late.owner, lateCred); d.Allowed || d.Known || !d.Degraded {
			t.Errorf("default policy, degraded, unknown credential: %+v", d)
		}
		if d := closed.Allowed(ks[0].owner, known); d.Allowed || !d.Known || !d.Degraded {
			t.Errorf("fail-closed policy, degraded, known-valid credential: %+v", d)
		}

		r.restart()
		if err := def.Sync(ctx); err != nil {
			t.Fatal(err)
		}
		if d := def.Allowed(late.owner, lateCred); !d.Allowed || d.Degraded || d.Age != 0 {
			t.Errorf("after the registry came back: %+v", d)
		}
		if st := def.Status(); st.Degraded || st.LastError != "" {
			t.Errorf("after the registry came back: %+v", st)
		}
	})
}

// lossyProxy forwards to the registry; it answers 502 while the registry is
// down, and for the next drop lockout signals it forwards the request, lets
// the registry record it, and then cuts the connection without an answer.
type lossyProxy struct {
	target string
	mu     sync.Mutex
	drop   int
	cut    int
}

func (p *lossyProxy) ServeHTTP(w http.ResponseWriter, req *http.Request) {
	body, _ := io.ReadAll(req.Body)
	out, _ := http.NewRequestWithContext(req.Context(), req.Method, p.target+req.URL.RequestURI(), bytes.NewReader(body))
	out.Header = req.Header.Clone()
	res, err := http.DefaultTransport.RoundTrip(out)
	if err != nil {
		http.Error(w, `{"code":"bad_gateway","message":"registry down"}`, http.StatusBadGateway)
		return
	}
	defer res.Body.Close()
	raw, _ := io.ReadAll(res.Body)
	p.mu.Lock()
	lose := req.URL.Path == "/v1/signals/lockout" && p.drop > 0
	if lose {
		p.drop--
		p.cut++
	}
	p.mu.Unlock()
	if lose {
		conn, _, err := w.(http.Hijacker).Hijack()
		if err == nil {
			conn.Close()
		}
		return
	}
	for k, v := range res.Header {
		w.Header()[k] = v
	}
	w.WriteHeader(res.StatusCode)
	w.Write(raw)
}

// lockoutsRecorded counts the lockout signals in the registry's change feed.
func lockoutsRecorded(t *testing.T, r *reg) int {
	t.Helper()
	n, cursor := 0, "0"
	for {
		page, err := r.admin.Changes(ctx, cursor, 1000)
		if err != nil {
			t.Fatal(err)
		}
		for _, c := range page.Changes {
			if c.Entity == "migration_signal" && c.Op == "lockout" {
				n++
			}
		}
		cursor = page.Cursor
		if !page.More {
			return n
		}
	}
}

// TestLockoutSignalsDeliveredOnce: failures reported while the registry is
// down wait in the replica's queue, across a restart of the replica; when
// the registry is back, each is recorded exactly once, although the answers
// to the first three were lost on the way and those were sent again.
func TestLockoutSignalsDeliveredOnce(t *testing.T) {
	eachBackend(t, func(t *testing.T, dsn string) {
		r := startReg(t, dsn)
		rng := rand.New(rand.NewPCG(3, 3))
		w := &world{}
		ks := activeUsers(t, r, w, rng, 3)
		proxy := &lossyProxy{target: r.p.URL}
		hs := httptest.NewServer(proxy)
		defer hs.Close()
		dir := t.TempDir()
		opt := validity.Options{URL: hs.URL, Token: r.authToken, Dir: dir, MaxQueue: 12}
		rep, err := validity.Open(opt)
		if err != nil {
			t.Fatal(err)
		}
		if err := rep.Sync(ctx); err != nil {
			t.Fatal(err)
		}
		base := lockoutsRecorded(t, r)
		creds := map[int][]byte{}
		for i := range ks {
			creds[i] = credentialOf(t, r, ks[i])
		}
		fail := func(rep *validity.Replica, i int) error {
			k := ks[i%len(ks)]
			return rep.Report(ctx, validity.Failure{UserID: k.owner, KeyID: k.id, CredentialID: creds[i%len(ks)]})
		}

		r.p.Kill()
		for i := range 7 {
			if err := fail(rep, i); err != nil {
				t.Fatal(err)
			}
		}
		if err := rep.FlushSignals(ctx); !errors.Is(err, validity.ErrUnreachable) {
			t.Fatalf("flush with the registry down: %v", err)
		}
		if err := rep.Close(); err != nil {
			t.Fatal(err)
		}
		rep, err = validity.Open(opt)
		if err != nil {
			t.Fatal(err)
		}
		defer rep.Close()
		if st := rep.Status(); st.Queued != 7 {
			t.Fatalf("%d signals queued after reopening, want 7", st.Queued)
		}
		for i := 7; i < 12; i++ {
			if err := fail(rep, i); err != nil {
				t.Fatal(err)
			}
		}
		if err := fail(rep, 12); !errors.Is(err, validity.ErrQueueFull) {
			t.Fatalf("13th signal into a queue of 12: %v", err)
		}

		r.restart()
		proxy.mu.Lock()
		proxy.drop = 3
		proxy.mu.Unlock()
		tries := 0
		for err := errors.New("start"); err != nil; tries++ {
			if tries > 10 {
				t.Fatalf("signals still not delivered after %d flushes: %v", tries, err)
			}
			err = rep.FlushSignals(ctx)
			if err != nil && !errors.Is(err, validity.ErrUnreachable) {
				t.Fatal(err)
			}
		}
		st := rep.Status()
		if st.Queued != 0 || st.Delivered != 12 || st.Rejected != 0 || proxy.cut != 3 {
			t.Fatalf("after delivery: %+v, %d answers cut", st, proxy.cut)
		}
		if got := lockoutsRecorded(t, r) - base; got != 12 {
			t.Fatalf("registry recorded %d lockout signals, want 12 (one per failure)", got)
		}
	})
}

// TestReplicaFindsOwners: a change that names only a key (a credential
// added to it) is traced to the key's owner through the view when the feed
// never told the replica whose key it is; when the view cannot tell either
// (a pending key, holding nothing valid), the replica reloads the view.
func TestReplicaFindsOwners(t *testing.T) {
	r := startReg(t, "")
	rng := rand.New(rand.NewPCG(11, 11))
	w := &world{}
	ks := activeUsers(t, r, w, rng, 3)
	pending := w.enrol(t, r, rng, "")
	rep, err := validity.Open(validity.Options{URL: r.p.URL, Token: r.authToken, Dir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	defer rep.Close()
	if err := rep.Sync(ctx); err != nil {
		t.Fatal(err)
	}
	if st, body := r.do("POST", "/v1/keys/"+ks[1].id+"/fido2", fido2(rng)); st != http.StatusCreated {
		t.Fatalf("adding a credential: %d %s", st, body)
	}
	if err := rep.Sync(ctx); err != nil {
		t.Fatal(err)
	}
	same(t, r, rep, 1)
	if st := rep.Status(); st.FullLoads != 1 {
		t.Fatalf("%d whole loads after a credential added to a key the view holds; want 1", st.FullLoads)
	}
	if st, body := r.do("POST", "/v1/keys/"+pending.id+"/fido2", fido2(rng)); st != http.StatusCreated {
		t.Fatalf("adding a credential: %d %s", st, body)
	}
	if err := rep.Sync(ctx); err != nil {
		t.Fatal(err)
	}
	same(t, r, rep, 2)
	if st := rep.Status(); st.FullLoads != 2 {
		t.Fatalf("%d whole loads after a credential added to a key of unknown owner; want 2", st.FullLoads)
	}
}

// TestRunDeliversAfterOutage: Run keeps retrying queued lockout signals,
// backing off, while the registry is down, and delivers each once when it
// is back; on return it writes the snapshot.
func TestRunDeliversAfterOutage(t *testing.T) {
	r := startReg(t, "")
	rng := rand.New(rand.NewPCG(13, 13))
	w := &world{}
	ks := activeUsers(t, r, w, rng, 2)
	cred := credentialOf(t, r, ks[0])
	proxy := &lossyProxy{target: r.p.URL}
	var posts atomic.Int64
	hs := httptest.NewServer(http.HandlerFunc(func(rw http.ResponseWriter, req *http.Request) {
		if req.URL.Path == "/v1/signals/lockout" {
			posts.Add(1)
		}
		proxy.ServeHTTP(rw, req)
	}))
	defer hs.Close()
	dir := t.TempDir()
	rep, err := validity.Open(validity.Options{URL: hs.URL, Token: r.authToken, Dir: dir, PollInterval: 10 * time.Millisecond, BackoffMin: 5 * time.Millisecond, BackoffMax: 40 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	defer rep.Close()
	base := lockoutsRecorded(t, r)
	r.p.Kill()
	for range 3 {
		if err := rep.Report(ctx, validity.Failure{UserID: ks[0].owner, KeyID: ks[0].id, CredentialID: cred}); err != nil {
			t.Fatal(err)
		}
	}
	runCtx, cancel := context.WithCancel(ctx)
	ran := make(chan error, 1)
	go func() { ran <- rep.Run(runCtx) }()
	wait := func(what string, ok func() bool) {
		t.Helper()
		for deadline := time.Now().Add(30 * time.Second); !ok(); time.Sleep(2 * time.Millisecond) {
			if time.Now().After(deadline) {
				t.Fatalf("waited 30 s for %s: %+v", what, rep.Status())
			}
		}
	}
	wait("retries while the registry is down", func() bool { return posts.Load() >= 4 })
	r.restart()
	wait("delivery", func() bool { return rep.Status().Delivered == 3 })
	cancel()
	if err := <-ran; err != nil {
		t.Fatal(err)
	}
	if got := lockoutsRecorded(t, r) - base; got != 3 {
		t.Fatalf("registry recorded %d lockout signals, want 3", got)
	}
	if _, err := os.Stat(filepath.Join(dir, "validity.snap")); err != nil {
		t.Fatalf("no snapshot after Run returned: %v", err)
	}
	t.Logf("%d attempts for 3 signals across the outage", posts.Load())
}
