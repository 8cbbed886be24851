package pivkey

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/sha512"
	"crypto/x509"
	"encoding/binary"
	"errors"
	"fmt"
	"time"

	"github.com/ebfe/scard"
	"github.com/go-piv/piv-go/v2/piv"

	"github.com/keydesk/keydesk/device"
	"github.com/keydesk/keydesk/device/pcsc"
)

// Prompts passed to device.Callbacks.PIN.
const (
	PromptPIN = "PIV PIN"
	PromptPUK = "PIV PUK"
)

// DefaultManagementKey is the factory management key (FACTS.md; 3DES before
// firmware 5.7, AES-192 from 5.7).
var DefaultManagementKey = []byte{
	1, 2, 3, 4, 5, 6, 7, 8, 1, 2, 3, 4, 5, 6, 7, 8, 1, 2, 3, 4, 5, 6, 7, 8,
}

// ErrManagementKeyNeeded: the management key is neither the default nor
// stored on the key, and the caller supplied none.
var ErrManagementKeyNeeded = errors.New("the PIV management key is needed: it is not the default and not stored on the key")

// ErrNotConfirmed: a destructive operation was called without the serial of
// the key the person confirmed.
var ErrNotConfirmed = errors.New("destructive operation not confirmed: pass the serial of the key the person chose")

// Card is one YubiKey's PIV application behind a PC/SC reader. It holds no
// connection: every operation connects, works and releases the card, so
// nothing is held while the desk is idle.
type Card struct {
	// Reader is the PC/SC reader name.
	Reader string
	// Serial, when not zero, is checked before every operation; a different
	// key in the reader gives *device.SerialMismatchError.
	Serial uint32
	// ManagementKey, when set, is used instead of the default or the
	// PIN-protected key stored on the card (an escrowed key, for instance).
	ManagementKey []byte
}

// Open returns a Card for the key in reader; it does not touch the card.
func Open(reader string, serial uint32) *Card { return &Card{Reader: reader, Serial: serial} }

// session dials, selects PIV and checks the serial.
func (c *Card) session(ctx context.Context) (*pcsc.Session, device.Version, uint32, error) {
	s, err := pcsc.Dial(ctx, c.Reader)
	if err != nil {
		return nil, device.Version{}, 0, err
	}
	if _, err := s.Select(pcsc.AIDPIV); err != nil {
		s.Close()
		return nil, device.Version{}, 0, err
	}
	v, err := s.Command(insGetVersion, 0, 0, nil)
	if err != nil || len(v) < 3 {
		s.Close()
		return nil, device.Version{}, 0, fmt.Errorf("reading firmware version: %w", c.classify(err))
	}
	fw := device.Version{Major: v[0], Minor: v[1], Patch: v[2]}
	serial, err := s.Command(insGetSerial, 0, 0, nil)
	var sn uint32
	if err == nil && len(serial) == 4 {
		sn = binary.BigEndian.Uint32(serial)
	}
	if c.Serial != 0 && sn != c.Serial {
		s.Close()
		return nil, fw, sn, &device.SerialMismatchError{Want: c.Serial, Got: sn}
	}
	return s, fw, sn, nil
}

// withPIV runs f on a piv-go connection, after checking the serial.
func (c *Card) withPIV(ctx context.Context, f func(yk *piv.YubiKey) error) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	var yk *piv.YubiKey
	err := pcsc.RetryShared(ctx, func() error {
		var err error
		yk, err = piv.Open(c.Reader)
		return err
	})
	if err != nil {
		return c.classify(err)
	}
	defer yk.Close()
	if c.Serial != 0 {
		sn, err := yk.Serial()
		if err != nil {
			return c.classify(err)
		}
		if sn != c.Serial {
			return &device.SerialMismatchError{Want: c.Serial, Got: sn}
		}
	}
	return f(yk)
}

