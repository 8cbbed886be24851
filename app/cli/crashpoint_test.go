package cli_test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/rogpeppe/go-internal/testscript"

	"github.com/keydesk/keydesk/app/escrow"
	"github.com/keydesk/keydesk/app/secrets"
	"github.com/keydesk/keydesk/device/virtual/sim"
	"github.com/keydesk/keydesk/internal/crashpoint"
	"github.com/keydesk/keydesk/registry"
	"github.com/keydesk/keydesk/registry/client"
	"github.com/keydesk/keydesk/registry/regtest"
)

// crashEnv is the environment of a script's keydesk commands, for the
// processes cmdCrashEnrol starts itself.
func crashEnv(ts *testscript.TestScript) []string {
	env := os.Environ()
	for _, name := range []string{"PATH", "HOME", "TMPDIR", "WORK", "XDG_STATE_HOME", "XDG_CONFIG_HOME", "XDG_DATA_HOME",
		"KEYDESK_PRACTICE", "DBUS_SESSION_BUS_ADDRESS", secrets.ServiceEnv, "REGISTRY"} {
		env = append(env, name+"="+ts.Getenv(name))
	}
	return env
}

// crashRun is one keydesk process of the crash-point test.
type crashRun struct {
	ts     *testscript.TestScript
	env    []string
	stdin  string
	onLine func(line string) // each stderr line as it comes; may be nil
	marker string            // with onLine unset: the line on which the process is SIGKILLed
}

// run runs keydesk with args and returns its exit code, stdout and stderr.
// With marker set, the process is expected to stop itself on that stderr
// line (internal/crashpoint), and is then killed with SIGKILL; killed
// reports that it was.
func (r crashRun) run(args ...string) (code int, stdout, stderr string, killed bool) {
	bin, err := exec.LookPath("keydesk")
	r.ts.Check(err)
	cmd := exec.Command(bin, args...)
	cmd.Env, cmd.Dir = r.env, r.ts.Getenv("WORK")
	cmd.Stdin = strings.NewReader(r.stdin)
	var out strings.Builder
	cmd.Stdout = &out
	pr, err := cmd.StderrPipe()
	r.ts.Check(err)
	r.ts.Check(cmd.Start())
	var errb strings.Builder
	sc := bufio.NewScanner(pr)
	for sc.Scan() {
		line := sc.Text()
		errb.WriteString(line + "\n")
		if r.onLine != nil {
			r.onLine(line)
		}
		if r.marker != "" && line == r.marker {
			// Stopped (SIGSTOP) at the crash point: a real kill -9.
			r.ts.Check(cmd.Process.Kill())
			killed = true
			break
		}
	}
	io.Copy(io.Discard, pr)
	err = cmd.Wait()
	code = cmd.ProcessState.ExitCode()
	if err != nil && !killed && code < 0 {
		r.ts.Fatalf("keydesk %s: %v\n%s", strings.Join(args, " "), err, errb.String())
	}
	return code, out.String(), errb.String(), killed
}

// traced runs keydesk with args once with every crash point traced
// (KEYDESK_CRASHPOINT=trace) and returns the points among declared it
// passed, "NAME:WHEN", in order (tracedPoints). It fails the script unless
// the command succeeds and passes every declared point, before and after;
// what names the command in the failure.
func (r crashRun) traced(what string, declared []string, args ...string) []string {
	r.env = slices.Concat(r.env, []string{crashpoint.EnvVar + "=trace"})
	code, out, stderr, _ := r.run(args...)
	if code != 0 {
		r.ts.Fatalf("traced %s: exit %d\n%s%s", what, code, out, stderr)
	}
	return tracedPoints(r.ts, what, stderr, declared)
}

// killAt runs keydesk with args armed at point (KEYDESK_CRASHPOINT=point):
// the process stops itself there and is killed with SIGKILL. It fails the
// script unless the command reached the point.
func (r crashRun) killAt(point string, args ...string) {
	r.env = slices.Concat(r.env, []string{crashpoint.EnvVar + "=" + point})
	r.marker = "keydesk crashpoint: " + point + " reached"
	if _, _, stderr, killed := r.run(args...); !killed {
		r.ts.Fatalf("%s: keydesk %s never reached the point\n%s", point, strings.Join(args, " "), stderr)
	}
}

var traceLine = regexp.MustCompile(`^keydesk crashpoint: ([a-z0-9-]+):(before|after)$`)

