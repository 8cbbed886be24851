// Package verify checks that an attached key works and that the registry
// agrees it should: a registry challenge signed by the key's FIDO2
// credential and PIV slot, the registry's verdict on each signature, and the
// key's state on both sides, reported one check per line. It names the
// mismatch class behind lock-outs during key migrations: a key that works
// but that the registry does not accept, and a key the registry expects
// that does not work.
package verify

import (
	"context"
	"crypto"
	"crypto/x509"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"

	"github.com/keydesk/keydesk/app/enrol"
	"github.com/keydesk/keydesk/app/keys"
	"github.com/keydesk/keydesk/device"
	"github.com/keydesk/keydesk/device/fidokey"
	"github.com/keydesk/keydesk/registry"
	"github.com/keydesk/keydesk/registry/client"
	"github.com/keydesk/keydesk/registry/credential"
)

// Status is one check's outcome.
type Status string

const (
	Pass Status = "pass"
	Fail Status = "fail"
	Warn Status = "warn" // works, but needs attention soon
	Skip Status = "skip" // could not be checked; Detail says why
)

// Check names, in report order.
const (
	CheckRegistered = "registered"         // the registry knows the key and it belongs to the user
	CheckGenuine    = "genuine"            // attestation verified to a trusted root
	CheckPresent    = "credential-present" // the registered credentials are on the key
	CheckSignature  = "signature"          // the registry accepted a fresh signature
	CheckPIN        = "pin"                // PINs set, not blocked, tries left
	CheckActive     = "active"             // the registry lists the key as active
	CheckMigration  = "migration"          // valid in the key set of an upcoming migration
)

// Mismatch classes.
const (
	// RegistryDisagrees: the key works, the registry does not accept it.
	RegistryDisagrees = "key works, registry disagrees"
	// KeyDisagrees: the registry expects the key to work, and it does not.
	KeyDisagrees = "registry expects it, key fails"
)

// Check is one line of the report.
type Check struct {
	Name   string `json:"name"`
	Status Status `json:"status"`
	// Detail is what was found; Cause the plain reason a check failed;
	// Next the step that fixes it.
	Detail   string `json:"detail,omitempty"`
	Cause    string `json:"cause,omitempty"`
	Next     string `json:"next,omitempty"`
	Mismatch string `json:"mismatch,omitempty"`
	// NextDesk is Next in the desktop app's words (its screens and
	// buttons) where Next names a command line; "" when Next says it.
	NextDesk string `json:"-"`
}

// Report is the outcome of verifying one key.
type Report struct {
	Serial     uint32  `json:"serial"`
	KeyID      string  `json:"key_id,omitempty"`
	UserID     string  `json:"user_id,omitempty"`
	ExternalID string  `json:"external_id,omitempty"`
	Checks     []Check `json:"checks"`
	// OK: no check failed.
	OK bool `json:"ok"`
	// Escrow says, when Run stored the key's escrow from the enrolment
	// journal or failed to, what happened; empty otherwise.
	Escrow string `json:"escrow,omitempty"`
}

// Failed returns the checks that failed.
func (r *Report) Failed() []Check {
	var out []Check
	for _, c := range r.Checks {
		if c.Status == Fail {
			out = append(out, c)
		}
	}
	return out
}

// Check returns the check named name, or nil.
func (r *Report) Check(name string) *Check {
	for i := range r.Checks {
		if r.Checks[i].Name == name {
			return &r.Checks[i]
		}
	}
	return nil
}

// Options are what Run needs.
type Options struct {
	Registry *client.Client
	Keys     *keys.Service
	// User, when set, is who the key should belong to: a registry user id
	// or an external id.
	User string
	// Callbacks ask for the PIV PIN (the slot's PIN policy needs it to
	// sign) and say when to touch the key.
	Callbacks device.Callbacks
	// EnrolJournal is this desk's enrolment journal
	// (enrol.DefaultJournalPath), or empty. For a pending key whose
	// enrolment was cut off between registration and escrow, Run first
	// stores the sealed escrow the journal holds: the registry activates
	// no key with PIV slots and no escrow (enrol.StoreJournalledEscrow).
	EnrolJournal string
}