// present reports whether a card is in the reader (PC/SC
// SCardGetStatusChange). A card pulled a moment ago may still show as
// present until the reader driver's next poll, so when it does, present
// waits up to settle for it to go.
func (c *Card) present(settle time.Duration) bool {
	sc, err := scard.EstablishContext()
	if err != nil {
		return false
	}
	defer sc.Release()
	rs := []scard.ReaderState{{Reader: c.Reader, CurrentState: scard.StateUnaware}}
	if err := pcsc.GetStatusChange(sc, rs, 0); err != nil {
		return false
	}
	if rs[0].EventState&scard.StatePresent == 0 {
		return false
	}
	rs[0].CurrentState = rs[0].EventState &^ scard.StateChanged
	if err := pcsc.GetStatusChange(sc, rs, settle); err != nil {
		return !errors.Is(err, scard.ErrUnknownReader) && !errors.Is(err, scard.ErrReaderUnavailable)
	}
	return rs[0].EventState&scard.StatePresent != 0
}

type statusCoder interface{ Status() uint16 }

// classify maps an error from piv-go or PC/SC to keydesk's typed errors.
// Whether the key went away is decided by asking PC/SC, not by reading
// messages.
func (c *Card) classify(err error) error {
	if err == nil {
		return nil
	}
	if errors.Is(err, device.ErrKeyRemoved) || errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return err
	}
	var wp *device.WrongPINError
	var sm *device.SerialMismatchError
	if errors.As(err, &wp) || errors.As(err, &sm) || errors.Is(err, device.ErrPINBlocked) || errors.Is(err, device.ErrPUKBlocked) {
		return err
	}
	var sc statusCoder
	if errors.As(err, &sc) {
		return err
	}
	var se *pcsc.StatusError
	if errors.As(err, &se) {
		return err
	}
	if !c.present(time.Second) {
		return fmt.Errorf("%w: %v", device.ErrKeyRemoved, err)
	}
	return err
}

// statusIs reports whether err carries the status word sw.
func statusIs(err error, sw uint16) bool {
	var sc statusCoder
	if errors.As(err, &sc) && sc.Status() == sw {
		return true
	}
	var se *pcsc.StatusError
	return errors.As(err, &se) && se.SW == sw
}

// pin asks the callbacks for a PIN or PUK.
func pin(ctx context.Context, cb device.Callbacks, what string) (string, error) {
	if cb.PIN == nil {
		return "", fmt.Errorf("%s needed but no way to ask for it", what)
	}
	return cb.PIN(ctx, what)
}

// mgmt resolves and authenticates the management key inside s: the caller's
// key, else the key stored PIN-protected on the card (PIVMAN bit 0x02 and
// PRINTED, as ykman keeps it), else the default. It returns the key, its
// algorithm and the PIN if one was asked for, so a later step needing the
// PIN does not ask twice.
func (c *Card) mgmt(ctx context.Context, s *pcsc.Session, fw device.Version, cb device.Callbacks) ([]byte, device.MgmtKeyAlgorithm, string, error) {
	alg := device.Mgmt3DES
	isDefault := false
	md, err := getMetadata(s, 0x9B)
	switch {
	case err == nil && md != nil:
		alg, isDefault = device.MgmtKeyAlgorithm(md.Algorithm), md.Default
	case errors.Is(err, device.ErrNotSupported):
		isDefault = true // unknown before 5.3: try the default last
	case err != nil:
		return nil, 0, "", c.classify(err)
	}
	if c.ManagementKey != nil {
		if err := authenticate(s, alg, c.ManagementKey); err != nil {
			return nil, 0, "", c.classify(err)
		}
		return c.ManagementKey, alg, "", nil
	}
	raw, err := getObject(s, objPIVMAN)
	if err != nil {
		return nil, 0, "", c.classify(err)
	}
	pm, err := parsePIVMAN(raw)
	if err != nil {
		return nil, 0, "", err
	}
	if pm.Flags&pivmanMgmStored != 0 || !isDefault {
		p, err := pin(ctx, cb, PromptPIN)
		if err != nil {
			return nil, 0, "", err
		}
		if err := verifyPIN(s, p); err != nil {
			return nil, 0, "", c.classify(err)
		}
		printed, err := getObject(s, objPrinted)
		if err != nil {
			return nil, 0, "", c.classify(err)
		}
		if printed == nil {
			if !isDefault {
				return nil, 0, "", ErrManagementKeyNeeded
			}
		} else {
			key, err := parsePrinted(printed)
			if err != nil {
				return nil, 0, "", err
			}
			if err := authenticate(s, alg, key); err != nil {
				return nil, 0, "", fmt.Errorf("the management key stored on the key was refused: %w", c.classify(err))
			}
			return key, alg, p, nil
		}
	}
	if err := authenticate(s, alg, DefaultManagementKey); err != nil {
		if errors.Is(err, ErrWrongManagementKey) {
			return nil, 0, "", ErrManagementKeyNeeded
		}
		return nil, 0, "", c.classify(err)
	}
	return DefaultManagementKey, alg, "", nil
}

