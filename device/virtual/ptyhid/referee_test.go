//go:build linux

package ptyhid_test

// Referees: libfido2's own command-line tools (Debian fido2-tools) against
// the virtual key on its pseudo-terminal. A failure shows the tool, its
// command line, its terminal and, through fidotest, the CTAP exchanges.

import (
	"context"
	"crypto/sha256"
	"encoding/base64"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/keydesk/keydesk/device/virtual/fidotest"
)

func needTool(t *testing.T, name string) {
	t.Helper()
	if _, err := lookPath(name); err != nil {
		t.Fatalf("%s not installed (packaging/install-deps.sh installs fido2-tools): %v", name, err)
	}
}

// run runs a referee and fails the test, showing everything, unless it
// exits as wantOK says.
func run(t *testing.T, wantOK bool, pins []string, name string, args ...string) *fidotest.Tool {
	t.Helper()
	needTool(t, name)
	r := fidotest.RunTool(context.Background(), pins, name, args...)
	if (r.Err == nil) != wantOK {
		t.Fatalf("referee %s: want success %v\n%s", name, wantOK, r)
	}
	return r
}

func writeLines(t *testing.T, path string, lines ...string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(strings.Join(lines, "\n")+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
}

func b64(b []byte) string { return base64.StdEncoding.EncodeToString(b) }

func TestRefereeFido2TokenInfo(t *testing.T) {
	k := fidotest.Start(t, 2000001)
	r := run(t, true, nil, "fido2-token", "-I", k.Path)
	for _, want := range []string{
		"major: 0x05", "minor: 0x07", "build: 0x02", "caps: 0x05 (wink, cbor, msg)",
		"version strings: U2F_V2, FIDO_2_0, FIDO_2_1_PRE, FIDO_2_1",
		"aaguid: 2a47c36d70f747e4b7af912b6821fe53",
		"algorithms: es256 (public-key), eddsa (public-key)",
		"options: rk, up, noplat, noalwaysUv, credMgmt, authnrCfg, noclientPin", "setMinPINLength",
		"pin protocols: 2, 1", "pin retries: 8", "remaining rk(s): 100", "minpinlen: 4",
	} {
		if !strings.Contains(r.Stdout, want) {
			t.Errorf("fido2-token -I output lacks %q\n%s", want, r)
		}
	}
}

func TestRefereeFido2TokenSetChangePIN(t *testing.T) {
	k := fidotest.Start(t, 2000002)
	run(t, true, []string{testPIN, testPIN}, "fido2-token", "-S", k.Path)
	r := run(t, true, nil, "fido2-token", "-I", k.Path)
	if !strings.Contains(r.Stdout, "clientPin,") {
		t.Fatalf("clientPin not set after -S\n%s", r)
	}
	// A second -S is refused: a PIN is already set.
	run(t, false, []string{testPIN, testPIN}, "fido2-token", "-S", k.Path)
	run(t, true, []string{testPIN, testPIN2, testPIN2}, "fido2-token", "-C", k.Path)
	// The old PIN no longer works and costs a retry.
	run(t, false, []string{testPIN, testPIN, testPIN}, "fido2-token", "-C", k.Path)
	if r := run(t, true, nil, "fido2-token", "-I", k.Path); !strings.Contains(r.Stdout, "pin retries: 7") {
		t.Fatalf("retries after a wrong pin\n%s", r)
	}
	run(t, true, []string{testPIN2, testPIN, testPIN}, "fido2-token", "-C", k.Path)
	if r := run(t, true, nil, "fido2-token", "-I", k.Path); !strings.Contains(r.Stdout, "pin retries: 8") {
		t.Fatalf("retries after the right pin\n%s", r)
	}
}

func TestRefereeFido2CredAssert(t *testing.T) {
	k := fidotest.Start(t, 2000003)
	dir := t.TempDir()
	for _, typ := range []string{"es256", "eddsa"} {
		cdh := sha256.Sum256([]byte("referee " + typ))
		in, cred, pub := filepath.Join(dir, typ+".in"), filepath.Join(dir, typ+".cred"), filepath.Join(dir, typ+".pem")
		writeLines(t, in, b64(cdh[:]), "keydesk.example", "alice", b64([]byte("alice-id-"+typ)))
		run(t, true, nil, "fido2-cred", "-M", "-i", in, "-o", cred, k.Path, typ)
		out, _ := os.ReadFile(cred)
		if lines := strings.Split(strings.TrimSpace(string(out)), "\n"); len(lines) != 7 || lines[2] != "packed" {
			t.Fatalf("fido2-cred -M output (want 7 lines, packed):\n%s", out)
		}
		// libfido2 verifies the packed attestation signature with the x5c certificate.
		run(t, true, nil, "fido2-cred", "-V", "-i", cred, "-o", pub, typ)
		vout, _ := os.ReadFile(pub)
		lines := strings.SplitN(string(vout), "\n", 2)
		if len(lines) != 2 || !strings.Contains(lines[1], "BEGIN PUBLIC KEY") {
			t.Fatalf("fido2-cred -V output:\n%s", vout)
		}
		credID := lines[0]
		key := filepath.Join(dir, typ+".key")
		os.WriteFile(key, []byte(lines[1]), 0o600)

		acdh := sha256.Sum256([]byte("assert " + typ))
		ain, aout := filepath.Join(dir, typ+".ain"), filepath.Join(dir, typ+".aout")
		writeLines(t, ain, b64(acdh[:]), "keydesk.example", credID)
		run(t, true, nil, "fido2-assert", "-G", "-p", "-i", ain, "-o", aout, k.Path)
		run(t, true, nil, "fido2-assert", "-V", "-p", "-i", aout, key, typ)
		// A tampered signature must not verify.
		got, _ := os.ReadFile(aout)
		al := strings.Split(strings.TrimSpace(string(got)), "\n")
		sig, _ := base64.StdEncoding.DecodeString(al[3])
		sig[len(sig)/2] ^= 1
		al[3] = b64(sig)
		bad := filepath.Join(dir, typ+".bad")
		writeLines(t, bad, al...)
		run(t, false, nil, "fido2-assert", "-V", "-p", "-i", bad, key, typ)
	}
}

func TestRefereeFido2TokenCredentialManagement(t *testing.T) {
	k := fidotest.Start(t, 2000004)
	dir := t.TempDir()
	run(t, true, []string{testPIN, testPIN}, "fido2-token", "-S", k.Path)
	var ids []string
	for _, u := range []string{"carol", "dave"} {
		cdh := sha256.Sum256([]byte(u))
		in, cred := filepath.Join(dir, u+".in"), filepath.Join(dir, u+".cred")
		writeLines(t, in, b64(cdh[:]), "keydesk.example", u, b64([]byte("id-"+u)))
		run(t, true, []string{testPIN}, "fido2-cred", "-M", "-r", "-i", in, "-o", cred, k.Path)
		out, _ := os.ReadFile(cred)
		ids = append(ids, strings.Split(string(out), "\n")[4])
	}
	r := run(t, true, []string{testPIN}, "fido2-token", "-L", "-r", k.Path)
	if !strings.Contains(r.Stdout, "keydesk.example") {
		t.Fatalf("fido2-token -L -r does not list the rp\n%s", r)
	}
	r = run(t, true, []string{testPIN}, "fido2-token", "-L", "-k", "keydesk.example", k.Path)
	for i, id := range ids {
		if !strings.Contains(r.Stdout, id) || !strings.Contains(r.Stdout, b64([]byte("id-"+[]string{"carol", "dave"}[i]))) {
			t.Fatalf("fido2-token -L -k lacks credential %s\n%s", id, r)
		}
	}
	run(t, true, []string{testPIN}, "fido2-token", "-D", "-i", ids[0], k.Path)
	r = run(t, true, []string{testPIN}, "fido2-token", "-L", "-k", "keydesk.example", k.Path)
	if strings.Contains(r.Stdout, ids[0]) || !strings.Contains(r.Stdout, ids[1]) {
		t.Fatalf("after -D the list is wrong\n%s", r)
	}
	// A wrong PIN is refused.
	run(t, false, []string{wrongPIN}, "fido2-token", "-L", "-r", k.Path)
}

func TestRefereeFido2TokenReset(t *testing.T) {
	k := fidotest.Start(t, 2000005)
	clock := fidotest.NewClock(time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC))
	k.Key.SetClock(clock.Now)
	run(t, true, []string{testPIN, testPIN}, "fido2-token", "-S", k.Path)
	clock.Advance(10*time.Second + time.Millisecond)
	r := run(t, false, nil, "fido2-token", "-R", k.Path)
	if !strings.Contains(r.TTY, "FIDO_ERR_NOT_ALLOWED") {
		t.Fatalf("reset outside the window: want FIDO_ERR_NOT_ALLOWED\n%s", r)
	}
	k.Key.Remove()
	k.Key.Insert()
	clock.Advance(9 * time.Second)
	run(t, true, nil, "fido2-token", "-R", k.Path)
	if r := run(t, true, nil, "fido2-token", "-I", k.Path); !strings.Contains(r.Stdout, "noclientPin") {
		t.Fatalf("a pin survived reset\n%s", r)
	}
}