// Run verifies key k. Errors are for what stops the whole run (the registry
// unreachable, the token refused); everything about the key itself is a
// line of the report.
func Run(ctx context.Context, k device.Key, opt Options) (*Report, error) {
	r := &Report{Serial: k.Serial}
	v := &run{ctx: ctx, k: k, opt: opt, r: r}
	if err := v.do(); err != nil {
		return nil, err
	}
	r.OK = len(r.Failed()) == 0
	return r, nil
}

type run struct {
	ctx context.Context
	k   device.Key
	opt Options
	r   *Report

	reg     client.KeyDetail
	user    registry.User
	foreign bool // the token's user has no key with this serial
	// what the key did
	fidoOK, pivOK         bool // a signature the registry accepted
	fidoMissing, pivWrong bool // the key lacks the registered credential
	fidoErr, pivErr       error
	pivStatus             *device.PIVStatus
	fidoStatus            *device.FIDOStatus
}

func (v *run) add(c Check) { v.r.Checks = append(v.r.Checks, c) }

// fatal reports errors that end the run: the registry cannot answer.
func fatal(err error) bool {
	var ae *client.APIError
	return errors.Is(err, client.ErrUnreachable) || (errors.As(err, &ae) && (ae.Status == 401))
}

func forbidden(err error) bool {
	var ae *client.APIError
	return errors.As(err, &ae) && ae.Status == 403
}

func (v *run) do() error {
	serial := strconv.FormatUint(uint64(v.k.Serial), 10)
	reg, err := v.opt.Registry.KeyBySerial(v.ctx, serial)
	known := err == nil
	switch {
	case err == nil:
		v.reg = reg
		v.r.KeyID, v.r.UserID = reg.ID, reg.OwnerID
		if u, err := v.opt.Registry.User(v.ctx, reg.OwnerID); err == nil {
			v.user = u
			v.r.ExternalID = u.ExternalID
		} else if fatal(err) {
			return err
		}
	case fatal(err):
		return err
	case errors.Is(err, registry.ErrNotFound):
	case forbidden(err):
		// A self token sees only its own keys: this one is not listed
		// under the token's user, or not at all.
		v.foreign = true
	default:
		return fmt.Errorf("looking up key %s: %w", serial, err)
	}
	v.readKey()
	if !known {
		v.unknownKey()
		return nil
	}
	v.registered()
	v.escrowFromJournal()
	v.genuine()
	if err := v.sign(); err != nil {
		return err
	}
	v.present()
	v.signature()
	v.pin()
	v.active()
	return v.migration()
}

// readKey reads what the key says about itself without a PIN.
func (v *run) readKey() {
	if card, err := v.opt.Keys.PIV(v.k); err == nil {
		if st, err := card.Status(v.ctx); err == nil {
			v.pivStatus = st
		} else {
			v.pivErr = err
		}
	} else {
		v.pivErr = err
	}
	if v.k.FIDOPath == "" {
		v.fidoErr = fmt.Errorf("key %d has no FIDO interface: %w", v.k.Serial, device.ErrAppDisabled)
		return
	}
	st, err := fidokey.Open(v.k.FIDOPath).Status(v.ctx)
	if err != nil {
		v.fidoErr = err
		return
	}
	v.fidoStatus = &st
}

func (v *run) unknownKey() {
	c := Check{Name: CheckRegistered, Status: Fail, Cause: fmt.Sprintf("the registry has no key with serial %d", v.k.Serial),
		Next: "have IT enrol this key at the desk; until then no service will accept it"}
	if v.foreign {
		c.Cause = fmt.Sprintf("the registry lists no key with serial %d under your account", v.k.Serial)
		c.Next = "check you picked up your own key; if it is yours, ask IT to enrol it for you"
	}
	if v.pivStatus != nil || v.fidoStatus != nil {
		c.Mismatch = RegistryDisagrees
	}
	v.add(c)
	v.pin()
}

