package cli

import (
	"context"
	"encoding/base64"
	"encoding/hex"
	"fmt"
	"strconv"
	"time"

	"github.com/spf13/cobra"

	"github.com/keydesk/keydesk/app/keys"
	"github.com/keydesk/keydesk/device"
	"github.com/keydesk/keydesk/device/discover"
	"github.com/keydesk/keydesk/device/fidokey"
)

// fidoPIN is how keydesk names the FIDO2 PIN in prompts.
const fidoPIN = "FIDO2 PIN"

// fidoCmd is "keydesk fido": one command per FIDO2 operation.
func fidoCmd(e *env) *cobra.Command {
	return group(e, "fido", "FIDO2: status, PIN, minimum PIN length, credentials, reset", "fido needs a subcommand",
		fidoSub(e, "status", "PIN state and tries, options, minimum PIN length, free credential slots", nargs(0, ""), (*fidoSession).status),
		fidoSub(e, "set-pin", "sets the first PIN (asks for it)", nil, (*fidoSession).setPIN),
		fidoSub(e, "change-pin", "asks for the current and the new PIN", nil, (*fidoSession).changePIN),
		fidoSub(e, "set-min-pin-length N", "raises the minimum PIN length (asks for the PIN)", nargs(1, ""), (*fidoSession).setMinPINLength),
		fidoSub(e, "force-pin-change", "the key demands a new PIN before its next use (asks for the PIN)", nil, (*fidoSession).forcePINChange),
		fidoSub(e, "credentials", "lists discoverable credentials (asks for the PIN)", nil, (*fidoSession).credentials),
		fidoSub(e, "delete-credential ID", "deletes one, by the id \"credentials\" prints (destructive)", nargs(1, ""), (*fidoSession).deleteCredential),
		fidoSub(e, "reset", "deletes every FIDO2 credential and the PIN (destructive; remove and reinsert the key when asked, then touch it)", nargs(0, ""), (*fidoSession).reset),
	)
}

// fidoSession is one fido subcommand's key, its FIDO2 device and the
// prompts it answers.
type fidoSession struct {
	e   *env
	svc *keys.Service
	k   device.Key
	dev *fidokey.Device
	cb  device.Callbacks
}

// fidoSub is one fido subcommand: it finds the key (over FIDO only) and
// runs fn on its FIDO2 device.
func fidoSub(e *env, use, short string, args cobra.PositionalArgs, fn func(*fidoSession, []string) error) *cobra.Command {
	return &cobra.Command{Use: use, Short: short, Args: args, RunE: func(_ *cobra.Command, args []string) error {
		k, err := e.keyVia(discover.FIDO)
		if err != nil {
			return err
		}
		svc, _ := e.service()
		dev, err := svc.FIDO(k)
		if err != nil {
			return err
		}
		cb := device.Callbacks{
			PIN: func(context.Context, string) (string, error) { return e.prompt.secret(fidoPIN) },
			Touch: func(context.Context) {
				fmt.Fprintf(e.stderr, "Touch key %d now (its light is blinking).\n", k.Serial)
			},
		}
		return fn(&fidoSession{e: e, svc: svc, k: k, dev: dev, cb: cb}, args)
	}}
}

func (s *fidoSession) status([]string) error {
	st, err := s.dev.Status(s.e.ctx)
	if err != nil {
		return err
	}
	if s.e.json {
		return s.e.printJSON(viewFIDO(&st))
	}
	printReport(s.e, &keys.Report{Key: s.k, FIDO: &st})
	return nil
}

func (s *fidoSession) setPIN([]string) error {
	pin, err := s.e.prompt.newSecret("New " + fidoPIN)
	if err != nil {
		return err
	}
	if err := s.dev.SetPIN(s.e.ctx, pin); err != nil {
		return err
	}
	fmt.Fprintf(s.e.stdout, "FIDO2 PIN set on key %d.\n", s.k.Serial)
	return nil
}

func (s *fidoSession) changePIN([]string) error {
	old, err := s.e.prompt.secret("Current " + fidoPIN)
	if err != nil {
		return err
	}
	nw, err := s.e.prompt.newSecret("New " + fidoPIN)
	if err != nil {
		return err
	}
	if err := s.dev.ChangePIN(s.e.ctx, old, nw); err != nil {
		return err
	}
	fmt.Fprintf(s.e.stdout, "FIDO2 PIN changed on key %d.\n", s.k.Serial)
	return nil
}

