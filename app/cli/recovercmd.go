package cli

import (
	"filippo.io/age"
	"github.com/spf13/cobra"

	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"strconv"
	"strings"
	"time"

	"github.com/keydesk/keydesk/app/enrol"
	"github.com/keydesk/keydesk/app/escrow"
	"github.com/keydesk/keydesk/app/idp"
	"github.com/keydesk/keydesk/app/keys"
	"github.com/keydesk/keydesk/app/recover"
	"github.com/keydesk/keydesk/app/regconn"
	"github.com/keydesk/keydesk/app/secrets"
	"github.com/keydesk/keydesk/app/settings"
	"github.com/keydesk/keydesk/device"
	"github.com/keydesk/keydesk/device/virtual/sim"
	"github.com/keydesk/keydesk/registry"
)

// recoverOpts are the flags of recover lost.
type recoverOpts struct {
	breakGlass, validity string
	replace              uint
	// regWait is --registry-wait, for the replacement's enrolment.
	regWait waitFlag
}

// recoverCmd is "keydesk recover": the helpdesk's recoveries.
func recoverCmd(e *env) *cobra.Command {
	var o recoverOpts
	declare := func(fs *flag.FlagSet) {
		fs.StringVar(&o.breakGlass, "break-glass", "", "the reason to accept when it is the user's last active key (audited)")
		fs.StringVar(&o.validity, "pass-validity", "8h", "how long the temporary access pass lasts (up to 24h; empty for none)")
		fs.UintVar(&o.replace, "replace", 0, "enrol the fresh key with this serial as the replacement, now")
		fs.Var(&e.wait, "wait", "with --replace: "+waitUsage)
		fs.Var(&o.regWait, "registry-wait", "with --replace: how long the replacement's enrolment waits for a registry that cannot be reached, like 45s or 2m; 0 does not wait (default 30s)")
	}
	sub := func(use, short string, flags ...string) *cobra.Command {
		name, _, _ := strings.Cut(use, " ")
		c := &cobra.Command{Use: use, Short: short, RunE: func(_ *cobra.Command, args []string) error { return runRecover(e, name, o, args) }}
		addFlags(c, declare, flags...)
		return c
	}
	return group(e, "recover", "helpdesk: diagnose a key, unblock its PIV PIN, reset FIDO2, handle a lost key",
		"recover needs a subcommand: diagnose, piv-pin, fido2-reset, lost SERIAL, identity",
		sub("diagnose", "what is wrong with a key and its registration, and the next step"),
		sub("piv-pin", "unblock the PIV PIN with the escrowed PUK and set a new PIN"),
		sub("fido2-reset", "reset FIDO2 and register a new credential in the same registry change (destructive)"),
		sub("lost SERIAL", "mark a key lost, revoke it, and issue a temporary access pass or enrol its replacement", "break-glass", "pass-validity", "replace", "wait", "registry-wait"),
		sub("identity", "store the helpdesk's age identity (read from the terminal) in the system keyring"),
	)
}

// runRecover is the helpdesk's recovery: keydesk recover diagnose |
// piv-pin | fido2-reset | lost SERIAL | identity.
func runRecover(e *env, sub string, o recoverOpts, pos []string) error {
	if sub == "identity" {
		return recoverIdentity(e, pos)
	}
	conn, s, err := e.openRegistry()
	if err != nil {
		return err
	}
	defer conn.Close()
	// A practice desk's own identity, when it has one, opens its escrows
	// and seals a replacement's; a fault in making it matters only to
	// what needs it.
	s, src, idErr := e.helpdesk(s)
	if sub == "lost" {
		if len(pos) != 1 {
			return usagef("recover lost takes the lost key's serial: keydesk recover lost SERIAL")
		}
		if idErr != nil && o.replace != 0 {
			return idErr
		}
		return recoverLost(e, conn, s, pos[0], recover.LostOptions{BreakGlass: o.breakGlass, PassValidity: o.validity}, uint32(o.replace), o.regWait)
	}
	if len(pos) > 0 {
		return usagef("recover %s takes no arguments; choose the key with --serial", sub)
	}
	svc, k, err := e.wholeKey()
	if err != nil {
		return err
	}
	opt := recover.Options{Registry: conn.Client, Keys: svc, Callbacks: e.callbacks(k),
		Identity: func() (string, error) {
			if idErr != nil {
				return "", idErr
			}
			return identity(src)
		}}
	opt.Callbacks.Reinsert = e.reinsert(k.Serial)
	opt.Confirm = func(ctx context.Context, what string) (bool, error) {
		if err := e.confirm(k, "Reset FIDO2"); err != nil {
			if errors.Is(err, errCanceled) {
				return false, nil
			}
			return false, err
		}
		return true, nil
	}
	switch sub {
	case "diagnose":
		return recoverDiagnose(e, k, opt)
	case "piv-pin":
		return recoverPIVPIN(e, k, opt)
	case "fido2-reset":
		return recoverFIDO2Reset(e, svc, k, s, opt)
	}
	return usagef("unknown recover subcommand %q (diagnose, piv-pin, fido2-reset, lost, identity)", sub)
}

