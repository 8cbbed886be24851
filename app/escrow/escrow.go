// Package escrow seals the PIV secrets keydesk generates at enrolment — a
// random PUK and a random management key — to the organisation's helpdesk
// recipients with age (https://age-encryption.org/v1), so the registry stores
// only ciphertext it cannot read and any one helpdesk identity can recover a
// locked key later.
package escrow

import (
	"bytes"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"
	"time"

	"filippo.io/age"
	"filippo.io/age/armor"
)

// PIVSecrets is what one key's escrow blob holds.
type PIVSecrets struct {
	Serial uint32 `json:"serial"`
	// PUK unblocks the PIV PIN (NIST SP 800-73-4 Part 2 §3.2.3 RESET RETRY COUNTER).
	PUK string `json:"puk"`
	// ManagementKey is the raw PIV card-management key (slot 9B).
	ManagementKey []byte `json:"-"`
	// Algorithm of the management key: "aes192", "aes128", "aes256" or "3des".
	Algorithm string    `json:"algorithm"`
	Created   time.Time `json:"created"`
}

// String never shows the secrets, so a PIVSecrets logged by mistake leaks nothing.
func (s PIVSecrets) String() string {
	return fmt.Sprintf("piv secrets for key %d (%s management key, created %s)", s.Serial, s.Algorithm, s.Created.Format(time.RFC3339))
}

// GoString keeps %#v as safe as %v.
func (s PIVSecrets) GoString() string { return s.String() }

type wire struct {
	PIVSecrets
	ManagementKeyHex string `json:"management_key"`
}

// ErrNoRecipients: there is nobody to seal to, which would lose the secrets.
var ErrNoRecipients = errors.New("no helpdesk recipients configured")

// ErrWrongIdentity: the identity is not one of the blob's recipients.
var ErrWrongIdentity = errors.New("this helpdesk identity cannot open the escrow blob")

// NewIdentity makes a helpdesk identity (to keep in the OS keyring) and the
// recipient string to configure for sealing.
func NewIdentity() (identity, recipient string, err error) {
	id, err := age.GenerateX25519Identity()
	if err != nil {
		return "", "", fmt.Errorf("generating identity: %w", err)
	}
	return id.String(), id.Recipient().String(), nil
}

// ParseRecipients parses age X25519 recipients ("age1…"), one per entry.
func ParseRecipients(list []string) ([]age.Recipient, error) {
	var out []age.Recipient
	for i, s := range list {
		s = strings.TrimSpace(s)
		if s == "" {
			continue
		}
		r, err := age.ParseX25519Recipient(s)
		if err != nil {
			return nil, fmt.Errorf("helpdesk recipient %d: %w", i+1, err)
		}
		out = append(out, r)
	}
	if len(out) == 0 {
		return nil, ErrNoRecipients
	}
	return out, nil
}

// Seal encrypts s to every recipient and returns an ASCII-armored age file.
func Seal(s PIVSecrets, recipients []string) ([]byte, error) {
	rs, err := ParseRecipients(recipients)
	if err != nil {
		return nil, fmt.Errorf("sealing escrow for key %d: %w", s.Serial, err)
	}
	plain, err := json.Marshal(wire{PIVSecrets: s, ManagementKeyHex: hex.EncodeToString(s.ManagementKey)})
	if err != nil {
		return nil, err
	}
	defer clear(plain)
	var buf bytes.Buffer
	aw := armor.NewWriter(&buf)
	w, err := age.Encrypt(aw, rs...)
	if err != nil {
		return nil, fmt.Errorf("sealing escrow for key %d: %w", s.Serial, err)
	}
	if _, err := w.Write(plain); err != nil {
		return nil, err
	}
	if err := w.Close(); err != nil {
		return nil, err
	}
	if err := aw.Close(); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

// Open decrypts a blob made by Seal with one helpdesk identity ("AGE-SECRET-KEY-1…").
func Open(blob []byte, identity string) (PIVSecrets, error) {
	id, err := age.ParseX25519Identity(strings.TrimSpace(identity))
	if err != nil {
		return PIVSecrets{}, fmt.Errorf("opening escrow: helpdesk identity: %w", err)
	}
	r, err := age.Decrypt(armor.NewReader(bytes.NewReader(blob)), id)
	if err != nil {
		var nm *age.NoIdentityMatchError
		if errors.As(err, &nm) {
			return PIVSecrets{}, fmt.Errorf("opening escrow: %w", ErrWrongIdentity)
		}
		return PIVSecrets{}, fmt.Errorf("opening escrow: %w", err)
	}
	plain, err := io.ReadAll(io.LimitReader(r, 64<<10))
	if err != nil {
		return PIVSecrets{}, fmt.Errorf("opening escrow: %w", err)
	}
	defer clear(plain)
	var w wire
	dec := json.NewDecoder(bytes.NewReader(plain))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&w); err != nil {
		return PIVSecrets{}, fmt.Errorf("opening escrow: malformed contents: %w", err)
	}
	w.PIVSecrets.ManagementKey, err = hex.DecodeString(w.ManagementKeyHex)
	if err != nil {
		return PIVSecrets{}, fmt.Errorf("opening escrow: malformed management key: %w", err)
	}
	return w.PIVSecrets, nil
}