// cmdCrashEnrol kills a real `keydesk enrol` process with SIGKILL at every
// durable write of an enrolment and runs the documented recovery after
// each: "crash-enrol".
//
// The points come from a traced enrolment (KEYDESK_CRASHPOINT=trace),
// which must pass every point internal/crashpoint declares, before and
// after. Each point then gets a factory-fresh key (keydesk-sim replace)
// and a new user; keydesk enrol runs with KEYDESK_CRASHPOINT=POINT:WHEN,
// stops itself there and is killed. Recovery is what docs/workflows.md
// tells the admin: keydesk sync, then keydesk enrol --resume to list
// what is unfinished; a key named there as half set up (stage device or
// sealed) is reset (keydesk piv reset, keydesk fido reset) and enrolled
// again with the same command; any other is finished with keydesk enrol
// --resume --serial N; a key not listed is enrolled again with the same
// command. Afterwards the key must be active in the registry, registered
// once (the user holds one key, with one FIDO2 credential and one PIV
// slot), with its escrow stored; the outbox must hold nothing pending or
// in conflict, the journal nothing unfinished, and keydesk recover
// diagnose must find no problem.
func cmdCrashEnrol(ts *testscript.TestScript, neg bool, args []string) {
	if neg || len(args) != 0 {
		ts.Fatalf("usage: crash-enrol")
	}
	r := scriptReg(ts)
	admin, closeAdmin := r.client(ts)
	defer closeAdmin()
	ctx := context.Background()
	fresh := freshKeys(ts)
	pins := func(serial uint32) string { return fmt.Sprintf("fido-pin-%d\n%d\n", serial, 10000000+serial%90000000) }
	enrolArgs := func(user string, serial uint32) []string {
		return []string{"enrol", "--user", user, "--name", "Crash " + user, "--serial", strconv.Itoa(int(serial)), "--no-backup", "--wait", "20s"}
	}

	// The trace: every declared point is passed, before and after.
	serial := fresh()
	points := crashRun{ts: ts, env: crashEnv(ts), stdin: pins(serial)}.traced("enrolment", crashpoint.Points(), enrolArgs("trace", serial)...)

	for i, point := range points {
		serial := fresh()
		user := fmt.Sprintf("crash%02d", i)
		sstr := strconv.Itoa(int(serial))
		start := time.Now()
		crashRun{ts: ts, env: crashEnv(ts), stdin: pins(serial)}.killAt(point, enrolArgs(user, serial)...)
		plain := crashRun{ts: ts, env: crashEnv(ts)}
		// keydesk sync sends what the outbox holds; nothing may conflict.
		if code, out, stderr, _ := plain.run("sync"); code != 0 {
			ts.Fatalf("%s: keydesk sync: exit %d\n%s%s", point, code, out, stderr)
		}
		// keydesk enrol --resume lists what is unfinished.
		code, out, stderr, _ := plain.run("enrol", "--resume", "--json")
		if code != 0 {
			ts.Fatalf("%s: keydesk enrol --resume: exit %d\n%s", point, code, stderr)
		}
		var recs []struct {
			Serial uint32 `json:"serial"`
			Stage  string `json:"stage"`
		}
		ts.Check(json.Unmarshal([]byte(out), &recs))
		stage := ""
		for _, rec := range recs {
			if rec.Serial == serial {
				stage = rec.Stage
			} else {
				ts.Fatalf("%s: key %d left unfinished by an earlier point: %s", point, rec.Serial, out)
			}
		}
		how, resumed := "", false
		switch stage {
		case "":
			// Not in the journal, or finished: the same command again
			// (a finished key is reported as registered to this user).
			how = "enrol again"
			again := crashRun{ts: ts, env: crashEnv(ts), stdin: pins(serial)}
			code, out, stderr, _ := again.run(enrolArgs(user, serial)...)
			if code != 0 && !strings.Contains(stderr, "is already registered to this user (active)") {
				ts.Fatalf("%s: enrolling again: exit %d\n%s%s", point, code, out, stderr)
			}
		case "device", "sealed":
			how = "reset, enrol again"
			if code, _, stderr, _ := plain.run("enrol", "--resume", "--serial", sstr); code == 0 || !strings.Contains(stderr, "keydesk piv reset --serial "+sstr) {
				ts.Fatalf("%s: resuming a half set up key: exit %d\n%s", point, code, stderr)
			}
			if code, out, stderr, _ := plain.run("piv", "reset", "--serial", sstr, "--yes"); code != 0 {
				ts.Fatalf("%s: keydesk piv reset: exit %d\n%s%s", point, code, out, stderr)
			}
			// In practice mode keydesk-sim power-cycles the key for the
			// reset, as a person would remove and reinsert it.
			if code, out, stderr, _ := plain.run("fido", "reset", "--serial", sstr, "--yes"); code != 0 {
				ts.Fatalf("%s: keydesk fido reset: exit %d\n%s%s", point, code, out, stderr)
			}
			again := crashRun{ts: ts, env: crashEnv(ts), stdin: pins(serial)}
			if code, out, stderr, _ := again.run(enrolArgs(user, serial)...); code != 0 {
				ts.Fatalf("%s: enrolling the reset key: exit %d\n%s%s", point, code, out, stderr)
			}
		default:
			how = "resume"
			resumed = true
			if point == crashpoint.RegistrySend+":after" {
				// Registered, pending, no escrow in the registry: keydesk
				// verify on this desk stores the journalled escrow before
				// its proofs activate the key (the registry would not
				// activate it without). --resume then finishes the journal.
				how = "verify, resume"
				v := crashRun{ts: ts, env: crashEnv(ts), stdin: fmt.Sprintf("%d\n", 10000000+serial%90000000)}
				code, out, stderr, _ := v.run("verify", "--serial", sstr)
				if code != 0 || !strings.Contains(stderr, "Stored key "+sstr+"'s sealed escrow from this desk's enrolment journal.") || !strings.Contains(out, "PASS  active") {
					ts.Fatalf("%s: keydesk verify: exit %d\n%s%s", point, code, out, stderr)
				}
			}
			// The person types the key's PINs again, as keydesk asks
			// for them: the FIDO2 PIN only while the key still takes
			// it (a key that already demands a new one refuses it).
			stdin := pins(serial)
			if fidoForced(ts, sstr) {
				stdin = fmt.Sprintf("%d\n", 10000000+serial%90000000)
			}
			res := crashRun{ts: ts, env: crashEnv(ts), stdin: stdin}
			code, out, stderr, _ := res.run("enrol", "--resume", "--serial", sstr, "--json")
			var rs []struct {
				Status     string   `json:"status"`
				Resumed    bool     `json:"resumed"`
				Genuine    string   `json:"genuine"`
				PIVProof   bool     `json:"piv_proof"`
				FIDO2Proof bool     `json:"fido2_proof"`
				PINChange  string   `json:"pin_change"`
				NotRedone  []string `json:"not_redone"`
			}
			if code != 0 || json.Unmarshal([]byte(out), &rs) != nil || len(rs) != 1 {
				ts.Fatalf("%s: keydesk enrol --resume --serial %s (stage %s): exit %d\n%s%s", point, sstr, stage, code, out, stderr)
			}
			// The resumed key passed what a fresh enrolment checks.
			if r := rs[0]; r.Status != "active" || !r.Resumed || r.Genuine == "" || !r.PIVProof || !r.FIDO2Proof || r.PINChange != "forced" || len(r.NotRedone) == 0 {
				ts.Fatalf("%s: the resumed enrolment's checks: %s", point, out)
			}
		}

		// Active, once, with its escrow.
		kd, err := admin.KeyBySerial(ctx, sstr)
		if err != nil || kd.Status != registry.KeyActive || len(kd.FIDO2) != 1 || len(kd.PIV) != 1 {
			ts.Fatalf("%s: key %s after recovery: %+v, %v", point, sstr, kd, err)
		}
		u, err := admin.FindUser(ctx, user)
		ts.Check(err)
		if ks, err := admin.UserKeys(ctx, u.ID); err != nil || len(ks) != 1 {
			ts.Fatalf("%s: user %s holds %d keys: %v", point, user, len(ks), err)
		}
		if _, err := admin.Escrow(ctx, kd.ID, "piv"); err != nil {
			ts.Fatalf("%s: escrow of key %s: %v", point, sstr, err)
		}
		// Whichever path got it there, the registry verified a PIV
		// signature the key made (the PIV proof), and the key demands a
		// new FIDO2 PIN at first use (the PIN-change policy).
		if n := pivProofs(ts, admin, kd.ID); n == 0 {
			ts.Fatalf("%s: key %s is active with no PIV proof in the registry's audit log", point, sstr)
		}
		if !fidoForced(ts, sstr) {
			ts.Fatalf("%s: key %s does not demand a new FIDO2 PIN (force_pin_change)", point, sstr)
		}
		// Nothing pending or in conflict in the desk's outbox, nothing
		// unfinished in its journal.
		code, out, stderr, _ = plain.run("sync", "--json")
		var sy struct {
			Sent    []struct{ State string } `json:"sent"`
			Pending int                      `json:"pending"`
		}
		if code != 0 || json.Unmarshal([]byte(out), &sy) != nil || sy.Pending != 0 || len(sy.Sent) != 0 {
			ts.Fatalf("%s: outbox after recovery: exit %d\n%s%s", point, code, out, stderr)
		}
		if code, out, _, _ := plain.run("enrol", "--resume", "--json"); code != 0 || strings.TrimSpace(out) != "[]" {
			ts.Fatalf("%s: unfinished after recovery: %s", point, out)
		}
		code, out, stderr, _ = plain.run("recover", "diagnose", "--serial", sstr)
		if code != 0 || !strings.Contains(out, "(primary, active) belongs to "+user) || !strings.Contains(out, "No problem found.") {
			ts.Fatalf("%s: keydesk recover diagnose: exit %d\n%s%s", point, code, out, stderr)
		}
		ts.Logf("%-34s stage %-10q %-18s key %s active, escrowed, once, PIV proof, PIN change forced (resumed %v, %.1fs)", point, stage, how, sstr, resumed, time.Since(start).Seconds())
	}
	// One user per point and the traced one, each with one key.
	if us, _, err := admin.Users(ctx, "", 1000); err != nil || len(us) != len(points)+1 {
		ts.Fatalf("%d users in the registry, want %d: %v", len(us), len(points)+1, err)
	}
	if pend, err := admin.Entries(ctx, client.Pending); err != nil || len(pend) != 0 {
		ts.Fatalf("admin outbox: %d pending, %v", len(pend), err)
	}
}

