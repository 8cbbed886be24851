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
	"runtime"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/keydesk/keydesk/app/enroltest"
	"github.com/keydesk/keydesk/device"
	"github.com/keydesk/keydesk/device/fidokey"
	"github.com/keydesk/keydesk/device/virtual/ptyhid"
	"github.com/keydesk/keydesk/device/virtual/sim"
	"github.com/keydesk/keydesk/registry"
	"github.com/keydesk/keydesk/registry/client"
	"github.com/keydesk/keydesk/registry/credential"
	"github.com/keydesk/keydesk/registry/regtest"
	"github.com/keydesk/keydesk/registry/validity"
)

const drillRP = "login.example.org"

// drillPracticeUsers of the drill's users hold practice keys (an old and a
// new one each): virtual YubiKeys reached through libfido2 over their
// pseudo-terminals, enrolled, activated and signing in through the real
// FIDO2 stack. The other users hold software keys.
const drillPracticeUsers = 3

// drillPIN is the FIDO2 PIN the drill sets on its practice keys.
const drillPIN = "drill-2468"

// fault is what is wrong with a user's new key.
type fault int32

const (
	faultNone fault = iota
	// faultReplaced: the key signs with a credential the registry never
	// saw, as a key whose credential was replaced would.
	faultReplaced
	// faultWrongPIN: the person gives a wrong PIN; the key refuses the
	// assertion (user verification fails, CTAP 2.1 §6.2.2
	// CTAP2_ERR_PIN_INVALID).
	faultWrongPIN
	// faultDeleted: the credential was deleted on the key; the key has
	// nothing to sign with (CTAP2_ERR_NO_CREDENTIALS).
	faultDeleted
)

func (f fault) String() string {
	return [...]string{"none", "credential replaced", "wrong PIN", "credential deleted"}[f]
}

// errRefused is a software key's refusal to sign, as an authenticator
// refuses when user verification fails or it holds no such credential.
var errRefused = errors.New("the authenticator refused the assertion")

// drillKey is one of a user's keys: a software FIDO2 authenticator holding
// one ES256 credential, which signs WebAuthn assertions itself (WebAuthn L2
// §6.3.3: authenticatorData = rpIdHash ‖ flags ‖ signCount, signature over
// authenticatorData ‖ SHA-256(clientDataJSON)), or a practice key (dev set).
type drillKey struct {
	keyID, recordID, serial string
	cred                    []byte
	fault                   atomic.Int32
	// A software key's credential and the key it signs with once replaced.
	priv, wrong *ecdsa.PrivateKey
	count       atomic.Uint32
	// A practice key.
	dev *fidokey.Device
}

func newSoftKey(serial string) *drillKey {
	p, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	w, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	id := make([]byte, 32)
	rand.Read(id)
	return &drillKey{serial: serial, cred: id, priv: p, wrong: w}
}

func (k *drillKey) faulty() bool { return fault(k.fault.Load()) != faultNone }

// assert answers a WebAuthn get for the key's credential, or fails as the
// key refuses.
func (k *drillKey) assert(rpID string, challenge []byte) (cdj, ad, sig []byte, err error) {
	f := fault(k.fault.Load())
	if k.dev != nil {
		pin := drillPIN
		if f == faultWrongPIN {
			pin = "not-" + drillPIN
		}
		a, err := k.dev.GetAssertion(ctx, fidokey.AssertOptions{RPID: rpID, Challenge: challenge, CredentialIDs: [][]byte{k.cred}, UserVerification: true},
			device.Callbacks{PIN: func(context.Context, string) (string, error) { return pin, nil }})
		if err != nil {
			return nil, nil, nil, err
		}
		return a.ClientDataJSON, a.AuthenticatorData, a.Signature, nil
	}
	if f == faultWrongPIN || f == faultDeleted {
		return nil, nil, nil, errRefused
	}
	cdj, _ = fidokey.ClientDataJSON("webauthn.get", challenge, rpID)
	h := sha256.Sum256([]byte(rpID))
	ad = append(h[:], 0x01) // UP
	ad = binary.BigEndian.AppendUint32(ad, k.count.Add(1))
	ch := sha256.Sum256(cdj)
	d := sha256.Sum256(append(append([]byte{}, ad...), ch[:]...))
	p := k.priv
	if f == faultReplaced {
		p = k.wrong
	}
	sig, _ = ecdsa.SignASN1(rand.Reader, p, d[:])
	return cdj, ad, sig, nil
}

