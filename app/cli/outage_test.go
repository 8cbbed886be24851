package cli_test

import (
	"context"
	"fmt"
	"io"
	"net/url"
	"os/exec"
	"strings"

	"github.com/rogpeppe/go-internal/testscript"

	"github.com/keydesk/keydesk/app/enrol"
	"github.com/keydesk/keydesk/registry"
	"github.com/keydesk/keydesk/registry/regtest"
)

func init() { workflowCmds["outage"] = cmdOutage }

// cmdOutage stops the script's keydesk-registry process in the middle of
// a real `keydesk enrol --user` (a .registry script):
//
//	outage enrol ride USER SERIAL [ARG...]   the registry is SIGKILLed once
//	    enrolment has looked the user and the key up and asks for the PINs
//	    (so everything after them — setting the key up, registering it,
//	    storing its escrow, activating it — meets a registry that is
//	    down); it is restarted on the same state and port as soon as
//	    keydesk says it waits for it. keydesk must finish the enrolment.
//	outage enrol stay USER SERIAL [ARG...]   the same, but the registry
//	    stays down until keydesk has given up.
//	outage resume ride SERIAL [ARG...]   the same for a real `keydesk
//	    enrol --resume --serial SERIAL`: the registry is SIGKILLed once
//	    keydesk asks for the key's PINs again, and restarted when keydesk
//	    says it waits; keydesk must finish the enrolment.
//	outage restart                  start the registry again (after stay)
//	outage check SERIAL             the key is active in the registry with
//	    its escrow stored, the only key of its user
//
// enrol prints keydesk's stdout and stderr as its own, and "exit N".
// The PINs are typed on stdin only after the registry is down, so the
// order of events does not depend on timing: keydesk waits for them.
func cmdOutage(ts *testscript.TestScript, neg bool, args []string) {
	r := scriptReg(ts)
	if r.proc == nil {
		ts.Fatalf("outage needs a registry process: a .registry script")
	}
	switch {
	case len(args) >= 4 && args[0] == "enrol" && (args[1] == "ride" || args[1] == "stay"):
		serial := args[3]
		code, stdout, stderr := outageRun(ts, r, args[1] == "ride",
			append([]string{"enrol", "--user", args[2], "--name", "Outage " + args[2], "--serial", serial, "--no-backup", "--wait", "20s"}, args[4:]...),
			"New FIDO2 PIN for", outagePINs(serial))
		fmt.Fprint(ts.Stdout(), stdout)
		fmt.Fprintf(ts.Stdout(), "exit %d\n", code)
		fmt.Fprint(ts.Stderr(), stderr)
		if (code != 0) != neg {
			ts.Fatalf("keydesk enrol: exit %d", code)
		}
	case len(args) >= 3 && args[0] == "resume" && args[1] == "ride":
		code, stdout, stderr := outageRun(ts, r, true, append([]string{"enrol", "--resume", "--serial", args[2], "--wait", "20s"}, args[3:]...),
			"FIDO2 PIN of key "+args[2], outagePINs(args[2]))
		fmt.Fprint(ts.Stdout(), stdout)
		fmt.Fprintf(ts.Stdout(), "exit %d\n", code)
		fmt.Fprint(ts.Stderr(), stderr)
		if (code != 0) != neg {
			ts.Fatalf("keydesk enrol --resume: exit %d", code)
		}
	case len(args) == 1 && args[0] == "restart":
		restartRegistry(ts, r)
	case len(args) == 2 && args[0] == "check":
		c, done := r.client(ts)
		defer done()
		ctx := context.Background()
		kd, err := c.KeyBySerial(ctx, args[1])
		ts.Check(err)
		if kd.Status != registry.KeyActive {
			ts.Fatalf("key %s is %s", args[1], kd.Status)
		}
		if _, err := c.Escrow(ctx, kd.ID, enrol.EscrowKind); err != nil {
			ts.Fatalf("escrow of key %s: %v", args[1], err)
		}
		ks, err := c.UserKeys(ctx, kd.OwnerID)
		ts.Check(err)
		if len(ks) != 1 || len(kd.FIDO2) != 1 || len(kd.PIV) != 1 {
			ts.Fatalf("key %s: its user holds %d keys; it has %d FIDO2 credentials and %d PIV slots", args[1], len(ks), len(kd.FIDO2), len(kd.PIV))
		}
		fmt.Fprintf(ts.Stdout(), "key %s active, escrow stored\n", args[1])
	default:
		ts.Fatalf("usage: outage enrol ride|stay USER SERIAL [ARG...] | outage resume ride SERIAL [ARG...] | outage restart | outage check SERIAL")
	}
}

// restartRegistry starts the script's registry again on its state and port.
func restartRegistry(ts *testscript.TestScript, r *scriptRegistry) {
	u, err := url.Parse(r.proc.URL)
	ts.Check(err)
	p, err := regtest.Start(registryBin, r.state, "--practice", "--listen", u.Host)
	ts.Check(err)
	ts.Defer(p.Stop)
	r.proc = p
}

// outagePINs are the FIDO2 and PIV PINs of key serial in an outage
// script, one a line.
func outagePINs(serial string) string {
	return fmt.Sprintf("fido-outage-%s\n%s\n", serial, "2"+serial[len(serial)-7:])
}

// outageRun runs keydesk with args; the registry is SIGKILLed when
// keydesk's stderr shows prompt (a PIN prompt, where keydesk waits), and
// then pins are typed. With ride it is restarted once keydesk says it
// waits for it.
func outageRun(ts *testscript.TestScript, r *scriptRegistry, ride bool, args []string, prompt, pins string) (code int, stdout, stderr string) {
	bin, err := exec.LookPath("keydesk")
	ts.Check(err)
	cmd := exec.Command(bin, args...)
	cmd.Env, cmd.Dir = crashEnv(ts), ts.Getenv("WORK")
	in, err := cmd.StdinPipe()
	ts.Check(err)
	var out strings.Builder
	cmd.Stdout = &out
	pr, err := cmd.StderrPipe()
	ts.Check(err)
	ts.Check(cmd.Start())
	var errb strings.Builder
	killed, restarted := false, false
	buf := make([]byte, 4096)
	for {
		n, rerr := pr.Read(buf)
		errb.Write(buf[:n])
		text := errb.String()
		// The PIN prompt has no newline: keydesk waits for the answer.
		if !killed && strings.Contains(text, prompt) {
			killed = true
			r.proc.Kill()
			fmt.Fprint(in, pins)
			in.Close()
		}
		if ride && killed && !restarted && strings.Contains(text, "could not be reached; trying again in") {
			restarted = true
			restartRegistry(ts, r)
		}
		if rerr == io.EOF {
			break
		}
		ts.Check(rerr)
	}
	err = cmd.Wait()
	if _, ok := err.(*exec.ExitError); err != nil && !ok {
		ts.Fatalf("keydesk %s: %v", strings.Join(args, " "), err)
	}
	if !killed {
		ts.Fatalf("keydesk %s never asked for the PINs:\n%s", args[0], errb.String())
	}
	if ride && !restarted {
		ts.Fatalf("keydesk %s never said it waits for the registry:\n%s", args[0], errb.String())
	}
	return cmd.ProcessState.ExitCode(), out.String(), errb.String()
}
