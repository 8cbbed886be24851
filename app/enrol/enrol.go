// Package enrol enrols YubiKeys for users at an admin's desk, one key or a
// whole roster in a sitting. It never prints, prompts or exits: it asks for
// PINs, touches and keys through UI, and reports progress through it too, so
// the CLI and the desktop app are two faces of the same steps.
//
// One key's enrolment, in order:
//
//  1. The user is looked up in the registry (a batch creates new ones); the
//     key must be factory-fresh and must not be registered to anyone.
//  2. Genuine: a PIV key is generated in slot 9a (NIST SP 800-73-4 §3.3.2)
//     and attested by the key (Yubico ATTEST); the chain must reach Yubico's
//     roots — keydesk's virtual root only in practice mode.
//  3. FIDO2: the user chooses a PIN meeting the policy (CTAP 2.1 §6.5.5.5),
//     the key's minimum PIN length is raised to it (§6.11.4), and the
//     organisation's credential is made (rp id, credProtect ≥ 2 per §12.1,
//     discoverable per policy); its attestation must be genuine too. A local
//     test sign-in (WebAuthn L2 §7.2) with the new credential must verify
//     before anything is registered.
//  4. PIV: a random management key stored on the key behind the PIN (the
//     way ykman's --protect does), a random PUK, the PIV PIN the user
//     chooses, and a certificate for 9a (self-signed, or a CSR written out).
//     The PUK and management key are sealed with age to the helpdesk
//     recipients, and the sealed copy is journalled, before the key changes.
//  5. Registry: the key is registered pending (through the outbox, so a
//     crash never registers it twice), the sealed escrow stored, and the key
//     made active by challenges it signs (PIV signature and FIDO2
//     assertion, both checked on the desk before either is sent, then by
//     the registry).
//  6. The identity providers (Config.IDP), then the PIN-change policy;
//     only then does the journal say active, with what the key passed
//     (Checks).
//
// A user counts as covered only with two active keys, a primary and a
// backup; EnrolUser ends a first key by asking for the backup.
//
// Every stage is journalled before it starts (journal.go). A key pulled or
// a registry that goes down stops the enrolment with an *InterruptedError
// that says what happened and what to do next; Resume (or the next run of
// the same batch) finishes what can be finished, with the same proofs and
// policies as a fresh enrolment: the person types the PINs again, and a
// key whose PIV proof cannot be made stays pending (resume.go). PINs are
// typed, used and forgotten; nothing keydesk writes holds a PIN, PUK or
// management key in the clear.
package enrol

import (
	"bytes"
	"context"
	"crypto"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/keydesk/keydesk/app/escrow"
	"github.com/keydesk/keydesk/app/idp"
	"github.com/keydesk/keydesk/app/keys"
	"github.com/keydesk/keydesk/app/regconn"
	"github.com/keydesk/keydesk/app/settings"
	"github.com/keydesk/keydesk/device"
	"github.com/keydesk/keydesk/device/fidokey"
	"github.com/keydesk/keydesk/device/pivkey"
	"github.com/keydesk/keydesk/internal/crashpoint"
	"github.com/keydesk/keydesk/registry"
	"github.com/keydesk/keydesk/registry/attest"
	"github.com/keydesk/keydesk/registry/client"
	"github.com/keydesk/keydesk/registry/credential"
)

// EscrowKind is the registry escrow kind the PIV secrets are stored under.
const EscrowKind = "piv"

// Factory PIV secrets (FACTS.md, YubiKey PIV defaults).
const (
	defaultPIVPIN = "123456"
	defaultPUK    = "12345678"
)

// Config is what an Enroller works with.
type Config struct {
	Settings settings.Settings
	Keys     *keys.Service
	Registry *client.Client
	// JournalPath is the enrolment journal; DataDir/enrol-journal.db under
	// regconn.DefaultDataDir when empty.
	JournalPath string
	// Now is the clock for attestation checks; time.Now when nil.
	Now func() time.Time
	// InsertWait bounds each wait for a key to be inserted (after
	// UI.InsertKey): when it runs out the enrolment stops with a
	// *NotInsertedError. Zero waits until ctx ends, as at a desk where a
	// person can cancel.
	InsertWait time.Duration
	// RegistryWait bounds how long a batch waits, per user, for a registry
	// that cannot be reached before reporting the user failed, and how long
	// EnrolUser waits per key when asked to (Request.WaitRegistry); zero is
	// DefaultRegistryWait, negative does not wait.
	RegistryWait time.Duration
	// IDP registers every enrolled key with the identity providers the
	// settings name (app/idp), once the registry holds it active; nil for
	// none. The Enroller closes it.
	IDP *idp.Orchestrator
}

// Enroller runs enrolments. It holds no key open between calls.
type Enroller struct {
	cfg      Config
	roots    *attest.Roots
	pivRoots []*x509.Certificate
	j        *journal
	// device is the time spent in device calls (and waiting for a key)
	// during the current enrolment.
	device time.Duration
}

// timed runs a device call and counts its time as device time.
func timed[T any](e *Enroller, f func() (T, error)) (T, error) {
	t := time.Now()
	v, err := f()
	e.device += time.Since(t)
	return v, err
}

func (e *Enroller) timedErr(f func() error) error {
	_, err := timed(e, func() (struct{}, error) { return struct{}{}, f() })
	return err
}

// Timing is where one key's enrolment spent its time: Device is in device
// calls (PC/SC and FIDO HID round trips, the virtual or real key's own work,
// touches) and waiting for the key; Keydesk is the rest — policy checks,
// attestation verification, escrow sealing, the journal, and the registry.
type Timing struct {
	Total   time.Duration `json:"total_ns"`
	Device  time.Duration `json:"device_ns"`
	Keydesk time.Duration `json:"keydesk_ns"`
}