func (v *run) registered() {
	c := Check{Name: CheckRegistered, Status: Pass, Detail: fmt.Sprintf("key %s (%s) belongs to %s", v.reg.Serial, v.reg.Role, v.who())}
	if u := v.opt.User; u != "" && u != v.user.ID && u != v.user.ExternalID {
		c.Status, c.Detail = Fail, ""
		c.Cause = fmt.Sprintf("the registry lists key %s under %s, not %s", v.reg.Serial, v.who(), u)
		c.Next = "check you picked up your own key; if it is yours, ask IT to correct the registry"
	}
	v.add(c)
}

// escrowFromJournal stores a pending key's escrow from this desk's
// enrolment journal (Options.EnrolJournal) before the key signs, so the
// verification can activate it. A failure is reported, not fatal: the
// report's "active" check then shows the key still pending.
func (v *run) escrowFromJournal() {
	if v.opt.EnrolJournal == "" || v.reg.Status != registry.KeyPending {
		return
	}
	stored, err := enrol.StoreJournalledEscrow(v.ctx, v.opt.EnrolJournal, v.opt.Registry, v.k.Serial, v.reg.ID)
	switch {
	case err != nil:
		v.r.Escrow = fmt.Sprintf("Storing key %d's escrow from the enrolment journal failed: %s", v.k.Serial, errText(err))
	case stored:
		v.r.Escrow = fmt.Sprintf("Stored key %d's sealed escrow from this desk's enrolment journal.", v.k.Serial)
	}
}

func (v *run) who() string {
	if v.user.ExternalID != "" {
		return v.user.ExternalID
	}
	return v.reg.OwnerID
}

func (v *run) genuine() {
	var bad []string
	n := 0
	for _, f := range v.reg.FIDO2 {
		n++
		if f.Verdict != registry.VerdictGenuine {
			bad = append(bad, fmt.Sprintf("FIDO2 credential: %s (%s)", f.Verdict, f.VerdictReason))
		}
	}
	for _, p := range v.reg.PIV {
		n++
		if p.Verdict != registry.VerdictGenuine {
			bad = append(bad, fmt.Sprintf("PIV slot %s: %s (%s)", p.Slot, p.Verdict, p.VerdictReason))
		}
	}
	switch {
	case n == 0:
		v.add(Check{Name: CheckGenuine, Status: Fail, Cause: "the registry holds no credential for this key, so nothing was attested",
			Next: "have IT re-enrol the key"})
	case len(bad) > 0:
		v.add(Check{Name: CheckGenuine, Status: Fail, Cause: "attestation not trusted: " + join(bad),
			Next: "use a YubiKey bought through the organisation; if it is one, ask IT to re-enrol it"})
	default:
		v.add(Check{Name: CheckGenuine, Status: Pass, Detail: fmt.Sprintf("%d credential(s) attested to a trusted root", n)})
	}
}