// CTAP1/U2F through libfido2's U2F path (-u): registration with fido-u2f
// attestation, then authentication.
func TestRefereeFido2U2F(t *testing.T) {
	k := fidotest.Start(t, 2000006)
	dir := t.TempDir()
	cdh := sha256.Sum256([]byte("u2f"))
	in, cred, pub := filepath.Join(dir, "in"), filepath.Join(dir, "cred"), filepath.Join(dir, "pem")
	writeLines(t, in, b64(cdh[:]), "keydesk.example", "erin", b64([]byte("erin-id")))
	run(t, true, nil, "fido2-cred", "-M", "-u", "-i", in, "-o", cred, k.Path)
	out, _ := os.ReadFile(cred)
	if lines := strings.Split(strings.TrimSpace(string(out)), "\n"); len(lines) != 7 || lines[2] != "fido-u2f" {
		t.Fatalf("fido2-cred -M -u output (want 7 lines, fido-u2f):\n%s", out)
	}
	run(t, true, nil, "fido2-cred", "-V", "-i", cred, "-o", pub)
	vout, _ := os.ReadFile(pub)
	lines := strings.SplitN(string(vout), "\n", 2)
	key := filepath.Join(dir, "key")
	os.WriteFile(key, []byte(lines[1]), 0o600)
	acdh := sha256.Sum256([]byte("u2f assert"))
	ain, aout := filepath.Join(dir, "ain"), filepath.Join(dir, "aout")
	writeLines(t, ain, b64(acdh[:]), "keydesk.example", lines[0])
	run(t, true, nil, "fido2-assert", "-G", "-u", "-p", "-i", ain, "-o", aout, k.Path)
	run(t, true, nil, "fido2-assert", "-V", "-p", "-i", aout, key)
}

