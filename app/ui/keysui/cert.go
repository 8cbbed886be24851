package keysui

import (
	"context"
	"crypto"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"software.sslmate.com/src/go-pkcs12"

	"github.com/keydesk/keydesk/app/ui/uikit"
	"github.com/keydesk/keydesk/device"
	"github.com/keydesk/keydesk/device/pivkey"
)

// certSlots are the PIV slots whose certificates the pane manages, with
// their SP 800-73-4 §3.1 names.
var certSlots = []struct {
	slot byte
	name string
}{{0x9A, "authentication"}, {0x9C, "digital signature"}, {0x9D, "key management"}, {0x9E, "card authentication"}}

func slotNames() []string {
	out := make([]string, len(certSlots))
	for i, s := range certSlots {
		out[i] = fmt.Sprintf("Slot %02x", s.slot)
	}
	return out
}

func slotName(slot byte) string {
	for _, s := range certSlots {
		if s.slot == slot {
			return s.name
		}
	}
	return "retired"
}

// slot is the slot chosen in PIVSlot.
func (d *Detail) slot() byte {
	i := d.PIVSlot.SelectedIndex()
	if i < 0 || i >= len(certSlots) {
		return certSlots[0].slot
	}
	return certSlots[i].slot
}

// hinted is an error with a next step for the person (uikit.Message shows
// it).
type hinted struct {
	err  error
	hint string
}

func (h *hinted) Error() string { return h.err.Error() }
func (h *hinted) Unwrap() error { return h.err }
func (h *hinted) Hint() string  { return h.hint }

// slotKey returns the public key in slot, refusing an empty slot where the
// key can say (firmware 5.3 and later report each slot's key).
func slotKey(ctx context.Context, card *pivkey.Card, slot byte) (crypto.PublicKey, error) {
	st, err := card.Status(ctx)
	if err != nil {
		return nil, err
	}
	for _, s := range st.Slots {
		if s.Slot == slot && !s.Empty && s.PublicKey != nil {
			return s.PublicKey, nil
		}
	}
	if !st.Firmware.AtLeast(device.Version{Major: 5, Minor: 3}) {
		return nil, nil // the key cannot say; the slot itself decides
	}
	return nil, &hinted{fmt.Errorf("slot %02x holds no key", slot), "Generate a key in the slot first (Generate key in 9a…, or ykman for the other slots); nothing was changed."}
}

func defaultFile(name string) string {
	if home, err := os.UserHomeDir(); err == nil {
		return filepath.Join(home, name)
	}
	return name
}

// pivRequest writes a PKCS#10 request for the slot's key, signed on the
// key, to a PEM file for the organisation's CA (as "keydesk piv csr").
func (d *Detail) pivRequest() {
	if !d.has {
		return
	}
	slot, serial := d.slot(), d.key.Serial
	var name pkix.Name
	d.askParams(fmt.Sprintf("Certificate request for slot %02x (%s)", slot, slotName(slot)), "Create request", []field{
		{Label: "Subject", Hint: "CN=ada,O=Example"},
		{Label: "Save to", Value: defaultFile(fmt.Sprintf("key-%d-slot-%02x.csr", serial, slot)), File: saveFile},
	}, func(v []string) (err error) {
		if name, err = pivkey.ParseSubject(v[0]); err != nil {
			return err
		}
		return writablePath(v[1])
	}, func(v []string) {
		path := v[1]
		d.run("Creating a certificate request", func(ctx context.Context, k device.Key) (string, error) {
			card, err := d.env.Keys.PIV(k)
			if err != nil {
				return "", err
			}
			if _, err := slotKey(ctx, card, slot); err != nil {
				return "", err
			}
			der, err := card.CSR(ctx, d.callbacks(k), slot, name)
			if err != nil {
				return "", err
			}
			if err := os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: der}), 0o644); err != nil {
				return "", &hinted{fmt.Errorf("writing the request: %w", err), "Choose a file you can write to and try again."}
			}
			return fmt.Sprintf("Certificate request for slot %02x of key %d (%s) saved to %s. Send it to your CA, then import the certificate it issues.", slot, k.Serial, name, path), nil
		})
	})
}