// sign asks the registry for a challenge per credential, has the key sign
// it, and sends the signature back.
func (v *run) sign() error {
	for _, f := range v.reg.FIDO2 {
		if v.fidoErr != nil && errors.Is(v.fidoErr, device.ErrAppDisabled) {
			break
		}
		ch, err := v.opt.Registry.Challenge(v.ctx, v.reg.ID, "fido2", f.ID)
		if err != nil {
			if fatal(err) {
				return err
			}
			v.fidoErr = err
			continue
		}
		a, err := fidokey.Open(v.k.FIDOPath).GetAssertion(v.ctx, fidokey.AssertOptions{RPID: ch.RPID, Challenge: ch.Challenge.Nonce,
			CredentialIDs: [][]byte{ch.FIDO2CredentialID}}, v.opt.Callbacks)
		if err != nil {
			v.fidoErr = err
			v.fidoMissing = errors.Is(err, device.ErrNoCredentials)
			continue
		}
		res, err := v.opt.Registry.VerifyFIDO2(v.ctx, ch.Challenge.ID, credential.Assertion{AuthenticatorData: a.AuthenticatorData, ClientDataJSON: a.ClientDataJSON, Signature: a.Signature})
		if err != nil {
			if fatal(err) {
				return err
			}
			v.fidoErr = err
			continue
		}
		if !res.OK || res.CloneSuspected {
			v.fidoErr = errors.New(res.Reason)
			continue
		}
		v.fidoOK = true
	}
	for _, p := range v.reg.PIV {
		slot, err := strconv.ParseUint(p.Slot, 16, 8)
		if err != nil {
			continue
		}
		card, err := v.opt.Keys.PIV(v.k)
		if err != nil {
			v.pivErr = err
			break
		}
		pub, err := x509.ParsePKIXPublicKey(p.PublicKey)
		if err != nil {
			v.pivErr = err
			continue
		}
		if v.pivStatus != nil && !slotHolds(v.pivStatus, byte(slot), pub) {
			v.pivWrong = true
			v.pivErr = fmt.Errorf("slot %s does not hold the registered key", p.Slot)
			continue
		}
		ch, err := v.opt.Registry.Challenge(v.ctx, v.reg.ID, "piv", p.ID)
		if err != nil {
			if fatal(err) {
				return err
			}
			v.pivErr = err
			continue
		}
		sig, err := card.Sign(v.ctx, v.opt.Callbacks, byte(slot), pub, ch.Challenge.Nonce)
		if err != nil {
			v.pivErr = err
			continue
		}
		res, err := v.opt.Registry.VerifyPIV(v.ctx, ch.Challenge.ID, sig)
		if err != nil {
			if fatal(err) {
				return err
			}
			v.pivErr = err
			continue
		}
		if !res.OK {
			v.pivErr = errors.New(res.Reason)
			continue
		}
		v.pivOK = true
	}
	return nil
}

// slotHolds reports whether the key's slot holds pub.
func slotHolds(st *device.PIVStatus, slot byte, pub any) bool {
	for _, s := range st.Slots {
		if s.Slot != slot {
			continue
		}
		if s.Empty || s.PublicKey == nil {
			return false
		}
		e, ok := s.PublicKey.(interface{ Equal(crypto.PublicKey) bool })
		return ok && e.Equal(pub)
	}
	// The key did not report the slot (no metadata): let the signature decide.
	return true
}

func (v *run) present() {
	var missing []string
	if v.fidoMissing {
		missing = append(missing, "the FIDO2 credential registered for "+rpOf(v.reg.FIDO2)+" is not on the key (deleted, or the key's FIDO2 application was reset)")
	}
	if v.pivWrong {
		missing = append(missing, "PIV slot 9a no longer holds the registered key (regenerated or reset)")
	}
	if len(missing) == 0 {
		v.add(Check{Name: CheckPresent, Status: Pass, Detail: fmt.Sprintf("%d FIDO2 credential(s) and %d PIV slot(s) found on the key", len(v.reg.FIDO2), len(v.reg.PIV))})
		return
	}
	c := Check{Name: CheckPresent, Status: Fail, Cause: join(missing),
		Next:     "bring the key to the helpdesk: 'keydesk recover' re-creates the credential and revokes the old one",
		NextDesk: "bring the key to the helpdesk: on its Helpdesk screen a FIDO2 reset re-creates the credential and revokes the old one"}
	if v.reg.Status == registry.KeyActive {
		c.Mismatch = KeyDisagrees
	}
	v.add(c)
}

func rpOf(fs []registry.FIDOCredential) string {
	if len(fs) > 0 {
		return fs[0].RPID
	}
	return "the organisation"
}

