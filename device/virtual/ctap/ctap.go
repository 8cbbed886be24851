// Package ctap is the CTAP 2.1 authenticator of a virtual YubiKey 5: the
// FIDO2 applet behind CTAPHID. It answers authenticatorGetInfo,
// authenticatorClientPIN (PIN/UV auth protocols 1 and 2),
// authenticatorMakeCredential (ES256, EdDSA; packed attestation),
// authenticatorGetAssertion and GetNextAssertion,
// authenticatorCredentialManagement, authenticatorReset,
// authenticatorSelection, authenticatorConfig setMinPINLength, and the CTAP1/U2F VERSION command.
//
// The authenticator's persistent state (MarshalState) holds private keys in
// the clear: the credential-wrapping key, every discoverable credential's
// identity and the attestation key. Store it as the secret it is.
package ctap

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/fxamacker/cbor/v2"

	"github.com/keydesk/keydesk/device/virtual"
)

// Command bytes (CTAP 2.1 §6).
const (
	cmdMakeCredential        byte = 0x01
	cmdGetAssertion          byte = 0x02
	cmdGetInfo               byte = 0x04
	cmdClientPIN             byte = 0x06
	cmdReset                 byte = 0x07
	cmdGetNextAssertion      byte = 0x08
	cmdCredentialMgmt        byte = 0x0a
	cmdSelection             byte = 0x0b
	cmdConfig                byte = 0x0d
	cmdCredentialMgmtPre     byte = 0x41 // FIDO_2_1_PRE credentialManagementPreview
	keepaliveUPNeeded        byte = 2    // CTAP 2.1 §11.2.9.2.1
	defaultPINRetries             = 8
	maxConsecutivePINFails        = 3
	maxDiscoverable               = 100
	maxMsgSize                    = 1200
	maxCredentialCountInList      = 8
	maxCredentialIDLength         = 128
	nextAssertionTimeout          = 30 * time.Second
)

// AAGUID identifies the virtual YubiKey 5 model. It is a fixed random UUID
// owned by keydesk (2a47c36d-70f7-47e4-b7af-912b6821fe53), deliberately not
// any of Yubico's, so relying parties can tell a virtual key from hardware.
var AAGUID = [16]byte{0x2a, 0x47, 0xc3, 0x6d, 0x70, 0xf7, 0x47, 0xe4, 0xb7, 0xaf, 0x91, 0x2b, 0x68, 0x21, 0xfe, 0x53}

// Status is a CTAP2 status code (CTAP 2.1 §8.2.1).
type Status byte

const (
	StatusOK                  Status = 0x00
	ErrInvalidCommand         Status = 0x01
	ErrInvalidParameter       Status = 0x02
	ErrInvalidLength          Status = 0x03
	ErrCBORUnexpectedType     Status = 0x11
	ErrInvalidCBOR            Status = 0x12
	ErrMissingParameter       Status = 0x14
	ErrLimitExceeded          Status = 0x15
	ErrCredentialExcluded     Status = 0x19
	ErrUnsupportedAlgorithm   Status = 0x26
	ErrOperationDenied        Status = 0x27
	ErrKeyStoreFull           Status = 0x28
	ErrUnsupportedOption      Status = 0x2b
	ErrInvalidOption          Status = 0x2c
	ErrKeepaliveCancel        Status = 0x2d
	ErrNoCredentials          Status = 0x2e
	ErrUserActionTimeout      Status = 0x2f
	ErrNotAllowed             Status = 0x30
	ErrPINInvalid             Status = 0x31
	ErrPINBlocked             Status = 0x32
	ErrPINAuthInvalid         Status = 0x33
	ErrPINAuthBlocked         Status = 0x34
	ErrPINNotSet              Status = 0x35
	ErrPUATRequired           Status = 0x36
	ErrPINPolicyViolation     Status = 0x37
	ErrRequestTooLarge        Status = 0x39
	ErrUnauthorizedPermission Status = 0x40
	ErrInvalidSubcommand      Status = 0x3e
	ErrOther                  Status = 0x7f
)

// Error makes Status an error for the handlers.
func (s Status) Error() string { return fmt.Sprintf("ctap status 0x%02x", byte(s)) }

var (
	encMode cbor.EncMode
	decMode cbor.DecMode
)