// New checks the settings are ready for enrolment (helpdesk recipients
// configured) and opens the journal.
func New(cfg Config) (*Enroller, error) {
	if err := cfg.Settings.ReadyToEnrol(); err != nil {
		return nil, err
	}
	if cfg.Keys == nil || cfg.Registry == nil {
		return nil, errors.New("enrolment needs the key service and a registry client")
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	roots, err := regconn.Roots(cfg.Settings)
	if err != nil {
		return nil, err
	}
	var extra []*x509.Certificate
	if cfg.Settings.Practice {
		extra = append(extra, attest.PracticeRoots()...)
	}
	for _, p := range cfg.Settings.TrustRoots {
		b, err := os.ReadFile(p)
		if err != nil {
			return nil, fmt.Errorf("reading trust root: %w", err)
		}
		for blk, rest := pem.Decode(b); blk != nil; blk, rest = pem.Decode(rest) {
			c, err := x509.ParseCertificate(blk.Bytes)
			if err != nil {
				return nil, fmt.Errorf("trust root %s: %w", p, err)
			}
			extra = append(extra, c)
		}
	}
	if cfg.JournalPath == "" {
		p, err := DefaultJournalPath()
		if err != nil {
			return nil, err
		}
		cfg.JournalPath = p
	}
	j, err := openJournal(cfg.JournalPath)
	if err != nil {
		return nil, err
	}
	return &Enroller{cfg: cfg, roots: roots, pivRoots: extra, j: j}, nil
}

// DefaultJournalPath is the desk's enrolment journal:
// enrol-journal.db under regconn.DefaultDataDir.
func DefaultJournalPath() (string, error) {
	d, err := regconn.DefaultDataDir()
	if err != nil {
		return "", err
	}
	return filepath.Join(d, "enrol-journal.db"), nil
}

// Close closes the journal and the identity providers' outbox
// (Config.IDP, which the enroller owns once New succeeded).
func (e *Enroller) Close() error { return errors.Join(e.j.close(), e.cfg.IDP.Close()) }

// PINKind says which PIN is asked for.
type PINKind string

const (
	FIDO2PIN PINKind = "FIDO2 PIN"
	PIVPIN   PINKind = "PIV PIN"
)

// PINRequest asks the user to choose a new PIN.
type PINRequest struct {
	Kind   PINKind
	Serial uint32
	User   string // display name
	// MinLength and MaxLength bound the PIN (code points for FIDO2, CTAP
	// 2.1 §6.5.1; characters for PIV, 6 to 8).
	MinLength, MaxLength int
	// Problem says why the previous choice was refused ("" the first time).
	Problem string
}

// Step names a stage of the work for progress reports.
type Step string

const (
	StepUser     Step = "user"
	StepKey      Step = "key"
	StepGenuine  Step = "genuine"
	StepFIDO2PIN Step = "fido2-pin"
	StepFIDO2    Step = "fido2-credential"
	StepSignIn   Step = "test-sign-in"
	StepPIV      Step = "piv"
	StepCert     Step = "certificate"
	StepEscrow   Step = "escrow"
	StepRegister Step = "register"
	StepActivate Step = "activate"
	// StepProviders: registering the key with the identity providers
	// (Event.Detail names them).
	StepProviders Step = "providers"
	StepDone      Step = "done"
	StepBatchUser Step = "batch-user"
	// StepRegistryWait: the registry could not be reached; the batch
	// waits and tries again (Detail says how long).
	StepRegistryWait Step = "registry-wait"
)

// Event is one progress report.
type Event struct {
	Step   Step
	Serial uint32
	User   string // external id
	Detail string
	// Done and Total count keys in a batch (0 outside one).
	Done, Total int
	// Left is, for StepRegistryWait, how much of the whole wait
	// (Config.RegistryWait) is left: when it runs out the enrolment stops.
	Left time.Duration
}

// InsertRequest asks for a key to be inserted.
type InsertRequest struct {
	User  string // display name
	Role  registry.KeyRole
	Index int // which of the user's keys (1-based)
	Of    int
	// Serial is the key asked for; 0 means any factory-fresh key.
	Serial uint32
	// Wait is how long enrolment waits for it (Config.InsertWait); zero
	// is until the caller cancels.
	Wait time.Duration
}

// RemovedError: the key was removed before enrolment wrote anything to it
// or to the registry, so the same enrolment can simply run again. It
// matches device.ErrKeyRemoved.
type RemovedError struct {
	Serial uint32
	Err    error
}

func (e *RemovedError) Error() string {
	return fmt.Sprintf("key %d was removed before anything was written", e.Serial)
}

// Hint says what to do next.
func (e *RemovedError) Hint() string { return "Insert it and run the same command again." }

func (e *RemovedError) Unwrap() error { return e.Err }

// NotInsertedError: the key enrolment waited for was not inserted within
// Config.InsertWait. Nothing was written to any key or the registry. It
// matches keys.ErrNoKey.
type NotInsertedError struct {
	Serial uint32 // 0: any factory-fresh key
	Waited time.Duration
}

func (e *NotInsertedError) Error() string {
	if e.Serial != 0 {
		return fmt.Sprintf("key %d is not attached (waited %s)", e.Serial, e.Waited)
	}
	return fmt.Sprintf("no factory-fresh key was inserted (waited %s)", e.Waited)
}

// DeskHint is Hint in the desktop app's words.
func (e *NotInsertedError) DeskHint() string {
	if e.Serial != 0 {
		return "Insert it (the Keys screen lists it once it is seen), then try again."
	}
	return "Insert a factory-fresh YubiKey, then try again."
}

// Hint says what to do next.
func (e *NotInsertedError) Hint() string {
	if e.Serial != 0 {
		return "Insert it, or check that keydesk keys lists it, then run the same command again (--wait sets how long to wait)."
	}
	return "Insert a factory-fresh YubiKey, then run the same command again (--wait sets how long to wait)."
}

func (e *NotInsertedError) Unwrap() error { return keys.ErrNoKey }

// UI is how enrolment talks to the person at the desk. NewPIN is required;
// a nil Progress or Touch is skipped; a nil InsertKey makes a missing key an
// error instead of a wait; a nil Confirm answers no.
type UI struct {
	Progress func(Event)
	// NewPIN asks the user to choose a PIN. The PIN is used and forgotten.
	NewPIN func(ctx context.Context, r PINRequest) (string, error)
	// Touch says the key is waiting for a touch.
	Touch func(ctx context.Context, serial uint32)
	// InsertKey says a new key is needed; enrolment then waits for one.
	InsertKey func(ctx context.Context, r InsertRequest) error
	// PIN asks for an existing PIN (a resumed enrolment whose credential
	// needs user verification); nil makes that an error.
	PIN func(ctx context.Context, r PINRequest) (string, error)
	// Confirm asks a yes/no question (enrol the backup key now?).
	Confirm func(ctx context.Context, question string) (bool, error)
}

func (u UI) progress(ev Event) {
	if u.Progress != nil {
		u.Progress(ev)
	}
}

// Request is one key to enrol.
type Request struct {
	// User is the user; ExternalID is required. EnrolKey needs the user to
	// exist in the registry unless CreateUser is set (a batch).
	User       client.EnrolUser
	CreateUser bool
	// Serial picks the key; 0 takes the one fresh key attached (waiting for
	// one through UI.InsertKey when there is none).
	Serial uint32
	// Role is primary or backup; empty chooses primary when the user has no
	// active or pending primary, else backup.
	Role registry.KeyRole
	// Batch names the batch the key belongs to, for the journal.
	Batch string
	// Index and Of say which of the user's keys this is, for prompts.
	Index, Of int
	// WaitRegistry rides out a registry that cannot be reached, as a
	// batch does, for up to Config.RegistryWait, saying each wait through
	// UI (StepRegistryWait): an enrolment cut off before the key was
	// touched runs again (EnrolUser); one whose key is set up finishes
	// registration, escrow and activation in place, with the PINs still
	// at hand. Without it, or when the wait runs out, the enrolment stops
	// with an *InterruptedError whose hint says how to finish it. For a
	// face that shows StepRegistryWait. EnrolKey and EnrolUser honour it
	// alike.
	WaitRegistry bool
}

// Result is one key's enrolment.
type Result struct {
	ExternalID  string             `json:"external_id"`
	UserID      string             `json:"user_id"`
	DisplayName string             `json:"display_name"`
	Serial      uint32             `json:"serial"`
	KeyID       string             `json:"key_id"`
	Role        registry.KeyRole   `json:"role"`
	Status      registry.KeyStatus `json:"status"`
	Genuine     string             `json:"genuine"` // the attestation root
	CSRPath     string             `json:"csr_path,omitempty"`
	Covered     bool               `json:"covered"`
	Missing     []string           `json:"missing,omitempty"`
	Resumed     bool               `json:"resumed,omitempty"`
	// FIDO2Proof and PIVProof: the registry verified a challenge the key
	// signed with its FIDO2 credential, and one it signed with its PIV key
	// in 9a (with the PIV PIN), on the way to active — in a fresh
	// enrolment and a resumed one alike.
	FIDO2Proof bool `json:"fido2_proof"`
	PIVProof   bool `json:"piv_proof"`
	// PINChange is the PIN-change policy (settings force_pin_change) on
	// the key: PINChangeForced or PINChangeUnsupported; "" when the
	// policy is off.
	PINChange string `json:"pin_change,omitempty"`
	// NotRedone says, in plain words, what a resumed enrolment could not
	// do again the way a fresh one does it, and what stood in for it.
	NotRedone []string `json:"not_redone,omitempty"`
	// Providers is what became of the key's registration with each
	// identity provider (Config.IDP).
	Providers []idp.Outcome `json:"providers,omitempty"`
	Timing    Timing        `json:"timing"`
}

// Typed errors a caller acts on.
var (
	// ErrNotFresh: the key has a FIDO2 PIN, FIDO2 credentials or non-default
	// PIV secrets; enrolment starts only from a factory-fresh key.
	ErrNotFresh = errors.New("the key is not factory-fresh")
	// ErrNotGenuine: an attestation did not reach a trusted root.
	ErrNotGenuine = errors.New("the key could not prove it is a genuine YubiKey")
	// ErrNoSuchUser: the user is not in the registry.
	ErrNoSuchUser = errors.New("no such user in the registry")
	// ErrTestSignIn: the local test sign-in with the new credential failed.
	ErrTestSignIn = errors.New("the test sign-in with the new credential failed")
	// ErrPINPolicy: the user's PIN choices kept failing the policy.
	ErrPINPolicy = errors.New("the PIN does not meet the policy")
)

// RegisteredError: the key is already registered, to OwnerExternalID (or
// to the same user, when Same).
type RegisteredError struct {
	Serial  uint32
	KeyID   string
	OwnerID string
	Same    bool
	Status  registry.KeyStatus
}

func (e *RegisteredError) Error() string {
	if e.Same {
		return fmt.Sprintf("key %d is already registered to this user (%s)", e.Serial, e.Status)
	}
	return fmt.Sprintf("key %d is registered to someone else (user %s, %s)", e.Serial, e.OwnerID, e.Status)
}

// Hint says what to do.
func (e *RegisteredError) Hint() string {
	if e.Same {
		return "Nothing to do for this key. Insert another key to enrol more."
	}
	return "Do not hand this key out. If it really changed hands, the helpdesk must retire it from its owner first."
}

// InterruptedError: an enrolment stopped part-way. Stage says how far it
// got; the hint says what to do next.
type InterruptedError struct {
	Serial uint32
	Stage  Stage
	Err    error
}

func (e *InterruptedError) Error() string {
	return fmt.Sprintf("enrolment of key %d stopped at stage %s: %s", e.Serial, e.Stage, said(e.Err))
}

// said is err in plain words when the registry could not be reached, or
// answered that its storage takes no writes (client.Storage); else err's
// own text. The HTTP client's wording stays behind Unwrap.
func said(err error) string {
	if msg, ok := client.Storage(err); ok {
		return msg
	}
	if errors.Is(err, client.ErrUnreachable) {
		return "the registry could not be reached (" + client.Cause(err) + ")"
	}
	return err.Error()
}

func (e *InterruptedError) Unwrap() error { return e.Err }

// Hint is the next step for the person at the desk.
func (e *InterruptedError) Hint() string {
	var re *RefusedError
	if errors.As(e.Err, &re) {
		return re.Hint()
	}
	switch e.Stage {
	case StageDevice, StageSealed:
		return fmt.Sprintf("Key %d is half set up and nothing was registered. Reset its PIV and FIDO2 applications "+
			"(keydesk piv reset --serial %d, and a FIDO2 reset), then enrol it again.", e.Serial, e.Serial)
	case StagePrepared, StageQueued:
		why, next := "the registry could not be reached", "when the registry is back"
		if msg, ok := client.Storage(e.Err); ok {
			why, next = msg, "once it is fixed"
		}
		return fmt.Sprintf("Key %d is set up and tested but not yet registered (%s). "+
			"Keep the key; %s run: keydesk enrol --resume --serial %d", e.Serial, why, next, e.Serial)
	default:
		return fmt.Sprintf("Key %d is registered but not yet active. Insert it and run: keydesk enrol --resume --serial %d", e.Serial, e.Serial)
	}
}

// DeskHint is Hint in the desktop app's words: its screens, not the
// command line.
func (e *InterruptedError) DeskHint() string {
	var re *RefusedError
	if errors.As(e.Err, &re) {
		return re.DeskHint()
	}
	switch e.Stage {
	case StageDevice, StageSealed:
		return fmt.Sprintf("Key %d is half set up and nothing was registered. Reset its PIV and FIDO2 applications "+
			"(Keys screen), then enrol it again.", e.Serial)
	case StagePrepared, StageQueued:
		why, next := "the registry could not be reached", "when the registry is back"
		if msg, ok := client.Storage(e.Err); ok {
			why, next = msg, "once it is fixed"
		}
		return fmt.Sprintf("Key %d is set up and tested but not yet registered (%s). "+
			"Keep the key; %s, resume it under \"Unfinished enrolments\" on the Enrol screen.", e.Serial, why, next)
	default:
		return fmt.Sprintf("Key %d is registered but not yet active. Insert it and resume it under \"Unfinished enrolments\" on the Enrol screen.", e.Serial)
	}
}

func (e *Enroller) now() time.Time { return e.cfg.Now() }

// FindUser finds a user in the registry by registry id or external id.
func (e *Enroller) FindUser(ctx context.Context, id string) (registry.User, error) {
	u, err := e.cfg.Registry.FindUser(ctx, id)
	if errors.Is(err, registry.ErrNotFound) {
		return registry.User{}, fmt.Errorf("user %q: %w", id, ErrNoSuchUser)
	}
	return u, err
}

// userKeys returns the user's keys in the registry (none for a user not
// there yet).
func (e *Enroller) userKeys(ctx context.Context, externalID string) (registry.User, []registry.Key, error) {
	u, err := e.FindUser(ctx, externalID)
	if errors.Is(err, ErrNoSuchUser) {
		return registry.User{}, nil, nil
	}
	if err != nil {
		return registry.User{}, nil, err
	}
	ks, err := e.cfg.Registry.UserKeys(ctx, u.ID)
	return u, ks, err
}

// live reports whether a key counts towards a user's keys: active, or
// pending (registered, activation to be finished).
func live(k registry.Key) bool {
	return k.Status == registry.KeyActive || k.Status == registry.KeyPending
}

// EnrolKey enrols one key for req.User; with req.WaitRegistry it rides
// out a registry outage (an enrolment cut off before the key was touched
// runs again, one whose key is set up finishes in place or is resumed).
func (e *Enroller) EnrolKey(ctx context.Context, req Request, ui UI) (*Result, error) {
	if req.WaitRegistry {
		return e.enrolWaiting(ctx, req, ui)
	}
	return e.enrolKey(ctx, req, ui)
}

func (e *Enroller) enrolKey(ctx context.Context, req Request, ui UI) (*Result, error) {
	if ui.NewPIN == nil {
		return nil, errors.New("enrolment needs UI.NewPIN")
	}
	if req.User.ExternalID == "" {
		return nil, errors.New("enrolment needs the user's external id")
	}
	start := time.Now()
	e.device = 0
	ui.progress(Event{Step: StepUser, User: req.User.ExternalID})
	u, ks, err := e.userKeys(ctx, req.User.ExternalID)
	if err != nil {
		return nil, err
	}
	if u.ID == "" && !req.CreateUser {
		return nil, fmt.Errorf("user %q: %w", req.User.ExternalID, ErrNoSuchUser)
	}
	if u.ID != "" {
		req.User.ExternalID, req.User.DisplayName, req.User.Email = u.ExternalID, u.DisplayName, u.Email
		if len(req.User.Groups) == 0 {
			req.User.Groups = u.Groups
		}
	}
	if req.Role == "" {
		req.Role = registry.RolePrimary
		for _, k := range ks {
			if live(k) && k.Role != registry.RoleBackup {
				req.Role = registry.RoleBackup
			}
		}
	}
	k, err := e.pickKey(ctx, req, ui)
	if err != nil {
		return nil, err
	}
	res, err := e.enrolOn(ctx, k, req, ui)
	if res != nil {
		res.Timing = Timing{Total: time.Since(start), Device: e.device, Keydesk: time.Since(start) - e.device}
	}
	return res, err
}

// pickKey finds the key to enrol: req.Serial, or the one fresh key attached,
// waiting for one when none is.
func (e *Enroller) pickKey(ctx context.Context, req Request, ui UI) (device.Key, error) {
	choose := func(list []device.Key) (device.Key, bool) {
		var best device.Key
		found := false
		for _, k := range list {
			if k.SerialUnknown || (req.Serial != 0 && k.Serial != req.Serial) {
				continue
			}
			if req.Serial == 0 {
				if rec, _ := e.j.get(ctx, k.Serial); rec != nil && !halfSetUp(rec.Stage) {
					continue // in the journal: enrolled, or to be resumed
				}
				if _, err := e.cfg.Registry.KeyBySerial(ctx, strconv.FormatUint(uint64(k.Serial), 10)); err == nil {
					continue
				}
				if fresh, _, _ := e.fresh(ctx, k); !fresh {
					continue
				}
			} else if k.Reader == "" || k.FIDOPath == "" {
				continue // not all of it is visible yet
			}
			// Several fresh keys: the lowest serial; the result names it.
			if !found || k.Serial < best.Serial {
				best, found = k, true
			}
		}
		return best, found
	}
	list, err := timed(e, func() ([]device.Key, error) { return e.cfg.Keys.List(ctx) })
	if err != nil {
		return device.Key{}, err
	}
	if k, ok := choose(list); ok {
		return k, nil
	}
	if ui.InsertKey == nil {
		if req.Serial != 0 {
			return device.Key{}, fmt.Errorf("%w with serial %d", keys.ErrNoKey, req.Serial)
		}
		return device.Key{}, fmt.Errorf("%w: insert a factory-fresh YubiKey", keys.ErrNoKey)
	}
	limit := e.cfg.InsertWait
	if err := ui.InsertKey(ctx, InsertRequest{User: req.User.DisplayName, Role: req.Role, Index: req.Index, Of: req.Of, Serial: req.Serial, Wait: limit}); err != nil {
		return device.Key{}, err
	}
	// Every change of the attached keys (the first snapshot included, so
	// a key that arrived meanwhile is not missed) is looked at again.
	wctx, cancel := context.WithCancel(ctx)
	if limit > 0 {
		wctx, cancel = context.WithTimeout(ctx, limit)
	}
	defer cancel()
	ch, err := e.cfg.Keys.Watch(wctx)
	if err != nil {
		return device.Key{}, err
	}
	waitStart := time.Now()
	defer func() { e.device += time.Since(waitStart) }() // the person's and the key's time
	for list := range ch {
		if k, ok := choose(list); ok {
			return k, nil
		}
	}
	if ctx.Err() == nil && limit > 0 {
		return device.Key{}, &NotInsertedError{Serial: req.Serial, Waited: limit}
	}
	return device.Key{}, fmt.Errorf("waiting for a key: %w", ctx.Err())
}

// fresh reports whether k is factory-fresh: no FIDO2 PIN, and PIV PIN, PUK
// and management key at their defaults with slot 9a empty; why says what
// is not. err is a key that could not be read (removed, for one), which
// says nothing about its freshness.
func (e *Enroller) fresh(ctx context.Context, k device.Key) (ok bool, why string, err error) {
	if k.FIDOPath == "" || k.Reader == "" {
		return false, "the key needs both its FIDO2 and smart-card (PIV) interfaces enabled over USB", nil
	}
	st, err := timed(e, func() (device.FIDOStatus, error) { return fidokey.Open(k.FIDOPath).Status(ctx) })
	if err != nil {
		return false, "", fmt.Errorf("reading FIDO2: %w", err)
	}
	if st.PINSet {
		return false, "it has a FIDO2 PIN", nil
	}
	card, err := e.cfg.Keys.PIV(k)
	if err != nil {
		return false, err.Error(), nil
	}
	ps, err := timed(e, func() (*device.PIVStatus, error) { return card.Status(ctx) })
	if err != nil {
		return false, "", fmt.Errorf("reading PIV: %w", err)
	}
	if !ps.PINDefault || !ps.PUKDefault || !ps.MgmtKeyDefault {
		return false, "its PIV PIN, PUK or management key was changed", nil
	}
	return true, "", nil
}

// gone reports whether key k, listed whole before, is no longer attached
// whole: not listed, or listed without one of its interfaces.
func (e *Enroller) gone(ctx context.Context, k device.Key) bool {
	now, err := timed(e, func() (device.Key, error) { return e.cfg.Keys.Find(ctx, k.Serial) })
	if err != nil {
		return errors.Is(err, keys.ErrNoKey)
	}
	return now.Reader == "" || now.FIDOPath == ""
}

// interrupted journals why the enrolment of rec's key stopped at its
// stage (a pulled key named as the cause, see removedCause) and returns
// the InterruptedError that says where it can be resumed.
func (e *Enroller) interrupted(ctx context.Context, k device.Key, rec *Record, err error) (*Result, error) {
	err = e.removedCause(ctx, k, err)
	rec.Error = said(err)
	e.j.put(context.WithoutCancel(ctx), rec)
	return nil, &InterruptedError{Serial: rec.Serial, Stage: rec.Stage, Err: err}
}

// removedCause marks err as the key's removal (device.ErrKeyRemoved) when
// the device call failed some other way ("scard: Transaction failed", an
// interface that answers only U2F) and the key is no longer attached:
// the cause is the pulled key, and the CLI exits 3.
func (e *Enroller) removedCause(ctx context.Context, k device.Key, err error) error {
	if err == nil || errors.Is(err, device.ErrKeyRemoved) || k.Serial == 0 || errors.Is(err, client.ErrUnreachable) {
		return err
	}
	var ae *client.APIError
	if errors.As(err, &ae) || !e.gone(ctx, k) {
		return err
	}
	return fmt.Errorf("%w: %w", device.ErrKeyRemoved, err)
}

func randomDigits(n int) (string, error) {
	var b strings.Builder
	for range n {
		d, err := rand.Int(rand.Reader, big.NewInt(10))
		if err != nil {
			return "", err
		}
		b.WriteByte(byte('0' + d.Int64()))
	}
	return b.String(), nil
}

// askPIN asks for a new PIN until it meets the bounds (three tries).
func askPIN(ctx context.Context, ui UI, r PINRequest, check func(string) string) (string, error) {
	for range 3 {
		pin, err := ui.NewPIN(ctx, r)
		if err != nil {
			return "", err
		}
		if r.Problem = check(pin); r.Problem == "" {
			return pin, nil
		}
	}
	return "", fmt.Errorf("%s: %w: %s", r.Kind, ErrPINPolicy, r.Problem)
}

func (e *Enroller) checkFIDOPIN(pin string) string {
	n := utf8.RuneCountInString(pin)
	switch {
	case !utf8.ValidString(pin):
		return "the PIN is not valid text"
	case n < e.cfg.Settings.MinPINLength:
		return fmt.Sprintf("the PIN must be at least %d characters", e.cfg.Settings.MinPINLength)
	case len(pin) > 63:
		return "the PIN must be at most 63 bytes"
	}
	return ""
}

func checkPIVPIN(pin string) string {
	switch {
	case len(pin) < 6 || len(pin) > 8:
		return "a PIV PIN must be 6 to 8 characters"
	case pin == defaultPIVPIN:
		return "that is the factory PIN; choose another"
	}
	return ""
}

// enrolOn enrols key k.
func (e *Enroller) enrolOn(ctx context.Context, k device.Key, req Request, ui UI) (*Result, error) {
	serial := k.Serial
	sstr := strconv.FormatUint(uint64(serial), 10)
	ui.progress(Event{Step: StepKey, Serial: serial, User: req.User.ExternalID, Detail: k.Model})
	if k.Virtual && !e.cfg.Settings.Practice {
		return nil, fmt.Errorf("key %d is a virtual practice key: %w", serial, ErrNotGenuine)
	}
	if rec, err := e.j.get(ctx, serial); err != nil {
		return nil, err
	} else if rec != nil && rec.Stage != StageActive {
		// A key left half set up may start again once it has been reset
		// (the journalled escrow is then for secrets the key no longer has).
		if fresh, _, _ := e.fresh(ctx, k); !halfSetUp(rec.Stage) || !fresh {
			return nil, &InterruptedError{Serial: serial, Stage: rec.Stage, Err: errors.New("an earlier enrolment of this key did not finish")}
		}
	}
	switch kd, err := e.cfg.Registry.KeyBySerial(ctx, sstr); {
	case err == nil:
		u, _ := e.FindUser(ctx, req.User.ExternalID)
		return nil, &RegisteredError{Serial: serial, KeyID: kd.ID, OwnerID: kd.OwnerID, Same: u.ID != "" && u.ID == kd.OwnerID, Status: kd.Status}
	case !errors.Is(err, registry.ErrNotFound):
		return nil, err
	}
	switch ok, why, err := e.fresh(ctx, k); {
	case errors.Is(err, device.ErrKeyRemoved):
		return nil, &RemovedError{Serial: serial, Err: err}
	case err != nil && e.gone(ctx, k):
		// A key pulled mid-read fails in many ways ("scard: Transaction
		// failed", an interface that answers only U2F); listed no more,
		// it was removed.
		return nil, &RemovedError{Serial: serial, Err: fmt.Errorf("%w: %w", device.ErrKeyRemoved, err)}
	case err != nil:
		return nil, fmt.Errorf("key %d: checking it is factory-fresh: %w", serial, err)
	case !ok:
		return nil, fmt.Errorf("key %d: %w: %s", serial, ErrNotFresh, why)
	}
	card, err := e.cfg.Keys.PIV(k)
	if err != nil {
		return nil, err
	}
	fido := fidokey.Open(k.FIDOPath)
	touch := func(ctx context.Context) {
		if ui.Touch != nil {
			ui.Touch(ctx, serial)
		}
	}

	// The user chooses both PINs before the key is touched, so a PIN that
	// fails the policy leaves the key as it was.
	fpin, err := askPIN(ctx, ui, PINRequest{Kind: FIDO2PIN, Serial: serial, User: req.User.DisplayName, MinLength: e.cfg.Settings.MinPINLength, MaxLength: 63}, e.checkFIDOPIN)
	if err != nil {
		return nil, err
	}
	ppin, err := askPIN(ctx, ui, PINRequest{Kind: PIVPIN, Serial: serial, User: req.User.DisplayName, MinLength: 6, MaxLength: 8}, checkPIVPIN)
	if err != nil {
		return nil, err
	}

	rec := &Record{Serial: serial, ExternalID: req.User.ExternalID, Role: string(req.Role), Batch: req.Batch}
	if err := e.advance(ctx, rec, StageDevice); err != nil {
		return nil, err
	}
	stop := func(err error) (*Result, error) { return e.interrupted(ctx, k, rec, err) }

	// Genuine: a fresh key in 9a, attested by the key in the same session
	// of work, chained to a trusted root with this serial.
	ui.progress(Event{Step: StepGenuine, Serial: serial, User: req.User.ExternalID})
	defaultPIN := device.Callbacks{PIN: func(context.Context, string) (string, error) { return defaultPIVPIN, nil }, Touch: touch}
	crashpoint.Before(crashpoint.KeyPIVGenerate)
	pub, err := timed(e, func() (crypto.PublicKey, error) {
		return card.Generate(ctx, defaultPIN, 0x9a, pivkey.KeySpec{Algorithm: "ECCP256", PINPolicy: "once", TouchPolicy: "never"})
	})
	if err != nil {
		return stop(fmt.Errorf("generating the PIV key in 9a: %w", err))
	}
	crashpoint.After(crashpoint.KeyPIVGenerate)
	att, err := timed(e, func() (*pivkey.Attestation, error) { return card.Attest(ctx, 0x9a) })
	if err != nil {
		return stop(fmt.Errorf("attesting 9a: %w", err))
	}
	verdict, err := pivkey.VerifyAttestation(att, pivkey.AttestationPolicy{ExtraRoots: e.pivRoots, PublicKey: pub, Serial: serial, Now: e.now()})
	if err != nil {
		return stop(fmt.Errorf("%w: PIV attestation: %v", ErrNotGenuine, err))
	}

	// FIDO2 PIN, to policy.
	ui.progress(Event{Step: StepFIDO2PIN, Serial: serial, User: req.User.ExternalID})
	crashpoint.Before(crashpoint.KeyFIDOPIN)
	if err := e.timedErr(func() error { return fido.SetPIN(ctx, fpin) }); err != nil {
		return stop(fmt.Errorf("setting the FIDO2 PIN: %w", err))
	}
	if st, err := timed(e, func() (device.FIDOStatus, error) { return fido.Status(ctx) }); err == nil && st.MinPINLength < e.cfg.Settings.MinPINLength {
		if err := e.timedErr(func() error { return fido.SetMinPINLength(ctx, fpin, e.cfg.Settings.MinPINLength) }); err != nil && !errors.Is(err, device.ErrNotSupported) {
			return stop(fmt.Errorf("setting the key's minimum PIN length: %w", err))
		}
	}
	crashpoint.After(crashpoint.KeyFIDOPIN)
	fcb := device.Callbacks{PIN: func(context.Context, string) (string, error) { return fpin, nil }, Touch: touch}

	// The organisation's credential.
	ui.progress(Event{Step: StepFIDO2, Serial: serial, User: req.User.ExternalID, Detail: e.cfg.Settings.RPID})
	userHandle := sha256.Sum256([]byte("keydesk-user:" + req.User.ExternalID))
	chal := make([]byte, 32)
	rand.Read(chal)
	crashpoint.Before(crashpoint.KeyFIDOCredential)
	reg, err := timed(e, func() (*fidokey.Registration, error) {
		return fido.MakeCredential(ctx, fidokey.MakeOptions{RPID: e.cfg.Settings.RPID, RPName: e.cfg.Settings.RPName,
			UserID: userHandle[:], UserName: req.User.Email, DisplayName: req.User.DisplayName, Challenge: chal,
			Discoverable: e.cfg.Settings.Discoverable, CredProtect: e.cfg.Settings.CredProtect}, fcb)
	})
	if err != nil {
		return stop(fmt.Errorf("making the FIDO2 credential: %w", err))
	}
	crashpoint.After(crashpoint.KeyFIDOCredential)
	cdh := sha256.Sum256(reg.ClientDataJSON)
	if res := e.roots.FIDO(attest.FIDOInput{AttestationObject: reg.AttestationObject, ClientDataHash: cdh[:], CredentialID: reg.CredentialID,
		PublicKey: reg.PublicKey, RPID: e.cfg.Settings.RPID}, e.now()); res.Verdict != registry.VerdictGenuine {
		return stop(fmt.Errorf("%w: FIDO2 attestation %s: %s", ErrNotGenuine, res.Verdict, res.Reason))
	}
	if reg.CredProtect != 0 && reg.CredProtect < e.cfg.Settings.CredProtect {
		return stop(fmt.Errorf("the key made the credential with credProtect %d, policy needs %d", reg.CredProtect, e.cfg.Settings.CredProtect))
	}

	// A local test sign-in, with the PIN, before anything is registered.
	ui.progress(Event{Step: StepSignIn, Serial: serial, User: req.User.ExternalID})
	tchal := make([]byte, 32)
	rand.Read(tchal)
	as, err := timed(e, func() (*fidokey.Assertion, error) {
		return fido.GetAssertion(ctx, fidokey.AssertOptions{RPID: e.cfg.Settings.RPID, Challenge: tchal, CredentialIDs: [][]byte{reg.CredentialID}, UserVerification: true}, fcb)
	})
	if err != nil {
		return stop(fmt.Errorf("%w: %w", ErrTestSignIn, err))
	}
	if r, err := credential.VerifyAssertion(reg.PublicKey, e.cfg.Settings.RPID, tchal, reg.SignCount,
		credential.Assertion{AuthenticatorData: as.AuthenticatorData, ClientDataJSON: as.ClientDataJSON, Signature: as.Signature}); err != nil {
		return stop(fmt.Errorf("%w: %v", ErrTestSignIn, err))
	} else if !r.UserVerified {
		return stop(fmt.Errorf("%w: the key did not verify the PIN", ErrTestSignIn))
	}

	// PIV: random management key (behind the PIN) and PUK, sealed and
	// journalled before the key changes; then the user's PIV PIN.
	ui.progress(Event{Step: StepPIV, Serial: serial, User: req.User.ExternalID})
	puk, err := randomDigits(8)
	if err != nil {
		return stop(err)
	}
	rotStart := time.Now()
	var sealTime time.Duration
	_, err = card.RotateManagementKey(ctx, defaultPIN, pivkey.RotateOptions{Protect: true, Escrow: func(mk []byte, alg device.MgmtKeyAlgorithm) error {
		t := time.Now()
		defer func() { sealTime = time.Since(t) }()
		blob, err := escrow.Seal(escrow.PIVSecrets{Serial: serial, PUK: puk, ManagementKey: mk, Algorithm: algName(alg), Created: e.now().UTC()}, e.cfg.Settings.HelpdeskRecipients)
		if err != nil {
			return err
		}
		rec.Escrow = blob
		if err := e.advance(ctx, rec, StageSealed); err != nil {
			return err
		}
		crashpoint.Before(crashpoint.KeyPIVMgmtKey)
		return nil
	}})
	e.device += time.Since(rotStart) - sealTime
	if err != nil {
		return stop(fmt.Errorf("setting a random PIV management key: %w", err))
	}
	crashpoint.After(crashpoint.KeyPIVMgmtKey)
	if err := crashpoint.Around(crashpoint.KeyPIVPUK, func() error {
		return e.timedErr(func() error { return card.ChangePUK(ctx, defaultPUK, puk) })
	}); err != nil {
		return stop(fmt.Errorf("setting a random PUK: %w", err))
	}
	if err := crashpoint.Around(crashpoint.KeyPIVPIN, func() error {
		return e.timedErr(func() error { return card.ChangePIN(ctx, defaultPIVPIN, ppin) })
	}); err != nil {
		return stop(fmt.Errorf("setting the PIV PIN: %w", err))
	}
	pcb := device.Callbacks{PIN: func(context.Context, string) (string, error) { return ppin, nil }, Touch: touch}

	ui.progress(Event{Step: StepCert, Serial: serial, User: req.User.ExternalID, Detail: e.cfg.Settings.PIVCertMode})
	subject := pkix.Name{CommonName: req.User.DisplayName, SerialNumber: req.User.ExternalID}
	var certDER []byte
	var csrPath string
	switch e.cfg.Settings.PIVCertMode {
	case settings.CertCSR:
		csr, err := timed(e, func() ([]byte, error) { return card.CSR(ctx, pcb, 0x9a, subject) })
		if err != nil {
			return stop(fmt.Errorf("making the CSR: %w", err))
		}
		csrPath, err = writeCSR(e.cfg.Settings.CSRDir, serial, req.User.ExternalID, csr)
		if err != nil {
			return stop(err)
		}
		// No certificate is stored yet, so the CHUID and CCC that SelfSign
		// would write come here (existing ones are kept).
		if err := e.timedErr(func() error { return card.EnsureCardIDs(ctx, pcb) }); err != nil {
			return stop(fmt.Errorf("writing the CHUID and CCC: %w", err))
		}
	default:
		crashpoint.Before(crashpoint.KeyPIVCert)
		cert, err := timed(e, func() (*x509.Certificate, error) {
			return card.SelfSign(ctx, pcb, 0x9a, subject, time.Duration(e.cfg.Settings.CertValidityDays)*24*time.Hour)
		})
		if err != nil {
			return stop(fmt.Errorf("self-signing the 9a certificate: %w", err))
		}
		crashpoint.After(crashpoint.KeyPIVCert)
		certDER = cert.Raw
	}
	pkix, err := x509.MarshalPKIXPublicKey(pub)
	if err != nil {
		return stop(err)
	}

	er := client.Enrolment{
		User: req.User,
		Key: client.EnrolKey{Serial: sstr, Model: k.Model, Firmware: k.Firmware.String(), Role: string(req.Role),
			Status: string(registry.KeyPending), Label: fmt.Sprintf("%s (%s)", req.User.DisplayName, req.Role)},
		FIDO2: []client.FIDO2Credential{{CredentialID: reg.CredentialID, PublicKey: reg.PublicKey, AAGUID: reg.AAGUID[:],
			RPID: e.cfg.Settings.RPID, SignCount: as.SignCount, CredProtect: e.cfg.Settings.CredProtect,
			AttestationObject: reg.AttestationObject, AttestationClientDataJSON: reg.ClientDataJSON}},
		PIV: []client.PIVSlot{{Slot: "9a", PublicKey: pkix, Certificate: certDER, AttestationCert: att.Certificate.Raw, AttestationIntermediate: att.Intermediate.Raw}},
	}
	rec.Request, err = json.Marshal(er)
	if err != nil {
		return stop(err)
	}
	rec.Checks.Genuine, rec.Checks.CSRPath = verdict.Root, csrPath
	if err := e.advance(ctx, rec, StagePrepared); err != nil {
		return stop(err)
	}

	// A registry outage from here on (registration, escrow, activation)
	// is waited out in place when asked to, with the PINs still at hand
	// for the proofs, the identity providers and the PIN-change policy.
	p := pins{fido: fpin, piv: ppin}
	var res *Result
	finish := func() (err error) {
		res, err = e.finish(ctx, rec, k, ui, p)
		return err
	}
	if req.WaitRegistry {
		err = e.waitRegistry(ctx, ui, req.User.ExternalID, finish)
	} else {
		err = finish()
	}
	if err != nil {
		return nil, err
	}
	mk := ProviderMaker(fido, fcb)
	if err := e.complete(ctx, rec, k, res, ui, p, func(ctx context.Context, o *idp.CreationOptions) (idp.Credential, error) {
		return timed(e, func() (idp.Credential, error) { return mk(ctx, o) })
	}); err != nil {
		return nil, err
	}
	ui.progress(Event{Step: StepDone, Serial: serial, User: req.User.ExternalID, Detail: string(res.Status)})
	return res, nil
}

// registerProviders registers the enrolled key res with every identity
// provider (Config.IDP) and keeps the outcomes in res. A provider that
// refuses or is down does not undo the enrolment: its outcome says so (a
// write to a provider that is down waits in the provider outbox).
func (e *Enroller) registerProviders(ctx context.Context, res *Result, ui UI, mk idp.Maker) error {
	if e.cfg.IDP == nil || len(e.cfg.IDP.Providers()) == 0 {
		return nil
	}
	ui.progress(Event{Step: StepProviders, Serial: res.Serial, User: res.ExternalID, Detail: strings.Join(e.cfg.IDP.Providers(), ", ")})
	kd, err := e.cfg.Registry.Key(ctx, res.KeyID)
	if err != nil {
		return fmt.Errorf("key %d is enrolled and active, but reading it back for the identity providers failed: %w", res.Serial, err)
	}
	u, err := e.cfg.Registry.User(ctx, kd.OwnerID)
	if err != nil {
		return fmt.Errorf("key %d is enrolled and active, but reading its user for the identity providers failed: %w", res.Serial, err)
	}
	out, err := e.cfg.IDP.RegisterKey(ctx, kd, u, mk)
	res.Providers = out
	if err != nil {
		return fmt.Errorf("key %d is enrolled and active, but registering it with the identity providers failed: %w", res.Serial, err)
	}
	return nil
}

// ProviderMaker makes credentials for identity providers (idp.Maker) on
// the key behind dev, with cb answering its PIN and touch requests.
func ProviderMaker(dev *fidokey.Device, cb device.Callbacks) idp.Maker {
	return func(ctx context.Context, o *idp.CreationOptions) (idp.Credential, error) {
		r, err := dev.MakeCredential(ctx, providerMakeOptions(o), cb)
		if err != nil {
			return idp.Credential{}, err
		}
		return idp.Credential{ID: r.CredentialID, ClientDataJSON: r.ClientDataJSON, AttestationObject: r.AttestationObject,
			PublicKey: r.PublicKey, AAGUID: r.AAGUID, SignCount: r.SignCount, Transports: []string{"usb"}}, nil
	}
}

// providerMakeOptions are the key's make-credential options for a
// provider's creation options (WebAuthn L2 §5.4), exactly as handed out:
// the provider's relying party, user handle and challenge; its exclude
// list; a discoverable credential when it asks for one ("required" or
// "preferred", §5.4.4); user verification required when it says so
// (§5.4.6; the key has a PIN, so it is always done); its credProtect policy
// and whether it is enforced (CTAP 2.1 §12.1); hmac-secret (§12.5); and
// clientDataJSON written for the origin it expects (§5.8.1).
func providerMakeOptions(o *idp.CreationOptions) fidokey.MakeOptions {
	return fidokey.MakeOptions{RPID: o.RPID, RPName: o.RPName, UserID: o.UserID, UserName: o.UserName, DisplayName: o.UserDisplayName,
		Challenge: o.Challenge, ExcludeCredentials: o.ExcludeCredentials,
		Discoverable: o.ResidentKey == "required" || o.ResidentKey == "preferred", RequireUV: o.UserVerification == "required",
		CredProtect: o.CredProtect, EnforceCredProtect: o.EnforceCredProtect, HMACSecret: o.HMACSecret, Origin: o.Origin}
}

func algName(a device.MgmtKeyAlgorithm) string {
	switch a {
	case device.Mgmt3DES:
		return "3des"
	case device.MgmtAES128:
		return "aes128"
	case device.MgmtAES256:
		return "aes256"
	}
	return "aes192"
}

func writeCSR(dir string, serial uint32, externalID string, der []byte) (string, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return "", fmt.Errorf("writing the CSR: %w", err)
	}
	safe := strings.Map(func(r rune) rune {
		if r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-' || r == '_' {
			return r
		}
		return '_'
	}, externalID)
	p := filepath.Join(dir, fmt.Sprintf("%d-%s.csr.pem", serial, safe))
	b := der
	if !bytes.HasPrefix(der, []byte("-----BEGIN")) {
		b = pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: der})
	}
	if err := os.WriteFile(p, b, 0o644); err != nil {
		return "", fmt.Errorf("writing the CSR: %w", err)
	}
	return p, nil
}