// Discoverable credentials with hmac-secret: fido2-cred -M -r -h, then
// fido2-assert -G -r -h (no credential id; getNextAssertion for the second
// credential) and -V -h on each assertion.
func TestRefereeFido2AssertResidentHMAC(t *testing.T) {
	k := fidotest.Start(t, 2000007)
	dir := t.TempDir()
	run(t, true, []string{testPIN, testPIN}, "fido2-token", "-S", k.Path)
	keys := map[string]string{}
	for _, u := range []string{"frank", "grace"} {
		cdh := sha256.Sum256([]byte(u))
		in, cred, pub := filepath.Join(dir, u+".in"), filepath.Join(dir, u+".cred"), filepath.Join(dir, u+".pem")
		writeLines(t, in, b64(cdh[:]), "keydesk.example", u, b64([]byte("id-"+u)))
		run(t, true, []string{testPIN}, "fido2-cred", "-M", "-r", "-h", "-i", in, "-o", cred, k.Path)
		run(t, true, nil, "fido2-cred", "-V", "-h", "-i", cred, "-o", pub)
		out, _ := os.ReadFile(pub)
		keys[b64([]byte("id-"+u))] = strings.SplitN(string(out), "\n", 2)[1]
	}
	acdh := sha256.Sum256([]byte("resident assert"))
	salt := sha256.Sum256([]byte("salt"))
	ain, aout := filepath.Join(dir, "ain"), filepath.Join(dir, "aout")
	writeLines(t, ain, b64(acdh[:]), "keydesk.example", b64(salt[:]))
	r := run(t, true, []string{testPIN}, "fido2-assert", "-G", "-r", "-h", "-v", "-i", ain, "-o", aout, k.Path)
	out, _ := os.ReadFile(aout)
	lines := strings.Split(strings.TrimSpace(string(out)), "\n")
	// Per assertion: cdh, rp id, authdata, signature, user id, hmac-secret.
	if len(lines) != 12 {
		t.Fatalf("fido2-assert -G -r -h: want 2 assertions of 6 lines, got %d lines\n%s\n%s", len(lines), out, r)
	}
	for i := 0; i < 2; i++ {
		a := lines[i*6 : i*6+6]
		key, ok := keys[a[4]]
		if !ok {
			t.Fatalf("assertion %d for unknown user id %s", i, a[4])
		}
		if raw, _ := base64.StdEncoding.DecodeString(a[5]); len(raw) != 32 {
			t.Fatalf("assertion %d hmac-secret of %d bytes", i, len(raw))
		}
		kf, af := filepath.Join(dir, "k"), filepath.Join(dir, "a")
		os.WriteFile(kf, []byte(key), 0o600)
		writeLines(t, af, a[:4]...)
		run(t, true, nil, "fido2-assert", "-V", "-v", "-h", "-i", af, kf)
	}
}