func init() {
	var err error
	if encMode, err = cbor.CTAP2EncOptions().EncMode(); err != nil {
		panic(err)
	}
	if decMode, err = (cbor.DecOptions{
		DupMapKey:        cbor.DupMapKeyEnforcedAPF,
		IndefLength:      cbor.IndefLengthForbidden,
		MaxNestedLevels:  16,
		MaxArrayElements: 256,
		MaxMapPairs:      256,
	}).DecMode(); err != nil {
		panic(err)
	}
}

// decode parses request parameters, mapping failures to the CTAP status a
// YubiKey gives: malformed CBOR is INVALID_CBOR, a well-formed value of the
// wrong type CBOR_UNEXPECTED_TYPE.
func decode(data []byte, v any) error {
	if len(data) == 0 {
		return ErrMissingParameter
	}
	err := decMode.Unmarshal(data, v)
	if err == nil {
		return nil
	}
	var te *cbor.UnmarshalTypeError
	if errors.As(err, &te) {
		return ErrCBORUnexpectedType
	}
	return ErrInvalidCBOR
}

// Authenticator is the CTAP2 applet of one virtual key. It is safe for
// concurrent use; requests are handled one at a time.
type Authenticator struct {
	key   *virtual.Key
	unsub func()

	mu    sync.Mutex
	st    state
	dirty bool
	// transient, lost at power-up (CTAP 2.1 §6.5.5.1)
	pin  pinSession
	next *nextAssertion
	enum *enumeration
	// Trace, when set before use, is called with every exchange: CTAP2
	// requests as command byte then CBOR, U2F APDUs prefixed with 0x83
	// (CTAPHID_MSG).
	Trace func(req, resp []byte)
}

// New returns an authenticator with a fresh state for key (no PIN, no
// credentials, a new attestation certificate). Power events of key reset
// its transient state.
func New(key *virtual.Key) (*Authenticator, error) {
	st, err := newState(key.Identity().Serial)
	if err != nil {
		return nil, err
	}
	a := &Authenticator{key: key, st: st}
	if err := a.powerUp(); err != nil {
		return nil, err
	}
	a.unsub = key.Subscribe(func(e virtual.Event) {
		if e == virtual.Inserted || e == virtual.PowerCycled {
			a.mu.Lock()
			a.powerUp() // errors only from crypto/rand
			a.mu.Unlock()
		}
	})
	return a, nil
}

// Close stops following the key's power events.
func (a *Authenticator) Close() { a.unsub() }

// powerUp resets everything that lives in RAM on a real key.
func (a *Authenticator) powerUp() error {
	a.next, a.enum = nil, nil
	return a.pin.init()
}

// Wink is CTAPHID_WINK: a YubiKey blinks; the virtual key has nothing to do.
func (a *Authenticator) Wink() {}

// CBOR handles one CTAP2 request (command byte then CBOR parameters) and
// returns the response (status byte then CBOR), CTAP 2.1 §8.
func (a *Authenticator) CBOR(ctx context.Context, req []byte, keepalive func(status byte)) []byte {
	resp := a.handle(ctx, req, keepalive)
	if a.Trace != nil {
		a.Trace(req, resp)
	}
	return resp
}

func (a *Authenticator) handle(ctx context.Context, req []byte, keepalive func(byte)) []byte {
	if len(req) == 0 {
		return []byte{byte(ErrInvalidLength)}
	}
	if len(req) > maxMsgSize {
		return []byte{byte(ErrRequestTooLarge)}
	}
	a.mu.Lock()
	var (
		resp any
		err  error
	)
	params := req[1:]
	r := &request{a: a, ctx: ctx, keepalive: keepalive}
	if req[0] != cmdGetNextAssertion {
		a.next = nil
	}
	if req[0] != cmdCredentialMgmt && req[0] != cmdCredentialMgmtPre {
		a.enum = nil
	}
	switch req[0] {
	case cmdGetInfo:
		if len(params) != 0 {
			err = ErrInvalidLength
			break
		}
		resp = a.getInfo()
	case cmdClientPIN:
		resp, err = r.clientPIN(params)
	case cmdMakeCredential:
		resp, err = r.makeCredential(params)
	case cmdGetAssertion:
		resp, err = r.getAssertion(params)
	case cmdGetNextAssertion:
		resp, err = r.getNextAssertion()
	case cmdCredentialMgmt, cmdCredentialMgmtPre:
		resp, err = r.credentialManagement(params)
	case cmdReset:
		err = r.reset()
	case cmdSelection:
		err = r.userPresence()
	case cmdConfig:
		resp, err = r.authenticatorConfig(params)
	default:
		err = ErrInvalidCommand
	}
	dirty := a.dirty
	a.dirty = false
	a.mu.Unlock()
	if dirty {
		a.key.Changed()
	}
	if err != nil {
		var s Status
		if !errors.As(err, &s) {
			s = ErrOther
		}
		return []byte{byte(s)}
	}
	if resp == nil {
		return []byte{byte(StatusOK)}
	}
	out, merr := encMode.Marshal(resp)
	if merr != nil {
		return []byte{byte(ErrOther)}
	}
	return append([]byte{byte(StatusOK)}, out...)
}

