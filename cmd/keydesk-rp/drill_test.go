package main

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/keydesk/keydesk/device/fidokey"
	"github.com/keydesk/keydesk/registry"
	"github.com/keydesk/keydesk/registry/client"
	"github.com/keydesk/keydesk/registry/credential"
	"github.com/keydesk/keydesk/registry/regtest"
	"github.com/keydesk/keydesk/registry/validity"
)

const drillRP = "login.example.org"

// softKey is a software FIDO2 authenticator holding one ES256 credential:
// it signs WebAuthn assertions (WebAuthn L2 §6.3.3: authenticatorData =
// rpIdHash ‖ flags ‖ signCount, signature over authenticatorData ‖
// SHA-256(clientDataJSON)). A broken key signs with a key the registry
// never saw, as a key whose credential was deleted or replaced would.
type softKey struct {
	keyID, recordID string
	cred            []byte
	priv, wrong     *ecdsa.PrivateKey
	broken          atomic.Bool
	count           atomic.Uint32
}

func newSoftKey() *softKey {
	p, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	w, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	id := make([]byte, 32)
	rand.Read(id)
	return &softKey{cred: id, priv: p, wrong: w}
}

func (k *softKey) assert(rpID string, challenge []byte) (cdj, ad, sig []byte) {
	cdj, _ = fidokey.ClientDataJSON("webauthn.get", challenge, rpID)
	h := sha256.Sum256([]byte(rpID))
	ad = append(h[:], 0x01) // UP
	ad = binary.BigEndian.AppendUint32(ad, k.count.Add(1))
	ch := sha256.Sum256(cdj)
	d := sha256.Sum256(append(append([]byte{}, ad...), ch[:]...))
	p := k.priv
	if k.broken.Load() {
		p = k.wrong
	}
	sig, _ = ecdsa.SignASN1(rand.Reader, p, d[:])
	return cdj, ad, sig
}

type drillUser struct {
	id       string
	old, new *softKey
}

// drill is one run of the migration drill and its measurements.
type drill struct {
	t      testing.TB
	admin  *client.Client
	rpURL  string
	rp     *RP
	rpDir  string
	rpOpt  validity.Options
	reg    *regtest.Process
	host   string
	state  string
	users  []*drillUser
	byCred map[string]*softKey

	attempts, accepted, refusedBroken, refusedDropped, refusedWrongly int
	outageServed                                                      int
	refusals                                                          []string

	// lag watcher: the first time the replica was seen at each cursor
	mu    sync.Mutex
	seen  []seenAt
	marks []markAt
}

type seenAt struct {
	cursor int64
	at     time.Time
}

type markAt struct {
	name    string
	version int64
	at      time.Time
}

func (d *drill) head() int64 {
	d.t.Helper()
	p, err := d.admin.Changes(ctx, "0", 1)
	if err != nil {
		d.t.Fatal(err)
	}
	h, _ := strconv.ParseInt(p.Head, 10, 64)
	return h
}

// mark records that the registry committed change set head() now.
func (d *drill) mark(name string) int64 {
	v := d.head()
	d.mu.Lock()
	d.marks = append(d.marks, markAt{name, v, time.Now()})
	d.mu.Unlock()
	return v
}

// watch samples the replica's cursor every millisecond until stop closes.
func (d *drill) watch(stop chan struct{}) {
	var last int64 = -1
	for {
		select {
		case <-stop:
			return
		case <-time.After(time.Millisecond):
		}
		d.mu.Lock()
		rp := d.rp
		d.mu.Unlock()
		if rp == nil {
			continue
		}
		c := rp.Replica().Status().Cursor
		if c != last {
			d.mu.Lock()
			d.seen = append(d.seen, seenAt{c, time.Now()})
			d.mu.Unlock()
			last = c
		}
	}
}

// lags is, for each mark, the time until the replica was seen at or past it.
func (d *drill) lags() map[string]time.Duration {
	d.mu.Lock()
	defer d.mu.Unlock()
	out := map[string]time.Duration{}
	for _, m := range d.marks {
		for _, s := range d.seen {
			if s.cursor >= m.version && !s.at.Before(m.at.Add(-time.Second)) {
				l := s.at.Sub(m.at)
				if l < 0 {
					l = 0
				}
				out[fmt.Sprintf("%s@%d", m.name, m.version)] = l
				break
			}
		}
	}
	return out
}

