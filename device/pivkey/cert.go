package pivkey

import (
	"context"
	"crypto"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"fmt"
	"io"
	"math/big"
	"time"

	"github.com/go-piv/piv-go/v2/piv"

	"github.com/keydesk/keydesk/device"
	"github.com/keydesk/keydesk/device/pcsc"
)

// AttestationPolicy says which roots an attestation may chain to and what
// it must say.
type AttestationPolicy struct {
	// ExtraRoots are trusted besides Yubico's (the PIV root CA serial 263751
	// and "Yubico Attestation Root 1"). Practice mode passes keydesk's
	// virtual root here; nothing else should.
	ExtraRoots []*x509.Certificate
	// PublicKey, when set, must be the attested key.
	PublicKey crypto.PublicKey
	// Serial, when not zero, must be the serial the attestation names.
	Serial uint32
	// Now is when the chain must be valid; zero means time.Now.
	Now time.Time
}

// Verdict is a checked attestation.
type Verdict struct {
	// Root names the root the chain ends in.
	Root string
	// Yubico is true when that root is one of Yubico's.
	Yubico bool
	*piv.Attestation
}

// ErrNotGenuine: the attestation does not chain to a trusted root, or does
// not attest what it should.
var ErrNotGenuine = errors.New("attestation not trusted")

// VerifyAttestation checks a's chain to Yubico's roots (or the policy's
// extra roots), that the attested key is the expected one, that the serial
// matches, and that every certificate is valid now. Freshness comes from the
// caller asking the key for the attestation in the same operation as it
// learns the slot's key (Attest after Generate); a stored attestation proves
// only that the key was once genuine.
func VerifyAttestation(a *Attestation, pol AttestationPolicy) (*Verdict, error) {
	if a == nil || a.Certificate == nil || a.Intermediate == nil {
		return nil, fmt.Errorf("%w: attestation incomplete", ErrNotGenuine)
	}
	now := pol.Now
	if now.IsZero() {
		now = time.Now()
	}
	var v Verdict
	att, err := piv.Verify(a.Intermediate, a.Certificate)
	if err == nil {
		v.Yubico = true
	} else if len(pol.ExtraRoots) > 0 {
		roots := x509.NewCertPool()
		for _, r := range pol.ExtraRoots {
			roots.AddCert(r)
		}
		att, err = (&piv.Verifier{Roots: roots}).Verify(a.Intermediate, a.Certificate)
	}
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrNotGenuine, err)
	}
	v.Attestation = att
	v.Root = a.Intermediate.Issuer.CommonName
	for _, c := range []*x509.Certificate{a.Certificate, a.Intermediate} {
		if now.Before(c.NotBefore) || now.After(c.NotAfter) {
			return nil, fmt.Errorf("%w: certificate %q is not valid at %s", ErrNotGenuine, c.Subject.CommonName, now.Format(time.RFC3339))
		}
	}
	if pol.PublicKey != nil {
		type equaler interface{ Equal(crypto.PublicKey) bool }
		e, ok := pol.PublicKey.(equaler)
		if !ok || !e.Equal(a.Certificate.PublicKey) {
			return nil, fmt.Errorf("%w: the attested key is not the slot's key", ErrNotGenuine)
		}
	}
	if pol.Serial != 0 && att.Serial != pol.Serial {
		return nil, fmt.Errorf("%w: attestation names serial %d, key is %d", ErrNotGenuine, att.Serial, pol.Serial)
	}
	return &v, nil
}

// slotSigner signs through piv-go on an open connection.
type slotSigner struct {
	pub  crypto.PublicKey
	sign func(io.Reader, []byte, crypto.SignerOpts) ([]byte, error)
}

func (s slotSigner) Public() crypto.PublicKey { return s.pub }
func (s slotSigner) Sign(r io.Reader, d []byte, o crypto.SignerOpts) ([]byte, error) {
	return s.sign(r, d, o)
}

// withSigner gives f a signer for slot's key on one connection.
func (c *Card) withSigner(ctx context.Context, cb device.Callbacks, slot byte, f func(yk *piv.YubiKey, s crypto.Signer) error) error {
	ps, err := pivSlot(slot)
	if err != nil {
		return err
	}
	return c.withPIV(ctx, func(yk *piv.YubiKey) error {
		info, err := yk.KeyInfo(ps)
		if err != nil {
			return fmt.Errorf("slot %02X: %w", slot, c.classify(err))
		}
		if info.PublicKey == nil {
			return fmt.Errorf("slot %02X holds no key", slot)
		}
		priv, err := yk.PrivateKey(ps, info.PublicKey, piv.KeyAuth{
			PINPolicy: info.PINPolicy,
			PINPrompt: func() (string, error) { return pin(ctx, cb, PromptPIN) },
		})
		if err != nil {
			return c.classify(mapAuth(err, false))
		}
		s, ok := priv.(crypto.Signer)
		if !ok {
			return fmt.Errorf("slot %02X holds a key that cannot sign", slot)
		}
		touch := info.TouchPolicy == piv.TouchPolicyAlways || info.TouchPolicy == piv.TouchPolicyCached
		return f(yk, slotSigner{pub: info.PublicKey, sign: func(r io.Reader, d []byte, o crypto.SignerOpts) ([]byte, error) {
			if touch && cb.Touch != nil {
				cb.Touch(ctx)
			}
			sig, err := s.Sign(r, d, o)
			if statusIs(err, pcsc.SWConditionsNotMet) {
				return nil, device.ErrTouchTimeout
			}
			return sig, c.classify(mapAuth(err, false))
		}})
	})
}