func (s *fidoSession) setMinPINLength(pos []string) error {
	n, err := strconv.Atoi(pos[0])
	if err != nil || n < 4 || n > 63 {
		return usagef("the minimum PIN length is a number from 4 to 63")
	}
	pin, err := s.e.prompt.secret(fidoPIN)
	if err != nil {
		return err
	}
	if err := s.dev.SetMinPINLength(s.e.ctx, pin, n); err != nil {
		return err
	}
	fmt.Fprintf(s.e.stdout, "Key %d now needs FIDO2 PINs of at least %d characters. It can only be raised again, or cleared by a reset.\n", s.k.Serial, n)
	return nil
}

func (s *fidoSession) forcePINChange([]string) error {
	pin, err := s.e.prompt.secret(fidoPIN)
	if err != nil {
		return err
	}
	if err := s.dev.ForcePINChange(s.e.ctx, pin); err != nil {
		return err
	}
	fmt.Fprintf(s.e.stdout, "Key %d will ask for a new FIDO2 PIN before its next use.\n", s.k.Serial)
	return nil
}

// credView is one credential in "fido credentials".
type credView struct {
	RPID        string `json:"rp_id"`
	UserName    string `json:"user_name,omitempty"`
	DisplayName string `json:"display_name,omitempty"`
	UserID      string `json:"user_id"`
	ID          string `json:"id"`
	CredProtect int    `json:"cred_protect"`
}

func (s *fidoSession) credentials([]string) error {
	creds, err := s.dev.Credentials(s.e.ctx, s.cb)
	if err != nil {
		return err
	}
	out := []credView{}
	for _, c := range creds {
		out = append(out, credView{c.RPID, c.UserName, c.DisplayName, base64.RawURLEncoding.EncodeToString(c.UserID), base64.RawURLEncoding.EncodeToString(c.ID), c.CredProtect})
	}
	if s.e.json {
		return s.e.printJSON(struct {
			Credentials []credView `json:"credentials"`
		}{out})
	}
	if len(out) == 0 {
		fmt.Fprintf(s.e.stdout, "Key %d holds no discoverable credentials.\n", s.k.Serial)
	}
	for _, c := range out {
		fmt.Fprintf(s.e.stdout, "%-24s %-20s credProtect %d  id %s\n", c.RPID, c.UserName, c.CredProtect, c.ID)
	}
	return nil
}

func (s *fidoSession) deleteCredential(pos []string) error {
	id, err := base64.RawURLEncoding.DecodeString(pos[0])
	if err != nil {
		if id, err = hex.DecodeString(pos[0]); err != nil {
			return usagef("credential id: expected the base64url id that 'keydesk fido credentials' prints")
		}
	}
	if err := s.e.confirm(s.k, "Deleting a FIDO2 credential (sign-ins with it stop working)"); err != nil {
		return err
	}
	if err := s.dev.DeleteCredential(s.e.ctx, s.cb, id); err != nil {
		return err
	}
	fmt.Fprintf(s.e.stdout, "Credential deleted from key %d. Revoke it in the registry too, if it was registered.\n", s.k.Serial)
	return nil
}

func (s *fidoSession) reset([]string) error {
	if err := s.e.confirm(s.k, "Resetting FIDO2 (it deletes every FIDO2 credential and the PIN)"); err != nil {
		return err
	}
	k, svc := s.k, s.svc
	s.cb.Reinsert = func(ctx context.Context) error {
		if s.e.practice {
			// keydesk-sim's hands, as for recover fido2-reset.
			return s.e.reinsert(k.Serial)(ctx)
		}
		fmt.Fprintf(s.e.stderr, "Remove key %d, then insert it again: a YubiKey accepts a reset only in the first seconds after it is plugged in.\n", k.Serial)
		wctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
		defer cancel()
		_, err := svc.WaitReturn(wctx, k.Serial)
		return err
	}
	if err := s.dev.Reset(s.e.ctx, s.cb, k.Serial); err != nil {
		return err
	}
	fmt.Fprintf(s.e.stdout, "FIDO2 on key %d is reset: no credentials, no PIN. Its registered FIDO2 credentials no longer work; revoke them in the registry.\n", k.Serial)
	return nil
}