func (d *drill) post(path string, body any, out any) int {
	j, _ := json.Marshal(body)
	res, err := http.Post(d.rpURL+path, "application/json", bytes.NewReader(j))
	if err != nil {
		d.t.Fatal(err)
	}
	defer res.Body.Close()
	raw, _ := io.ReadAll(res.Body)
	if err := json.Unmarshal(raw, out); err != nil {
		d.t.Fatalf("%s: %d %s", path, res.StatusCode, raw)
	}
	return res.StatusCode
}

// truth is the registry's valid FIDO2 credentials of u now, and the
// version; ok false when the registry cannot be reached.
func (d *drill) truth(u *drillUser) (map[string]bool, bool) {
	v, err := d.admin.Validity(ctx, u.id)
	if err != nil {
		return nil, false
	}
	m := map[string]bool{}
	for _, c := range v.Credentials {
		if c.Kind == "fido2" {
			m[string(c.CredentialID)] = true
		}
	}
	return m, true
}

// signIn is one sign-in of u: the key is the old one if the relying party
// offers it, else the new one (a user moves to the new key once the old
// one is no longer asked for). It returns the key used and the outcome.
func (d *drill) signIn(u *drillUser, outage bool) (*softKey, Outcome) {
	d.t.Helper()
	before, reachable := d.truth(u)
	var b begun
	if st := d.post("/login/begin", map[string]string{"user_id": u.id}, &b); st != http.StatusOK {
		d.attempts++
		d.refusedWrongly++
		d.refusals = append(d.refusals, fmt.Sprintf("user %s: begin %d %s", u.id, st, b.Reason))
		return nil, Outcome{Reason: b.Reason}
	}
	offered := map[string]bool{}
	for _, a := range b.Options.PublicKey.AllowCredentials {
		id, _ := b64.DecodeString(a.ID)
		offered[string(id)] = true
	}
	k := u.new
	if offered[string(u.old.cred)] {
		k = u.old
	}
	chal, _ := b64.DecodeString(b.Options.PublicKey.Challenge)
	cdj, ad, sig := k.assert(drillRP, chal)
	var o Outcome
	d.post("/login/finish", map[string]any{"session": b.Session, "credential": map[string]any{
		"id": b64.EncodeToString(k.cred), "rawId": b64.EncodeToString(k.cred), "type": "public-key",
		"response": map[string]string{"clientDataJSON": b64.EncodeToString(cdj), "authenticatorData": b64.EncodeToString(ad), "signature": b64.EncodeToString(sig)},
	}}, &o)
	d.attempts++
	switch {
	case o.OK:
		d.accepted++
		if outage {
			d.outageServed++
		}
	case k.broken.Load():
		d.refusedBroken++
	default:
		// A refusal of a good key is wrong if the registry held the
		// credential valid before the sign-in began and still does, with
		// nothing about the user changed in between.
		after, ok := d.truth(u)
		if reachable && ok && before[string(k.cred)] && after[string(k.cred)] && len(before) == len(after) {
			d.refusedWrongly++
			d.refusals = append(d.refusals, fmt.Sprintf("user %s key %s: %s", u.id, k.keyID, o.Reason))
		} else {
			d.refusedDropped++
		}
	}
	return k, o
}

// round has every user sign in once.
func (d *drill) round(outage bool) (failedNew map[string]bool) {
	failedNew = map[string]bool{}
	for _, u := range d.users {
		k, o := d.signIn(u, outage)
		if k == u.new && !o.OK {
			failedNew[u.id] = true
		}
	}
	return failedNew
}