// recoverDiagnose is recover diagnose: the key, its user, their keys and
// each problem with its next step.
func recoverDiagnose(e *env, k device.Key, opt recover.Options) error {
	d, err := recover.Diagnose(e.ctx, k, opt)
	if err != nil {
		return err
	}
	if e.json {
		return e.printJSON(d)
	}
	fmt.Fprintf(e.stdout, "Key %d (%s, %s) belongs to %s (%s); the user has %s\n", k.Serial, d.Key.Role, d.Key.Status, d.User.ExternalID, d.User.ID, count(len(d.UserKeys), "key", "keys"))
	if d.PIV != nil {
		fmt.Fprintf(e.stdout, "PIV PIN tries left: %d, PUK tries left: %d\n", d.PIV.PINRetries, d.PIV.PUKRetries)
	}
	if d.FIDO != nil {
		fmt.Fprintf(e.stdout, "FIDO2 PIN set: %v, tries left: %d\n", d.FIDO.PINSet, d.FIDO.PINRetries)
	}
	if len(d.Problems) == 0 {
		fmt.Fprintln(e.stdout, "No problem found.")
	}
	for i, p := range d.Problems {
		fmt.Fprintf(e.stdout, "Problem: %s (%s)\n  next: %s\n", p.Text(), p, d.Steps[i])
	}
	return nil
}

// recoverPIVPIN is recover piv-pin: unblock with the escrowed PUK.
func recoverPIVPIN(e *env, k device.Key, opt recover.Options) error {
	pin, err := e.prompt.newSecret("New PIV PIN")
	if err != nil {
		return err
	}
	if err := recover.UnblockPIVPIN(e.ctx, k, pin, opt); err != nil {
		return err
	}
	if e.json {
		return e.printJSON(map[string]any{"serial": k.Serial, "piv_pin_unblocked": true})
	}
	fmt.Fprintf(e.stdout, "PIV PIN on key %d unblocked with the escrowed PUK and set to the new PIN; recorded in the registry's audit log\n", k.Serial)
	return nil
}

// recoverFIDO2Reset is recover fido2-reset: reset, then a new credential
// registered and the old ones revoked in one registry change.
func recoverFIDO2Reset(e *env, svc *keys.Service, k device.Key, s settings.Settings, opt recover.Options) error {
	if e.serial == 0 || uint32(e.serial) != k.Serial {
		return usagef("a FIDO2 reset is destructive: name the key with --serial %d to confirm it is the one you mean", k.Serial)
	}
	pin, err := e.prompt.newSecret("New FIDO2 PIN")
	if err != nil {
		return err
	}
	if n := len([]rune(pin)); n < s.MinPINLength {
		return fmt.Errorf("the new FIDO2 PIN has %d characters; the organisation requires at least %d", n, s.MinPINLength)
	}
	res, err := recover.ResetFIDO2(e.ctx, k, pin, recover.FIDO2Policy{RPID: s.RPID, RPName: s.RPName, CredProtect: s.CredProtect, Discoverable: s.Discoverable}, opt)
	if errors.Is(err, recover.ErrCanceled) {
		return errCanceled
	}
	if err != nil {
		return err
	}
	// The reset's power cycle re-enumerates the key: wait until its
	// smart-card interface is back too, so the next command finds it whole.
	if _, err := recover.WaitWhole(e.ctx, svc, k.Serial, res.PIV, true, 15*time.Second); err != nil {
		return err
	}
	if e.json {
		return e.printJSON(res)
	}
	fmt.Fprintf(e.stdout, "FIDO2 on key %d reset; new credential for %s registered and verified; %s revoked in the same registry change\n", k.Serial, s.RPID, count(len(res.Revoked), "old credential", "old credentials"))
	return nil
}