// CSR builds a PKCS#10 request for slot's key, signed on the key, for the
// organisation's CA.
func (c *Card) CSR(ctx context.Context, cb device.Callbacks, slot byte, subject pkix.Name) ([]byte, error) {
	var der []byte
	err := c.withSigner(ctx, cb, slot, func(_ *piv.YubiKey, s crypto.Signer) error {
		var err error
		der, err = x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{Subject: subject}, s)
		return err
	})
	return der, err
}

// SelfSign makes a self-signed certificate for slot's key and stores it in
// the slot's certificate object. A key without a CHUID or a CCC gets them
// (EnsureCardIDs); existing ones are left as they are.
func (c *Card) SelfSign(ctx context.Context, cb device.Callbacks, slot byte, subject pkix.Name, valid time.Duration) (*x509.Certificate, error) {
	key, _, err := c.resolveThen(ctx, cb, false, c.ensureCardIDs)
	if err != nil {
		return nil, err
	}
	ps, _ := pivSlot(slot)
	var cert *x509.Certificate
	err = c.withSigner(ctx, cb, slot, func(yk *piv.YubiKey, s crypto.Signer) error {
		serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
		if err != nil {
			return err
		}
		now := time.Now()
		tmpl := &x509.Certificate{
			SerialNumber: serial, Subject: subject,
			NotBefore: now.Add(-time.Minute), NotAfter: now.Add(valid),
			KeyUsage:    x509.KeyUsageDigitalSignature,
			ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
		}
		der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, s.Public(), s)
		if err != nil {
			return err
		}
		if cert, err = x509.ParseCertificate(der); err != nil {
			return err
		}
		return c.classify(yk.SetCertificate(key, ps, cert))
	})
	return cert, err
}

// ImportCertificate stores cert in slot after checking it certifies the key
// the slot holds (firmware 5.3 and later, where the key can say). A key
// without a CHUID or a CCC gets them (EnsureCardIDs); existing ones are left
// as they are.
func (c *Card) ImportCertificate(ctx context.Context, cb device.Callbacks, slot byte, cert *x509.Certificate) error {
	ps, err := pivSlot(slot)
	if err != nil {
		return err
	}
	// The check comes first, so a refused certificate leaves the card
	// identifiers as they were too.
	key, _, err := c.resolveThen(ctx, cb, false, func(s *pcsc.Session) error {
		m, err := getMetadata(s, slot)
		switch {
		case errors.Is(err, device.ErrNotSupported):
		case err != nil:
			return c.classify(err)
		case m != nil:
			if pub, err := decodePublic(m.Algorithm, m.PublicKey); err == nil && pub != nil {
				type equaler interface{ Equal(crypto.PublicKey) bool }
				if e, ok := pub.(equaler); !ok || !e.Equal(cert.PublicKey) {
					return fmt.Errorf("the certificate is for another key than the one in slot %02X", slot)
				}
			}
		}
		return c.ensureCardIDs(s)
	})
	if err != nil {
		return err
	}
	return c.withPIV(ctx, func(yk *piv.YubiKey) error {
		return c.classify(yk.SetCertificate(key, ps, cert))
	})
}

// DeleteCertificate removes the certificate stored for slot (PUT DATA with
// an empty value deletes the object, SP 800-73-4 §3.3.2; a YubiKey does the
// same, as "ykman piv certificates delete"). The slot's key stays.
func (c *Card) DeleteCertificate(ctx context.Context, cb device.Callbacks, slot byte) error {
	obj, ok := slotObject(slot)
	if !ok || slot == 0xF9 {
		return fmt.Errorf("slot %02X holds no certificate keydesk may delete", slot)
	}
	_, _, err := c.resolveThen(ctx, cb, false, func(s *pcsc.Session) error {
		if err := putObject(s, obj, nil); err != nil {
			return fmt.Errorf("deleting the certificate of slot %02X: %w", slot, c.classify(err))
		}
		return nil
	})
	return err
}

// ImportKey stores priv (an ECDSA P-256/P-384, RSA or Ed25519 key from a
// PKCS#12 file, say) in slot with the PIN and touch policies of spec
// (YubiKey IMPORT KEY, INS 0xFE), then cert, when given, as the slot's
// certificate. A key imported this way was outside the key once, and the
// key cannot attest it (docs/facts: "imported keys cannot be attested").
func (c *Card) ImportKey(ctx context.Context, cb device.Callbacks, slot byte, priv crypto.PrivateKey, spec KeySpec, cert *x509.Certificate) error {
	ps, err := pivSlot(slot)
	if err != nil {
		return err
	}
	pp, err := pivPINPolicy(spec.PINPolicy)
	if err != nil {
		return err
	}
	tp, err := pivTouchPolicy(spec.TouchPolicy)
	if err != nil {
		return err
	}
	key, _, err := c.resolve(ctx, cb, false)
	if err != nil {
		return err
	}
	err = c.withPIV(ctx, func(yk *piv.YubiKey) error {
		if err := yk.SetPrivateKeyInsecure(key, ps, priv, piv.Key{PINPolicy: pp, TouchPolicy: tp}); err != nil {
			return fmt.Errorf("importing the key into slot %02X: %w", slot, c.classify(err))
		}
		return nil
	})
	if err != nil || cert == nil {
		return err
	}
	return c.ImportCertificate(ctx, cb, slot, cert)
}