// fidoForced reports whether key serial demands a new FIDO2 PIN before
// its next use, as keydesk fido status --json reads it from the key.
func fidoForced(ts *testscript.TestScript, serial string) bool {
	code, out, stderr, _ := crashRun{ts: ts, env: crashEnv(ts)}.run("fido", "status", "--serial", serial, "--json")
	var st struct {
		PINSet         bool `json:"pin_set"`
		ForcePINChange bool `json:"force_pin_change"`
	}
	if code != 0 || json.Unmarshal([]byte(out), &st) != nil || !st.PINSet {
		ts.Fatalf("keydesk fido status --serial %s: exit %d\n%s%s", serial, code, out, stderr)
	}
	return st.ForcePINChange
}

// pivProofs counts the PIV verifications of key keyID the registry
// accepted, from its audit log.
func pivProofs(ts *testscript.TestScript, admin *client.Client, keyID string) int {
	n := 0
	q := client.AuditQuery{Action: "verification", Limit: 1000}
	for {
		p, err := admin.Audit(context.Background(), q)
		ts.Check(err)
		for _, en := range p.Entries {
			var v registry.Verification
			ts.Check(json.Unmarshal(en.Payload, &v))
			if v.KeyID == keyID && v.Kind == "piv" && v.OK {
				n++
			}
		}
		if p.Next == 0 {
			return n
		}
		q.After = p.Next
	}
}

