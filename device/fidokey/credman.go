package fidokey

import (
	"context"
	"errors"
	"fmt"

	"github.com/keydesk/keydesk/device"
	"github.com/keydesk/keydesk/device/fidokey/fidoc"
)

// Credential is one discoverable credential on the key (CTAP 2.1 §6.8).
type Credential struct {
	RPID, RPName string
	UserID       []byte
	UserName     string
	DisplayName  string
	ID           []byte
	CredProtect  int
}

// Credentials lists every discoverable credential (credential management
// enumerateRPs and enumerateCredentials, CTAP 2.1 §6.8.3-4). It needs the
// PIN (cb.PIN); a key without a PIN is device.ErrPINNotSet.
func (d *Device) Credentials(ctx context.Context, cb device.Callbacks) ([]Credential, error) {
	const op = "listing fido2 credentials"
	pin, err := d.pinIfSet(ctx, cb)
	if err != nil {
		return nil, d.mapErr(ctx, op, err)
	}
	if pin == "" {
		return nil, fmt.Errorf("%s: %w", op, device.ErrPINNotSet)
	}
	var out []Credential
	err = d.do(ctx, func(dev *fidoc.Dev) error {
		if !dev.IsFIDO2() {
			return fmt.Errorf("key speaks only u2f: %w", device.ErrNotSupported)
		}
		rps, err := dev.RPs(pin)
		if errors.Is(err, fidoc.ErrNoCredentials) {
			return nil
		}
		if err != nil {
			return err
		}
		for _, rp := range rps {
			rks, err := dev.RKs(rp.ID, pin)
			if errors.Is(err, fidoc.ErrNoCredentials) {
				continue
			}
			if err != nil {
				return err
			}
			for _, c := range rks {
				out = append(out, Credential{RPID: rp.ID, RPName: rp.Name, UserID: c.UserID, UserName: c.UserName,
					DisplayName: c.DisplayName, ID: c.ID, CredProtect: c.Prot})
			}
		}
		return nil
	})
	if err != nil {
		return nil, d.mapErr(ctx, op, err)
	}
	return out, nil
}

// DeleteCredential deletes the discoverable credential id (credential
// management deleteCredential, CTAP 2.1 §6.8.5). An id the key does not
// hold is device.ErrNoCredentials.
func (d *Device) DeleteCredential(ctx context.Context, cb device.Callbacks, id []byte) error {
	const op = "deleting a fido2 credential"
	if len(id) == 0 {
		return fmt.Errorf("%s: empty credential id", op)
	}
	pin, err := d.pinIfSet(ctx, cb)
	if err != nil {
		return d.mapErr(ctx, op, err)
	}
	if pin == "" {
		return fmt.Errorf("%s: %w", op, device.ErrPINNotSet)
	}
	err = d.do(ctx, func(dev *fidoc.Dev) error { return dev.DeleteRK(id, pin) })
	return d.mapErr(ctx, op, err)
}
