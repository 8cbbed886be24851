package ctap

import (
	"bytes"

	"github.com/fxamacker/cbor/v2"
)

// authenticatorConfig subcommands (CTAP 2.1 §6.11).
const (
	cfgEnableEnterpriseAttestation = 0x01
	cfgToggleAlwaysUv              = 0x02
	cfgSetMinPINLength             = 0x03
)

type configReq struct {
	SubCommand *int            `cbor:"1,keyasint"`
	Params     cbor.RawMessage `cbor:"2,keyasint"`
	Protocol   *int            `cbor:"3,keyasint"`
	PinUvAuth  []byte          `cbor:"4,keyasint"`
}

type setMinPINLengthParams struct {
	NewMinPINLength *int     `cbor:"1,keyasint"`
	MinPINLengthRPs []string `cbor:"2,keyasint"`
	ForceChangePin  *bool    `cbor:"3,keyasint"`
}

// authenticatorConfig is authenticatorConfig (CTAP 2.1 §6.11). The virtual
// key implements setMinPINLength (§6.11.4) only; enterprise attestation and
// alwaysUv are not features it has.
func (r *request) authenticatorConfig(params []byte) (any, error) {
	a := r.a
	var q configReq
	if err := decode(params, &q); err != nil {
		return nil, err
	}
	if q.SubCommand == nil {
		return nil, ErrMissingParameter
	}
	sub := *q.SubCommand
	if sub != cfgSetMinPINLength {
		if sub == cfgEnableEnterpriseAttestation || sub == cfgToggleAlwaysUv {
			return nil, ErrUnsupportedOption
		}
		return nil, ErrInvalidSubcommand
	}
	// A PIN is set on every key that answers here, so a pinUvAuthParam is
	// required (§6.11 step 4).
	if a.st.PINHash != nil {
		if q.PinUvAuth == nil || q.Protocol == nil {
			return nil, ErrPUATRequired
		}
		// authenticate(pinUvAuthToken, 32×0xff || 0x0d || uint8(subCommand) || subCommandParams)
		msg := append(bytes.Repeat([]byte{0xff}, 32), cmdConfig, byte(sub))
		msg = append(msg, q.Params...)
		if err := r.checkToken(q.Protocol, q.PinUvAuth, msg, permAuthenticatorCfg, ""); err != nil {
			return nil, err
		}
	}
	var p setMinPINLengthParams
	if len(q.Params) > 0 {
		if err := decode(q.Params, &p); err != nil {
			return nil, err
		}
	}
	if len(p.MinPINLengthRPs) > 0 {
		return nil, ErrInvalidParameter // no minPinLength extension on the virtual key
	}
	newMin := a.st.MinPINLength
	if p.NewMinPINLength != nil {
		newMin = *p.NewMinPINLength
	}
	if newMin < a.st.MinPINLength || newMin > 63 {
		return nil, ErrPINPolicyViolation
	}
	force := p.ForceChangePin != nil && *p.ForceChangePin
	if force && a.st.PINHash == nil {
		return nil, ErrPINNotSet
	}
	a.st.MinPINLength = newMin
	if a.st.PINHash != nil && (force || a.st.PINCodePoints < newMin) {
		a.st.ForcePINChange = true
	}
	a.dirty = true
	return nil, nil
}