// cmdCrashRecover kills a real `keydesk recover fido2-reset` process with
// SIGKILL at every durable write of a helpdesk's FIDO2 reset and checks
// that running the same command again recovers: "crash-recover".
//
// A practice key is enrolled first. A traced reset must pass every point
// internal/crashpoint declares for it; then for each point the reset runs
// armed, stops there and is killed, and the helpdesk runs the same
// command again. Afterwards the key must be active with exactly one FIDO2
// credential in the registry (the old ones revoked), keydesk verify must
// pass every check (the key holds the registered credential and signs the
// registry's challenges), and keydesk recover diagnose must find no
// problem.
func cmdCrashRecover(ts *testscript.TestScript, neg bool, args []string) {
	if neg || len(args) != 0 {
		ts.Fatalf("usage: crash-recover")
	}
	r := scriptReg(ts)
	admin, closeAdmin := r.client(ts)
	defer closeAdmin()
	ctx := context.Background()
	const serial = "31000001"
	plain := crashRun{ts: ts, env: crashEnv(ts)}
	enrolPractice(ts, "rec", "Rec Overy")
	resets := 0
	reset := func() crashRun {
		resets++
		return crashRun{ts: ts, env: crashEnv(ts), stdin: fmt.Sprintf("fido-reset-%02d\n", resets)}
	}
	resetArgs := []string{"recover", "fido2-reset", "--serial", serial, "--yes"}

	points := reset().traced("reset", crashpoint.RecoveryPoints(), resetArgs...)
	for _, point := range points {
		reset().killAt(point, resetArgs...)
		// The documented recovery: the same command again.
		if code, out, stderr, _ := reset().run(resetArgs...); code != 0 {
			ts.Fatalf("%s: keydesk recover fido2-reset again: exit %d\n%s%s", point, code, out, stderr)
		}
		kd, err := admin.KeyBySerial(ctx, serial)
		if err != nil || kd.Status != registry.KeyActive || len(kd.FIDO2) != 1 || len(kd.PIV) != 1 {
			ts.Fatalf("%s: key after recovery: %+v, %v", point, kd, err)
		}
		v := crashRun{ts: ts, env: crashEnv(ts), stdin: "31000001\n"}
		if code, out, stderr, _ := v.run("verify", "--serial", serial); code != 0 || !strings.Contains(out, "All checks passed.") {
			ts.Fatalf("%s: keydesk verify: exit %d\n%s%s", point, code, out, stderr)
		}
		if code, out, stderr, _ := plain.run("recover", "diagnose", "--serial", serial); code != 0 || !strings.Contains(out, "No problem found.") {
			ts.Fatalf("%s: keydesk recover diagnose: exit %d\n%s%s", point, code, out, stderr)
		}
		ts.Logf("%-34s the same command again; key %s active, one FIDO2 credential, verify passes", point, serial)
	}
}