// enrol registers user i's old key and, unless noNew, the new one.
func (d *drill) enrol(i int, noNew bool) *drillUser {
	d.t.Helper()
	u := &drillUser{old: newSoftKey(), new: newSoftKey()}
	keys := []*softKey{u.old, u.new}
	if noNew {
		keys = keys[:1] // the new key never registered: readiness holds the user back
	}
	for j, k := range keys {
		set, role := "legacy-2024", "primary"
		if j == 1 {
			set, role = "yk5-2026", "backup"
		}
		e, err := d.admin.Enrol(ctx, client.Enrolment{
			User:  client.EnrolUser{ExternalID: fmt.Sprintf("drill-%04d", i)},
			Key:   client.EnrolKey{Serial: fmt.Sprintf("%d", 40000000+2*i+j), Role: role, KeySets: []string{set}},
			FIDO2: []client.FIDO2Credential{{CredentialID: k.cred, PublicKey: credential.COSEKeyES256(&k.priv.PublicKey), RPID: drillRP, CredProtect: 2}},
		})
		if err != nil {
			d.t.Fatal(err)
		}
		u.id, k.keyID, k.recordID = e.User.ID, e.Key.ID, e.FIDO2[0].ID
		// The key proves possession to the registry, which activates it
		// and counts it as verified for the migration's readiness.
		ch, err := d.admin.Challenge(ctx, k.keyID, "fido2", k.recordID)
		if err != nil {
			d.t.Fatal(err)
		}
		cdj, ad, sig := k.assert(ch.RPID, ch.Challenge.Nonce)
		v, err := d.admin.VerifyFIDO2(ctx, ch.Challenge.ID, credential.Assertion{AuthenticatorData: ad, ClientDataJSON: cdj, Signature: sig})
		if err != nil || !v.OK || v.KeyStatus != registry.KeyActive {
			d.t.Fatalf("activating %s: %+v %v", k.keyID, v, err)
		}
		d.byCred[string(k.cred)] = k
	}
	return u
}

func (d *drill) openRP() {
	d.t.Helper()
	rp, err := Open(Config{RPID: drillRP, Origins: []string{"https://" + drillRP}, Dir: d.rpDir, Replica: d.rpOpt})
	if err != nil {
		d.t.Fatal(err)
	}
	d.mu.Lock()
	d.rp = rp
	d.mu.Unlock()
}

// feedProxy stands between the relying party and the registry and holds
// each change-feed answer back by delay (a slow or congested link).
type feedProxy struct {
	target string
	delay  atomic.Int64
}

func (p *feedProxy) ServeHTTP(w http.ResponseWriter, req *http.Request) {
	if req.URL.Path == "/v1/changes" {
		time.Sleep(time.Duration(p.delay.Load()))
	}
	body, _ := io.ReadAll(req.Body)
	out, _ := http.NewRequestWithContext(req.Context(), req.Method, p.target+req.URL.RequestURI(), bytes.NewReader(body))
	out.Header = req.Header.Clone()
	res, err := http.DefaultTransport.RoundTrip(out)
	if err != nil {
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusBadGateway)
		w.Write([]byte(`{"code":"bad_gateway","message":"registry down"}`))
		return
	}
	defer res.Body.Close()
	for k, v := range res.Header {
		w.Header()[k] = v
	}
	w.WriteHeader(res.StatusCode)
	io.Copy(w, res.Body)
}

func pct(ds []time.Duration, p float64) time.Duration {
	if len(ds) == 0 {
		return 0
	}
	s := append([]time.Duration(nil), ds...)
	sort.Slice(s, func(i, j int) bool { return s[i] < s[j] })
	i := int(p*float64(len(s))+0.5) - 1
	return s[min(max(i, 0), len(s)-1)]
}

// TestMigrationDrill runs a migration from legacy-2024 to yk5-2026 while
// every user signs in to the relying party in a loop (software
// authenticators; the practice key's path through libfido2 is
// TestSignInFollowsRegistry's): two of the canary's new keys break, the
// canary halts by itself; it resumes without them and goes to 50%; the
// registry is SIGKILLed and sign-ins are served from the replica's last
// view; the registry comes back; the relying party restarts from its
// snapshot; everything is rolled back and the old keys are accepted again.
// It fails if any sign-in with a key the registry holds valid is refused.
// KEYDESK_DRILL_USERS sets the size (default 20).
func TestMigrationDrill(t *testing.T) {
	n := 20
	if s := os.Getenv("KEYDESK_DRILL_USERS"); s != "" {
		n, _ = strconv.Atoi(s)
	}
	runDrill(t, n)
}

