package evidence

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/keydesk/keydesk/app/escrow"
	"github.com/keydesk/keydesk/app/settings"
	"github.com/keydesk/keydesk/registry"
	"github.com/keydesk/keydesk/registry/client"
	"github.com/keydesk/keydesk/registry/regtest"
)

// Practice secrets of the enrolment benchmark. They reach keydesk and the
// tools on stdin only.
const (
	benchFIDOPIN = "fido-bench-2468"
	benchPIVPIN  = "24681357"
	benchPUK     = "86420975"
	benchRPID    = "keydesk.example"
)

// desk is a registry process and a desk logged in to it, for keydesk's
// side of the enrolment comparison.
type desk struct {
	url, token string
	users      int
	admin      *client.Client
}

var sharedDesk *desk

// startDesk starts a keydesk-registry process on loopback (SQLite), writes
// the desk's settings (practice keys, the helpdesk's escrow recipient) and
// logs the desk in with `keydesk login`, the token on stdin. The token goes
// to the session's Secret Service (packaging/with-services.sh).
func startDesk(b *testing.B, r *rig) *desk {
	b.Helper()
	if sharedDesk != nil {
		return sharedDesk
	}
	if os.Getenv("DBUS_SESSION_BUS_ADDRESS") == "" {
		b.Skip("no session bus for the desk's keyring: run under packaging/with-services.sh (make bench does)")
	}
	regBin, err := regtest.Build(r.dir)
	if err != nil {
		b.Fatal(err)
	}
	state := filepath.Join(r.dir, "registry")
	tok, err := regtest.Token(regBin, state, "admin", "bench-desk", "")
	if err != nil {
		b.Fatal(err)
	}
	p, err := regtest.Start(regBin, state, "--practice")
	if err != nil {
		b.Fatal(err)
	}
	stop := r.stop
	r.stop = func() error { p.Stop(); return stop() }
	_, rcpt, err := escrow.NewIdentity()
	if err != nil {
		b.Fatal(err)
	}
	s := settings.Default()
	s.Practice, s.RPID, s.HelpdeskRecipients = true, benchRPID, []string{rcpt}
	if err := settings.Save(filepath.Join(r.dir, "config", "keydesk", "settings.json"), s); err != nil {
		b.Fatal(err)
	}
	r.env = append(r.env, fmt.Sprintf("KEYDESK_KEYRING_SERVICE=keydesk-bench-%d", os.Getpid()))
	r.runIn(b, tok+"\n", r.keydesk, "login", "--registry", p.URL)
	admin, err := client.New(p.URL, tok, client.Options{OutboxPath: filepath.Join(r.dir, "admin-outbox.db")})
	if err != nil {
		b.Fatal(err)
	}
	stopReg := r.stop
	r.stop = func() error { admin.Close(); return stopReg() }
	sharedDesk = &desk{url: p.URL, token: tok, admin: admin}
	return sharedDesk
}

// newUser creates a user in the registry, as an admin would before
// enrolling their key, and returns the external id.
func (d *desk) newUser(b *testing.B) string {
	d.users++
	id := fmt.Sprintf("bench%d", d.users)
	body, _ := json.Marshal(map[string]string{"external_id": id, "display_name": "Bench User " + id, "email": id + "@example.org"})
	req, _ := http.NewRequest("POST", d.url+"/v1/users", bytes.NewReader(body))
	req.Header.Set("Authorization", "Bearer "+d.token)
	req.Header.Set("Idempotency-Key", "bench-create-"+id)
	req.Header.Set("Content-Type", "application/json")
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		b.Fatal(err)
	}
	res.Body.Close()
	if res.StatusCode != http.StatusCreated {
		b.Fatalf("creating user %s: status %d", id, res.StatusCode)
	}
	return id
}

// fresh swaps the enrolled key for a factory-fresh one in the same reader
// (not timed).
func (r *rig) fresh(b *testing.B) {
	b.Helper()
	y, err := r.fleet.Replace(r.fleet.Keys[0].Serial())
	if err != nil {
		b.Fatal(err)
	}
	r.setKey(y.Serial())
}

// enrolKeydesk enrols the key in the reader for a new user with one
// `keydesk enrol` process: checks the key is fresh and unregistered, 9a
// generated and attested (chain checked), FIDO2 PIN and minimum length,
// the organisation's credential made and its attestation checked, a local
// test sign-in, a random management key stored behind the PIN, a random
// PUK sealed with age to the helpdesk, the user's PIV PIN, a self-signed
// 9a certificate; then the registration, escrow and the registry's two
// challenges signed by the key until it is active.
func (r *rig) enrolKeydesk(b *testing.B, d *desk, user string) time.Duration {
	t := r.runIn(b, benchFIDOPIN+"\n"+benchPIVPIN+"\n", r.keydesk, "enrol", "--user", user, "--serial", r.serial,
		"--role", "primary", "--no-backup", "--yes")
	// The work counted is the whole enrolment: the key must be active (the
	// check is not in the time returned).
	kd, err := d.admin.KeyBySerial(context.Background(), r.serial)
	if err != nil || kd.Status != registry.KeyActive {
		b.Fatalf("after keydesk enrol, key %s in the registry: %+v, %v", r.serial, kd.Key, err)
	}
	return t
}