// enrolPractice enrols the key in the first practice reader (serial
// 31000001; FIDO2 PIN fido-pin-31000001, PIV PIN 31000001) for a new user
// user called name, as the scripts that recover one key start.
func enrolPractice(ts *testscript.TestScript, user, name string) {
	enrol := crashRun{ts: ts, env: crashEnv(ts), stdin: "fido-pin-31000001\n31000001\n"}
	if code, out, stderr, _ := enrol.run("enrol", "--user", user, "--name", name, "--serial", "31000001", "--no-backup"); code != 0 {
		ts.Fatalf("enrolling: exit %d\n%s%s", code, out, stderr)
	}
}

// storeIdentity gives the desk the helpdesk identity the script's escrows
// are sealed to (keydesk recover identity), for the recoveries that open
// an escrow.
func storeIdentity(ts *testscript.TestScript, r *scriptRegistry) {
	if code, out, stderr, _ := (crashRun{ts: ts, env: crashEnv(ts), stdin: r.identity + "\n"}).run("recover", "identity"); code != 0 {
		ts.Fatalf("keydesk recover identity: exit %d\n%s%s", code, out, stderr)
	}
}

// freshKeys returns a function that swaps the key in the first practice
// reader for a factory-fresh one (keydesk-sim's "replace") and returns its
// serial.
func freshKeys(ts *testscript.TestScript) func() uint32 {
	simDir := filepath.Join(ts.Getenv("XDG_STATE_HOME"), "keydesk", "sim")
	reader0 := uint32(31000001)
	return func() uint32 {
		reply, err := sim.Control(simDir, fmt.Sprintf("replace %d", reader0))
		ts.Check(err)
		f := strings.Fields(reply)
		if len(f) != 4 || f[0] != "ok:" {
			ts.Fatalf("keydesk-sim replace: %q", reply)
		}
		n, err := strconv.ParseUint(f[3], 10, 32)
		ts.Check(err)
		reader0 = uint32(n)
		return reader0
	}
}

// tracedPoints returns the crash points, "NAME:WHEN", a traced run's
// stderr names that are among declared, in order; it fails the script
// unless every declared point was passed before and after.
func tracedPoints(ts *testscript.TestScript, what, stderr string, declared []string) []string {
	var points []string
	for _, l := range strings.Split(stderr, "\n") {
		if m := traceLine.FindStringSubmatch(l); m != nil && slices.Contains(declared, m[1]) && !slices.Contains(points, m[1]+":"+m[2]) {
			points = append(points, m[1]+":"+m[2])
		}
	}
	for _, p := range declared {
		for _, w := range []string{"before", "after"} {
			if !slices.Contains(points, p+":"+w) {
				ts.Fatalf("the traced %s never passed crash point %s:%s; passed: %v", what, p, w, points)
			}
		}
	}
	ts.Logf("%d crash points", len(points))
	return points
}

// auditCount is how many entries of action the registry's audit log holds.
func auditCount(ts *testscript.TestScript, admin *client.Client, action string) int {
	n := 0
	q := client.AuditQuery{Action: action, Limit: 1000}
	for {
		p, err := admin.Audit(context.Background(), q)
		ts.Check(err)
		n += len(p.Entries)
		if p.Next == 0 {
			return n
		}
		q.After = p.Next
	}
}