// Slots keydesk reports and acts on (SP 800-73-4 §3.1 key references).
var Slots = []byte{0x9A, 0x9C, 0x9D, 0x9E}

func slotObject(slot byte) (uint32, bool) {
	switch slot {
	case 0x9A:
		return 0x5FC105, true
	case 0x9C:
		return 0x5FC10A, true
	case 0x9D:
		return 0x5FC10B, true
	case 0x9E:
		return 0x5FC101, true
	case 0xF9:
		return 0x5FFF01, true
	}
	if slot >= 0x82 && slot <= 0x95 {
		return 0x5FC10D + uint32(slot-0x82), true
	}
	return 0, false
}

func pivSlot(slot byte) (piv.Slot, error) {
	switch slot {
	case 0x9A:
		return piv.SlotAuthentication, nil
	case 0x9C:
		return piv.SlotSignature, nil
	case 0x9D:
		return piv.SlotKeyManagement, nil
	case 0x9E:
		return piv.SlotCardAuthentication, nil
	}
	if s, ok := piv.RetiredKeyManagementSlot(uint32(slot)); ok {
		return s, nil
	}
	return piv.Slot{}, fmt.Errorf("slot %02x is not a PIV key slot", slot)
}

// Status reads the PIV application's state: retries, the management key's
// algorithm and protection, and each slot's key and certificate. It needs
// no PIN and changes nothing.
// PINState reads only the PIN and PUK state (tries left, factory
// default), a few short commands: what a caller watching the key for a
// PIN typed wrong elsewhere reads often. The other PIVStatus fields stay
// zero.
func (c *Card) PINState(ctx context.Context) (*device.PIVStatus, error) {
	s, fw, sn, err := c.session(ctx)
	if err != nil {
		return nil, err
	}
	defer s.Close()
	st := &device.PIVStatus{Serial: sn, Firmware: fw, PINRetries: -1, PUKRetries: -1}
	md, err := getMetadata(s, 0x80)
	switch {
	case errors.Is(err, device.ErrNotSupported):
		if st.PINRetries, err = pinRetries(s); err != nil {
			return nil, c.classify(err)
		}
	case err != nil:
		return nil, c.classify(err)
	case md != nil:
		st.PINRetries, st.PINDefault = md.Remaining, md.Default
		if m, err := getMetadata(s, 0x81); err != nil {
			return nil, c.classify(err)
		} else if m != nil {
			st.PUKRetries, st.PUKDefault = m.Remaining, m.Default
		}
	}
	return st, nil
}

