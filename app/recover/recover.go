// Package recover is the helpdesk's workflow for a person locked out of
// their key: find the user from the key's serial, diagnose what is wrong,
// unblock a blocked PIV PIN with the escrowed PUK, reset a FIDO2
// application whose PIN is blocked and re-create its credential (the old
// ones revoked in the same registry change set), and handle a lost key
// (mark it lost, issue a temporary access pass, point to a replacement).
// Every step is recorded in the registry's audit log under the helpdesk's
// token. Nothing here prompts or prints: PINs, touches, reinsertion and
// confirmations go through Options.
package recover

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/keydesk/keydesk/app/enrol"
	"github.com/keydesk/keydesk/app/escrow"
	"github.com/keydesk/keydesk/app/keys"
	"github.com/keydesk/keydesk/device"
	"github.com/keydesk/keydesk/device/fidokey"
	"github.com/keydesk/keydesk/internal/crashpoint"
	"github.com/keydesk/keydesk/registry"
	"github.com/keydesk/keydesk/registry/client"
	"github.com/keydesk/keydesk/registry/credential"
)

// EscrowKind is the escrow blob kind enrolment stores a key's PIV secrets
// (PUK and management key) under.
const EscrowKind = "piv"

// Options are what the recovery steps need.
type Options struct {
	Registry *client.Client
	Keys     *keys.Service
	// Identity returns the helpdesk's age identity ("AGE-SECRET-KEY-1…"),
	// kept in the OS keyring (app/secrets); asked for only when an escrow
	// blob must be opened.
	Identity func() (string, error)
	// Callbacks ask for PINs, a touch and, before a FIDO2 reset, for the
	// key to be removed and reinserted.
	Callbacks device.Callbacks
	// Confirm asks the helpdesk to confirm a destructive step; false
	// cancels it and nothing changes.
	Confirm func(ctx context.Context, what string) (bool, error)
}

// ErrCanceled: the helpdesk did not confirm.
var ErrCanceled = errors.New("canceled; nothing was changed")

// ErrNotRegistered: the registry has no key with this serial.
var ErrNotRegistered = errors.New("the registry has no key with this serial")

// ErrPIVPINRule: a new PIV PIN breaks the rules (CheckPIVPIN).
var ErrPIVPINRule = errors.New("the new PIV PIN does not meet the rules")

// PIV PIN length: 6 to 8 bytes (NIST SP 800-73-4 Part 2, 3.2.1 VERIFY:
// the PIN is padded with 0xFF to 8 bytes; YubiKeys refuse fewer than 6).
const (
	PIVPINMin = 6
	PIVPINMax = 8
	// factoryPIVPIN is every YubiKey's PIV PIN as it leaves the factory.
	factoryPIVPIN = "123456"
)

// CheckPIVPIN says whether pin may become a key's PIV PIN: 6 to 8
// characters, and not the factory PIN. The error wraps ErrPIVPINRule with
// the reason. UnblockPIVPIN checks it before anything is opened.
func CheckPIVPIN(pin string) error {
	switch {
	case len(pin) < PIVPINMin || len(pin) > PIVPINMax:
		return fmt.Errorf("%w: a PIV PIN is %d to %d characters; this one has %d", ErrPIVPINRule, PIVPINMin, PIVPINMax, len(pin))
	case pin == factoryPIVPIN:
		return fmt.Errorf("%w: %s is the factory PIN", ErrPIVPINRule, factoryPIVPIN)
	}
	return nil
}

// Problem names what Diagnose found.
type Problem string

const (
	PIVPINBlocked   Problem = "piv-pin-blocked"
	PIVPUKBlocked   Problem = "piv-puk-blocked"
	FIDO2PINBlocked Problem = "fido2-pin-blocked"
	FIDO2AuthLocked Problem = "fido2-pin-auth-blocked" // three wrong in a row: reinsert
	KeyNotActive    Problem = "key-not-active"
	// EscrowMissing: the key has PIV slots and the registry holds no
	// escrow (PUK and management key) for it: its PIV PIN cannot be
	// unblocked.
	EscrowMissing Problem = "escrow-missing"
)

