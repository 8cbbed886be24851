package ctap

import (
	"crypto/hmac"
	"crypto/sha256"
)

// hmacSecretInput is the getAssertion input of the hmac-secret extension
// (CTAP 2.1 §12.5).
type hmacSecretInput struct {
	KeyAgreement *coseKey `cbor:"1,keyasint"`
	SaltEnc      []byte   `cbor:"2,keyasint"`
	SaltAuth     []byte   `cbor:"3,keyasint"`
	Protocol     *int     `cbor:"4,keyasint"`
}

// hmacSecretState is a verified, decrypted hmac-secret request.
type hmacSecretState struct {
	p      protocol
	secret []byte
	salts  [][]byte
}

func (a *Authenticator) openHMACSecret(in *hmacSecretInput) (*hmacSecretState, error) {
	p := protocol(1)
	if in.Protocol != nil {
		p = protocol(*in.Protocol)
	}
	if !p.valid() {
		return nil, ErrInvalidParameter
	}
	secret, err := p.sharedSecret(a.pin.agreement, *in.KeyAgreement)
	if err != nil {
		return nil, err
	}
	if !p.verify(p.hmacKey(secret), in.SaltEnc, in.SaltAuth) {
		return nil, ErrPINAuthInvalid
	}
	salts, err := p.decrypt(secret, in.SaltEnc)
	if err != nil {
		return nil, err
	}
	if len(salts) != 32 && len(salts) != 64 {
		return nil, ErrInvalidLength
	}
	st := &hmacSecretState{p: p, secret: secret, salts: [][]byte{salts[:32]}}
	if len(salts) == 64 {
		st.salts = append(st.salts, salts[32:])
	}
	return st, nil
}

// output computes HMAC-SHA-256(CredRandom, salt) for each salt and encrypts
// the result. CredRandom is derived from the credential's key, one value
// with and one without user verification, as the extension requires.
func (s *hmacSecretState) output(k sealedKey, uv bool) ([]byte, error) {
	label := "keydesk hmac-secret CredRandomWithoutUV"
	if uv {
		label = "keydesk hmac-secret CredRandomWithUV"
	}
	m := hmac.New(sha256.New, k.seed)
	m.Write([]byte(label))
	credRandom := m.Sum(nil)
	var out []byte
	for _, salt := range s.salts {
		h := hmac.New(sha256.New, credRandom)
		h.Write(salt)
		out = append(out, h.Sum(nil)...)
	}
	return s.p.encrypt(s.secret, out)
}
