package cli_test

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/rogpeppe/go-internal/testscript"

	"github.com/keydesk/keydesk/app/secrets"
	"github.com/keydesk/keydesk/device/virtual/sim"
	"github.com/keydesk/keydesk/internal/crashpoint"
	"github.com/keydesk/keydesk/registry"
	"github.com/keydesk/keydesk/registry/client"
)

// crashEnv is the environment of a script's keydesk commands, for the
// processes cmdCrashEnrol starts itself.
func crashEnv(ts *testscript.TestScript, extra ...string) []string {
	env := os.Environ()
	for _, name := range []string{"PATH", "HOME", "TMPDIR", "WORK", "XDG_STATE_HOME", "XDG_CONFIG_HOME", "XDG_DATA_HOME",
		"KEYDESK_PRACTICE", "DBUS_SESSION_BUS_ADDRESS", secrets.ServiceEnv, "REGISTRY"} {
		env = append(env, name+"="+ts.Getenv(name))
	}
	return append(env, extra...)
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
	simDir := filepath.Join(ts.Getenv("XDG_STATE_HOME"), "keydesk", "sim")
	reader0 := uint32(31000001)
	fresh := func() uint32 {
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
	pins := func(serial uint32) string { return fmt.Sprintf("fido-pin-%d\n%d\n", serial, 10000000+serial%90000000) }
	enrolArgs := func(user string, serial uint32) []string {
		return []string{"enrol", "--user", user, "--name", "Crash " + user, "--serial", strconv.Itoa(int(serial)), "--no-backup", "--wait", "20s"}
	}

	// The trace: every declared point is passed, before and after.
	serial := fresh()
	code, _, stderr, _ := crashRun{ts: ts, env: crashEnv(ts, crashpoint.EnvVar+"=trace"), stdin: pins(serial)}.run(enrolArgs("trace", serial)...)
	if code != 0 {
		ts.Fatalf("traced enrolment: exit %d\n%s", code, stderr)
	}
	var points []string
	for _, l := range strings.Split(stderr, "\n") {
		if m := traceLine.FindStringSubmatch(l); m != nil && !slices.Contains(points, m[1]+":"+m[2]) {
			points = append(points, m[1]+":"+m[2])
		}
	}
	for _, p := range crashpoint.Points() {
		for _, w := range []string{"before", "after"} {
			if !slices.Contains(points, p+":"+w) {
				ts.Fatalf("the traced enrolment never passed crash point %s:%s; passed: %v", p, w, points)
			}
		}
	}
	ts.Logf("%d crash points", len(points))

	for i, point := range points {
		serial := fresh()
		user := fmt.Sprintf("crash%02d", i)
		sstr := strconv.Itoa(int(serial))
		start := time.Now()
		run := crashRun{ts: ts, env: crashEnv(ts, crashpoint.EnvVar+"="+point), stdin: pins(serial), marker: "keydesk crashpoint: " + point + " reached"}
		if _, _, stderr, killed := run.run(enrolArgs(user, serial)...); !killed {
			ts.Fatalf("%s: keydesk enrol never reached the point\n%s", point, stderr)
		}
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
		how := ""
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
			if code, out, stderr, _ := plain.run("enrol", "--resume", "--serial", sstr); code != 0 {
				ts.Fatalf("%s: keydesk enrol --resume --serial %s (stage %s): exit %d\n%s%s", point, sstr, stage, code, out, stderr)
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
		ts.Logf("%-34s stage %-10q %-18s key %s active, escrowed, once (%.1fs)", point, stage, how, sstr, time.Since(start).Seconds())
	}
	// One user per point and the traced one, each with one key.
	if us, _, err := admin.Users(ctx, "", 1000); err != nil || len(us) != len(points)+1 {
		ts.Fatalf("%d users in the registry, want %d: %v", len(us), len(points)+1, err)
	}
	if pend, err := admin.Entries(ctx, client.Pending); err != nil || len(pend) != 0 {
		ts.Fatalf("admin outbox: %d pending, %v", len(pend), err)
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
	enrol := crashRun{ts: ts, env: crashEnv(ts), stdin: "fido-pin-31000001\n31000001\n"}
	if code, out, stderr, _ := enrol.run("enrol", "--user", "rec", "--name", "Rec Overy", "--serial", serial, "--no-backup"); code != 0 {
		ts.Fatalf("enrolling: exit %d\n%s%s", code, out, stderr)
	}
	resets := 0
	reset := func(extra ...string) crashRun {
		resets++
		return crashRun{ts: ts, env: crashEnv(ts, extra...), stdin: fmt.Sprintf("fido-reset-%02d\n", resets)}
	}
	resetArgs := []string{"recover", "fido2-reset", "--serial", serial, "--yes"}

	code, _, stderr, _ := reset(crashpoint.EnvVar + "=trace").run(resetArgs...)
	if code != 0 {
		ts.Fatalf("traced reset: exit %d\n%s", code, stderr)
	}
	var points []string
	for _, l := range strings.Split(stderr, "\n") {
		if m := traceLine.FindStringSubmatch(l); m != nil && strings.HasPrefix(m[1], "recover-") && !slices.Contains(points, m[1]+":"+m[2]) {
			points = append(points, m[1]+":"+m[2])
		}
	}
	for _, p := range crashpoint.RecoveryPoints() {
		for _, w := range []string{"before", "after"} {
			if !slices.Contains(points, p+":"+w) {
				ts.Fatalf("the traced reset never passed crash point %s:%s; passed: %v", p, w, points)
			}
		}
	}
	ts.Logf("%d crash points", len(points))
	for _, point := range points {
		run := reset(crashpoint.EnvVar + "=" + point)
		run.marker = "keydesk crashpoint: " + point + " reached"
		if _, _, stderr, killed := run.run(resetArgs...); !killed {
			ts.Fatalf("%s: keydesk recover fido2-reset never reached the point\n%s", point, stderr)
		}
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