func (c *Card) Status(ctx context.Context) (*device.PIVStatus, error) {
	s, fw, sn, err := c.session(ctx)
	if err != nil {
		return nil, err
	}
	defer s.Close()
	st := &device.PIVStatus{Serial: sn, Firmware: fw, PINRetries: -1, PUKRetries: -1}
	md, err := getMetadata(s, 0x80)
	newer := !errors.Is(err, device.ErrNotSupported)
	switch {
	case err != nil && newer:
		return nil, c.classify(err)
	case newer && md != nil:
		st.PINRetries, st.PINDefault = md.Remaining, md.Default
		if m, err := getMetadata(s, 0x81); err != nil {
			return nil, c.classify(err)
		} else if m != nil {
			st.PUKRetries, st.PUKDefault = m.Remaining, m.Default
		}
		if m, err := getMetadata(s, 0x9B); err != nil {
			return nil, c.classify(err)
		} else if m != nil {
			st.MgmtKeyAlgorithm, st.MgmtKeyDefault = device.MgmtKeyAlgorithm(m.Algorithm), m.Default
		}
	default:
		if st.PINRetries, err = pinRetries(s); err != nil {
			return nil, c.classify(err)
		}
		st.MgmtKeyAlgorithm = device.Mgmt3DES
	}
	raw, err := getObject(s, objPIVMAN)
	if err != nil {
		return nil, c.classify(err)
	}
	if pm, err := parsePIVMAN(raw); err == nil {
		st.MgmtKeyProtected = pm.Flags&pivmanMgmStored != 0
		st.PUKBlockedByPIVMAN = pm.Flags&pivmanPUKBlocked != 0
	}
	for _, slot := range Slots {
		ss := device.SlotStatus{Slot: slot}
		if newer {
			m, err := getMetadata(s, slot)
			if err != nil {
				return nil, c.classify(err)
			}
			if m == nil {
				ss.Empty = true
			} else {
				ss.Algorithm = AlgorithmName(m.Algorithm)
				ss.PINPolicy = pinPolicyName(m.PINPolicy)
				ss.TouchPolicy = touchPolicyName(m.TouchPolicy)
				ss.Origin = device.KeyOrigin(m.Origin)
				ss.PublicKey, _ = decodePublic(m.Algorithm, m.PublicKey)
			}
		}
		obj, _ := slotObject(slot)
		cert, err := getObject(s, obj)
		if err != nil {
			return nil, c.classify(err)
		}
		if cert != nil {
			if ss.Certificate, err = parseCertObject(cert); err != nil {
				ss.CertificateError = err.Error()
			}
			if !newer && ss.Certificate != nil {
				ss.Empty = false
				ss.PublicKey = ss.Certificate.PublicKey
			}
		} else if !newer {
			ss.Empty = true
		}
		if ss.Empty && ss.Certificate == nil {
			continue
		}
		st.Slots = append(st.Slots, ss)
	}
	return st, nil
}

// parseCertObject decodes a certificate data object (SP 800-73-4 Table 10:
// 70 certificate, 71 CertInfo, FE error detection).
func parseCertObject(obj []byte) (*x509.Certificate, error) {
	for len(obj) > 0 {
		t, v, rest, err := readTLV(obj)
		if err != nil {
			return nil, fmt.Errorf("certificate object: %w", err)
		}
		if t == 0x70 {
			return x509.ParseCertificate(v)
		}
		obj = rest
	}
	return nil, errors.New("certificate object holds no certificate")
}

// ChangePIN changes the PIV PIN (SP 800-73-4 §3.2.2 CHANGE REFERENCE DATA).
func (c *Card) ChangePIN(ctx context.Context, oldPIN, newPIN string) error {
	if _, err := encodePIN(newPIN); err != nil {
		return err
	}
	return c.withPIV(ctx, func(yk *piv.YubiKey) error {
		return c.classify(mapAuth(yk.SetPIN(oldPIN, newPIN), false))
	})
}

// ChangePUK changes the PUK.
func (c *Card) ChangePUK(ctx context.Context, oldPUK, newPUK string) error {
	if _, err := encodePIN(newPUK); err != nil {
		return err
	}
	return c.withPIV(ctx, func(yk *piv.YubiKey) error {
		return c.classify(mapAuth(yk.SetPUK(oldPUK, newPUK), true))
	})
}

// UnblockPIN sets a new PIN with the PUK (SP 800-73-4 §3.2.3 RESET RETRY
// COUNTER); it also refills the PIN's tries.
func (c *Card) UnblockPIN(ctx context.Context, puk, newPIN string) error {
	if _, err := encodePIN(newPIN); err != nil {
		return err
	}
	return c.withPIV(ctx, func(yk *piv.YubiKey) error {
		return c.classify(mapAuth(yk.Unblock(puk, newPIN), true))
	})
}