func (v *run) signature() {
	var failed []string
	if len(v.reg.FIDO2) > 0 && !v.fidoOK {
		failed = append(failed, "FIDO2: "+errText(v.fidoErr))
	}
	if len(v.reg.PIV) > 0 && !v.pivOK {
		failed = append(failed, "PIV: "+errText(v.pivErr))
	}
	if len(failed) == 0 {
		v.add(Check{Name: CheckSignature, Status: Pass, Detail: "the registry accepted fresh FIDO2 and PIV signatures from the key"})
		return
	}
	c := Check{Name: CheckSignature, Status: Fail, Cause: join(failed), Next: hint(v.fidoErr, v.pivErr)}
	if v.fidoMissing || v.pivWrong {
		c.Next = "the key lacks a registered credential (see credential-present)"
	}
	if v.reg.Status == registry.KeyActive {
		c.Mismatch = KeyDisagrees
	}
	v.add(c)
}

func errText(err error) string {
	if err == nil {
		return "no signature"
	}
	return err.Error()
}

func hint(errs ...error) string {
	for _, err := range errs {
		if err == nil {
			continue
		}
		if h := device.Hint(err); h != "" {
			return h
		}
	}
	return "bring the key to the helpdesk"
}

func (v *run) pin() {
	var bad, warn, ok []string
	next, nextDesk := "", ""
	if st := v.pivStatus; st != nil {
		switch {
		case st.PINRetries == 0:
			bad = append(bad, "the PIV PIN is blocked")
			next = "the helpdesk unblocks it with the escrowed PUK: 'keydesk recover piv-pin'"
			nextDesk = "the helpdesk unblocks it with the escrowed PUK (Helpdesk screen, Unblock PIV PIN)"
		case st.PINDefault:
			bad = append(bad, "the PIV PIN is still the factory default")
			next = "set your own PIN: 'keydesk piv change-pin'"
			nextDesk = "set your own PIN: Keys screen, the key's PIV tab, Change PIN"
		case st.PINRetries > 0 && st.PINRetries < 3:
			warn = append(warn, "PIV PIN: "+triesLeft(st.PINRetries))
		default:
			ok = append(ok, "PIV PIN set, "+triesLeft(st.PINRetries))
		}
	} else if v.pivErr != nil && errors.Is(v.pivErr, device.ErrPINBlocked) {
		bad = append(bad, "the PIV PIN is blocked")
	}
	if st := v.fidoStatus; st != nil {
		switch {
		case !st.PINSet:
			bad = append(bad, "no FIDO2 PIN is set")
			if next == "" {
				next = "ask IT to re-enrol the key; a FIDO2 PIN is set at enrolment"
			}
		case st.PINRetries == 0:
			bad = append(bad, "the FIDO2 PIN is blocked")
			if next == "" {
				next = "the helpdesk resets FIDO2 and re-enrols it: 'keydesk recover fido2-reset'"
				nextDesk = "the helpdesk resets FIDO2 and re-creates its credential (Helpdesk screen, Reset FIDO2)"
			}
		case st.PINRetries < 4:
			warn = append(warn, "FIDO2 PIN: "+triesLeft(st.PINRetries))
		default:
			ok = append(ok, "FIDO2 PIN set, "+triesLeft(st.PINRetries))
		}
	} else if v.fidoErr != nil && errors.Is(v.fidoErr, device.ErrFIDO2PINBlocked) {
		bad = append(bad, "the FIDO2 PIN is blocked")
	}
	switch {
	case len(bad) > 0:
		v.add(Check{Name: CheckPIN, Status: Fail, Cause: join(bad), Next: next, NextDesk: nextDesk})
	case len(warn) > 0:
		v.add(Check{Name: CheckPIN, Status: Warn, Detail: join(append(warn, ok...)), Next: "type the PIN carefully: a blocked PIN needs the helpdesk"})
	case len(ok) > 0:
		v.add(Check{Name: CheckPIN, Status: Pass, Detail: join(ok)})
	default:
		v.add(Check{Name: CheckPIN, Status: Skip, Detail: "the key did not report its PIN state"})
	}
}