// pins are the PINs of a fresh enrolment, still at hand for the proofs,
// the identity providers and the PIN-change policy; a resumed enrolment
// has them typed again (UI.PIN), never from storage.
type pins struct {
	fido, piv string
	// resumed: the PINs were typed again for a resumed enrolment, so the
	// FIDO2 proof is made with user verification (it stands in for the
	// fresh enrolment's local test sign-in).
	resumed bool
	// asked: a resumed enrolment asked for them already (a wait for the
	// registry does not ask again).
	asked bool
}

// finish takes a prepared record through registration, escrow and the
// proofs that activate the key (prove). The journal still says escrowed
// when it returns: complete applies the policies and marks it active.
func (e *Enroller) finish(ctx context.Context, rec *Record, k device.Key, ui UI, p pins) (*Result, error) {
	serial := rec.Serial
	stop := func(err error) (*Result, error) { return e.interrupted(ctx, k, rec, err) }
	var er client.Enrolment
	if err := json.Unmarshal(rec.Request, &er); err != nil {
		return nil, fmt.Errorf("journal record of key %d: %w", serial, err)
	}
	ui.progress(Event{Step: StepRegister, Serial: serial, User: rec.ExternalID})
	if rec.Stage == StagePrepared || rec.Stage == StageQueued {
		// The idempotency key comes from the journalled request, so
		// queueing again after a crash before the journal said "queued"
		// finds the entry already queued: one request, replayed under one
		// key. A queued record queues again too: the same entry, or, when
		// the outbox lost it, the same request under the same key.
		en, err := e.cfg.Registry.QueueEnrolmentAs(ctx, registrationKey(rec), rec.Request)
		if err != nil {
			return stop(err)
		}
		if rec.Stage == StagePrepared || en.Seq != rec.OutboxSeq {
			rec.OutboxSeq = en.Seq
			if err := e.advance(ctx, rec, StageQueued); err != nil {
				return stop(err)
			}
		}
		if err := e.cfg.Registry.Flush(ctx, nil); err != nil {
			return stop(err)
		}
		keyID, err := e.registered(ctx, rec, er)
		if err != nil {
			return stop(err)
		}
		rec.KeyID = keyID
		if err := e.advance(ctx, rec, StageRegistered); err != nil {
			return stop(err)
		}
	}
	kd, err := e.cfg.Registry.Key(ctx, rec.KeyID)
	if err != nil {
		return stop(err)
	}
	if rec.Stage == StageRegistered {
		ui.progress(Event{Step: StepEscrow, Serial: serial, User: rec.ExternalID})
		if err := e.putEscrow(ctx, rec); err != nil {
			return stop(err)
		}
		if err := e.advance(ctx, rec, StageEscrowed); err != nil {
			return stop(err)
		}
	}
	// The proofs run whenever the journal does not yet say active, even
	// when the registry already does (activated by keydesk verify, or by
	// a run killed after the registry answered): the key leaves the desk
	// only with both proofs made from it.
	ui.progress(Event{Step: StepActivate, Serial: serial, User: rec.ExternalID})
	if err := e.prove(ctx, kd, k, ui, p, &rec.Checks); err != nil {
		return stop(err)
	}
	if kd, err = e.cfg.Registry.Key(ctx, rec.KeyID); err != nil {
		return stop(err)
	}
	if kd.Status != registry.KeyActive {
		return stop(fmt.Errorf("the registry left key %d %s", serial, kd.Status))
	}
	res := &Result{ExternalID: rec.ExternalID, UserID: kd.OwnerID, DisplayName: er.User.DisplayName, Serial: serial, KeyID: kd.ID,
		Role: kd.Role, Status: kd.Status}
	if cv, err := e.cfg.Registry.Coverage(ctx, kd.OwnerID); err == nil {
		res.Covered, res.Missing = cv.Covered, cv.Missing
	}
	return res, nil
}