// SetRetries sets how many PIN and PUK tries the key allows (Yubico SET PIN
// RETRIES, INS 0xFA). The key then resets the PIN and PUK to their defaults,
// so callers change them straight after.
func (c *Card) SetRetries(ctx context.Context, cb device.Callbacks, pinTries, pukTries int) error {
	if pinTries < 1 || pinTries > 255 || pukTries < 1 || pukTries > 255 {
		return fmt.Errorf("retries must be 1 to 255, got PIN %d and PUK %d", pinTries, pukTries)
	}
	key, p, err := c.resolve(ctx, cb, true)
	if err != nil {
		return err
	}
	return c.withPIV(ctx, func(yk *piv.YubiKey) error {
		return c.classify(mapAuth(yk.SetRetries(key, p, pinTries, pukTries), false))
	})
}

// resolve finds and checks the management key in a short raw session, and
// the PIN when needPIN is set.
func (c *Card) resolve(ctx context.Context, cb device.Callbacks, needPIN bool) ([]byte, string, error) {
	return c.resolveThen(ctx, cb, needPIN, nil)
}

// resolveThen is resolve, then runs then (when not nil) in the same
// session, with the management key authenticated.
func (c *Card) resolveThen(ctx context.Context, cb device.Callbacks, needPIN bool, then func(*pcsc.Session) error) ([]byte, string, error) {
	s, fw, _, err := c.session(ctx)
	if err != nil {
		return nil, "", err
	}
	defer s.Close()
	key, _, p, err := c.mgmt(ctx, s, fw, cb)
	if err != nil {
		return nil, "", err
	}
	if needPIN && p == "" {
		if p, err = pin(ctx, cb, PromptPIN); err != nil {
			return nil, "", err
		}
		if err := verifyPIN(s, p); err != nil {
			return nil, "", c.classify(err)
		}
	}
	if then != nil {
		if err := then(s); err != nil {
			return nil, "", err
		}
	}
	return key, p, nil
}

// RotateOptions controls RotateManagementKey.
type RotateOptions struct {
	// Protect stores the new key on the card behind the PIN, exactly as
	// ykman's "--protect" does, so ykman and keydesk need only the PIN.
	Protect bool
	// Escrow, when set, receives the new key before the card changes; if it
	// fails the card is left untouched.
	Escrow func(key []byte, alg device.MgmtKeyAlgorithm) error
}