// BenchmarkMigrationDrill is the drill at 2,000 users (make bench); its
// figures are in its log.
func BenchmarkMigrationDrill(b *testing.B) {
	for range b.N {
		runDrill(b, 2000)
	}
}

func runDrill(t testing.TB, n int) {
	start := time.Now()
	d := &drill{t: t, state: t.TempDir(), byCred: map[string]*softKey{}, rpDir: t.TempDir()}
	adminTok, err := regtest.Token(env.Bin, d.state, "admin", "drill-admin", "")
	if err != nil {
		t.Fatal(err)
	}
	authTok, err := regtest.Token(env.Bin, d.state, "authserver", "drill-rp", "")
	if err != nil {
		t.Fatal(err)
	}
	if d.reg, err = regtest.Start(env.Bin, d.state); err != nil {
		t.Fatal(err)
	}
	defer func() { d.reg.Stop() }()
	u, _ := url.Parse(d.reg.URL)
	d.host = u.Host
	if d.admin, err = client.New(d.reg.URL, adminTok, client.Options{OutboxPath: filepath.Join(t.TempDir(), "outbox.db"), Timeout: 5 * time.Second}); err != nil {
		t.Fatal(err)
	}
	defer d.admin.Close()
	for i := range n {
		d.users = append(d.users, d.enrol(i, i%10 == 9))
	}

	feed := &feedProxy{target: d.reg.URL}
	fs := httptest.NewServer(feed)
	defer fs.Close()
	d.rpOpt = validity.Options{URL: fs.URL, Token: authTok, PollInterval: 20 * time.Millisecond, StaleAfter: 10 * time.Minute, BackoffMin: 10 * time.Millisecond, BackoffMax: 100 * time.Millisecond}
	d.openRP()
	runCtx, cancel := context.WithCancel(ctx)
	ran := make(chan error, 1)
	go func() { ran <- d.rp.Run(runCtx) }()
	hs := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		d.mu.Lock()
		rp := d.rp
		d.mu.Unlock()
		rp.Handler().ServeHTTP(w, r)
	}))
	defer hs.Close()
	d.rpURL = hs.URL
	stop := make(chan struct{})
	go d.watch(stop)
	defer close(stop)
	caughtUp(t, hs.URL, d.mark("enrolled"))
	d.round(false)

	// The plan: everyone, a 50% canary, then 75% staged; halt at 1% of the
	// cohort (20% for a small drill, where 1% would be less than a user).
	threshold := 0.01
	if n < 400 {
		threshold = 0.2
	}
	ids := make([]string, len(d.users))
	for i, u := range d.users {
		ids[i] = u.id
	}
	m, err := d.admin.CreateMigration(ctx, client.MigrationPlan{Name: "drill", From: "legacy-2024", To: "yk5-2026",
		Scope: registry.Cohort{Users: ids}, Canary: registry.Cohort{Percent: 50}, Stages: []float64{75},
		Policy: registry.MigrationPolicy{MinVerifiedB: 1, HaltThreshold: threshold}})
	if err != nil {
		t.Fatal(err)
	}
	rd, err := d.admin.Readiness(ctx, m.ID)
	if err != nil {
		t.Fatal(err)
	}
	var canary []*drillUser
	for _, r := range rd.Users {
		if r.Cohort == "canary" && r.Ready {
			for _, u := range d.users {
				if u.id == r.UserID {
					canary = append(canary, u)
				}
			}
		}
	}
	if len(canary) < 4 {
		t.Fatalf("canary of %d users; the drill needs at least 4", len(canary))
	}
	// Some canary users' new keys break (their credential gone from the
	// key): 3% of the canary, at least two.
	broken := canary[:max(2, len(canary)*3/100)]
	for _, u := range broken {
		u.new.broken.Store(true)
	}
	if _, err := d.admin.AdvanceMigration(ctx, m.ID, client.Advance{To: registry.MigrationDryRun}); err != nil {
		t.Fatal(err)
	}
	adv, err := d.admin.AdvanceMigration(ctx, m.ID, client.Advance{To: registry.MigrationCanary})
	if err != nil {
		t.Fatal(err)
	}
	caughtUp(t, hs.URL, d.mark("canary"))

	// Sign-ins until the canary halts by itself.
	failedBeforeHalt := map[string]bool{}
	haltedAfter := 0
	for r := 0; ; r++ {
		if r == 10 {
			t.Fatal("the canary did not halt after 10 rounds")
		}
		for id := range d.round(false) {
			failedBeforeHalt[id] = true
		}
		if err := d.rp.Replica().FlushSignals(ctx); err != nil {
			t.Fatal(err)
		}
		mm, err := d.admin.Migration(ctx, m.ID)
		if err != nil {
			t.Fatal(err)
		}
		if mm.Halted {
			haltedAfter = r + 1
			t.Logf("halted: %s", mm.HaltReason)
			break
		}
	}
	caughtUp(t, hs.URL, d.head())
	d.round(false) // the halted cohort is back on its old keys

	// The desk verifies the canary's new keys (the broken ones fail, and
	// are held back from then on), then resumes, then goes to 75%.
	verified, failedVerify := 0, 0
	for _, u := range canary {
		ch, err := d.admin.Challenge(ctx, u.new.keyID, "fido2", u.new.recordID)
		if err != nil {
			t.Fatal(err)
		}
		cdj, ad, sig := u.new.assert(ch.RPID, ch.Challenge.Nonce)
		v, err := d.admin.VerifyFIDO2(ctx, ch.Challenge.ID, credential.Assertion{AuthenticatorData: ad, ClientDataJSON: cdj, Signature: sig})
		if err != nil {
			t.Fatal(err)
		}
		if v.OK {
			verified++
		} else {
			failedVerify++
		}
	}
	t.Logf("desk verification of the canary's new keys: %d passed, %d failed", verified, failedVerify)
	if _, err := d.admin.AdvanceMigration(ctx, m.ID, client.Advance{To: registry.MigrationCanary, Resume: true}); err != nil {
		t.Fatal(err)
	}
	caughtUp(t, hs.URL, d.mark("resumed"))
	d.round(false)
	// The feed is slow (250 ms an answer) while the next stage starts.
	feed.delay.Store(int64(250 * time.Millisecond))
	staged, err := d.admin.AdvanceMigration(ctx, m.ID, client.Advance{To: registry.MigrationStaged})
	if err != nil {
		t.Fatal(err)
	}
	stagedV := d.mark("staged, feed delayed")
	d.round(false)
	caughtUp(t, hs.URL, stagedV)
	feed.delay.Store(0)
	d.round(false)

	// The registry dies mid-stage: sign-ins go on from the last view.
	d.reg.Kill()
	outageStart := time.Now()
	d.round(true)
	d.round(true)
	outage := time.Since(outageStart)
	if err := d.rp.Replica().Sync(ctx); !errors.Is(err, validity.ErrUnreachable) {
		t.Errorf("replica's sync with the registry down: %v", err)
	}
	if st := d.rp.Replica().Status(); st.LastError == "" || st.Degraded {
		t.Errorf("replica with the registry down: %+v", st)
	}
	if d.reg, err = regtest.Start(env.Bin, d.state, "--listen", d.host); err != nil {
		t.Fatal(err)
	}
	caughtUp(t, hs.URL, d.head())

	// The relying party restarts from its snapshot.
	cancel()
	if err := <-ran; err != nil {
		t.Fatal(err)
	}
	d.rp.Close()
	d.openRP()
	if st := d.rp.Replica().Status(); !st.Resumed {
		t.Errorf("relying party did not resume from its snapshot: %+v", st)
	}
	runCtx, cancel = context.WithCancel(ctx)
	defer func() { cancel(); <-ran; d.rp.Close() }()
	go func() { ran <- d.rp.Run(runCtx) }()
	d.round(false)

	// Roll back: every cut-over user's old key is accepted again.
	cutNow := map[string]bool{}
	for _, u := range d.users {
		if !d.rp.Replica().Allowed(u.id, u.old.cred).Known {
			cutNow[u.id] = true
		}
	}
	rb, err := d.admin.RollbackMigration(ctx, m.ID, "drill")
	if err != nil {
		t.Fatal(err)
	}
	rbAt := time.Now()
	rbVersion := d.mark("rollback")
	var backLat []time.Duration
	pending := map[string]bool{}
	for id := range cutNow {
		pending[id] = true
	}
	for r := 0; len(pending) > 0; r++ {
		if r == 20 {
			t.Fatalf("%d users' old keys still not accepted after rollback", len(pending))
		}
		for _, u := range d.users {
			if !pending[u.id] {
				continue
			}
			k, o := d.signIn(u, false)
			if o.OK && k == u.old {
				backLat = append(backLat, time.Since(rbAt))
				delete(pending, u.id)
			}
		}
	}
	caughtUp(t, hs.URL, rbVersion)
	if err := d.rp.Replica().FlushSignals(ctx); err != nil {
		t.Fatal(err)
	}

	lags := d.lags()
	var all []time.Duration
	for _, l := range lags {
		all = append(all, l)
	}
	cohort := adv.CutOver
	t.Logf("drill: %d users, %s, load average %s", n, time.Since(start).Round(time.Millisecond), loadavg())
	t.Logf("sign-ins: %d attempted, %d accepted, %d refused with a broken key, %d refused because the registry had just dropped the key, %d refused wrongly", d.attempts, d.accepted, d.refusedBroken, d.refusedDropped, d.refusedWrongly)
	t.Logf("canary: %d users cut over, %d new keys broken, halt threshold %.0f%%; halted by itself after %d round(s), with %d users' sign-ins failed (%.1f%% of the cohort)", cohort, len(broken), 100*threshold, haltedAfter, len(failedBeforeHalt), 100*float64(len(failedBeforeHalt))/float64(max(cohort, 1)))
	t.Logf("canary held back %d users (new key not registered or failing); staged: %d users cut over, %d held back; the replica applied the stage %s after it was committed, with the feed delayed 250 ms", adv.HeldBack, staged.CutOver, staged.HeldBack, lags[fmt.Sprintf("staged, feed delayed@%d", stagedV)].Round(time.Millisecond))
	t.Logf("outage: %d sign-ins served from the last view in %s with the registry down", d.outageServed, outage.Round(time.Millisecond))
	t.Logf("rollback: %d users moved back; the replica applied it in %s; old keys accepted again after p50 %s, p99 %s (%d users)", rb.Reverted, lags[fmt.Sprintf("rollback@%d", rbVersion)].Round(time.Millisecond/10), pct(backLat, 0.5).Round(time.Millisecond/10), pct(backLat, 0.99).Round(time.Millisecond/10), len(backLat))
	t.Logf("replica lag over %d marked change sets: p50 %s, p99 %s (poll every 20 ms)", len(all), pct(all, 0.5).Round(time.Millisecond/10), pct(all, 0.99).Round(time.Millisecond/10))
	names := make([]string, 0, len(lags))
	for k := range lags {
		names = append(names, k)
	}
	sort.Strings(names)
	for _, k := range names {
		t.Logf("  lag %s: %s", k, lags[k].Round(time.Millisecond/10))
	}

	if d.refusedWrongly != 0 {
		t.Errorf("%d sign-ins refused although the registry held the key valid: %s", d.refusedWrongly, strings.Join(d.refusals, "; "))
	}
	if len(failedBeforeHalt) > len(broken) {
		t.Errorf("%d users failed before the halt; %d keys were broken", len(failedBeforeHalt), len(broken))
	}
	if d.outageServed == 0 {
		t.Error("no sign-in was served during the outage")
	}
	if len(backLat) != len(cutNow) || len(cutNow) == 0 {
		t.Errorf("rollback reached %d of %d cut-over users", len(backLat), len(cutNow))
	}
}

func loadavg() string {
	b, _ := os.ReadFile("/proc/loadavg")
	f := strings.Fields(string(b))
	if len(f) < 3 {
		return "?"
	}
	return strings.Join(f[:3], " ")
}