// cmdCrashPIVPIN kills a real `keydesk recover piv-pin` process with
// SIGKILL at every durable write of a PIV PIN unblock and checks that
// running the same command again recovers: "crash-piv-pin".
//
// A practice key is enrolled and the helpdesk identity stored. A traced
// unblock must pass every point internal/crashpoint declares for it
// (PIVPINPoints). Then for each point the key's PIV PIN is blocked (three
// wrong PINs to keydesk piv change-pin), the unblock runs armed, stops
// there and is killed, and the helpdesk runs the same command again with
// a new PIN. Afterwards keydesk verify must pass every check with that
// PIN (the key signs with it and is active in the registry), the escrow
// must still open with the helpdesk identity and name the key, the
// registry's audit log must hold the unblock (recovery.piv_pin_unblocked
// once more, or twice when the killed run had recorded it too), and
// keydesk recover diagnose must find no problem (PIN and PUK tries left,
// escrow present).
func cmdCrashPIVPIN(ts *testscript.TestScript, neg bool, args []string) {
	if neg || len(args) != 0 {
		ts.Fatalf("usage: crash-piv-pin")
	}
	r := scriptReg(ts)
	admin, closeAdmin := r.client(ts)
	defer closeAdmin()
	ctx := context.Background()
	const serial = "31000001"
	plain := crashRun{ts: ts, env: crashEnv(ts)}
	enrolPractice(ts, "pin", "Pin Blocked")
	storeIdentity(ts, r)
	block := func(point string) {
		for i := 0; i < 3; i++ {
			run := crashRun{ts: ts, env: crashEnv(ts), stdin: "000000\n999999\n"}
			if code, _, _, _ := run.run("piv", "change-pin", "--serial", serial); code == 0 {
				ts.Fatalf("%s: a wrong PIV PIN was accepted", point)
			}
		}
		if code, out, _, _ := plain.run("recover", "diagnose", "--serial", serial); code != 0 || !strings.Contains(out, "(piv-pin-blocked)") {
			ts.Fatalf("%s: the PIV PIN is not blocked:\n%s", point, out)
		}
	}
	unblockArgs := []string{"recover", "piv-pin", "--serial", serial}
	pins := 0
	unblock := func() (crashRun, string) {
		pins++
		pin := fmt.Sprintf("%d", 86420000+pins)
		return crashRun{ts: ts, env: crashEnv(ts), stdin: pin + "\n"}, pin
	}

	block("trace")
	run, _ := unblock()
	points := run.traced("unblock", crashpoint.PIVPINPoints(), unblockArgs...)
	for _, point := range points {
		block(point)
		before := auditCount(ts, admin, "recovery."+client.ActionPIVPINUnblocked)
		run, _ := unblock()
		run.killAt(point, unblockArgs...)
		// The documented recovery: the same command again.
		again, pin := unblock()
		if code, out, stderr, _ := again.run(unblockArgs...); code != 0 || !strings.Contains(out, "PIV PIN on key "+serial+" unblocked") {
			ts.Fatalf("%s: keydesk recover piv-pin again: exit %d\n%s%s", point, code, out, stderr)
		}
		v := crashRun{ts: ts, env: crashEnv(ts), stdin: pin + "\n"}
		if code, out, stderr, _ := v.run("verify", "--serial", serial); code != 0 || !strings.Contains(out, "All checks passed.") {
			ts.Fatalf("%s: keydesk verify with the new PIN: exit %d\n%s%s", point, code, out, stderr)
		}
		kd, err := admin.KeyBySerial(ctx, serial)
		if err != nil || kd.Status != registry.KeyActive {
			ts.Fatalf("%s: key after recovery: %+v, %v", point, kd, err)
		}
		blob, err := admin.Escrow(ctx, kd.ID, "piv")
		ts.Check(err)
		if sec, err := escrow.Open(blob.Blob, r.identity); err != nil || strconv.FormatUint(uint64(sec.Serial), 10) != serial || sec.PUK == "" {
			ts.Fatalf("%s: the escrow after recovery does not open for key %s: %v", point, serial, err)
		}
		after := auditCount(ts, admin, "recovery."+client.ActionPIVPINUnblocked)
		if d := after - before; d < 1 || d > 2 || (d == 2) != (point == crashpoint.RecoverRegistryPIVUnblocked+":after") {
			ts.Fatalf("%s: %d unblocks recorded in the audit log", point, d)
		}
		if code, out, stderr, _ := plain.run("recover", "diagnose", "--serial", serial); code != 0 || !strings.Contains(out, "No problem found.") {
			ts.Fatalf("%s: keydesk recover diagnose: exit %d\n%s%s", point, code, out, stderr)
		}
		ts.Logf("%-40s the same command again; verify passes with the new PIN, escrow opens, %d unblock(s) audited", point, after-before)
	}
}