// RotateManagementKey replaces the management key with a random one: AES-192
// on firmware 5.4 and later (ykman's default type on 5.7), 3DES before. The
// order of writes leaves the key usable after a failure at any step: PRINTED
// first (while the old key still authenticates), then SET MANAGEMENT KEY,
// then the PIVMAN flag.
func (c *Card) RotateManagementKey(ctx context.Context, cb device.Callbacks, opt RotateOptions) (device.MgmtKeyAlgorithm, error) {
	s, fw, _, err := c.session(ctx)
	if err != nil {
		return 0, err
	}
	defer s.Close()
	_, _, p, err := c.mgmt(ctx, s, fw, cb)
	if err != nil {
		return 0, err
	}
	alg := device.Mgmt3DES
	if fw.AtLeast(device.Version{Major: 5, Minor: 4}) {
		alg = device.MgmtAES192
	}
	key := make([]byte, mgmtKeyLen(alg))
	defer clear(key)
	if _, err := rand.Read(key); err != nil {
		return 0, err
	}
	if opt.Escrow != nil {
		if err := opt.Escrow(key, alg); err != nil {
			return 0, fmt.Errorf("escrowing the new management key (nothing changed on the key): %w", err)
		}
	}
	raw, err := getObject(s, objPIVMAN)
	if err != nil {
		return 0, c.classify(err)
	}
	pm, err := parsePIVMAN(raw)
	if err != nil {
		return 0, err
	}
	if opt.Protect {
		if p == "" {
			if p, err = pin(ctx, cb, PromptPIN); err != nil {
				return 0, err
			}
		}
		if err := verifyPIN(s, p); err != nil {
			return 0, c.classify(err)
		}
		if err := putObject(s, objPrinted, encodePrinted(key)); err != nil {
			return 0, c.classify(err)
		}
	}
	data := append([]byte{byte(alg), 0x9B, byte(len(key))}, key...)
	if _, err := s.Command(0xFF, 0xFF, 0xFF, data); err != nil {
		return 0, fmt.Errorf("setting the management key: %w", c.classify(err))
	}
	clear(data)
	if opt.Protect {
		pm.Flags |= pivmanMgmStored
	} else {
		pm.Flags &^= pivmanMgmStored
	}
	pm.HasFlags = true
	if err := putObject(s, objPIVMAN, pm.encode()); err != nil && statusIs(err, pcsc.SWSecurityStatus) {
		if err := authenticate(s, alg, key); err != nil {
			return 0, c.classify(err)
		}
		err = putObject(s, objPIVMAN, pm.encode())
		if err != nil {
			return 0, c.classify(err)
		}
	} else if err != nil {
		return 0, c.classify(err)
	}
	if !opt.Protect && pm.Flags&pivmanMgmStored == 0 {
		// A key stored earlier must not outlive its rotation.
		if err := putObject(s, objPrinted, nil); err != nil && !statusIs(err, pcsc.SWFileNotFound) {
			return 0, c.classify(err)
		}
	}
	return alg, nil
}

// KeySpec is what Generate makes.
type KeySpec struct {
	Algorithm   string // ECCP256, ECCP384, RSA2048, RSA3072, RSA4096, ED25519, X25519
	PINPolicy   string // default, never, once, always
	TouchPolicy string // default, never, always, cached
}

// Generate makes a new key pair on the key in slot (Yubico GENERATE
// ASYMMETRIC KEY PAIR, SP 800-73-4 §3.3.2) and returns its public key.
// It replaces whatever the slot held; callers confirm first.
func (c *Card) Generate(ctx context.Context, cb device.Callbacks, slot byte, spec KeySpec) (crypto.PublicKey, error) {
	ps, err := pivSlot(slot)
	if err != nil {
		return nil, err
	}
	alg, err := pivAlgorithm(spec.Algorithm)
	if err != nil {
		return nil, err
	}
	pp, err := pivPINPolicy(spec.PINPolicy)
	if err != nil {
		return nil, err
	}
	tp, err := pivTouchPolicy(spec.TouchPolicy)
	if err != nil {
		return nil, err
	}
	key, _, err := c.resolve(ctx, cb, false)
	if err != nil {
		return nil, err
	}
	var pub crypto.PublicKey
	err = c.withPIV(ctx, func(yk *piv.YubiKey) error {
		if err := needFirmware(yk, spec.Algorithm); err != nil {
			return err
		}
		pub, err = yk.GenerateKey(key, ps, piv.Key{Algorithm: alg, PINPolicy: pp, TouchPolicy: tp})
		return c.classify(err)
	})
	return pub, err
}

func needFirmware(yk *piv.YubiKey, alg string) error {
	v := yk.Version()
	have := device.Version{Major: uint8(v.Major), Minor: uint8(v.Minor), Patch: uint8(v.Patch)}
	switch alg {
	case "ED25519", "X25519", "RSA3072", "RSA4096":
		return device.RequireVersion(alg+" keys", have, device.Version{Major: 5, Minor: 7})
	}
	return nil
}

// Attestation is what the key says about a slot's key (Yubico ATTEST,
// INS 0xF9): a certificate for the slot's key signed by the key's factory
// attestation key in slot F9, and that key's certificate.
type Attestation struct {
	Certificate  *x509.Certificate
	Intermediate *x509.Certificate
}