// Text says p in plain words.
func (p Problem) Text() string {
	switch p {
	case PIVPINBlocked:
		return "the PIV PIN is blocked (no tries left)"
	case PIVPUKBlocked:
		return "the PIV PUK is blocked (no tries left)"
	case FIDO2PINBlocked:
		return "the FIDO2 PIN is blocked (no tries left)"
	case FIDO2AuthLocked:
		return "FIDO2 refuses PINs until the key is reinserted"
	case KeyNotActive:
		return "the registry does not count this key as active"
	case EscrowMissing:
		return "the registry holds no escrowed PUK and management key for this key"
	}
	return string(p)
}

// Diagnosis is what the registry and the key say, and what to do.
type Diagnosis struct {
	Serial   uint32             `json:"serial"`
	Key      client.KeyDetail   `json:"key"`
	User     registry.User      `json:"user"`
	UserKeys []registry.Key     `json:"user_keys"`
	PIV      *device.PIVStatus  `json:"piv,omitempty"`
	FIDO     *device.FIDOStatus `json:"fido,omitempty"`
	Problems []Problem          `json:"problems"`
	// Steps are the recovery steps that fix the problems, in order, in
	// plain words.
	Steps []string `json:"steps"`
}

// Has reports whether d found p.
func (d *Diagnosis) Has(p Problem) bool {
	for _, q := range d.Problems {
		if q == p {
			return true
		}
	}
	return false
}

// Find looks up the key with serial in the registry, with its owner and
// the owner's other keys.
func Find(ctx context.Context, reg *client.Client, serial string) (client.KeyDetail, registry.User, []registry.Key, error) {
	k, err := reg.KeyBySerial(ctx, serial)
	if errors.Is(err, registry.ErrNotFound) {
		return k, registry.User{}, nil, fmt.Errorf("key %s: %w", serial, ErrNotRegistered)
	}
	if err != nil {
		return k, registry.User{}, nil, fmt.Errorf("finding key %s: %w", serial, err)
	}
	u, err := reg.User(ctx, k.OwnerID)
	if err != nil {
		return k, u, nil, fmt.Errorf("reading the key's owner: %w", err)
	}
	ks, err := reg.UserKeys(ctx, u.ID)
	if err != nil {
		return k, u, nil, fmt.Errorf("reading the owner's keys: %w", err)
	}
	return k, u, ks, nil
}