// request carries what one command needs besides the authenticator.
type request struct {
	a         *Authenticator
	ctx       context.Context
	keepalive func(byte)
}

// userPresence asks for a touch with the authenticator unlocked, sending
// KEEPALIVE(UPNEEDED) meanwhile (CTAP 2.1 §11.2.9.2.1).
func (r *request) userPresence() error {
	r.a.mu.Unlock()
	err := r.a.key.Presence.Request(r.ctx, func() {
		if r.keepalive != nil {
			r.keepalive(keepaliveUPNeeded)
		}
	})
	r.a.mu.Lock()
	switch {
	case err == nil:
		return nil
	case errors.Is(err, virtual.ErrTouchTimeout):
		return ErrUserActionTimeout
	default:
		return ErrKeepaliveCancel
	}
}

// MSG answers CTAP1/U2F request APDUs (FIDO U2F Raw Message Formats
// §4-6): U2F_REGISTER, U2F_AUTHENTICATE and U2F_VERSION. U2F key handles are
// sealed credential IDs bound to the application parameter, so a U2F
// credential is a non-discoverable ES256 credential of that application.
func (a *Authenticator) MSG(ctx context.Context, apdu []byte, keepalive func(byte)) []byte {
	cla, ins, p1, data, ok := parseAPDU(apdu)
	if !ok {
		return []byte{0x67, 0x00} // wrong length
	}
	if cla != 0 {
		return []byte{0x6e, 0x00} // class not supported
	}
	a.mu.Lock()
	r := &request{a: a, ctx: ctx, keepalive: keepalive}
	var resp []byte
	switch ins {
	case 0x01:
		resp = r.u2fRegister(data)
	case 0x02:
		resp = r.u2fAuthenticate(p1, data)
	case 0x03:
		resp = append([]byte("U2F_V2"), 0x90, 0x00)
	default:
		resp = []byte{0x6d, 0x00} // instruction not supported
	}
	dirty := a.dirty
	a.dirty = false
	a.mu.Unlock()
	if dirty {
		a.key.Changed()
	}
	if a.Trace != nil {
		a.Trace(append([]byte{0x83}, apdu...), resp)
	}
	return resp
}

// parseAPDU reads a short or extended-length command APDU (ISO 7816-4 §5.1).
func parseAPDU(b []byte) (cla, ins, p1 byte, data []byte, ok bool) {
	if len(b) < 4 {
		return 0, 0, 0, nil, false
	}
	cla, ins, p1 = b[0], b[1], b[2]
	body := b[4:]
	switch {
	case len(body) == 0, len(body) == 1: // no data, maybe Le
		return cla, ins, p1, nil, true
	case body[0] != 0: // short Lc
		n := int(body[0])
		if len(body) < 1+n || len(body) > 2+n {
			return 0, 0, 0, nil, false
		}
		return cla, ins, p1, body[1 : 1+n], true
	case len(body) == 3: // extended Le only
		return cla, ins, p1, nil, true
	default: // extended Lc
		if len(body) < 3 {
			return 0, 0, 0, nil, false
		}
		n := int(body[1])<<8 | int(body[2])
		if len(body) < 3+n || len(body) > 5+n {
			return 0, 0, 0, nil, false
		}
		return cla, ins, p1, body[3 : 3+n], true
	}
}