// enrolTools does what keydesk's enrolment does on the key, scripted with
// ykman (PIV) and libfido2's tools (FIDO2), one process per step, every
// secret on stdin (none of these tools needs one on its command line) and
// every file 0600 in a 0700 directory. What it leaves out, in the tools'
// favour: the attestation chains are not checked against Yubico's roots,
// nothing is escrowed (ykman's --protect keeps the random management key
// on the key only) and nothing is registered.
func (r *rig) enrolTools(b *testing.B, user string) time.Duration {
	dir, err := os.MkdirTemp(r.dir, "tools-")
	if err != nil {
		b.Fatal(err)
	}
	defer os.RemoveAll(dir)
	f := func(name string) string { return filepath.Join(dir, name) }
	write := func(name, s string) {
		if err := os.WriteFile(f(name), []byte(s), 0o600); err != nil {
			b.Fatal(err)
		}
	}
	read := func(name string) []string {
		s, err := os.ReadFile(f(name))
		if err != nil {
			b.Fatal(err)
		}
		return strings.Split(strings.TrimSpace(string(s)), "\n")
	}
	rnd := func() string {
		p := make([]byte, 32)
		rand.Read(p)
		return base64.StdEncoding.EncodeToString(p)
	}
	ykman := func(args ...string) []string { return append([]string{"ykman", "-r", r.reader}, args...) }
	var total time.Duration
	step := func(stdin string, argv ...string) { total += r.runIn(b, stdin, argv...) }
	// libfido2's tools read a PIN from /dev/tty when the process has a
	// controlling terminal and from stdin otherwise; setsid gives them a
	// session without one, and the shell between keeps the tool from
	// leading that session (a session leader opening the key's pty would
	// make it its terminal).
	fido := func(stdin string, args ...string) {
		step(stdin, append([]string{"setsid", "sh", "-c", `"$@"; exit $?`, "sh"}, args...)...)
	}
	// Fresh: PIV PIN, PUK and management key at their defaults, no FIDO2 PIN.
	step("", ykman("piv", "info")...)
	fido("", "fido2-token", "-I", r.hidPath)
	// Genuine: a key generated in 9a and attested by the key.
	step("\n", ykman("piv", "keys", "generate", "-a", "ECCP256", "--pin-policy", "ONCE", "--touch-policy", "NEVER", "9a", f("9a.pem"))...)
	step("", ykman("piv", "keys", "attest", "9a", f("9a-attestation.pem"))...)
	// FIDO2 PIN, minimum PIN length, the organisation's discoverable
	// credential (credProtect 2) with its attestation signature checked.
	fido(benchFIDOPIN+"\n"+benchFIDOPIN+"\n", "fido2-token", "-S", r.hidPath)
	fido(benchFIDOPIN+"\n", "fido2-token", "-S", "-l", "8", r.hidPath)
	write("cred.in", rnd()+"\n"+benchRPID+"\n"+user+"@example.org\n"+rnd()+"\n")
	fido(benchFIDOPIN+"\n", "fido2-cred", "-M", "-r", "-v", "-c", "2", "-i", f("cred.in"), "-o", f("cred.out"), r.hidPath, "es256")
	fido("", "fido2-cred", "-V", "-c", "2", "-i", f("cred.out"), "-o", f("cred.pub"), "es256")
	// The local test sign-in with the PIN, checked.
	write("assert.in", rnd()+"\n"+benchRPID+"\n"+read("cred.pub")[0]+"\n")
	fido(benchFIDOPIN+"\n", "fido2-assert", "-G", "-v", "-i", f("assert.in"), "-o", f("assert.out"), r.hidPath)
	fido("", "fido2-assert", "-V", "-v", "-i", f("assert.out"), f("cred.pub"), "es256")
	// PIV: a random management key stored behind the PIN (the current one
	// is the default: a blank line), a new PUK, the user's PIN, and a
	// self-signed certificate in 9a.
	step("\n123456\n", ykman("piv", "access", "change-management-key", "-a", "AES192", "--protect")...)
	step("12345678\n"+benchPUK+"\n", ykman("piv", "access", "change-puk")...)
	step("123456\n"+benchPIVPIN+"\n", ykman("piv", "access", "change-pin")...)
	step(benchPIVPIN+"\n", ykman("piv", "certificates", "generate", "-s", "CN=Bench User "+user, "9a", f("9a.pem"))...)
	return total
}

// BenchmarkEnrol sets a full enrolment of one key by keydesk (one process,
// registry included) beside the same work on the key scripted with ykman
// and libfido2's tools (one process per step). Each run takes a
// factory-fresh key; swapping keys is not timed.
func BenchmarkEnrol(b *testing.B) {
	r := start(b)
	d := startDesk(b, r)
	b.Run("one-key/ykman+fido2-tools", func(b *testing.B) {
		// One of each first: page cache, and both paths known to work.
		r.fresh(b)
		r.enrolKeydesk(b, d, d.newUser(b))
		r.fresh(b)
		r.enrolTools(b, d.newUser(b))
		tk := make([]time.Duration, 0, b.N)
		to := make([]time.Duration, 0, b.N)
		b.ResetTimer()
		for i := 0; i < b.N; i++ {
			b.StopTimer()
			r.fresh(b)
			u := d.newUser(b)
			b.StartTimer()
			tk = append(tk, r.enrolKeydesk(b, d, u))
			b.StopTimer()
			r.fresh(b)
			u = d.newUser(b)
			b.StartTimer()
			to = append(to, r.enrolTools(b, u))
		}
		report(b, "ykman+fido2-tools", tk, to)
	})
	r.fresh(b)
}
