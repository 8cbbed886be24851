package enrol

import (
	"context"
	"crypto/sha256"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"strconv"
	"time"

	"github.com/keydesk/keydesk/app/idp"
	"github.com/keydesk/keydesk/app/keys"
	"github.com/keydesk/keydesk/device"
	"github.com/keydesk/keydesk/device/fidokey"
	"github.com/keydesk/keydesk/device/pivkey"
	"github.com/keydesk/keydesk/internal/crashpoint"
	"github.com/keydesk/keydesk/registry"
	"github.com/keydesk/keydesk/registry/attest"
	"github.com/keydesk/keydesk/registry/client"
)

// The PIN-change policy on a key (Result.PINChange).
const (
	// PINChangeForced: the key demands a new FIDO2 PIN before its next
	// use (CTAP 2.1 §6.11.4, forcePINChange).
	PINChangeForced = "forced"
	// PINChangeUnsupported: the key cannot be told to (firmware before
	// CTAP 2.1 authenticatorConfig).
	PINChangeUnsupported = "unsupported"
)

// Checks is what a key passed on its way to active, as the journal keeps
// it; Result carries the same fields.
type Checks struct {
	Genuine    string   `json:"genuine,omitempty"`
	CSRPath    string   `json:"csr_path,omitempty"`
	FIDO2Proof bool     `json:"fido2_proof,omitempty"`
	PIVProof   bool     `json:"piv_proof,omitempty"`
	PINChange  string   `json:"pin_change,omitempty"`
	NotRedone  []string `json:"not_redone,omitempty"`
}

func (r *Result) setChecks(c Checks) {
	r.Genuine, r.CSRPath, r.FIDO2Proof, r.PIVProof, r.PINChange, r.NotRedone = c.Genuine, c.CSRPath, c.FIDO2Proof, c.PIVProof, c.PINChange, c.NotRedone
}

// complete follows the proofs, in a fresh enrolment and a resumed one
// alike: the identity providers (a provider that makes its own credential
// gets one made on the key by mk, with exactly its creation options), then
// the PIN-change policy — last, since the key refuses its PIN from then on
// until it is changed — and then the journal's "active", with the checks.
// Until then the journal keeps the key unfinished, so a crash in between
// is resumed and these steps run again (each finds what is already done).
func (e *Enroller) complete(ctx context.Context, rec *Record, k device.Key, res *Result, ui UI, p pins, mk idp.Maker) error {
	keep := func(err error) error {
		rec.Error = said(err)
		e.j.put(context.WithoutCancel(ctx), rec)
		return err
	}
	if err := e.registerProviders(ctx, res, ui, mk); err != nil {
		return keep(err)
	}
	if e.cfg.Settings.ForcePINChange {
		if err := e.forcePINChange(ctx, rec, k, p); err != nil {
			return keep(err)
		}
	}
	rec.Error = ""
	if err := e.advance(ctx, rec, StageActive); err != nil {
		return err
	}
	res.setChecks(rec.Checks)
	return nil
}

// forcePINChange applies the PIN-change policy to key k: a key that
// already demands a new PIN (a run killed after telling it) is left so.
func (e *Enroller) forcePINChange(ctx context.Context, rec *Record, k device.Key, p pins) error {
	fido := fidokey.Open(k.FIDOPath)
	st, err := timed(e, func() (device.FIDOStatus, error) { return fido.Status(ctx) })
	if err != nil {
		return fmt.Errorf("key %d is enrolled and active, but reading it for the PIN-change policy failed: %w", k.Serial, err)
	}
	if st.ForcePINChange {
		rec.Checks.PINChange = PINChangeForced
		return nil
	}
	if p.fido == "" {
		return fmt.Errorf("key %d is enrolled and active, but the PIN-change policy: %w (the FIDO2 PIN)", k.Serial, ErrProofNeedsPIN)
	}
	err = crashpoint.Around(crashpoint.KeyFIDOForcePIN, func() error {
		return e.timedErr(func() error { return fido.ForcePINChange(ctx, p.fido) })
	})
	switch {
	case errors.Is(err, device.ErrNotSupported):
		rec.Checks.PINChange = PINChangeUnsupported
	case err != nil:
		return fmt.Errorf("key %d is enrolled and active, but forcing a FIDO2 PIN change failed: %w", k.Serial, err)
	default:
		rec.Checks.PINChange = PINChangeForced
	}
	return nil
}

