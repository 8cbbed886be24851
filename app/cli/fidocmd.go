package cli

import (
	"context"
	"encoding/base64"
	"encoding/hex"
	"flag"
	"fmt"
	"strconv"
	"time"

	"github.com/keydesk/keydesk/app/keys"
	"github.com/keydesk/keydesk/device"
	"github.com/keydesk/keydesk/device/discover"
)

const fidoUsage = `usage: keydesk fido SUBCOMMAND [flags]

  status                          PIN state and tries, options, minimum PIN length, free credential slots
  set-pin                         sets the first PIN (asks for it)
  change-pin                      asks for the current and the new PIN
  set-min-pin-length N            raises the minimum PIN length (asks for the PIN)
  force-pin-change                the key demands a new PIN before its next use (asks for the PIN)
  credentials                     lists discoverable credentials (asks for the PIN)
  delete-credential ID            deletes one, by the id "credentials" prints (destructive)
  reset                           deletes every FIDO2 credential and the PIN (destructive; remove and
                                  reinsert the key when asked, then touch it)
`

// fidoPIN is how keydesk names the FIDO2 PIN in prompts.
const fidoPIN = "FIDO2 PIN"

func runFIDO(e *env, _ *flag.FlagSet, args []string) error {
	if len(args) == 0 {
		fmt.Fprint(e.stderr, fidoUsage)
		return usagef("fido needs a subcommand")
	}
	sub, args := args[0], args[1:]
	fs := flag.NewFlagSet("keydesk fido "+sub, flag.ContinueOnError)
	fs.SetOutput(e.stderr)
	fs.BoolVar(&e.json, "json", e.json, "print JSON")
	fs.UintVar(&e.serial, "serial", e.serial, "the key to act on")
	fs.BoolVar(&e.yes, "yes", e.yes, "answer yes to confirmations")
	fs.BoolVar(&e.practice, "practice", e.practice, "use keydesk-sim's virtual keys")
	fs.StringVar(&e.simDir, "sim-dir", e.simDir, "keydesk-sim's state directory")
	pos, err := parseInterspersed(fs, args)
	if err != nil {
		return usagef("%v", err)
	}
	nargs := func(n int) error {
		if len(pos) != n {
			return usagef("fido %s takes %d argument(s)", sub, n)
		}
		return nil
	}
	k, err := e.keyVia(discover.FIDO)
	if err != nil {
		return err
	}
	svc, _ := e.service()
	dev, err := svc.FIDO(k)
	if err != nil {
		return err
	}
	ctx := e.ctx
	cb := device.Callbacks{
		PIN: func(context.Context, string) (string, error) { return e.prompt.secret(fidoPIN) },
		Touch: func(context.Context) {
			fmt.Fprintf(e.stderr, "Touch key %d now (its light is blinking).\n", k.Serial)
		},
	}
	switch sub {
	case "status":
		if err := nargs(0); err != nil {
			return err
		}
		st, err := dev.Status(ctx)
		if err != nil {
			return err
		}
		if e.json {
			return e.printJSON(viewFIDO(&st))
		}
		printReport(e, &keys.Report{Key: k, FIDO: &st})
		return nil
	case "set-pin":
		pin, err := e.prompt.newSecret("New " + fidoPIN)
		if err != nil {
			return err
		}
		if err := dev.SetPIN(ctx, pin); err != nil {
			return err
		}
		fmt.Fprintf(e.stdout, "FIDO2 PIN set on key %d.\n", k.Serial)
		return nil
	case "change-pin":
		old, err := e.prompt.secret("Current " + fidoPIN)
		if err != nil {
			return err
		}
		nw, err := e.prompt.newSecret("New " + fidoPIN)
		if err != nil {
			return err
		}
		if err := dev.ChangePIN(ctx, old, nw); err != nil {
			return err
		}
		fmt.Fprintf(e.stdout, "FIDO2 PIN changed on key %d.\n", k.Serial)
		return nil
	case "set-min-pin-length":
		if err := nargs(1); err != nil {
			return err
		}
		n, err := strconv.Atoi(pos[0])
		if err != nil || n < 4 || n > 63 {
			return usagef("the minimum PIN length is a number from 4 to 63")
		}
		pin, err := e.prompt.secret(fidoPIN)
		if err != nil {
			return err
		}
		if err := dev.SetMinPINLength(ctx, pin, n); err != nil {
			return err
		}
		fmt.Fprintf(e.stdout, "Key %d now needs FIDO2 PINs of at least %d characters. It can only be raised again, or cleared by a reset.\n", k.Serial, n)
		return nil
	case "force-pin-change":
		pin, err := e.prompt.secret(fidoPIN)
		if err != nil {
			return err
		}
		if err := dev.ForcePINChange(ctx, pin); err != nil {
			return err
		}
		fmt.Fprintf(e.stdout, "Key %d will ask for a new FIDO2 PIN before its next use.\n", k.Serial)
		return nil
	case "credentials":
		creds, err := dev.Credentials(ctx, cb)
		if err != nil {
			return err
		}
		type credView struct {
			RPID        string `json:"rp_id"`
			UserName    string `json:"user_name,omitempty"`
			DisplayName string `json:"display_name,omitempty"`
			UserID      string `json:"user_id"`
			ID          string `json:"id"`
			CredProtect int    `json:"cred_protect"`
		}
		out := []credView{}
		for _, c := range creds {
			out = append(out, credView{c.RPID, c.UserName, c.DisplayName, base64.RawURLEncoding.EncodeToString(c.UserID), base64.RawURLEncoding.EncodeToString(c.ID), c.CredProtect})
		}
		if e.json {
			return e.printJSON(struct {
				Credentials []credView `json:"credentials"`
			}{out})
		}
		if len(out) == 0 {
			fmt.Fprintf(e.stdout, "Key %d holds no discoverable credentials.\n", k.Serial)
		}
		for _, c := range out {
			fmt.Fprintf(e.stdout, "%-24s %-20s credProtect %d  id %s\n", c.RPID, c.UserName, c.CredProtect, c.ID)
		}
		return nil
	case "delete-credential":
		if err := nargs(1); err != nil {
			return err
		}
		id, err := base64.RawURLEncoding.DecodeString(pos[0])
		if err != nil {
			if id, err = hex.DecodeString(pos[0]); err != nil {
				return usagef("credential id: expected the base64url id that 'keydesk fido credentials' prints")
			}
		}
		if err := e.confirm(k, "Deleting a FIDO2 credential (sign-ins with it stop working)"); err != nil {
			return err
		}
		if err := dev.DeleteCredential(ctx, cb, id); err != nil {
			return err
		}
		fmt.Fprintf(e.stdout, "Credential deleted from key %d. Revoke it in the registry too, if it was registered.\n", k.Serial)
		return nil
	case "reset":
		if err := nargs(0); err != nil {
			return err
		}
		if err := e.confirm(k, "Resetting FIDO2 (it deletes every FIDO2 credential and the PIN)"); err != nil {
			return err
		}
		cb.Reinsert = func(ctx context.Context) error {
			if e.practice {
				// keydesk-sim's hands, as for recover fido2-reset.
				return e.reinsert(k.Serial)(ctx)
			}
			fmt.Fprintf(e.stderr, "Remove key %d, then insert it again: a YubiKey accepts a reset only in the first seconds after it is plugged in.\n", k.Serial)
			wctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
			defer cancel()
			_, err := svc.WaitReturn(wctx, k.Serial)
			return err
		}
		if err := dev.Reset(ctx, cb, k.Serial); err != nil {
			return err
		}
		fmt.Fprintf(e.stdout, "FIDO2 on key %d is reset: no credentials, no PIN. Its registered FIDO2 credentials no longer work; revoke them in the registry.\n", k.Serial)
		return nil
	}
	fmt.Fprint(e.stderr, fidoUsage)
	return usagef("unknown fido subcommand %q", sub)
}