// ErrProofNeedsPIN: a resumed enrolment needs a PIN that was not at hand
// and could not be asked for. For the proofs (the PIV PIN; the FIDO2 PIN
// for a credProtect 3 credential) nothing was sent and the key stays
// pending in the registry; for the PIN-change policy (the FIDO2 PIN) the
// registry holds it active but the journal does not say so until the
// policy is applied. Either way --resume finishes it with the PINs.
var ErrProofNeedsPIN = errors.New("the key's proof needs its PIN typed again")

// prove has the registry verify challenges signed by the key: a PIV
// signature with 9a (NIST SP 800-73-4 §3.2.4, GENERAL AUTHENTICATE), with
// the PIV PIN, and a FIDO2 assertion (WebAuthn L2 §7.2; touch only, as
// credProtect 2 needs no PIN with the credential id, or with the PIN when
// the policy is credProtect 3 or the enrolment was resumed). Both are
// signed, and checked here against the registered public keys, before
// either is sent, so a key that cannot make both proofs is never
// activated: the registry activates a pending key on its first
// verification. c records the proofs the registry accepted.
func (e *Enroller) prove(ctx context.Context, kd client.KeyDetail, k device.Key, ui UI, p pins, c *Checks) error {
	touch := func(ctx context.Context) {
		if ui.Touch != nil {
			ui.Touch(ctx, k.Serial)
		}
	}
	if len(kd.FIDO2) == 0 {
		return errors.New("the registry holds no FIDO2 credential for the key")
	}
	if len(kd.PIV) > 0 && p.piv == "" {
		return fmt.Errorf("the PIV proof of key %d: %w (the PIV PIN)", k.Serial, ErrProofNeedsPIN)
	}
	fc := kd.FIDO2[0]
	ch, err := e.cfg.Registry.Challenge(ctx, kd.ID, "fido2", fc.ID)
	if err != nil {
		return err
	}
	// credProtect 3 hides the credential from a request without user
	// verification (CTAP 2.1 §12.1), so the assertion needs the PIN then.
	acb := device.Callbacks{Touch: touch}
	uv := fc.CredProtect >= 3 || (p.resumed && p.fido != "")
	if uv {
		if p.fido == "" {
			return fmt.Errorf("the FIDO2 proof of key %d (credProtect 3): %w (the FIDO2 PIN)", k.Serial, ErrProofNeedsPIN)
		}
		fp := p.fido
		acb.PIN = func(context.Context, string) (string, error) { return fp, nil }
	}
	as, err := timed(e, func() (*fidokey.Assertion, error) {
		return fidokey.Open(k.FIDOPath).GetAssertion(ctx, fidokey.AssertOptions{RPID: ch.RPID, Challenge: ch.Challenge.Nonce,
			CredentialIDs: [][]byte{ch.FIDO2CredentialID}, UserVerification: uv}, acb)
	})
	if err != nil {
		return fmt.Errorf("signing the registry's challenge: %w", err)
	}
	fa := credential.Assertion{AuthenticatorData: as.AuthenticatorData, ClientDataJSON: as.ClientDataJSON, Signature: as.Signature}
	if r, err := credential.VerifyAssertion(fc.PublicKey, ch.RPID, ch.Challenge.Nonce, 0, fa); err != nil {
		return fmt.Errorf("the key's FIDO2 signature does not verify: %w", err)
	} else if uv && !r.UserVerified {
		return fmt.Errorf("%w: the key did not verify the FIDO2 PIN", ErrTestSignIn)
	}
	var pch client.IssuedChallenge
	var sig []byte
	if len(kd.PIV) > 0 {
		ppin := p.piv
		slot := kd.PIV[0]
		if pch, err = e.cfg.Registry.Challenge(ctx, kd.ID, "piv", slot.ID); err != nil {
			return err
		}
		pub, err := x509.ParsePKIXPublicKey(slot.PublicKey)
		if err != nil {
			return err
		}
		card, err := e.cfg.Keys.PIV(k)
		if err != nil {
			return err
		}
		sig, err = timed(e, func() ([]byte, error) {
			return card.Sign(ctx, device.Callbacks{PIN: func(context.Context, string) (string, error) { return ppin, nil }, Touch: touch}, 0x9a, pub, pch.Challenge.Nonce)
		})
		if err != nil {
			return fmt.Errorf("signing the registry's PIV challenge: %w", err)
		}
		if err := credential.VerifyPIV(slot.PublicKey, pch.Challenge.Nonce, sig); err != nil {
			return fmt.Errorf("the key's PIV signature does not verify: %w", err)
		}
	}
	crashpoint.Before(crashpoint.RegistryVerify)
	if sig != nil {
		pv, err := e.cfg.Registry.VerifyPIV(ctx, pch.Challenge.ID, sig)
		if err != nil {
			return err
		}
		if !pv.OK {
			return fmt.Errorf("the registry did not accept the key's PIV signature: %s", pv.Reason)
		}
		if pv.ActivationRefused != "" {
			return fmt.Errorf("the registry verified the key but left it %s (%s)", pv.KeyStatus, pv.ActivationRefused)
		}
		c.PIVProof = true
	}
	v, err := e.cfg.Registry.VerifyFIDO2(ctx, ch.Challenge.ID, fa)
	if err != nil {
		return err
	}
	crashpoint.After(crashpoint.RegistryVerify)
	if !v.OK {
		return fmt.Errorf("the registry did not accept the key's FIDO2 signature: %s", v.Reason)
	}
	if v.ActivationRefused != "" {
		return fmt.Errorf("the registry verified the key but left it %s (%s)", v.KeyStatus, v.ActivationRefused)
	}
	c.FIDO2Proof = true
	return nil
}

