package entra

import (
	"encoding/binary"
	"errors"
	"fmt"

	"github.com/fxamacker/cbor/v2"
)

// authenticatorExtensions reads the extension outputs of the authenticator
// data inside an attestation object (WebAuthn L2 §6.1, §6.5).
func authenticatorExtensions(attObj []byte) (map[string]cbor.RawMessage, error) {
	var obj struct {
		AuthData []byte `cbor:"authData"`
	}
	if err := cbor.Unmarshal(attObj, &obj); err != nil {
		return nil, fmt.Errorf("attestation object: %w", err)
	}
	b := obj.AuthData
	if len(b) < 37 {
		return nil, errors.New("authenticator data too short")
	}
	flags, rest := b[32], b[37:]
	if flags&0x40 != 0 { // AT: attested credential data
		if len(rest) < 18 {
			return nil, errors.New("attested credential data too short")
		}
		n := int(binary.BigEndian.Uint16(rest[16:18]))
		if len(rest) < 18+n {
			return nil, errors.New("credential id truncated")
		}
		var key cbor.RawMessage
		r, err := cbor.UnmarshalFirst(rest[18+n:], &key)
		if err != nil {
			return nil, fmt.Errorf("credential public key: %w", err)
		}
		rest = r
	}
	if flags&0x80 == 0 { // ED: extension data
		return nil, nil
	}
	var ext map[string]cbor.RawMessage
	if err := cbor.Unmarshal(rest, &ext); err != nil {
		return nil, fmt.Errorf("authenticator extensions: %w", err)
	}
	return ext, nil
}