// Resume finishes the journalled enrolment of key serial: registration,
// escrow, the proofs, the identity providers and the PIN-change policy,
// as a fresh enrolment does them. The person types the key's FIDO2 and
// PIV PINs again (UI.PIN; they were never stored): the PIV proof needs
// the PIV PIN, the PIN-change policy and the providers' credentials the
// FIDO2 PIN. Without them (no UI.PIN) the key is registered and escrowed
// but stays pending, and the error matches ErrProofNeedsPIN. The key's
// attestation is taken again. What cannot be done again is said in
// Result.NotRedone and kept in the journal. A key left half set up (stage
// device or sealed) cannot be resumed; the error says to reset it.
func (e *Enroller) Resume(ctx context.Context, serial uint32, ui UI) (*Result, error) {
	return e.resume(ctx, serial, ui, &pins{}, false)
}

// ResumeWaiting is Resume riding out a registry that cannot be reached,
// for up to Config.RegistryWait, as Request.WaitRegistry does: the PINs
// are asked for once and the registry's part is tried again in place.
func (e *Enroller) ResumeWaiting(ctx context.Context, serial uint32, ui UI) (*Result, error) {
	return e.resume(ctx, serial, ui, &pins{}, true)
}

func (e *Enroller) resume(ctx context.Context, serial uint32, ui UI, p *pins, wait bool) (*Result, error) {
	start := time.Now()
	e.device = 0
	rec, err := e.j.get(ctx, serial)
	if err != nil {
		return nil, err
	}
	if rec == nil {
		return nil, fmt.Errorf("key %d has no enrolment to resume", serial)
	}
	if halfSetUp(rec.Stage) {
		return nil, &InterruptedError{Serial: serial, Stage: rec.Stage, Err: errors.New(rec.Error)}
	}
	if rec.Stage == StageActive {
		kd, err := e.cfg.Registry.KeyBySerial(ctx, strconv.FormatUint(uint64(serial), 10))
		if err != nil {
			return nil, err
		}
		res := &Result{ExternalID: rec.ExternalID, UserID: kd.OwnerID, Serial: serial, KeyID: kd.ID, Role: kd.Role, Status: kd.Status, Resumed: true}
		res.setChecks(rec.Checks)
		return res, nil
	}
	var er client.Enrolment
	if err := json.Unmarshal(rec.Request, &er); err != nil {
		return nil, fmt.Errorf("journal record of key %d: %w", serial, err)
	}
	k, err := timed(e, func() (device.Key, error) { return e.cfg.Keys.Find(ctx, serial) })
	if err != nil || k.Reader == "" || k.FIDOPath == "" {
		if ui.InsertKey == nil {
			if err == nil {
				err = fmt.Errorf("%w with serial %d and both its FIDO2 and smart-card interfaces", keys.ErrNoKey, serial)
			}
			return nil, err
		}
		if k, err = e.pickKey(ctx, Request{Serial: serial, Role: registry.KeyRole(rec.Role), User: er.User}, ui); err != nil {
			return nil, err
		}
	}
	stop := func(err error) (*Result, error) { return e.interrupted(ctx, k, rec, err) }
	fido := fidokey.Open(k.FIDOPath)
	st, err := timed(e, func() (device.FIDOStatus, error) { return fido.Status(ctx) })
	if err != nil {
		return stop(fmt.Errorf("reading FIDO2: %w", err))
	}
	if !p.asked {
		*p = pins{resumed: true, asked: true}
		if ui.PIN != nil {
			// A key that already demands a new PIN refuses the old one.
			if !st.ForcePINChange {
				if p.fido, err = ui.PIN(ctx, PINRequest{Kind: FIDO2PIN, Serial: serial, User: er.User.DisplayName, MinLength: e.cfg.Settings.MinPINLength, MaxLength: 63}); err != nil {
					return nil, err
				}
			}
			if p.piv, err = ui.PIN(ctx, PINRequest{Kind: PIVPIN, Serial: serial, User: er.User.DisplayName, MinLength: 6, MaxLength: 8}); err != nil {
				return nil, err
			}
		}
	}
	rec.Checks.NotRedone = nil
	if err := e.regenuine(ctx, rec, er, k, st, *p); err != nil {
		return stop(err)
	}
	var res *Result
	finish := func() (err error) {
		res, err = e.finish(ctx, rec, k, ui, *p)
		return err
	}
	if wait {
		err = e.waitRegistry(ctx, ui, rec.ExternalID, finish)
	} else {
		err = finish()
	}
	if err != nil {
		return nil, err
	}
	// The proofs verified both PINs; what else needs them follows.
	touch := func(ctx context.Context) {
		if ui.Touch != nil {
			ui.Touch(ctx, serial)
		}
	}
	if err := e.repin(ctx, rec, er, k, st, *p, touch); err != nil {
		return stop(err)
	}
	var mk idp.Maker
	if p.fido != "" {
		fp := p.fido
		m := ProviderMaker(fido, device.Callbacks{PIN: func(context.Context, string) (string, error) { return fp, nil }, Touch: touch})
		mk = func(ctx context.Context, o *idp.CreationOptions) (idp.Credential, error) {
			return timed(e, func() (idp.Credential, error) { return m(ctx, o) })
		}
	}
	if err := e.complete(ctx, rec, k, res, ui, *p, mk); err != nil {
		return nil, err
	}
	res.Resumed = true
	res.Timing = Timing{Total: time.Since(start), Device: e.device, Keydesk: time.Since(start) - e.device}
	ui.progress(Event{Step: StepDone, Serial: serial, User: rec.ExternalID, Detail: string(res.Status)})
	return res, nil
}

