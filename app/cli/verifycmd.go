package cli

import (
	"context"
	"flag"
	"fmt"
	"strings"

	"github.com/keydesk/keydesk/app/enrol"
	"github.com/keydesk/keydesk/app/keys"
	"github.com/keydesk/keydesk/app/verify"
	"github.com/keydesk/keydesk/device"
	"github.com/keydesk/keydesk/device/fidokey"
)

// wholeKey finds the key the invocation is about with both of its
// interfaces: discovery merges a key's FIDO interface with its smart-card
// one by the serial the FIDO interface reports. The service it returns is
// used for this command only.
func (e *env) wholeKey() (*keys.Service, device.Key, error) {
	svc, err := keys.New(keys.Config{Practice: e.practice, SimDir: e.simDir, FIDOInfo: func(ctx context.Context, path string) (uint32, device.Version, bool, error) {
		return fidokey.Open(path).Info(ctx)
	}})
	if err != nil {
		return nil, device.Key{}, err
	}
	k, err := svc.Find(e.ctx, uint32(e.serial))
	return svc, k, err
}

var verifyUser string

func verifyFlags(_ *env, fs *flag.FlagSet) {
	fs.StringVar(&verifyUser, "user", "", "who the key should belong to (external id or registry id)")
}

// runVerify checks the attached key against the registry: a fresh FIDO2
// assertion and PIV signature over registry challenges, the key's state and
// any upcoming migration. Exit code 7 when a check fails.
func runVerify(e *env, _ *flag.FlagSet, args []string) error {
	if len(args) > 0 {
		return usagef("verify takes no arguments; choose the key with --serial")
	}
	svc, k, err := e.wholeKey()
	if err != nil {
		return err
	}
	conn, _, err := e.openRegistry()
	if err != nil {
		return err
	}
	defer conn.Close()
	jp, _ := enrol.DefaultJournalPath() // none: nothing to store from it
	r, err := verify.Run(e.ctx, k, verify.Options{Registry: conn.Client, Keys: svc, User: verifyUser, Callbacks: e.callbacks(k), EnrolJournal: jp})
	if err != nil {
		return err
	}
	if r.Escrow != "" {
		fmt.Fprintln(e.stderr, r.Escrow)
	}
	if e.json {
		if err := e.printJSON(r); err != nil {
			return err
		}
	} else {
		printVerifyReport(e, r)
	}
	if !r.OK {
		return errChecksFailed
	}
	return nil
}

// errChecksFailed: the report was printed and at least one check failed.
var errChecksFailed = checkError{}

type checkError struct{}

func (checkError) Error() string { return "at least one check failed" }

func printVerifyReport(e *env, r *verify.Report) {
	who := r.ExternalID
	if who == "" {
		who = "nobody the registry knows"
	}
	fmt.Fprintf(e.stdout, "Key %d of %s\n", r.Serial, who)
	for _, c := range r.Checks {
		text := c.Detail
		if c.Status == verify.Fail {
			text = c.Cause
		}
		fmt.Fprintf(e.stdout, "  %-4s  %-18s  %s\n", strings.ToUpper(string(c.Status)), c.Name, text)
		if c.Mismatch != "" {
			fmt.Fprintf(e.stdout, "        %-18s  mismatch: %s\n", "", c.Mismatch)
		}
		if c.Next != "" && c.Status != verify.Pass {
			fmt.Fprintf(e.stdout, "        %-18s  next: %s\n", "", c.Next)
		}
	}
	if r.OK {
		fmt.Fprintln(e.stdout, "All checks passed.")
	} else {
		fmt.Fprintf(e.stdout, "%d check(s) failed.\n", len(r.Failed()))
	}
}

// callbacks asks for PINs on the terminal (or stdin) and says when to touch.
func (e *env) callbacks(k device.Key) device.Callbacks {
	return device.Callbacks{
		PIN: func(_ context.Context, what string) (string, error) { return e.prompt.secret(what) },
		Touch: func(context.Context) {
			fmt.Fprintf(e.stderr, "Touch key %d now (its light is blinking).\n", k.Serial)
		},
	}
}