// Diagnose finds the user from the attached key's serial and reads the key's
// PIV and FIDO2 state. The examination is audited ("recovery.diagnosed").
// A key that is not attached (k with only a serial: no reader, no FIDO
// path) is diagnosed from the registry alone: d.PIV and d.FIDO stay nil.
// Steps holds one step per problem, in the problems' order; they name the
// CLI commands (keydesk recover …), so other faces word their own.
func Diagnose(ctx context.Context, k device.Key, opt Options) (*Diagnosis, error) {
	d := &Diagnosis{Serial: k.Serial, Problems: []Problem{}, Steps: []string{}}
	var err error
	if d.Key, d.User, d.UserKeys, err = Find(ctx, opt.Registry, strconv.FormatUint(uint64(k.Serial), 10)); err != nil {
		return nil, err
	}
	if card, err := opt.Keys.PIV(k); err == nil {
		if st, err := card.Status(ctx); err == nil {
			d.PIV = st
			if st.PINRetries == 0 {
				d.Problems = append(d.Problems, PIVPINBlocked)
			}
			if st.PUKRetries == 0 {
				d.Problems = append(d.Problems, PIVPUKBlocked)
			}
		}
	}
	if k.FIDOPath != "" {
		st, err := fidokey.Open(k.FIDOPath).Status(ctx)
		switch {
		case err == nil:
			d.FIDO = &st
			if st.PINSet && st.PINRetries == 0 {
				d.Problems = append(d.Problems, FIDO2PINBlocked)
			}
		case errors.Is(err, device.ErrPINAuthBlocked):
			d.Problems = append(d.Problems, FIDO2AuthLocked)
		case errors.Is(err, device.ErrFIDO2PINBlocked):
			d.Problems = append(d.Problems, FIDO2PINBlocked)
		}
	}
	if d.Key.Status != registry.KeyActive {
		d.Problems = append(d.Problems, KeyNotActive)
	}
	if len(d.Key.PIV) > 0 {
		if _, err := opt.Registry.Escrow(ctx, d.Key.ID, EscrowKind); errors.Is(err, registry.ErrNotFound) {
			d.Problems = append(d.Problems, EscrowMissing)
		} else if err != nil {
			return nil, fmt.Errorf("reading the key's escrow: %w", err)
		}
	}
	for _, p := range d.Problems {
		switch p {
		case PIVPINBlocked:
			if d.Has(PIVPUKBlocked) {
				d.Steps = append(d.Steps, "PIV PIN and PUK are both blocked: the PIV application must be reset and the key re-enrolled")
			} else {
				d.Steps = append(d.Steps, "unblock the PIV PIN with the escrowed PUK (keydesk recover piv-pin)")
			}
		case PIVPUKBlocked:
			if d.Has(PIVPINBlocked) {
				d.Steps = append(d.Steps, "see above: reset the PIV application (keydesk piv reset) and enrol the key again")
			} else {
				d.Steps = append(d.Steps, "the PIV PIN still works; the PUK cannot unblock it any more, so if the PIN is ever blocked the PIV application must be reset and the key re-enrolled")
			}
		case FIDO2PINBlocked:
			d.Steps = append(d.Steps, "reset FIDO2 (erases its passkeys) and re-create the organisation's credential (keydesk recover fido2-reset)")
		case FIDO2AuthLocked:
			d.Steps = append(d.Steps, "three wrong FIDO2 PINs in a row: remove and reinsert the key, then try the right PIN")
		case KeyNotActive:
			d.Steps = append(d.Steps, fmt.Sprintf("the registry marks the key %s; if it was found again, an admin reactivates it", d.Key.Status))
		case EscrowMissing:
			d.Steps = append(d.Steps, fmt.Sprintf("on the desk that enrolled it, finish its enrolment (keydesk enrol --resume --serial %d), which stores the escrow from its journal", k.Serial))
		}
	}
	if err := opt.Registry.RecoveryEvent(ctx, d.Key.ID, client.ActionDiagnosed, fmt.Sprintf("problems: %v", d.Problems)); err != nil {
		return nil, fmt.Errorf("auditing the diagnosis: %w", err)
	}
	return d, nil
}

// UnblockPIVPIN sets newPIN on the attached key's PIV application with the
// PUK escrowed at enrolment, which it decrypts with the helpdesk's identity.
// Opening the escrow and the unblock are both audited. The PUK is used and
// forgotten: it is never returned, printed or logged.
//
// newPIN is checked first (CheckPIVPIN): a PIN the key would refuse, or the
// factory PIN, ends the step before the escrow is read or opened, so a
// refused unblock leaves no "escrow opened" in the audit log.
func UnblockPIVPIN(ctx context.Context, k device.Key, newPIN string, opt Options) error {
	if err := CheckPIVPIN(newPIN); err != nil {
		return err
	}
	reg, _, _, err := Find(ctx, opt.Registry, strconv.FormatUint(uint64(k.Serial), 10))
	if err != nil {
		return err
	}
	blob, err := opt.Registry.Escrow(ctx, reg.ID, EscrowKind)
	if err != nil {
		return fmt.Errorf("reading the key's escrowed PUK: %w", err)
	}
	if opt.Identity == nil {
		return errors.New("no helpdesk identity: escrowed secrets cannot be opened")
	}
	id, err := opt.Identity()
	if err != nil {
		return fmt.Errorf("reading the helpdesk identity: %w", err)
	}
	sec, err := escrow.Open(blob.Blob, id)
	if err != nil {
		return err
	}
	defer clear(sec.ManagementKey)
	if sec.Serial != k.Serial {
		return fmt.Errorf("the escrow blob is for key %d, not %d", sec.Serial, k.Serial)
	}
	if err := crashpoint.Around(crashpoint.RecoverRegistryEscrowOpened, func() error {
		return opt.Registry.RecoveryEvent(ctx, reg.ID, client.ActionEscrowOpened, "PUK opened to unblock the PIV PIN")
	}); err != nil {
		return fmt.Errorf("auditing the escrow opening: %w", err)
	}
	card, err := opt.Keys.PIV(k)
	if err != nil {
		return err
	}
	// The escrowed PUK resets the PIN whether or not it is blocked, so a
	// second run after an interrupted one does the same again.
	if err := crashpoint.Around(crashpoint.RecoverKeyPIVUnblock, func() error { return card.UnblockPIN(ctx, sec.PUK, newPIN) }); err != nil {
		return fmt.Errorf("unblocking the PIV PIN: %w", err)
	}
	if err := crashpoint.Around(crashpoint.RecoverRegistryPIVUnblocked, func() error {
		return opt.Registry.RecoveryEvent(ctx, reg.ID, client.ActionPIVPINUnblocked, "PIV PIN reset with the escrowed PUK")
	}); err != nil {
		return fmt.Errorf("auditing the unblock: %w", err)
	}
	return nil
}