// cmdCrashLost kills a real `keydesk recover lost SERIAL --break-glass
// REASON --replace NEW` process with SIGKILL at every durable write of
// marking a key lost and checks that running the same command again
// recovers: "crash-lost".
//
// For each point a user is enrolled on a factory-fresh key, which is then
// "lost" (keydesk-sim replaces it with a fresh one, the replacement). A
// traced run must pass every point internal/crashpoint declares for it
// (LostPoints). The command then runs armed, stops and is killed, and
// the helpdesk runs it again. Afterwards the lost key must be lost in the
// registry, moved there once (its version one above the enrolled key's:
// one status change), the user must hold two keys, the lost one and the
// replacement, active, escrowed, with one FIDO2 credential; the pass the
// second run shows must redeem; the desk's journal and outbox must hold
// nothing unfinished; keydesk recover diagnose of the replacement must
// find no problem.
func cmdCrashLost(ts *testscript.TestScript, neg bool, args []string) {
	if neg || len(args) != 0 {
		ts.Fatalf("usage: crash-lost")
	}
	r := scriptReg(ts)
	admin, closeAdmin := r.client(ts)
	defer closeAdmin()
	ctx := context.Background()
	freshSerial := freshKeys(ts)
	fresh := func() string { return strconv.FormatUint(uint64(freshSerial()), 10) }
	pins := func(serial string) string { return "fido-pin-" + serial + "\n" + serial + "\n" }
	plain := crashRun{ts: ts, env: crashEnv(ts)}
	// one enrols a user on a fresh key, and makes the next fresh key its
	// replacement; it returns the lost key's serial and version and the
	// replacement's serial.
	one := func(user string) (string, int64, string) {
		lostSerial := fresh()
		enrol := crashRun{ts: ts, env: crashEnv(ts), stdin: pins(lostSerial)}
		if code, out, stderr, _ := enrol.run("enrol", "--user", user, "--name", "Lost "+user, "--serial", lostSerial, "--no-backup", "--wait", "20s"); code != 0 {
			ts.Fatalf("%s: enrolling: exit %d\n%s%s", user, code, out, stderr)
		}
		kd, err := admin.KeyBySerial(ctx, lostSerial)
		ts.Check(err)
		return lostSerial, kd.Version, fresh()
	}
	lostArgs := func(lost, repl string) []string {
		return []string{"recover", "lost", lost, "--break-glass", "key lost on a train", "--pass-validity", "1h", "--replace", repl, "--wait", "20s", "--json"}
	}

	lost, _, repl := one("losttrace")
	points := crashRun{ts: ts, env: crashEnv(ts), stdin: pins(repl)}.traced("recover lost", crashpoint.LostPoints(), lostArgs(lost, repl)...)
	for i, point := range points {
		user := fmt.Sprintf("lost%02d", i)
		lost, version, repl := one(user)
		crashRun{ts: ts, env: crashEnv(ts), stdin: pins(repl)}.killAt(point, lostArgs(lost, repl)...)
		// The documented recovery: the same command again.
		again := crashRun{ts: ts, env: crashEnv(ts), stdin: pins(repl)}
		code, out, stderr, _ := again.run(lostArgs(lost, repl)...)
		var res struct {
			Lost struct {
				Pass    string `json:"pass"`
				Already bool   `json:"already"`
			} `json:"lost"`
			Replacement struct {
				Status string `json:"status"`
			} `json:"replacement"`
		}
		if code != 0 || json.Unmarshal([]byte(out), &res) != nil || res.Lost.Pass == "" || res.Replacement.Status != "active" {
			ts.Fatalf("%s: keydesk recover lost again: exit %d\n%s%s", point, code, out, stderr)
		}
		if want := point == crashpoint.RecoverRegistryLost+":after" || strings.HasPrefix(point, crashpoint.RecoverRegistryPass+":"); res.Lost.Already != want {
			ts.Fatalf("%s: the second run found the key already lost: %v", point, res.Lost.Already)
		}
		kd, err := admin.KeyBySerial(ctx, lost)
		if err != nil || kd.Status != registry.KeyLost || kd.Version != version+1 {
			ts.Fatalf("%s: lost key after recovery (enrolled at version %d): %+v, %v", point, version, kd.Key, err)
		}
		nd, err := admin.KeyBySerial(ctx, repl)
		if err != nil || nd.Status != registry.KeyActive || nd.OwnerID != kd.OwnerID || len(nd.FIDO2) != 1 || len(nd.PIV) != 1 {
			ts.Fatalf("%s: replacement after recovery: %+v, %v", point, nd, err)
		}
		if _, err := admin.Escrow(ctx, nd.ID, "piv"); err != nil {
			ts.Fatalf("%s: escrow of the replacement: %v", point, err)
		}
		if ks, err := admin.UserKeys(ctx, kd.OwnerID); err != nil || len(ks) != 2 {
			ts.Fatalf("%s: user %s holds %d keys: %v", point, user, len(ks), err)
		}
		redeemPass(ts, r, point, res.Lost.Pass)
		if code, out, _, _ := plain.run("enrol", "--resume", "--json"); code != 0 || strings.TrimSpace(out) != "[]" {
			ts.Fatalf("%s: unfinished after recovery: %s", point, out)
		}
		if code, out, stderr, _ := plain.run("recover", "diagnose", "--serial", repl); code != 0 || !strings.Contains(out, "(primary, active) belongs to "+user) || !strings.Contains(out, "No problem found.") {
			ts.Fatalf("%s: keydesk recover diagnose: exit %d\n%s%s", point, code, out, stderr)
		}
		ts.Logf("%-34s the same command again; key %s lost once, replacement %s active, escrowed, the pass redeems", point, lost, repl)
	}
}