// breakKey gives k fault f. A practice key's credential is deleted on the
// key itself, through credential management.
func (k *drillKey) breakKey(t testing.TB, f fault) {
	t.Helper()
	if k.dev != nil && f == faultDeleted {
		if err := k.dev.DeleteCredential(ctx, drillPINs, k.cred); err != nil {
			t.Fatalf("deleting key %s's credential: %v", k.serial, err)
		}
	}
	k.fault.Store(int32(f))
}

var drillPINs = device.Callbacks{PIN: func(context.Context, string) (string, error) { return drillPIN, nil }}

// startPractice starts a practice key for the drill: a virtual YubiKey 5
// with only its FIDO interface attached, a pseudo-terminal that libfido2
// opens, its FIDO2 PIN set to drillPIN; it stops when the test ends.
func startPractice(t testing.TB, serial uint32) *fidokey.Device {
	t.Helper()
	y, err := sim.New(sim.Options{Serial: serial})
	if err != nil {
		t.Fatal(err)
	}
	link := filepath.Join(t.TempDir(), "fido")
	hid, err := ptyhid.Open(y.Key, y.FIDO, link)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { hid.Close() })
	dev := fidokey.Open(link)
	if err := dev.SetPIN(ctx, drillPIN); err != nil {
		t.Fatalf("setting practice key %d's PIN: %v", serial, err)
	}
	return dev
}

type drillUser struct {
	id       string
	practice bool
	old, new *drillKey
}