// FIDO2Policy is the organisation's FIDO2 credential policy (from the desk
// settings).
type FIDO2Policy struct {
	RPID, RPName string
	CredProtect  int // 2 or 3
	Discoverable bool
}

// FIDO2Result is what ResetFIDO2 did.
type FIDO2Result struct {
	Revoked []string                `json:"revoked"`
	New     registry.FIDOCredential `json:"new"`
	// Verified: the new credential signed a registry challenge.
	Verified bool `json:"verified"`
	// PIV: the registry holds PIV slots of the key, so its smart-card
	// interface should come back after the reset too.
	PIV bool `json:"-"`
}

// ResetFIDO2 recovers a key whose FIDO2 PIN is blocked: after an explicit
// confirmation it resets the key's FIDO2 application (which erases every
// passkey on it; the key must be reinserted first, Callbacks.Reinsert), sets
// newPIN, makes the organisation's credential again, and has the registry
// revoke the key's old FIDO2 credentials and register the new one in one
// change set; then the new credential signs a registry challenge.
func ResetFIDO2(ctx context.Context, k device.Key, newPIN string, pol FIDO2Policy, opt Options) (*FIDO2Result, error) {
	reg, user, _, err := Find(ctx, opt.Registry, strconv.FormatUint(uint64(k.Serial), 10))
	if err != nil {
		return nil, err
	}
	if k.FIDOPath == "" {
		return nil, fmt.Errorf("key %d has no FIDO interface: %w", k.Serial, device.ErrAppDisabled)
	}
	if pol.RPID == "" || pol.CredProtect < 2 {
		return nil, errors.New("the FIDO2 policy needs an rp id and credProtect 2 or 3")
	}
	if opt.Confirm == nil {
		return nil, errors.New("a FIDO2 reset needs a confirmation callback")
	}
	ok, err := opt.Confirm(ctx, fmt.Sprintf("Reset FIDO2 on key %d of %s? This erases every passkey on the key, including any the person made themselves.", k.Serial, user.ExternalID))
	if err != nil {
		return nil, err
	}
	if !ok {
		return nil, ErrCanceled
	}
	dev := fidokey.Open(k.FIDOPath)
	if err := crashpoint.Around(crashpoint.RecoverKeyFIDOReset, func() error { return dev.Reset(ctx, opt.Callbacks, k.Serial) }); err != nil {
		return nil, err
	}
	if err := opt.Registry.RecoveryEvent(ctx, reg.ID, client.ActionFIDO2Reset, "FIDO2 application reset (PIN blocked)"); err != nil {
		return nil, fmt.Errorf("auditing the reset: %w", err)
	}
	if err := crashpoint.Around(crashpoint.RecoverKeyFIDOPIN, func() error { return dev.SetPIN(ctx, newPIN) }); err != nil {
		return nil, fmt.Errorf("setting the new FIDO2 PIN: %w", err)
	}
	chal := make([]byte, 32)
	rand.Read(chal)
	pinCB := opt.Callbacks
	pinCB.PIN = func(context.Context, string) (string, error) { return newPIN, nil }
	crashpoint.Before(crashpoint.RecoverKeyFIDOCredential)
	r, err := dev.MakeCredential(ctx, fidokey.MakeOptions{RPID: pol.RPID, RPName: pol.RPName, UserID: []byte(user.ID), UserName: user.ExternalID,
		DisplayName: user.DisplayName, Challenge: chal, Discoverable: pol.Discoverable, CredProtect: pol.CredProtect}, pinCB)
	if err != nil {
		return nil, err
	}
	crashpoint.After(crashpoint.RecoverKeyFIDOCredential)
	crashpoint.Before(crashpoint.RecoverRegistryFIDO2)
	res, err := opt.Registry.ResetFIDO2(ctx, reg.ID, "FIDO2 PIN blocked: key reset by the helpdesk", []client.FIDO2Credential{{
		CredentialID: r.CredentialID, PublicKey: r.PublicKey, AAGUID: r.AAGUID[:], RPID: pol.RPID, SignCount: r.SignCount,
		CredProtect: r.CredProtect, AttestationObject: r.AttestationObject, AttestationClientDataJSON: r.ClientDataJSON}})
	if err != nil {
		return nil, fmt.Errorf("registering the new credential: %w", err)
	}
	crashpoint.After(crashpoint.RecoverRegistryFIDO2)
	out := &FIDO2Result{Revoked: res.Revoked, New: res.FIDO2[0], PIV: len(reg.PIV) > 0}
	ch, err := opt.Registry.Challenge(ctx, reg.ID, "fido2", out.New.ID)
	if err != nil {
		return out, fmt.Errorf("verifying the new credential: %w", err)
	}
	a, err := dev.GetAssertion(ctx, fidokey.AssertOptions{RPID: ch.RPID, Challenge: ch.Challenge.Nonce, CredentialIDs: [][]byte{ch.FIDO2CredentialID}}, opt.Callbacks)
	if err != nil {
		return out, fmt.Errorf("verifying the new credential: %w", err)
	}
	crashpoint.Before(crashpoint.RecoverRegistryVerify)
	v, err := opt.Registry.VerifyFIDO2(ctx, ch.Challenge.ID, credential.Assertion{AuthenticatorData: a.AuthenticatorData, ClientDataJSON: a.ClientDataJSON, Signature: a.Signature})
	if err == nil {
		crashpoint.After(crashpoint.RecoverRegistryVerify)
	}
	if err != nil {
		return out, fmt.Errorf("verifying the new credential: %w", err)
	}
	if !v.OK {
		return out, fmt.Errorf("the registry refused the new credential's signature: %s", v.Reason)
	}
	out.Verified = true
	return out, nil
}

