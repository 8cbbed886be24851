package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"

	"github.com/keydesk/keydesk/app/cli/keyview"
	"github.com/keydesk/keydesk/app/keys"
	"github.com/keydesk/keydesk/device"
	"github.com/keydesk/keydesk/device/discover"
	"github.com/keydesk/keydesk/device/fidokey"
	"github.com/keydesk/keydesk/device/pcsc"
	"github.com/keydesk/keydesk/device/virtual/sim"
	"github.com/keydesk/keydesk/internal/buildinfo"
)

// statusCall is a command line this program answers itself: `version`,
// or `piv status` or `fido status` with only the flags below. Every other
// command line, and any of these that fails, is keydesk-cli's: it prints
// the same output (both print through app/cli/keyview) and owns every
// message, hint and exit code other than success.
type statusCall struct {
	app      string // "version", "piv" or "fido"
	json     bool
	practice bool
	simDir   string
	serial   uint32
}

// parseStatus reads args as app/cli's command tree would for the command
// lines statusCall covers: the words, then --json, --practice,
// --serial N and --sim-dir DIR (each also as --flag=value where it takes
// one) anywhere after the first word, the last of a repeated flag winning.
// ok is false for anything else, such as help, another flag or a value
// keydesk-cli would refuse.
func parseStatus(args []string, getenv func(string) string) (c statusCall, ok bool) {
	if len(args) == 1 && (args[0] == "version" || args[0] == "--version" || args[0] == "-version") {
		return statusCall{app: "version"}, true
	}
	c = statusCall{practice: getenv("KEYDESK_PRACTICE") == "1"}
	var words []string
	for i := 0; i < len(args); i++ {
		a := args[i]
		name, val, hasVal := strings.Cut(a, "=")
		takesVal := name == "--serial" || name == "--sim-dir"
		if takesVal && !hasVal {
			if i+1 >= len(args) {
				return c, false
			}
			i++
			val = args[i]
		}
		switch {
		case !strings.HasPrefix(a, "-"):
			words = append(words, a)
		case a == "--json":
			c.json = true
		case a == "--practice":
			c.practice = true
		case name == "--sim-dir" && val != "":
			c.simDir = val
		case name == "--serial":
			// Decimal as written; pflag would read 010 as octal.
			n, err := strconv.ParseUint(val, 10, 32)
			if err != nil || strconv.FormatUint(n, 10) != val {
				return c, false
			}
			c.serial = uint32(n)
		default:
			return c, false
		}
	}
	if len(words) != 2 || words[1] != "status" || (words[0] != "piv" && words[0] != "fido") {
		return c, false
	}
	c.app = words[0]
	if c.simDir == "" {
		c.simDir = sim.DefaultStateDir()
	}
	return c, true
}

// fidoRead is a FIDO device's status as read with its serial
// (fidokey's InfoStatus).
type fidoRead struct {
	st  device.FIDOStatus
	err error
}

// answered runs args when they are a statusCall and it succeeds, writing
// the output to w; false (nothing written) leaves the command line to
// keydesk-cli.
func answered(args []string, w io.Writer) bool {
	c, ok := parseStatus(args, os.Getenv)
	if !ok {
		return false
	}
	var out bytes.Buffer
	if err := c.run(context.Background(), &out); err != nil {
		return false
	}
	_, err := w.Write(out.Bytes())
	return err == nil
}

// run is app/cli's `version`, `piv status` and `fido status` (pivSub,
// fidoSub): the key found through the one interface the command uses,
// its status read in one session. A FIDO key's status is read in the
// session that reads its serial (fidokey's InfoStatus, without libfido2);
// keydesk-cli reads it through libfido2 (TestStatusSameAsCLI holds the
// two to the same output).
func (c statusCall) run(ctx context.Context, w io.Writer) error {
	if c.app == "version" {
		_, err := fmt.Fprintln(w, buildinfo.String("keydesk"))
		return err
	}
	// One PC/SC context for the listing, the serial and the status.
	pcsc.ShareContext()
	// A FIDO device's status is read with its serial, in one session.
	read := map[string]fidoRead{}
	svc, err := keys.New(keys.Config{Practice: c.practice, SimDir: c.simDir,
		FIDOInfo: func(ctx context.Context, path string) (uint32, device.Version, bool, error) {
			serial, fw, ok, st, stErr, err := fidokey.Open(path).InfoStatus(ctx)
			read[path] = fidoRead{st, stErr}
			return serial, fw, ok, err
		}})
	if err != nil {
		return err
	}
	only := discover.PCSC
	if c.app == "fido" {
		only = discover.FIDO
	}
	k, err := svc.FindVia(ctx, c.serial, only)
	if err != nil {
		return err
	}
	if c.app == "piv" {
		card, err := svc.PIV(k)
		if err != nil {
			return err
		}
		st, err := card.Status(ctx)
		if err != nil {
			return err
		}
		if c.json {
			return keyview.JSON(w, keyview.ViewPIV(st))
		}
		keyview.PrintReport(w, &keys.Report{Key: k, PIV: st})
		return nil
	}
	if _, err := svc.FIDO(k); err != nil {
		return err
	}
	r, ok := read[k.FIDOPath]
	if !ok {
		return errors.New("no status read with the serial")
	}
	if r.err != nil {
		return r.err
	}
	st := r.st
	if c.json {
		return keyview.JSON(w, keyview.ViewFIDO(&st))
	}
	keyview.PrintReport(w, &keys.Report{Key: k, FIDO: &st})
	return nil
}