// redeemPass redeems a temporary access pass at the script's registry.
func redeemPass(ts *testscript.TestScript, r *scriptRegistry, point, pass string) {
	body, _ := json.Marshal(map[string]string{"pass": pass})
	req, err := http.NewRequest("POST", r.proc.URL+"/v1/access-passes/redeem", bytes.NewReader(body))
	ts.Check(err)
	req.Header.Set("Authorization", "Bearer "+r.token)
	req.Header.Set("Idempotency-Key", "redeem-"+point)
	req.Header.Set("Content-Type", "application/json")
	res, err := http.DefaultClient.Do(req)
	ts.Check(err)
	res.Body.Close()
	if res.StatusCode/100 != 2 {
		ts.Fatalf("%s: redeeming the pass the second run showed: status %d", point, res.StatusCode)
	}
}

// cmdCrashRestore kills a real `keydesk restore FILE` process with SIGKILL
// at the restore's durable write (the import into the registry, one
// transaction), before and after, and checks that running the same
// command again recovers: "crash-restore".
//
// A practice key is enrolled in the script's registry and the
// organisation exported to the helpdesk. Each run then gets a new, empty
// keydesk-registry process (the desk logs in to it): a traced restore
// must pass every point internal/crashpoint declares for it
// (RestorePoints); for each point the restore runs armed, stops there and
// is killed, and the admin runs the same command again. Afterwards the
// restored registry must hold the one user and the key, active, with its
// escrow, once; keydesk-registry audit verify must pass on its state.
func cmdCrashRestore(ts *testscript.TestScript, neg bool, args []string) {
	if neg || len(args) != 0 {
		ts.Fatalf("usage: crash-restore")
	}
	r := scriptReg(ts)
	ctx := context.Background()
	const serial = "31000001"
	enrolPractice(ts, "restored", "Re Stored")
	storeIdentity(ts, r)
	plain := crashRun{ts: ts, env: crashEnv(ts)}
	if code, out, stderr, _ := plain.run("backup", "export", "--out", "org.age", "--recipient", r.settings.HelpdeskRecipients[0]); code != 0 {
		ts.Fatalf("keydesk backup export: exit %d\n%s%s", code, out, stderr)
	}
	// empty starts an empty registry, logs the desk in to it, and returns
	// an admin client of it and its state dir.
	empty := func(name string) (*client.Client, string) {
		state := ts.MkAbs("restore-" + name)
		tok, err := regtest.Token(registryBin, state, "admin", "restorer", "")
		ts.Check(err)
		p, err := regtest.Start(registryBin, state, "--practice")
		ts.Check(err)
		ts.Defer(p.Stop)
		ts.Defer(func() { secrets.New(r.service).Delete(secrets.RegistryTokenAccount(p.URL)) })
		login := crashRun{ts: ts, env: crashEnv(ts), stdin: tok + "\n"}
		if code, out, stderr, _ := login.run("login", "--registry", p.URL); code != 0 {
			ts.Fatalf("%s: keydesk login: exit %d\n%s%s", name, code, out, stderr)
		}
		c, err := client.New(p.URL, tok, client.Options{OutboxPath: filepath.Join(state, "admin-outbox.db")})
		ts.Check(err)
		ts.Defer(func() { c.Close() })
		return c, state
	}

	empty("trace")
	points := plain.traced("restore", crashpoint.RestorePoints(), "restore", "org.age")
	for _, point := range points {
		admin, state := empty(strings.ReplaceAll(point, ":", "-"))
		plain.killAt(point, "restore", "org.age")
		// The documented recovery: the same command again.
		if code, out, stderr, _ := plain.run("restore", "org.age"); code != 0 || !strings.Contains(out, "restored organisation bundle: 1 user, 1 key") {
			ts.Fatalf("%s: keydesk restore again: exit %d\n%s%s", point, code, out, stderr)
		}
		if us, _, err := admin.Users(ctx, "", 100); err != nil || len(us) != 1 || us[0].ExternalID != "restored" {
			ts.Fatalf("%s: the restored registry holds %d users: %v", point, len(us), err)
		}
		kd, err := admin.KeyBySerial(ctx, serial)
		if err != nil || kd.Status != registry.KeyActive || len(kd.FIDO2) != 1 || len(kd.PIV) != 1 {
			ts.Fatalf("%s: restored key: %+v, %v", point, kd, err)
		}
		blob, err := admin.Escrow(ctx, kd.ID, "piv")
		ts.Check(err)
		if sec, err := escrow.Open(blob.Blob, r.identity); err != nil || strconv.FormatUint(uint64(sec.Serial), 10) != serial {
			ts.Fatalf("%s: the restored escrow does not open for key %s: %v", point, serial, err)
		}
		if o, err := regtest.AuditVerify(registryBin, state); err != nil {
			ts.Fatalf("%s: audit verify of the restored registry: %v: %s", point, err, o)
		}
		ts.Logf("%-34s the same command again; 1 user, key %s active with its escrow, audit verify ok", point, serial)
	}
}