// LostOptions say how to handle a lost key.
type LostOptions struct {
	// BreakGlass is the reason to accept when the lost key is the user's
	// last active key; without it that case is registry.ErrLastKey.
	BreakGlass string
	// PassValidity is how long the temporary access pass lasts ("8h");
	// empty issues none.
	PassValidity string
}

// LostResult is what MarkLost did.
type LostResult struct {
	Key  registry.Key  `json:"key"`
	User registry.User `json:"user"`
	// Pass is the temporary access pass, shown once.
	Pass       string                       `json:"pass,omitempty"`
	AccessPass registry.TemporaryAccessPass `json:"access_pass,omitempty"`
	// ActiveKeys is how many active keys the user has left.
	ActiveKeys int `json:"active_keys"`
	// Already: the registry marked the key lost before this run (an
	// earlier run marked it); it was left as it was.
	Already bool `json:"already,omitempty"`
	// NoPass says why no pass was issued although one was asked for: the
	// user is suspended or deleted, and the registry gives such a user none.
	NoPass string `json:"no_pass,omitempty"`
}

// MarkLost marks the key with serial lost. The registry refuses when it is
// the user's last active key unless a break-glass reason is given (audited
// key.break_glass). It then issues a temporary access pass so the person can
// sign in until a replacement is enrolled, unless the person is suspended or
// deleted (LostResult.NoPass).
//
// A key the registry already marks lost is left as it is (Already), so the
// same command run again after an interrupted one goes on to the pass: a
// pass issued by the interrupted run was never shown and cannot be (the
// registry keeps its hash, and its answer only under the interrupted run's
// random idempotency key); it expires unused.
func MarkLost(ctx context.Context, reg *client.Client, serial string, lo LostOptions) (*LostResult, error) {
	k, u, ks, err := Find(ctx, reg, serial)
	if err != nil {
		return nil, err
	}
	nk := k.Key
	already := k.Status == registry.KeyLost
	if !already {
		crashpoint.Before(crashpoint.RecoverRegistryLost)
		if nk, err = reg.SetKeyStatus(ctx, k.ID, k.Version, registry.KeyLost, lo.BreakGlass); err != nil {
			return nil, fmt.Errorf("marking key %s lost: %w", serial, err)
		}
		crashpoint.After(crashpoint.RecoverRegistryLost)
	}
	out := &LostResult{Key: nk, User: u, Already: already}
	for _, o := range ks {
		if o.ID != k.ID && o.Status == registry.KeyActive {
			out.ActiveKeys++
		}
	}
	if lo.PassValidity != "" && u.Status != registry.UserActive {
		out.NoPass = fmt.Sprintf("%s is %s", u.ExternalID, u.Status)
		return out, nil
	}
	if lo.PassValidity != "" {
		crashpoint.Before(crashpoint.RecoverRegistryPass)
		out.Pass, out.AccessPass, err = reg.AccessPass(ctx, u.ID, "key "+serial+" lost", lo.PassValidity)
		if err != nil {
			return out, fmt.Errorf("issuing a temporary access pass: %w", err)
		}
		crashpoint.After(crashpoint.RecoverRegistryPass)
	}
	return out, nil
}

