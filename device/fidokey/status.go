package fidokey

import (
	"context"
	"errors"
	"fmt"

	"github.com/keydesk/keydesk/device"
	"github.com/keydesk/keydesk/device/fidokey/fidoc"
)

// Status reads authenticatorGetInfo (CTAP 2.1 §6.4) and, when a PIN is set,
// the PIN retry counter (§6.5.5.2), in one session.
func (d *Device) Status(ctx context.Context) (device.FIDOStatus, error) {
	var st device.FIDOStatus
	err := d.do(ctx, func(dev *fidoc.Dev) error {
		if !dev.IsFIDO2() {
			return fmt.Errorf("key speaks only u2f: %w", device.ErrNotSupported)
		}
		in, err := dev.Info()
		if err != nil {
			return err
		}
		copy(st.AAGUID[:], in.AAGUID)
		st.Versions = in.Versions
		st.Extensions = in.Extensions
		st.Options = in.Options
		st.PINSet = in.Options["clientPin"]
		st.MinPINLength = in.MinPINLength
		if st.MinPINLength == 0 {
			st.MinPINLength = 4 // CTAP 2.1 §6.4: absent means 4
		}
		st.ForcePINChange = in.ForcePINChange
		st.LibraryLacks = fidoc.Missing()
		st.RemainingResident = int(in.RemainingRK)
		_, st.EnterpriseAttestation = in.Options["ep"]
		st.EnterpriseAttestationEnabled = in.Options["ep"]
		if fw := in.FirmwareVersion; fw != 0 {
			st.Firmware = device.Version{Major: uint8(fw >> 16), Minor: uint8(fw >> 8), Patch: uint8(fw)}
		} else {
			st.Firmware.Major, st.Firmware.Minor, st.Firmware.Patch = dev.HIDVersion()
		}
		if st.PINSet {
			if st.PINRetries, err = dev.Retries(); err != nil {
				return err
			}
		}
		return nil
	})
	return st, d.mapErr(ctx, "reading fido2 status", err)
}

// SetPIN sets the first FIDO2 PIN (CTAP 2.1 §6.5.5.5). A key that has a PIN
// already refuses (libfido2 "not allowed"): use ChangePIN.
func (d *Device) SetPIN(ctx context.Context, pin string) error {
	return d.setPIN(ctx, "setting the fido2 pin", pin, "")
}

// ChangePIN changes the FIDO2 PIN (CTAP 2.1 §6.5.5.6). A wrong old PIN is a
// *device.WrongPINError; a new PIN shorter than the key's minimum is
// device.ErrPINPolicy.
func (d *Device) ChangePIN(ctx context.Context, oldPIN, newPIN string) error {
	if oldPIN == "" {
		return errors.New("changing the fido2 pin: the current pin is empty")
	}
	return d.setPIN(ctx, "changing the fido2 pin", newPIN, oldPIN)
}

func (d *Device) setPIN(ctx context.Context, op, pin, old string) error {
	if pin == "" {
		return fmt.Errorf("%s: the new pin is empty", op)
	}
	err := d.do(ctx, func(dev *fidoc.Dev) error { return dev.SetPIN(pin, old) })
	return d.mapErr(ctx, op, err)
}

// SetMinPINLength raises the key's minimum PIN length to n code points
// (authenticatorConfig setMinPINLength, CTAP 2.1 §6.11.4). A key whose PIN
// is now too short sets forcePINChange. A key without authenticatorConfig
// reports device.ErrNotSupported; lowering the minimum is
// device.ErrPINPolicy.
func (d *Device) SetMinPINLength(ctx context.Context, pin string, n int) error {
	if n < 4 || n > 63 {
		return fmt.Errorf("setting the minimum pin length: %d is outside 4-63", n)
	}
	err := d.do(ctx, func(dev *fidoc.Dev) error {
		if err := requireConfig(dev); err != nil {
			return err
		}
		return dev.SetPINMinLen(n, pin)
	})
	return d.mapErr(ctx, "setting the minimum pin length", err)
}

// ForcePINChange makes the key refuse its PIN until it is changed
// (authenticatorConfig setMinPINLength forceChangePin, CTAP 2.1 §6.11.4).
func (d *Device) ForcePINChange(ctx context.Context, pin string) error {
	err := d.do(ctx, func(dev *fidoc.Dev) error {
		if err := requireConfig(dev); err != nil {
			return err
		}
		return dev.ForcePINChange(pin)
	})
	return d.mapErr(ctx, "forcing a pin change", err)
}

// requireConfig checks getInfo for authenticatorConfig setMinPINLength.
func requireConfig(dev *fidoc.Dev) error {
	in, err := dev.Info()
	if err != nil {
		return err
	}
	if !in.Options["setMinPINLength"] || !in.Options["authnrCfg"] {
		return fmt.Errorf("authenticatorConfig setMinPINLength: %w", device.ErrNotSupported)
	}
	return nil
}