// Plain words for what a resumed enrolment does not do again
// (Result.NotRedone).
const (
	notRedoneFIDOAttestation = "FIDO2 attestation: checked again from the attestation journalled when the credential was made " +
		"(a key attests a credential only as it makes it); the FIDO2 proof shows this key holds that credential"
	notRedoneSignInUV = "local test sign-in: not repeated; the registry's FIDO2 challenge, signed with the FIDO2 PIN typed again " +
		"(user verification), stands in for it"
	notRedoneSignInForced = "local test sign-in and FIDO2 PIN: not checked again; the key already demands a new FIDO2 PIN " +
		"(the PIN-change policy), so it refuses the old one and the FIDO2 proof was made with a touch alone"
	notRedoneNoFIDOPIN = "FIDO2 PIN: not typed again, so the minimum PIN length and the identity providers' credentials " +
		"could not be checked or made on the key"
	notRedoneCSR = "certificate request: the one written at enrolment is gone and was not made again (it needs the PIV PIN)"
)

// regenuine checks again, before anything more is registered or proved,
// that the key is the genuine key enrolled: a fresh PIV attestation of 9a
// (Yubico ATTEST) chained to a trusted root, for this serial and the
// journalled public key; and the journalled FIDO2 attestation, which the
// key cannot give again. The chosen PINs' policy is not: the PINs are not
// stored, and the key enforces its minimum PIN length itself (repin).
func (e *Enroller) regenuine(ctx context.Context, rec *Record, er client.Enrolment, k device.Key, st device.FIDOStatus, p pins) error {
	if len(er.PIV) > 0 {
		card, err := e.cfg.Keys.PIV(k)
		if err != nil {
			return err
		}
		att, err := timed(e, func() (*pivkey.Attestation, error) { return card.Attest(ctx, 0x9a) })
		if err != nil {
			return fmt.Errorf("attesting 9a: %w", err)
		}
		pub, err := x509.ParsePKIXPublicKey(er.PIV[0].PublicKey)
		if err != nil {
			return fmt.Errorf("journal record of key %d: %w", rec.Serial, err)
		}
		verdict, err := pivkey.VerifyAttestation(att, pivkey.AttestationPolicy{ExtraRoots: e.pivRoots, PublicKey: pub, Serial: rec.Serial, Now: e.now()})
		if err != nil {
			return fmt.Errorf("%w: PIV attestation: %v", ErrNotGenuine, err)
		}
		rec.Checks.Genuine = verdict.Root
	}
	for _, c := range er.FIDO2 {
		cdh := sha256.Sum256(c.AttestationClientDataJSON)
		if r := e.roots.FIDO(attest.FIDOInput{AttestationObject: c.AttestationObject, ClientDataHash: cdh[:], CredentialID: c.CredentialID,
			PublicKey: c.PublicKey, RPID: c.RPID}, e.now()); r.Verdict != registry.VerdictGenuine {
			return fmt.Errorf("%w: FIDO2 attestation %s: %s", ErrNotGenuine, r.Verdict, r.Reason)
		}
	}
	rec.Checks.NotRedone = append(rec.Checks.NotRedone, notRedoneFIDOAttestation)
	switch {
	case st.ForcePINChange:
		rec.Checks.NotRedone = append(rec.Checks.NotRedone, notRedoneSignInForced)
	case p.fido != "":
		rec.Checks.NotRedone = append(rec.Checks.NotRedone, notRedoneSignInUV)
	default:
		rec.Checks.NotRedone = append(rec.Checks.NotRedone, notRedoneNoFIDOPIN)
	}
	return nil
}