// Attest asks the key to attest slot. Keys that were imported cannot be
// attested (the key answers 6A80 or 6982).
func (c *Card) Attest(ctx context.Context, slot byte) (*Attestation, error) {
	ps, err := pivSlot(slot)
	if err != nil {
		return nil, err
	}
	var a Attestation
	err = c.withPIV(ctx, func(yk *piv.YubiKey) error {
		if a.Intermediate, err = yk.AttestationCertificate(); err != nil {
			return fmt.Errorf("reading the attestation certificate (slot F9): %w", c.classify(err))
		}
		if a.Certificate, err = yk.Attest(ps); err != nil {
			return fmt.Errorf("attesting slot %02X: %w", slot, c.classify(err))
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	return &a, nil
}

// Sign signs a registry challenge with the key in slot, as
// registry/credential.VerifyPIV checks it: ECDSA over SHA-256 (P-256) or
// SHA-384 (P-384), PKCS#1 v1.5 over SHA-256 for RSA, the challenge itself
// for Ed25519. It asks for the PIN when the slot's policy needs it and says
// when the key waits for a touch.
func (c *Card) Sign(ctx context.Context, cb device.Callbacks, slot byte, pub crypto.PublicKey, challenge []byte) ([]byte, error) {
	ps, err := pivSlot(slot)
	if err != nil {
		return nil, err
	}
	var sig []byte
	err = c.withPIV(ctx, func(yk *piv.YubiKey) error {
		info, err := yk.KeyInfo(ps)
		if err == nil && pub == nil {
			pub = info.PublicKey
		}
		if pub == nil {
			return fmt.Errorf("slot %02X: public key unknown; pass the registered one", slot)
		}
		auth := piv.KeyAuth{PINPrompt: func() (string, error) { return pin(ctx, cb, PromptPIN) }}
		if err == nil {
			auth.PINPolicy = info.PINPolicy
			if cb.Touch != nil && (info.TouchPolicy == piv.TouchPolicyAlways || info.TouchPolicy == piv.TouchPolicyCached) {
				cb.Touch(ctx)
			}
		}
		priv, err := yk.PrivateKey(ps, pub, auth)
		if err != nil {
			return c.classify(mapAuth(err, false))
		}
		signer, ok := priv.(crypto.Signer)
		if !ok {
			return fmt.Errorf("slot %02X holds a key that cannot sign", slot)
		}
		sig, err = signChallenge(signer, challenge)
		if statusIs(err, pcsc.SWConditionsNotMet) {
			return fmt.Errorf("signing with slot %02X: %w", slot, device.ErrTouchTimeout)
		}
		return c.classify(mapAuth(err, false))
	})
	return sig, err
}

func signChallenge(s crypto.Signer, challenge []byte) ([]byte, error) {
	switch p := s.Public().(type) {
	case *ecdsa.PublicKey:
		if p.Curve.Params().BitSize == 384 {
			d := sha512.Sum384(challenge)
			return s.Sign(rand.Reader, d[:], crypto.SHA384)
		}
		d := sha256.Sum256(challenge)
		return s.Sign(rand.Reader, d[:], crypto.SHA256)
	case *rsa.PublicKey:
		d := sha256.Sum256(challenge)
		return s.Sign(rand.Reader, d[:], crypto.SHA256)
	case ed25519.PublicKey:
		return s.Sign(rand.Reader, challenge, crypto.Hash(0))
	}
	return nil, fmt.Errorf("unsupported key type %T", s.Public())
}

// Reset wipes the PIV application back to factory state (Yubico RESET,
// INS 0xFB): PIN, PUK and management key to defaults, every slot emptied.
// The key allows it only once the PIN and PUK are blocked, so Reset blocks
// them first. confirmSerial must be the serial of the key the person chose;
// a different key gives *device.SerialMismatchError and nothing changes.
func (c *Card) Reset(ctx context.Context, confirmSerial uint32) error {
	if confirmSerial == 0 {
		return ErrNotConfirmed
	}
	cc := *c
	cc.Serial = confirmSerial
	return cc.withPIV(ctx, func(yk *piv.YubiKey) error {
		return cc.classify(yk.Reset())
	})
}
