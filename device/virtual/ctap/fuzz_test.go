package ctap

import (
	"context"
	"crypto/sha256"
	"sync"
	"testing"

	"github.com/fxamacker/cbor/v2"

	"github.com/keydesk/keydesk/device/virtual"
)

var knownStatus = map[Status]bool{
	StatusOK: true, ErrInvalidCommand: true, ErrInvalidParameter: true, ErrInvalidLength: true,
	ErrCBORUnexpectedType: true, ErrInvalidCBOR: true, ErrMissingParameter: true, ErrLimitExceeded: true,
	ErrCredentialExcluded: true, ErrUnsupportedAlgorithm: true, ErrOperationDenied: true, ErrKeyStoreFull: true,
	ErrUnsupportedOption: true, ErrInvalidOption: true, ErrKeepaliveCancel: true, ErrNoCredentials: true,
	ErrUserActionTimeout: true, ErrNotAllowed: true, ErrPINInvalid: true, ErrPINBlocked: true,
	ErrPINAuthInvalid: true, ErrPINAuthBlocked: true, ErrPINNotSet: true, ErrPUATRequired: true,
	ErrPINPolicyViolation: true, ErrRequestTooLarge: true, ErrUnauthorizedPermission: true, ErrInvalidSubcommand: true,
}

var (
	fuzzOnce sync.Once
	fuzzAuth *Authenticator
	fuzzKey  *virtual.Key
)

func seed(f *testing.F, cmd byte, params any) {
	req := []byte{cmd}
	if params != nil {
		b, err := encMode.Marshal(params)
		if err != nil {
			f.Fatal(err)
		}
		req = append(req, b...)
	}
	f.Add(req)
}

// FuzzRequest sends arbitrary CTAP2 requests to one authenticator.
// Invariants: no panic; the status is one a CTAP 2.1 authenticator defines;
// a successful response is a CBOR map; and afterwards getInfo still answers
// and the state still round-trips through JSON.
func FuzzRequest(f *testing.F) {
	cdh := sha256.Sum256([]byte("fuzz"))
	seed(f, cmdGetInfo, nil)
	seed(f, cmdClientPIN, map[int]any{1: 2, 2: pinGetRetries})
	seed(f, cmdClientPIN, map[int]any{1: 1, 2: pinGetKeyAgreement})
	seed(f, cmdClientPIN, map[int]any{1: 2, 2: pinSetPIN, 3: map[int]any{1: 2, 3: -25, -1: 1, -2: make([]byte, 32), -3: make([]byte, 32)}, 4: make([]byte, 32), 5: make([]byte, 80)})
	seed(f, cmdMakeCredential, mcParams("f.example", cdh[:], nil))
	seed(f, cmdMakeCredential, mcParams("f.example", cdh[:], map[int]any{6: map[string]any{"credProtect": 2, "hmac-secret": true}, 7: map[string]bool{"rk": true}}))
	seed(f, cmdGetAssertion, map[int]any{1: "f.example", 2: cdh[:]})
	seed(f, cmdGetAssertion, map[int]any{1: "f.example", 2: cdh[:], 3: []map[string]any{{"type": "public-key", "id": make([]byte, credIDLen)}}})
	seed(f, cmdGetNextAssertion, nil)
	seed(f, cmdCredentialMgmt, map[int]any{1: cmEnumerateCredsBegin, 2: map[int]any{1: cdh[:]}, 3: 2, 4: make([]byte, 32)})
	seed(f, cmdCredentialMgmtPre, map[int]any{1: cmGetCredsMetadata})
	seed(f, cmdSelection, nil)
	seed(f, cmdReset, nil)
	f.Add([]byte{cmdMakeCredential, 0xbf})        // indefinite-length map
	f.Add([]byte{cmdClientPIN, 0xa2, 0x01, 0x01}) // truncated
	f.Fuzz(func(t *testing.T, req []byte) {
		fuzzOnce.Do(func() {
			fuzzKey = virtual.NewKey(virtual.DefaultIdentity(99))
			var err error
			if fuzzAuth, err = New(fuzzKey); err != nil {
				t.Fatal(err)
			}
		})
		resp := fuzzAuth.CBOR(context.Background(), req, nil)
		if len(resp) == 0 {
			t.Fatal("empty response")
		}
		if !knownStatus[Status(resp[0])] {
			t.Fatalf("status 0x%02x", resp[0])
		}
		if len(resp) > 1 {
			if resp[0] != 0 {
				t.Fatal("error status with a body")
			}
			var m map[int]cbor.RawMessage
			if err := cbor.Unmarshal(resp[1:], &m); err != nil {
				t.Fatalf("response body is not a CBOR map: %v", err)
			}
		}
		if r := fuzzAuth.CBOR(context.Background(), []byte{cmdGetInfo}, nil); r[0] != 0 {
			t.Fatalf("getInfo after fuzzing: 0x%02x", r[0])
		}
		js, err := fuzzAuth.MarshalState()
		if err != nil {
			t.Fatal(err)
		}
		if err := fuzzAuth.UnmarshalState(js); err != nil {
			t.Fatalf("state does not round-trip: %v", err)
		}
	})
}

// FuzzU2F sends arbitrary CTAP1/U2F APDUs. Invariants: no panic; every
// response ends in a status word; and a registration still works after.
func FuzzU2F(f *testing.F) {
	c := sha256.Sum256([]byte("c"))
	f.Add([]byte{0, 3, 0, 0})
	f.Add(append([]byte{0, 1, 0, 0, 64}, append(c[:], c[:]...)...))
	f.Add(append([]byte{0, 2, 7, 0, 66}, append(append(c[:], c[:]...), 1, 9)...))
	f.Add([]byte{0, 2, 3, 0, 0, 0, 70})
	f.Fuzz(func(t *testing.T, apdu []byte) {
		fuzzOnce.Do(func() {
			fuzzKey = virtual.NewKey(virtual.DefaultIdentity(99))
			var err error
			if fuzzAuth, err = New(fuzzKey); err != nil {
				t.Fatal(err)
			}
		})
		resp := fuzzAuth.MSG(context.Background(), apdu, nil)
		if len(resp) < 2 {
			t.Fatalf("response % x has no status word", resp)
		}
		reg := fuzzAuth.MSG(context.Background(), append([]byte{0, 1, 0, 0, 64}, append(c[:], c[:]...)...), nil)
		if reg[0] != 5 || reg[len(reg)-2] != 0x90 {
			t.Fatalf("register after fuzzing: % x", reg[len(reg)-2:])
		}
	})
}