func recoverLost(e *env, conn *regconn.Conn, st settings.Settings, serial string, lo recover.LostOptions, replacement uint32, regWait waitFlag) error {
	if _, err := strconv.ParseUint(serial, 10, 32); err != nil {
		return usagef("serial %q: give the number printed on the key", serial)
	}
	res, err := recover.MarkLost(e.ctx, conn.Client, serial, lo)
	if errors.Is(err, registry.ErrLastKey) {
		return reworded{msg: fmt.Sprintf("key %s is its owner's last active key; nothing was changed", serial), err: err,
			hint: fmt.Sprintf("Enrol a replacement first, or if the person must be locked out of this key now: keydesk recover lost %s --break-glass \"why\" (kept in the audit log).", serial)}
	}
	if err != nil {
		return err
	}
	unlinked, err := unregisterLost(e, conn, st, res)
	if err != nil {
		return err
	}
	var rep *enrol.Result
	if replacement != 0 {
		svc, err := e.service()
		if err != nil {
			return err
		}
		o, err := deskIDP(st, conn)
		if err != nil {
			return fmt.Errorf("the key is marked lost; opening the identity providers for the replacement: %w", err)
		}
		en, err := enrol.New(enrol.Config{Settings: st, Keys: svc, Registry: conn.Client, InsertWait: e.insertWait(),
			RegistryWait: enrolFlags{regWait: regWait}.registryWait(), IDP: o})
		if err != nil {
			o.Close()
			return fmt.Errorf("the key is marked lost; enrolling the replacement: %w", err)
		}
		defer en.Close()
		if rep, err = recover.Replace(e.ctx, en, res, replacement, e.enrolUI(enrolFlags{}, en)); err != nil {
			return fmt.Errorf("the key is marked lost; enrolling the replacement: %w", err)
		}
	}
	if e.json {
		return e.printJSON(map[string]any{"lost": res, "replacement": rep, "providers": unlinked})
	}
	marked := "marked lost"
	if res.Already {
		marked = "was already marked lost"
	}
	fmt.Fprintf(e.stdout, "Key %s of %s %s; %s left\n", serial, res.User.ExternalID, marked, count(res.ActiveKeys, "active key", "active keys"))
	if res.Pass != "" {
		fmt.Fprintf(e.stdout, "Temporary access pass (shown once, valid until %s): %s\n", res.AccessPass.ExpiresAt.Format("2006-01-02 15:04 MST"), res.Pass)
	}
	if res.NoPass != "" {
		fmt.Fprintf(e.stdout, "No temporary access pass: %s\n", res.NoPass)
	}
	e.printOutcomes(unlinked)
	if rep != nil {
		fmt.Fprintf(e.stdout, "Replacement key %d enrolled for %s as %s, %s\n", rep.Serial, rep.ExternalID, rep.Role, rep.Status)
		return nil
	}
	fmt.Fprintf(e.stdout, "Next: enrol a replacement key for %s (keydesk recover lost %s --replace SERIAL, or keydesk enrol)\n", res.User.ExternalID, serial)
	return nil
}

// unregisterLost deletes a key the registry has just taken out of service
// (its last-key guard had its say) at every identity provider that holds
// its methods.
func unregisterLost(e *env, conn *regconn.Conn, st settings.Settings, res *recover.LostResult) ([]idp.Outcome, error) {
	o, err := deskIDP(st, conn)
	if err != nil || o == nil {
		if err != nil {
			err = fmt.Errorf("the key is marked lost; deleting it at the identity providers: %w", err)
		}
		return nil, err
	}
	defer o.Close()
	out, err := o.Unregister(e.ctx, res.Key.ID, idp.UserOf(res.User))
	if err != nil {
		return out, fmt.Errorf("the key is marked lost; deleting it at the identity providers: %w", err)
	}
	return out, nil
}

// recoverIdentity stores the helpdesk's age identity, read from the
// terminal or stdin, in the OS keyring; with "new" it makes one and prints
// the recipient to add to the desks' settings.
func recoverIdentity(e *env, pos []string) error {
	kr := secrets.Default()
	if len(pos) == 1 && pos[0] == "new" {
		id, rcpt, err := escrow.NewIdentity()
		if err != nil {
			return err
		}
		if err := kr.Put(secrets.HelpdeskIdentityAccount(), id); err != nil {
			return err
		}
		fmt.Fprintf(e.stdout, "new helpdesk identity stored in the system keyring; its recipient for helpdesk_recipients is:\n%s\n", rcpt)
		return nil
	}
	if len(pos) > 0 {
		return usagef("recover identity [new]: the identity is read from the terminal or stdin, never the command line")
	}
	id, err := e.prompt.secret("Helpdesk age identity (AGE-SECRET-KEY-1…)")
	if err != nil {
		return err
	}
	id = strings.TrimSpace(id)
	if _, err := age.ParseX25519Identity(id); err != nil {
		return fmt.Errorf("not an age identity: %w", err)
	}
	if err := kr.Put(secrets.HelpdeskIdentityAccount(), id); err != nil {
		return err
	}
	fmt.Fprintln(e.stdout, "helpdesk identity stored in the system keyring")
	return nil
}

// reinsert asks the person to remove and reinsert the key; in practice mode
// keydesk-sim power-cycles the virtual key, as a person would replug it.
func (e *env) reinsert(serial uint32) func(context.Context) error {
	return func(ctx context.Context) error {
		if e.practice {
			fmt.Fprintf(e.stderr, "Power-cycling practice key %d (as if removed and reinserted).\n", serial)
			return sim.Main(ctx, []string{"power-cycle", strconv.FormatUint(uint64(serial), 10), "--state", e.simDir}, io.Discard, e.stderr)
		}
		fmt.Fprintf(e.stderr, "Remove key %d, insert it again, then press Enter (the reset must follow within seconds).\n", serial)
		_, err := e.prompt.line()
		return err
	}
}