// Unfinished lists journalled enrolments that did not reach active.
func (e *Enroller) Unfinished(ctx context.Context) ([]*Record, error) {
	all, err := e.j.list(ctx, "")
	if err != nil {
		return nil, err
	}
	var out []*Record
	for _, r := range all {
		if r.Stage != StageActive {
			out = append(out, r)
		}
	}
	return out, nil
}

// EnrolUser enrols a key for an existing user and, when that leaves the
// user without both a primary and a backup, asks (UI.Confirm) to enrol the
// backup now and does so. With req.WaitRegistry each key's enrolment waits
// out a registry outage as a batch's does.
func (e *Enroller) EnrolUser(ctx context.Context, req Request, ui UI) ([]*Result, error) {
	res, err := e.EnrolKey(ctx, req, ui)
	if err != nil {
		return nil, err
	}
	out := []*Result{res}
	if res.Covered || ui.Confirm == nil {
		return out, nil
	}
	ok, err := ui.Confirm(ctx, fmt.Sprintf("%s is not covered yet (missing: %s). Enrol the backup key now?", res.DisplayName, strings.Join(res.Missing, ", ")))
	if err != nil || !ok {
		return out, err
	}
	next := req
	next.Serial, next.Role = 0, ""
	res2, err := e.EnrolKey(ctx, next, ui)
	if err != nil {
		return out, err
	}
	return append(out, res2), nil
}

// Finished reports whether key serial's enrolment is journalled as done
// (active in the registry), so the key may leave the desk.
func (e *Enroller) Finished(ctx context.Context, serial uint32) (bool, error) {
	rec, err := e.j.get(ctx, serial)
	if err != nil || rec == nil {
		return false, err
	}
	return rec.Stage == StageActive, nil
}