func (v *run) active() {
	works := v.fidoOK || v.pivOK
	switch v.reg.Status {
	case registry.KeyActive:
		v.add(Check{Name: CheckActive, Status: Pass, Detail: "the registry lists the key as active"})
	case registry.KeyPending:
		c := Check{Name: CheckActive, Status: Fail, Cause: "the key is still pending: it never passed a verification",
			Next:     "run 'keydesk verify' again; a passing verification activates a pending key",
			NextDesk: "press Verify again; a passing verification activates a pending key"}
		if works {
			// This run's signature activates it: re-read.
			if k, err := v.opt.Registry.Key(v.ctx, v.reg.ID); err == nil && k.Status == registry.KeyActive {
				v.add(Check{Name: CheckActive, Status: Pass, Detail: "the key was pending and this verification activated it"})
				return
			}
		}
		v.add(c)
	default:
		c := Check{Name: CheckActive, Status: Fail, Cause: fmt.Sprintf("the registry marks the key %s", v.reg.Status),
			Next: "if you found a key you had reported lost, tell the helpdesk; otherwise ask IT for a replacement"}
		if works {
			c.Mismatch = RegistryDisagrees
		}
		v.add(c)
	}
}

// migration checks the key against every migration still under way: a
// user moved to set B signs in only with keys of set B.
func (v *run) migration() error {
	ms, err := v.opt.Registry.Migrations(v.ctx)
	var ae *client.APIError
	if errors.As(err, &ae) && ae.Status == 403 {
		v.add(Check{Name: CheckMigration, Status: Skip, Detail: "this token may not read migration plans"})
		return nil
	}
	if err != nil {
		if fatal(err) {
			return err
		}
		v.add(Check{Name: CheckMigration, Status: Skip, Detail: "reading migrations: " + err.Error()})
		return nil
	}
	var upcoming []registry.Migration
	for _, m := range ms {
		if m.State.Active() && v.inScope(m) {
			upcoming = append(upcoming, m)
		}
	}
	if len(upcoming) == 0 {
		v.add(Check{Name: CheckMigration, Status: Pass, Detail: "no key migration planned for this user"})
		return nil
	}
	works := v.fidoOK || v.pivOK
	allWork := (len(v.reg.FIDO2) == 0 || v.fidoOK) && (len(v.reg.PIV) == 0 || v.pivOK)
	for _, m := range upcoming {
		if slices.Contains(v.reg.KeySets, m.To) {
			c := Check{Name: CheckMigration, Status: Pass, Detail: fmt.Sprintf("in key set %q, which migration %q moves to", m.To, m.Name)}
			if !allWork || v.reg.Status != registry.KeyActive {
				c.Status, c.Detail = Fail, ""
				c.Cause = fmt.Sprintf("the key is in key set %q of migration %q but does not pass verification today, so it will not let you in after the cut-over", m.To, m.Name)
				c.Next = "fix the failures above before the migration reaches you"
				c.Mismatch = KeyDisagrees
			}
			v.add(c)
			continue
		}
		c := Check{Name: CheckMigration, Status: Fail,
			Cause: fmt.Sprintf("migration %q (%s) moves you to key set %q; this key is in %s, so it stops working at your cut-over", m.Name, m.State, m.To, setsText(v.reg.KeySets)),
			Next:  fmt.Sprintf("have IT enrol a key of set %q for you before your stage, and verify it", m.To)}
		if works {
			c.Mismatch = RegistryDisagrees
		}
		v.add(c)
	}
	return nil
}

func (v *run) inScope(m registry.Migration) bool {
	s := m.Scope
	if s.All || slices.Contains(s.Users, v.reg.OwnerID) {
		return true
	}
	for _, g := range v.user.Groups {
		if slices.Contains(s.Groups, g) {
			return true
		}
	}
	return false
}

func setsText(s []string) string {
	if len(s) == 0 {
		return "no key set"
	}
	return "key set(s) " + join(s)
}

func join(s []string) string { return strings.Join(s, "; ") }

// triesLeft is "1 try left", "2 tries left".
func triesLeft(n int) string {
	if n == 1 {
		return "1 try left"
	}
	return strconv.Itoa(n) + " tries left"
}