// pivSelfSign stores a self-signed certificate for the slot's key in the
// slot (as "keydesk piv self-sign"), replacing the certificate there.
func (d *Detail) pivSelfSign() {
	if !d.has {
		return
	}
	slot := d.slot()
	var name pkix.Name
	var days int
	d.askParams(fmt.Sprintf("Self-signed certificate for slot %02x (%s)", slot, slotName(slot)), "Next", []field{
		{Label: "Subject", Hint: "CN=ada,O=Example"},
		{Label: "Valid for (days)", Value: "365"},
	}, func(v []string) (err error) {
		if name, err = pivkey.ParseSubject(v[0]); err != nil {
			return err
		}
		days, err = strconv.Atoi(v[1])
		if err != nil || days < 1 || days > 36500 {
			return errors.New("the validity must be a whole number of days from 1 to 36500")
		}
		return nil
	}, func([]string) {
		consequence := fmt.Sprintf("The certificate in slot %02x is replaced by a self-signed one for %s, valid %d days. Whatever trusts the current certificate stops recognising the key.", slot, name, days)
		uikit.ConfirmSerial(d.env.Window, d.key.Serial, fmt.Sprintf("Self-sign slot %02x", slot), consequence, func() {
			d.run("Self-signing", func(ctx context.Context, k device.Key) (string, error) {
				card, err := d.env.Keys.PIV(k)
				if err != nil {
					return "", err
				}
				if _, err := slotKey(ctx, card, slot); err != nil {
					return "", err
				}
				c, err := card.SelfSign(ctx, d.callbacks(k), slot, name, time.Duration(days)*24*time.Hour)
				if err != nil {
					return "", err
				}
				return fmt.Sprintf("Slot %02x of key %d holds a self-signed certificate for %s, valid until %s.", slot, k.Serial, c.Subject, c.NotAfter.Format("2 January 2006")), nil
			})
		})
	})
}

// readCertificate reads a certificate from a PEM or DER file.
func readCertificate(path string) (*x509.Certificate, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, &hinted{fmt.Errorf("reading the certificate: %w", err), "Choose the certificate file again."}
	}
	der := b
	if blk, _ := pem.Decode(b); blk != nil {
		if blk.Type != "CERTIFICATE" {
			return nil, &hinted{fmt.Errorf("%s holds a %s, not a certificate", filepath.Base(path), blk.Type), "Choose the certificate your CA issued (PEM or DER)."}
		}
		der = blk.Bytes
	}
	c, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, &hinted{fmt.Errorf("%s is not a certificate keydesk can read: %w", filepath.Base(path), err), "Choose the certificate your CA issued (PEM or DER)."}
	}
	return c, nil
}