// drill is one run of the migration drill and its measurements.
type drill struct {
	t     testing.TB
	admin *client.Client
	rpURL string
	rp    *RP
	rpDir string
	rpOpt validity.Options
	reg   *regtest.Process
	host  string
	state string
	users []*drillUser

	attempts, accepted, refusedBroken, refusedDropped, refusedWrongly int
	practiceAttempts, practiceAccepted                                int
	outageServed                                                      int
	refusals                                                          []string
	unreported                                                        []string // refusals of broken keys not reported as lockout signals

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
func (d *drill) signIn(u *drillUser, outage bool) (*drillKey, Outcome) {
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
	var o Outcome
	if cdj, ad, sig, err := k.assert(drillRP, chal); err != nil {
		if !k.faulty() {
			d.t.Fatalf("user %s's key %s refused to sign: %v", u.id, k.serial, err)
		}
		// The key refused: the client tells the relying party so.
		d.post("/login/finish", map[string]any{"session": b.Session, "error": "NotAllowedError"}, &o)
	} else {
		d.post("/login/finish", map[string]any{"session": b.Session, "credential": map[string]any{
			"id": b64.EncodeToString(k.cred), "rawId": b64.EncodeToString(k.cred), "type": "public-key",
			"response": map[string]string{"clientDataJSON": b64.EncodeToString(cdj), "authenticatorData": b64.EncodeToString(ad), "signature": b64.EncodeToString(sig)},
		}}, &o)
	}
	d.attempts++
	if u.practice {
		d.practiceAttempts++
		if o.OK {
			d.practiceAccepted++
		}
	}
	switch {
	case o.OK:
		d.accepted++
		if outage {
			d.outageServed++
		}
	case k.faulty():
		d.refusedBroken++
		if !o.Reported {
			d.unreported = append(d.unreported, fmt.Sprintf("user %s key %s (%s): %s", u.id, k.keyID, fault(k.fault.Load()), o.Reason))
		}
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

// enrol registers user i's old key and, unless noNew, the new one, and
// activates each with a verified assertion. With practice keys (two
// devices) the credentials are made on the keys through libfido2;
// otherwise the user holds software keys.
func (d *drill) enrol(i int, noNew bool, practice ...*fidokey.Device) *drillUser {
	d.t.Helper()
	ext := fmt.Sprintf("drill-%04d", i)
	u := &drillUser{practice: len(practice) == 2}
	if u.practice {
		u.old, u.new = &drillKey{dev: practice[0]}, &drillKey{dev: practice[1]}
		for _, k := range []*drillKey{u.old, u.new} {
			serial, _, _, err := k.dev.Info(ctx)
			if err != nil {
				d.t.Fatal(err)
			}
			k.serial = strconv.FormatUint(uint64(serial), 10)
		}
	} else {
		u.old, u.new = newSoftKey(fmt.Sprintf("%d", 40000000+2*i)), newSoftKey(fmt.Sprintf("%d", 40000000+2*i+1))
	}
	keys := []*drillKey{u.old, u.new}
	if noNew {
		keys = keys[:1] // the new key never registered: readiness holds the user back
	}
	for j, k := range keys {
		set, role := "legacy-2024", "primary"
		if j == 1 {
			set, role = "yk5-2026", "backup"
		}
		var cred client.FIDO2Credential
		if k.dev != nil {
			chal := make([]byte, 32)
			rand.Read(chal)
			reg, err := k.dev.MakeCredential(ctx, fidokey.MakeOptions{RPID: drillRP, RPName: "drill", UserID: []byte(ext), UserName: ext,
				Challenge: chal, Discoverable: true, CredProtect: 2}, drillPINs)
			if err != nil {
				d.t.Fatalf("making a credential on practice key %s: %v", k.serial, err)
			}
			k.cred, cred = reg.CredentialID, enroltest.FIDO2(reg, drillRP)
		} else {
			cred = client.FIDO2Credential{CredentialID: k.cred, PublicKey: credential.COSEKeyES256(&k.priv.PublicKey), RPID: drillRP, CredProtect: 2}
		}
		e, err := d.admin.Enrol(ctx, client.Enrolment{
			User:  client.EnrolUser{ExternalID: ext},
			Key:   client.EnrolKey{Serial: k.serial, Role: role, KeySets: []string{set}},
			FIDO2: []client.FIDO2Credential{cred},
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
		cdj, ad, sig, err := k.assert(ch.RPID, ch.Challenge.Nonce)
		if err != nil {
			d.t.Fatalf("activating %s: %v", k.keyID, err)
		}
		v, err := d.admin.VerifyFIDO2(ctx, ch.Challenge.ID, credential.Assertion{AuthenticatorData: ad, ClientDataJSON: cdj, Signature: sig})
		if err != nil || !v.OK || v.KeyStatus != registry.KeyActive {
			d.t.Fatalf("activating %s: %+v %v", k.keyID, v, err)
		}
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
// every user signs in to the relying party in a loop; drillPracticeUsers
// of them hold practice keys that sign through libfido2, the others
// software keys. Canary users' new keys break (credential replaced, wrong
// PIN, credential deleted on the key; one practice key gets each of the
// last two), and the canary halts by itself; it resumes without them and
// goes to 75%; the registry is SIGKILLed and sign-ins are served from the
// replica's last view; the registry comes back; the relying party is
// stopped in the middle of a round, a user is enrolled while it is down,
// and it starts again from its state on disk; everything is rolled back
// and the old keys are accepted again. It fails if any sign-in with a key
// the registry holds valid is refused. KEYDESK_DRILL_USERS sets the size
// (default 20); KEYDESK_DRILL_OUT names a file for the figures (markdown).
func TestMigrationDrill(t *testing.T) {
	n := 20
	if s := os.Getenv("KEYDESK_DRILL_USERS"); s != "" {
		var err error
		if n, err = strconv.Atoi(s); err != nil || n < 20 {
			t.Fatalf("KEYDESK_DRILL_USERS=%q: the drill needs a number of at least 20", s)
		}
	}
	f := runDrill(t, n)
	writeFigures(t, f, "go test -count=1 -run '^TestMigrationDrill$' ./cmd/keydesk-rp")
}

// BenchmarkMigrationDrill is the drill at 2,000 users, or
// KEYDESK_DRILL_USERS (make bench); its figures are in its log, as metrics,
// and in KEYDESK_DRILL_OUT when set (make bench writes docs/drill.md).
func BenchmarkMigrationDrill(b *testing.B) {
	n := 2000
	if s := os.Getenv("KEYDESK_DRILL_USERS"); s != "" {
		n, _ = strconv.Atoi(s)
	}
	var f figures
	for range b.N {
		f = runDrill(b, n)
	}
	b.ReportMetric(float64(f.Attempts), "signins")
	b.ReportMetric(float64(f.RefusedWrongly), "refused-wrongly")
	b.ReportMetric(100*float64(f.FailedBeforeHalt)/float64(max(f.Cohort, 1)), "%cohort-failed-before-halt")
	b.ReportMetric(float64(f.BackP99.Microseconds())/1000, "ms-rollback-p99")
	b.ReportMetric(float64(f.LagP99.Microseconds())/1000, "ms-lag-p99")
	b.ReportMetric(f.AllowedNS, "ns/Allowed")
	b.ReportMetric(float64(f.OutageServed), "served-in-outage")
	writeFigures(b, f, fmt.Sprintf("go test -run '^$' -bench MigrationDrill -benchtime 1x ./cmd/keydesk-rp (KEYDESK_DRILL_USERS=%d)", n))
}

// figures are a drill's measurements.
type figures struct {
	Users, PracticeUsers, SoftUsers int
	Took                            time.Duration
	LoadStart, LoadEnd              string

	Attempts, Accepted, RefusedBroken, RefusedDropped, RefusedWrongly int
	PracticeAttempts, PracticeAccepted                                int

	Faults                            map[string]int // "software: wrong PIN" → keys
	Cohort, FailedBeforeHalt          int
	Threshold                         float64
	HaltRounds                        int
	DeskPassed, DeskFailed            int
	HeldBack, StagedCut, StagedHeld   int
	StagedLag                         time.Duration
	OutageServed                      int
	Outage                            time.Duration
	RestartSignIns, RestartWrongly    int
	RestartResumed                    bool
	RestartFullLoads                  int
	RestartCatchUp                    time.Duration
	Reverted                          int
	RollbackApplied, BackP50, BackP99 time.Duration
	BackUsers                         int
	LagN                              int
	LagP50, LagP99                    time.Duration
	AllowedNS                         float64
}

func runDrill(t testing.TB, n int) figures {
	start := time.Now()
	f := figures{Users: n, LoadStart: loadavg(), Faults: map[string]int{}}
	d := &drill{t: t, state: t.TempDir(), rpDir: t.TempDir()}
	adminTok, err := regtest.Token(env.Bin, d.state, "admin", "drill-admin", "")
	if err != nil {
		t.Fatal(err)
	}
	authTok, err := regtest.Token(env.Bin, d.state, "authserver", "drill-rp", "")
	if err != nil {
		t.Fatal(err)
	}
	// --practice: the registry trusts the practice keys' attestation roots.
	if d.reg, err = regtest.Start(env.Bin, d.state, "--practice"); err != nil {
		t.Fatal(err)
	}
	defer func() { d.reg.Stop() }()
	u, _ := url.Parse(d.reg.URL)
	d.host = u.Host
	if d.admin, err = client.New(d.reg.URL, adminTok, client.Options{OutboxPath: filepath.Join(t.TempDir(), "outbox.db"), Timeout: 5 * time.Second}); err != nil {
		t.Fatal(err)
	}
	defer d.admin.Close()
	var practiceIDs []string
	for i := range drillPracticeUsers {
		u := d.enrol(i, false, startPractice(t, uint32(31000000+2*i)), startPractice(t, uint32(31000001+2*i)))
		d.users = append(d.users, u)
		practiceIDs = append(practiceIDs, u.id)
	}
	for i := drillPracticeUsers; i < n; i++ {
		d.users = append(d.users, d.enrol(i, i%10 == 9))
	}
	f.PracticeUsers, f.SoftUsers = drillPracticeUsers, n-drillPracticeUsers

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

	// The plan: everyone, a canary, then 75% staged; halt at 1% of the cohort (20% for a small drill,
	// where 1% would be less than a user).
	threshold := 0.01
	if n < 400 {
		threshold = 0.2
	}
	f.Threshold = threshold
	ids := make([]string, len(d.users))
	for i, u := range d.users {
		ids[i] = u.id
	}
	// The canary names the practice users and the next eight users (seven
	// of them with a new key), so that it holds good and broken keys of
	// both kinds at any size, and takes 50% of the others.
	named := append(append([]string{}, practiceIDs...), ids[drillPracticeUsers:drillPracticeUsers+8]...)
	m, err := d.admin.CreateMigration(ctx, client.MigrationPlan{Name: "drill", From: "legacy-2024", To: "yk5-2026",
		Scope: registry.Cohort{Users: ids}, Canary: registry.Cohort{Percent: 50, Users: named}, Stages: []float64{75},
		Policy: registry.MigrationPolicy{MinVerifiedB: 1, HaltThreshold: threshold}})
	if err != nil {
		t.Fatal(err)
	}
	rd, err := d.admin.Readiness(ctx, m.ID)
	if err != nil {
		t.Fatal(err)
	}
	var canary, softCanary []*drillUser
	for _, r := range rd.Users {
		if r.Cohort == "canary" && r.Ready {
			for _, u := range d.users {
				if u.id == r.UserID {
					canary = append(canary, u)
					if !u.practice {
						softCanary = append(softCanary, u)
					}
				}
			}
		}
	}
	if len(softCanary) < 4 || len(canary)-len(softCanary) != drillPracticeUsers {
		t.Fatalf("canary of %d users, %d of them on practice keys; the drill needs at least 4 on software keys and all %d on practice keys", len(canary), len(canary)-len(softCanary), drillPracticeUsers)
	}
	// Some canary users' new keys break: 3% of the software keys (at least
	// two) signing with a credential the registry never saw, one refusing
	// for a wrong PIN, one whose credential is gone; and two practice keys,
	// one given a wrong PIN, one whose credential is deleted on the key
	// through credential management. The first practice user's new key
	// stays good.
	var broken []*drillUser
	breakNew := func(u *drillUser, ft fault) {
		u.new.breakKey(t, ft)
		kind := "software"
		if u.practice {
			kind = "practice"
		}
		f.Faults[kind+": "+ft.String()]++
		broken = append(broken, u)
	}
	nReplaced := max(2, len(softCanary)*3/100)
	for _, u := range softCanary[:nReplaced] {
		breakNew(u, faultReplaced)
	}
	breakNew(softCanary[nReplaced], faultWrongPIN)
	breakNew(softCanary[nReplaced+1], faultDeleted)
	var practice []*drillUser
	for _, u := range canary {
		if u.practice {
			practice = append(practice, u)
		}
	}
	breakNew(practice[1], faultWrongPIN)
	breakNew(practice[2], faultDeleted)

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
			f.HaltRounds = r + 1
			t.Logf("halted: %s", mm.HaltReason)
			break
		}
	}
	caughtUp(t, hs.URL, d.head())
	d.round(false) // the halted cohort is back on its old keys

	// The desk verifies the canary's new keys, then resumes, then goes to
	// 75%. A key that signs with the wrong credential fails the
	// registry's check; a key that refuses to sign is reported by the desk
	// as a failure; both are held back from then on.
	for _, u := range canary {
		ch, err := d.admin.Challenge(ctx, u.new.keyID, "fido2", u.new.recordID)
		if err != nil {
			t.Fatal(err)
		}
		cdj, ad, sig, err := u.new.assert(ch.RPID, ch.Challenge.Nonce)
		if err != nil {
			if !u.new.faulty() {
				t.Fatalf("user %s's new key refused at the desk: %v", u.id, err)
			}
			if _, err := d.admin.ReportLockout(ctx, registry.LockoutSignal{UserID: u.id, KeyID: u.new.keyID, Reason: "failed_signin"}); err != nil {
				t.Fatal(err)
			}
			f.DeskFailed++
			continue
		}
		v, err := d.admin.VerifyFIDO2(ctx, ch.Challenge.ID, credential.Assertion{AuthenticatorData: ad, ClientDataJSON: cdj, Signature: sig})
		if err != nil {
			t.Fatal(err)
		}
		if v.OK {
			f.DeskPassed++
		} else {
			f.DeskFailed++
		}
	}
	t.Logf("desk verification of the canary's new keys: %d passed, %d failed", f.DeskPassed, f.DeskFailed)
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
	f.Outage = time.Since(outageStart)
	if err := d.rp.Replica().Sync(ctx); !errors.Is(err, validity.ErrUnreachable) {
		t.Errorf("replica's sync with the registry down: %v", err)
	}
	if st := d.rp.Replica().Status(); st.LastError == "" || st.Degraded {
		t.Errorf("replica with the registry down: %+v", st)
	}
	if d.reg, err = regtest.Start(env.Bin, d.state, "--practice", "--listen", d.host); err != nil {
		t.Fatal(err)
	}
	caughtUp(t, hs.URL, d.head())

	// The relying party stops in the middle of a round; a user is
	// enrolled while it is down; it starts again from its state on disk,
	// catches up from its cursor, and the round goes on.
	attempts0, wrongly0 := d.attempts, d.refusedWrongly
	half := len(d.users) / 2
	for _, u := range d.users[:half] {
		d.signIn(u, false)
	}
	cancel()
	if err := <-ran; err != nil {
		t.Fatal(err)
	}
	d.rp.Close()
	late := d.enrol(n, false)
	downV := d.head()
	d.openRP()
	st := d.rp.Replica().Status()
	f.RestartResumed = st.Resumed
	runCtx, cancel = context.WithCancel(ctx)
	defer func() { cancel(); <-ran; d.rp.Close() }()
	go func() { ran <- d.rp.Run(runCtx) }()
	f.RestartCatchUp = caughtUp(t, hs.URL, downV)
	f.RestartFullLoads = d.rp.Replica().Status().FullLoads
	for _, u := range d.users[half:] {
		d.signIn(u, false)
	}
	d.users = append(d.users, late)
	if _, o := d.signIn(late, false); !o.OK {
		t.Errorf("the user enrolled while the relying party was down was refused: %+v", o)
	}
	f.RestartSignIns, f.RestartWrongly = d.attempts-attempts0, d.refusedWrongly-wrongly0
	if !f.RestartResumed || f.RestartFullLoads != 0 {
		t.Errorf("the relying party restarted with its replica resumed %v and %d whole-view loads, want resumed from disk with none: %+v", f.RestartResumed, f.RestartFullLoads, st)
	}

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

	// Allowed's cost: every user's two credentials, in turn.
	rep := d.rp.Replica()
	calls := 0
	t0 := time.Now()
	for calls < 200000 {
		for _, u := range d.users {
			rep.Allowed(u.id, u.old.cred)
			rep.Allowed(u.id, u.new.cred)
			calls += 2
		}
	}
	f.AllowedNS = float64(time.Since(t0).Nanoseconds()) / float64(calls)

	lags := d.lags()
	var all []time.Duration
	for _, l := range lags {
		all = append(all, l)
	}
	f.Took, f.LoadEnd = time.Since(start), loadavg()
	f.Attempts, f.Accepted, f.RefusedBroken, f.RefusedDropped, f.RefusedWrongly = d.attempts, d.accepted, d.refusedBroken, d.refusedDropped, d.refusedWrongly
	f.PracticeAttempts, f.PracticeAccepted = d.practiceAttempts, d.practiceAccepted
	f.Cohort, f.FailedBeforeHalt = adv.CutOver, len(failedBeforeHalt)
	f.HeldBack, f.StagedCut, f.StagedHeld = adv.HeldBack, staged.CutOver, staged.HeldBack
	f.StagedLag = lags[fmt.Sprintf("staged, feed delayed@%d", stagedV)]
	f.OutageServed = d.outageServed
	f.Reverted, f.RollbackApplied = rb.Reverted, lags[fmt.Sprintf("rollback@%d", rbVersion)]
	f.BackP50, f.BackP99, f.BackUsers = pct(backLat, 0.5), pct(backLat, 0.99), len(backLat)
	f.LagN, f.LagP50, f.LagP99 = len(all), pct(all, 0.5), pct(all, 0.99)
	for _, line := range strings.Split(strings.TrimSpace(f.table()), "\n") {
		t.Log(line)
	}
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
	if len(d.unreported) != 0 {
		t.Errorf("refusals not reported to the registry: %s", strings.Join(d.unreported, "; "))
	}
	if len(failedBeforeHalt) > len(broken) {
		t.Errorf("%d users failed before the halt; %d keys were broken", len(failedBeforeHalt), len(broken))
	}
	if d.outageServed == 0 {
		t.Error("no sign-in was served during the outage")
	}
	if d.practiceAccepted == 0 {
		t.Error("no sign-in with a practice key was accepted")
	}
	if len(backLat) != len(cutNow) || len(cutNow) == 0 {
		t.Errorf("rollback reached %d of %d cut-over users", len(backLat), len(cutNow))
	}
	return f
}

func ms(d time.Duration) string {
	if d >= time.Second {
		return d.Round(time.Millisecond).String()
	}
	return d.Round(time.Millisecond / 10).String()
}

// table is the figures as a markdown table.
func (f figures) table() string {
	var b strings.Builder
	row := func(k, v string, a ...any) { fmt.Fprintf(&b, "| %s | %s |\n", k, fmt.Sprintf(v, a...)) }
	faults := make([]string, 0, len(f.Faults))
	for k, v := range f.Faults {
		faults = append(faults, fmt.Sprintf("%s %d", k, v))
	}
	sort.Strings(faults)
	b.WriteString("| Figure | Value |\n|---|---|\n")
	row("Users", "%d (%d on practice keys through libfido2, %d on software keys), and one enrolled while the relying party was down", f.Users, f.PracticeUsers, f.SoftUsers)
	row("Sign-ins attempted / accepted", "%d / %d (practice keys: %d / %d)", f.Attempts, f.Accepted, f.PracticeAttempts, f.PracticeAccepted)
	row("Refused with a broken key", "%d", f.RefusedBroken)
	row("Refused because the registry had just dropped the key", "%d", f.RefusedDropped)
	row("**Refused wrongly** (the registry held the key valid)", "**%d**", f.RefusedWrongly)
	row("New keys broken in the canary", "%s", strings.Join(faults, ", "))
	row("Halt reaction", "halted by itself after %d round(s); %d users' sign-ins failed before the halt = %.1f%% of the canary's %d users (threshold %.0f%%)", f.HaltRounds, f.FailedBeforeHalt, 100*float64(f.FailedBeforeHalt)/float64(max(f.Cohort, 1)), f.Cohort, 100*f.Threshold)
	row("Desk verification of the canary's new keys", "%d passed, %d failed (held back from then on)", f.DeskPassed, f.DeskFailed)
	row("Stage 75%", "%d users cut over, %d held back; applied %s after commit with the feed delayed 250 ms", f.StagedCut, f.StagedHeld, ms(f.StagedLag))
	row("Sign-ins served during the registry outage", "%d, in %s with the registry SIGKILLed", f.OutageServed, ms(f.Outage))
	row("Relying party restarted mid-round", "%d sign-ins across the restart, %d refused wrongly; replica resumed from disk: %v, whole-view loads after restart: %d, caught up with the change set made while down in %s", f.RestartSignIns, f.RestartWrongly, f.RestartResumed, f.RestartFullLoads, ms(f.RestartCatchUp))
	row("Rollback", "%d users moved back; the replica applied it %s after commit", f.Reverted, ms(f.RollbackApplied))
	row("Rollback to relying party (old key accepted again)", "p50 %s, p99 %s (%d users): from the rollback to each cut-over user's next sign-in with the old key accepted; the drill signs users in one after another, so this includes the time the round takes to reach the user", ms(f.BackP50), ms(f.BackP99), f.BackUsers)
	row("Replica lag", "p50 %s, p99 %s over %d marked change sets (poll every 20 ms)", ms(f.LagP50), ms(f.LagP99), f.LagN)
	row("`Allowed` latency", "%.0f ns a call", f.AllowedNS)
	row("Run", "%s; load average %s at the start, %s at the end", f.Took.Round(time.Millisecond), f.LoadStart, f.LoadEnd)
	return b.String()
}

// writeFigures writes the figures to KEYDESK_DRILL_OUT, when set, as the
// markdown page docs/drill.md; KEYDESK_DRILL_COMMAND names the command
// that ran the drill (make bench, make drill), command otherwise.
func writeFigures(t testing.TB, f figures, command string) {
	t.Helper()
	out := os.Getenv("KEYDESK_DRILL_OUT")
	if out == "" {
		return
	}
	if c := os.Getenv("KEYDESK_DRILL_COMMAND"); c != "" {
		command = c
	}
	var b strings.Builder
	b.WriteString("# The migration drill's figures\n\n")
	b.WriteString("<!-- Generated by the migration drill (cmd/keydesk-rp/drill_test.go); do not edit. -->\n\n")
	fmt.Fprintf(&b, "Written %s by `%s` on %s (%d CPUs); what the drill does is in [relying-party.md](relying-party.md#the-migration-drill).\n\n",
		time.Now().UTC().Format("2006-01-02 15:04 UTC"), command, cpuModel(), runtime.NumCPU())
	if t.Failed() {
		b.WriteString("**This run of the drill failed** (its log says why); the figures are what it measured.\n\n")
	}
	b.WriteString(f.table())
	if err := os.WriteFile(out, []byte(b.String()), 0o644); err != nil {
		t.Fatal(err)
	}
}

func cpuModel() string {
	b, _ := os.ReadFile("/proc/cpuinfo")
	for _, l := range strings.Split(string(b), "\n") {
		if k, v, ok := strings.Cut(l, ":"); ok && strings.TrimSpace(k) == "model name" {
			return strings.TrimSpace(v)
		}
	}
	return runtime.GOARCH
}

func loadavg() string {
	b, _ := os.ReadFile("/proc/loadavg")
	f := strings.Fields(string(b))
	if len(f) < 3 {
		return "?"
	}
	return strings.Join(f[:3], " ")
}