// WaitWhole waits up to timeout until the key with serial is listed with a
// smart-card interface (when needPIV) and a FIDO one (when needFIDO): after a
// FIDO2 reset's power cycle a key re-enumerates, and its smart-card
// interface answers a moment after its FIDO one. It polls, as the key's
// readiness is not announced as a change.
func WaitWhole(ctx context.Context, svc *keys.Service, serial uint32, needPIV, needFIDO bool, timeout time.Duration) (device.Key, error) {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	tick := time.NewTicker(200 * time.Millisecond)
	defer tick.Stop()
	for {
		c, err := svc.Find(ctx, serial)
		if err == nil && (!needPIV || c.Reader != "") && (!needFIDO || c.FIDOPath != "") {
			return c, nil
		}
		select {
		case <-ctx.Done():
			return device.Key{}, fmt.Errorf("key %d did not come back with all its interfaces: %w", serial, device.ErrKeyRemoved)
		case <-tick.C:
		}
	}
}

// Replace enrols a replacement for a lost key with app/enrol: the same
// user, the lost key's role (primary or backup), on the fresh key with
// serial (0: the one fresh key attached). The enrolment registers the new
// key pending and activates it with a verified challenge, as any enrolment,
// and rides out a registry outage as keydesk enrol --user does
// (enrol.Request.WaitRegistry, for up to the enroller's RegistryWait).
func Replace(ctx context.Context, en *enrol.Enroller, lost *LostResult, serial uint32, ui enrol.UI) (*enrol.Result, error) {
	if lost == nil || lost.User.ExternalID == "" {
		return nil, errors.New("replacing a key needs the lost key's record")
	}
	return en.EnrolKey(ctx, enrol.Request{User: client.EnrolUser{ExternalID: lost.User.ExternalID}, Serial: serial, Role: lost.Key.Role, WaitRegistry: true}, ui)
}