// pivImport stores a certificate from a file in the slot, refusing one
// whose public key is not the slot's key.
func (d *Detail) pivImport() {
	if !d.has {
		return
	}
	slot := d.slot()
	d.askParams(fmt.Sprintf("Import a certificate into slot %02x (%s)", slot, slotName(slot)), "Next", []field{
		{Label: "Certificate (PEM or DER), or key and certificate (PKCS#12: .p12, .pfx)", File: openFile},
	}, func(v []string) error {
		if v[0] == "" {
			return errors.New("give the certificate file, or press Choose…")
		}
		if _, err := os.Stat(v[0]); err != nil {
			return fmt.Errorf("%s cannot be read: %v", v[0], errors.Unwrap(err))
		}
		return nil
	}, func(v []string) {
		path := v[0]
		if isPKCS12(path) {
			d.importPKCS12(slot, path)
			return
		}
		consequence := fmt.Sprintf("The certificate in slot %02x is replaced by the one in %s. Whatever trusts the current certificate stops recognising the key.", slot, filepath.Base(path))
		uikit.ConfirmSerial(d.env.Window, d.key.Serial, fmt.Sprintf("Import a certificate into slot %02x", slot), consequence, func() {
			d.run("Importing the certificate", func(ctx context.Context, k device.Key) (string, error) {
				cert, err := readCertificate(path)
				if err != nil {
					return "", err
				}
				card, err := d.env.Keys.PIV(k)
				if err != nil {
					return "", err
				}
				pub, err := slotKey(ctx, card, slot)
				if err != nil {
					return "", err
				}
				type equaler interface{ Equal(crypto.PublicKey) bool }
				if e, ok := pub.(equaler); pub != nil && (!ok || !e.Equal(cert.PublicKey)) {
					return "", &hinted{fmt.Errorf("the certificate for %s is for another key than the one in slot %02x of key %d", cert.Subject, slot, k.Serial),
						"Nothing was changed. Import the certificate your CA issued for this slot's certificate request."}
				}
				if err := card.ImportCertificate(ctx, d.callbacks(k), slot, cert); err != nil {
					return "", err
				}
				return fmt.Sprintf("Slot %02x of key %d holds the certificate for %s, valid until %s.", slot, k.Serial, cert.Subject, cert.NotAfter.Format("2 January 2006")), nil
			})
		})
	})
}

// isPKCS12 says whether path names a PKCS#12 file (by its name, as
// browsers and ykman's file choosers do).
func isPKCS12(path string) bool {
	ext := strings.ToLower(filepath.Ext(path))
	return ext == ".p12" || ext == ".pfx"
}

// importPKCS12 imports the key and certificate of a PKCS#12 file into
// slot: its password asked in the PIN dialog, the replacement confirmed by
// the key's serial.
func (d *Detail) importPKCS12(slot byte, path string) {
	d.ask("Password of "+filepath.Base(path), []string{"PKCS#12 password"}, func(pw []string) {
		consequence := fmt.Sprintf("The key and certificate in slot %02x (%s) of key %d are replaced by those in %s. Sign-ins that use the current key stop working. A key imported from a file cannot be attested as made on the key.", slot, slotName(slot), d.key.Serial, filepath.Base(path))
		uikit.ConfirmSerial(d.env.Window, d.key.Serial, fmt.Sprintf("Import a key into slot %02x of key %d", slot, d.key.Serial), consequence, func() {
			d.run("Importing the key and certificate", func(ctx context.Context, k device.Key) (string, error) {
				b, err := os.ReadFile(path)
				if err != nil {
					return "", &hinted{fmt.Errorf("reading %s: %w", filepath.Base(path), err), "Choose the file again."}
				}
				// DecodeChain reads what OpenSSL 3 writes by default
				// (PBES2 with AES-256-CBC, PBKDF2, an HMAC-SHA-256 MAC) as
				// well as the 3DES/SHA-1 files of Windows and older tools
				// (RFC 7292, RFC 8018); certificates beyond the key's own
				// (its issuers) are left out of the slot.
				priv, cert, _, err := pkcs12.DecodeChain(b, pw[0])
				switch {
				case errors.Is(err, pkcs12.ErrIncorrectPassword):
					return "", &hinted{fmt.Errorf("%s could not be opened with that password: %w", filepath.Base(path), err),
						"Nothing was changed. Check the password."}
				case err != nil:
					return "", &hinted{fmt.Errorf("%s is not a PKCS#12 file keydesk can read: %w", filepath.Base(path), err),
						"Nothing was changed. keydesk reads PKCS#12 (.p12, .pfx) files holding one private key and its certificate."}
				}
				card, err := d.env.Keys.PIV(k)
				if err != nil {
					return "", err
				}
				if err := card.ImportKey(ctx, d.callbacks(k), slot, priv, pivkey.KeySpec{PINPolicy: "once", TouchPolicy: "never"}, cert); err != nil {
					return "", err
				}
				return fmt.Sprintf("Slot %02x of key %d holds the imported key and the certificate for %s, valid until %s.", slot, k.Serial, cert.Subject, cert.NotAfter.Format("2 January 2006")), nil
			})
		})
	})
}