// repin does, after the proofs verified the PINs typed again, what else
// a fresh enrolment does with them: the key's minimum FIDO2 PIN length
// raised to the policy (CTAP 2.1 §6.11.4) when it is lower, and the
// certificate request written again (CSR mode) when the one written at
// enrolment is gone.
func (e *Enroller) repin(ctx context.Context, rec *Record, er client.Enrolment, k device.Key, st device.FIDOStatus, p pins, touch func(context.Context)) error {
	if p.fido != "" && !st.ForcePINChange && st.MinPINLength < e.cfg.Settings.MinPINLength {
		err := e.timedErr(func() error {
			return fidokey.Open(k.FIDOPath).SetMinPINLength(ctx, p.fido, e.cfg.Settings.MinPINLength)
		})
		if err != nil && !errors.Is(err, device.ErrNotSupported) {
			return fmt.Errorf("setting the key's minimum PIN length: %w", err)
		}
	}
	if len(er.PIV) == 0 || len(er.PIV[0].Certificate) != 0 {
		return nil // a self-signed certificate is on the key and in the registry
	}
	if rec.Checks.CSRPath != "" {
		if _, err := os.Stat(rec.Checks.CSRPath); err == nil {
			return nil
		}
	}
	if p.piv == "" {
		rec.Checks.CSRPath = ""
		rec.Checks.NotRedone = append(rec.Checks.NotRedone, notRedoneCSR)
		return nil
	}
	card, err := e.cfg.Keys.PIV(k)
	if err != nil {
		return err
	}
	ppin := p.piv
	pcb := device.Callbacks{PIN: func(context.Context, string) (string, error) { return ppin, nil }, Touch: touch}
	subject := pkix.Name{CommonName: er.User.DisplayName, SerialNumber: er.User.ExternalID}
	csr, err := timed(e, func() ([]byte, error) { return card.CSR(ctx, pcb, 0x9a, subject) })
	if err != nil {
		return fmt.Errorf("making the CSR: %w", err)
	}
	path, err := writeCSR(e.cfg.Settings.CSRDir, rec.Serial, er.User.ExternalID, csr)
	if err != nil {
		return err
	}
	rec.Checks.CSRPath = path
	return nil
}
