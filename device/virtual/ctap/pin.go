package ctap

import (
	"bytes"
	"crypto/aes"
	"crypto/cipher"
	"crypto/ecdh"
	"crypto/hkdf"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"unicode/utf8"
)

// clientPIN subcommands (CTAP 2.1 §6.5.5).
const (
	pinGetRetries               = 0x01
	pinGetKeyAgreement          = 0x02
	pinSetPIN                   = 0x03
	pinChangePIN                = 0x04
	pinGetPinToken              = 0x05
	pinGetTokenUsingUV          = 0x06
	pinGetUVRetries             = 0x07
	pinGetTokenUsingPINWithPerm = 0x09
)

// pinUvAuthToken permissions (CTAP 2.1 §6.5.5.7).
const (
	permMakeCredential   = 0x01
	permGetAssertion     = 0x02
	permCredentialMgmt   = 0x04
	permBioEnrollment    = 0x08
	permLargeBlobWrite   = 0x10
	permAuthenticatorCfg = 0x20
)

// pinSession is the clientPIN state that lives in RAM: the key-agreement key,
// the pinUvAuthToken and its permissions, and the count of consecutive wrong
// PINs since power-up (CTAP 2.1 §6.5.2).
type pinSession struct {
	agreement   *ecdh.PrivateKey
	token       []byte
	tokenInUse  bool
	tokenProto  int
	permissions byte
	rpID        string // empty when the token is not bound to an RP
	consecutive int
}

func (s *pinSession) init() error {
	*s = pinSession{}
	if err := s.regenerate(); err != nil {
		return err
	}
	s.token = make([]byte, 32)
	_, err := rand.Read(s.token)
	return err
}

func (s *pinSession) regenerate() error {
	k, err := ecdh.P256().GenerateKey(rand.Reader)
	if err != nil {
		return err
	}
	s.agreement = k
	return nil
}

// resetToken is resetPinUvAuthToken (CTAP 2.1 §6.5.5.3).
func (s *pinSession) resetToken() error {
	s.tokenInUse, s.permissions, s.rpID, s.tokenProto = false, 0, "", 0
	_, err := rand.Read(s.token)
	return err
}

// coseKey is a COSE_Key (RFC 8152 §7) as CTAP uses it: EC2 P-256 for key
// agreement and ES256, OKP Ed25519 for EdDSA.
type coseKey struct {
	Kty int    `cbor:"1,keyasint"`
	Alg int    `cbor:"3,keyasint"`
	Crv int    `cbor:"-1,keyasint"`
	X   []byte `cbor:"-2,keyasint"`
	Y   []byte `cbor:"-3,keyasint,omitempty"`
}

const (
	coseAlgES256    = -7
	coseAlgEdDSA    = -8
	coseAlgECDHHKDF = -25
)

func (s *pinSession) agreementCOSE() coseKey {
	pub := s.agreement.PublicKey().Bytes() // 04 || X || Y
	return coseKey{Kty: 2, Alg: coseAlgECDHHKDF, Crv: 1, X: pub[1:33], Y: pub[33:65]}
}

// protocol is a PIN/UV auth protocol (CTAP 2.1 §6.5.6, §6.5.7).
type protocol int

func (p protocol) valid() bool { return p == 1 || p == 2 }

// sharedSecret is decapsulate: ECDH with the platform's key, then the
// protocol's KDF.
func (p protocol) sharedSecret(priv *ecdh.PrivateKey, peer coseKey) ([]byte, error) {
	if peer.Kty != 2 || peer.Crv != 1 || len(peer.X) != 32 || len(peer.Y) != 32 {
		return nil, ErrInvalidParameter
	}
	pub, err := ecdh.P256().NewPublicKey(append(append([]byte{4}, peer.X...), peer.Y...))
	if err != nil {
		return nil, ErrInvalidParameter
	}
	z, err := priv.ECDH(pub)
	if err != nil {
		return nil, ErrInvalidParameter
	}
	if p == 1 {
		h := sha256.Sum256(z)
		return h[:], nil
	}
	salt := make([]byte, 32)
	hmacKey, err := hkdf.Key(sha256.New, z, salt, "CTAP2 HMAC key", 32)
	if err != nil {
		return nil, err
	}
	aesKey, err := hkdf.Key(sha256.New, z, salt, "CTAP2 AES key", 32)
	if err != nil {
		return nil, err
	}
	return append(hmacKey, aesKey...), nil
}

func (p protocol) aesKey(secret []byte) []byte {
	if p == 1 {
		return secret
	}
	return secret[32:]
}

func (p protocol) hmacKey(secret []byte) []byte {
	if p == 1 {
		return secret
	}
	return secret[:32]
}

// decrypt is AES-256-CBC with a zero IV (protocol 1) or a leading IV (2).
func (p protocol) decrypt(secret, ct []byte) ([]byte, error) {
	iv := make([]byte, aes.BlockSize)
	if p == 2 {
		if len(ct) < aes.BlockSize {
			return nil, ErrInvalidParameter
		}
		iv, ct = ct[:aes.BlockSize], ct[aes.BlockSize:]
	}
	if len(ct) == 0 || len(ct)%aes.BlockSize != 0 {
		return nil, ErrInvalidParameter
	}
	b, err := aes.NewCipher(p.aesKey(secret))
	if err != nil {
		return nil, err
	}
	pt := make([]byte, len(ct))
	cipher.NewCBCDecrypter(b, iv).CryptBlocks(pt, ct)
	return pt, nil
}

func (p protocol) encrypt(secret, pt []byte) ([]byte, error) {
	b, err := aes.NewCipher(p.aesKey(secret))
	if err != nil {
		return nil, err
	}
	iv := make([]byte, aes.BlockSize)
	if p == 2 {
		if _, err := rand.Read(iv); err != nil {
			return nil, err
		}
	}
	ct := make([]byte, len(pt))
	cipher.NewCBCEncrypter(b, iv).CryptBlocks(ct, pt)
	if p == 2 {
		return append(iv, ct...), nil
	}
	return ct, nil
}

// verify checks an HMAC-SHA-256 made with key: the first 16 bytes for
// protocol 1, all 32 for protocol 2.
func (p protocol) verify(key, msg, mac []byte) bool {
	h := hmac.New(sha256.New, key)
	h.Write(msg)
	sum := h.Sum(nil)
	if p == 1 {
		sum = sum[:16]
	}
	return len(mac) == len(sum) && subtle.ConstantTimeCompare(sum, mac) == 1
}

type clientPINReq struct {
	Protocol    *int     `cbor:"1,keyasint"`
	SubCommand  *int     `cbor:"2,keyasint"`
	KeyAgree    *coseKey `cbor:"3,keyasint"`
	PinUvAuth   []byte   `cbor:"4,keyasint"`
	NewPinEnc   []byte   `cbor:"5,keyasint"`
	PinHashEnc  []byte   `cbor:"6,keyasint"`
	Permissions *int     `cbor:"9,keyasint"`
	RPID        *string  `cbor:"10,keyasint"`
}

type clientPINResp struct {
	KeyAgreement    *coseKey `cbor:"1,keyasint,omitempty"`
	PinUvAuthToken  []byte   `cbor:"2,keyasint,omitempty"`
	PinRetries      *int     `cbor:"3,keyasint,omitempty"`
	PowerCycleState *bool    `cbor:"4,keyasint,omitempty"`
}

// clientPIN is authenticatorClientPIN (CTAP 2.1 §6.5).
func (r *request) clientPIN(params []byte) (any, error) {
	a := r.a
	var q clientPINReq
	if err := decode(params, &q); err != nil {
		return nil, err
	}
	if q.SubCommand == nil {
		return nil, ErrMissingParameter
	}
	sub := *q.SubCommand
	if sub == pinGetRetries {
		n := a.st.PINRetries
		pc := a.pin.consecutive >= maxConsecutivePINFails
		return clientPINResp{PinRetries: &n, PowerCycleState: &pc}, nil
	}
	if sub == pinGetTokenUsingUV || sub == pinGetUVRetries {
		return nil, ErrInvalidSubcommand // no built-in UV on a YubiKey 5
	}
	if sub < pinGetKeyAgreement || sub > pinGetTokenUsingPINWithPerm || sub == 8 {
		return nil, ErrInvalidSubcommand
	}
	if q.Protocol == nil {
		return nil, ErrMissingParameter
	}
	p := protocol(*q.Protocol)
	if !p.valid() {
		return nil, ErrInvalidParameter
	}
	if sub == pinGetKeyAgreement {
		k := a.pin.agreementCOSE()
		return clientPINResp{KeyAgreement: &k}, nil
	}
	if q.KeyAgree == nil {
		return nil, ErrMissingParameter
	}
	switch sub {
	case pinSetPIN:
		if q.PinUvAuth == nil || q.NewPinEnc == nil {
			return nil, ErrMissingParameter
		}
		if a.st.PINHash != nil {
			return nil, ErrNotAllowed
		}
		secret, err := p.sharedSecret(a.pin.agreement, *q.KeyAgree)
		if err != nil {
			return nil, err
		}
		if !p.verify(p.hmacKey(secret), q.NewPinEnc, q.PinUvAuth) {
			return nil, ErrPINAuthInvalid
		}
		return nil, r.storeNewPIN(p, secret, q.NewPinEnc)
	case pinChangePIN:
		if q.PinUvAuth == nil || q.NewPinEnc == nil || q.PinHashEnc == nil {
			return nil, ErrMissingParameter
		}
		if a.st.PINHash == nil {
			return nil, ErrPINNotSet
		}
		if a.st.PINRetries == 0 {
			return nil, ErrPINBlocked
		}
		secret, err := p.sharedSecret(a.pin.agreement, *q.KeyAgree)
		if err != nil {
			return nil, err
		}
		msg := append(append([]byte(nil), q.NewPinEnc...), q.PinHashEnc...)
		if !p.verify(p.hmacKey(secret), msg, q.PinUvAuth) {
			return nil, ErrPINAuthInvalid
		}
		if err := r.checkPIN(p, secret, q.PinHashEnc); err != nil {
			return nil, err
		}
		return nil, r.storeNewPIN(p, secret, q.NewPinEnc)
	default: // pinGetPinToken, pinGetTokenUsingPINWithPerm
		if q.PinHashEnc == nil {
			return nil, ErrMissingParameter
		}
		perms := permMakeCredential | permGetAssertion
		rpID := ""
		if sub == pinGetTokenUsingPINWithPerm {
			if q.Permissions == nil {
				return nil, ErrMissingParameter
			}
			if *q.Permissions <= 0 || *q.Permissions > 0xff {
				return nil, ErrInvalidParameter
			}
			perms = *q.Permissions
			if perms&(permBioEnrollment|permLargeBlobWrite) != 0 {
				return nil, ErrUnauthorizedPermission
			}
			if q.RPID != nil {
				rpID = *q.RPID
			}
		} else if q.Permissions != nil || q.RPID != nil {
			return nil, ErrInvalidParameter
		}
		if a.st.PINHash == nil {
			return nil, ErrPINNotSet
		}
		if a.st.PINRetries == 0 {
			return nil, ErrPINBlocked
		}
		secret, err := p.sharedSecret(a.pin.agreement, *q.KeyAgree)
		if err != nil {
			return nil, err
		}
		if err := r.checkPIN(p, secret, q.PinHashEnc); err != nil {
			return nil, err
		}
		if a.st.ForcePINChange {
			return nil, ErrPINPolicyViolation
		}
		if err := a.pin.resetToken(); err != nil {
			return nil, err
		}
		a.pin.tokenInUse, a.pin.tokenProto = true, int(p)
		a.pin.permissions, a.pin.rpID = byte(perms), rpID
		enc, err := p.encrypt(secret, a.pin.token)
		if err != nil {
			return nil, err
		}
		return clientPINResp{PinUvAuthToken: enc}, nil
	}
}

// checkPIN decrements the retries, compares the PIN hash and counts
// consecutive failures (CTAP 2.1 §6.5.5.5 steps 3-6).
func (r *request) checkPIN(p protocol, secret, pinHashEnc []byte) error {
	a := r.a
	if a.pin.consecutive >= maxConsecutivePINFails {
		return ErrPINAuthBlocked
	}
	a.st.PINRetries--
	a.dirty = true
	got, err := p.decrypt(secret, pinHashEnc)
	if err != nil || len(got) != 16 || subtle.ConstantTimeCompare(got, a.st.PINHash) != 1 {
		if err := a.pin.regenerate(); err != nil {
			return err
		}
		a.pin.consecutive++
		switch {
		case a.st.PINRetries == 0:
			return ErrPINBlocked
		case a.pin.consecutive >= maxConsecutivePINFails:
			return ErrPINAuthBlocked
		}
		return ErrPINInvalid
	}
	a.st.PINRetries = defaultPINRetries
	a.pin.consecutive = 0
	return nil
}

// storeNewPIN decrypts and checks newPinEnc and makes it the PIN (CTAP 2.1
// §6.5.5.5 setPIN / changePIN).
func (r *request) storeNewPIN(p protocol, secret, newPinEnc []byte) error {
	a := r.a
	if (p == 1 && len(newPinEnc) != 64) || (p == 2 && len(newPinEnc) != 80) {
		return ErrInvalidParameter
	}
	padded, err := p.decrypt(secret, newPinEnc)
	if err != nil {
		return err
	}
	pin := bytes.TrimRight(padded, "\x00")
	if len(pin) > 63 || !utf8.Valid(pin) {
		return ErrPINPolicyViolation
	}
	n := utf8.RuneCount(pin)
	if n < a.st.MinPINLength {
		return ErrPINPolicyViolation
	}
	a.st.PINHash = pinHash(pin)
	a.st.PINCodePoints = n
	a.st.PINRetries = defaultPINRetries
	a.st.ForcePINChange = false
	a.dirty = true
	a.pin.consecutive = 0
	return a.pin.resetToken()
}

// checkToken verifies a pinUvAuthParam made with the pinUvAuthToken over msg
// and that the token holds perm for rpID (CTAP 2.1 §6.5.5.7, §6.1.2 step 11).
// rpID "" means the command is not about one RP.
func (r *request) checkToken(protoField *int, param, msg []byte, perm byte, rpID string) error {
	a := r.a
	if protoField == nil {
		return ErrMissingParameter
	}
	p := protocol(*protoField)
	if !p.valid() {
		return ErrInvalidParameter
	}
	if !a.pin.tokenInUse || int(p) != a.pin.tokenProto {
		return ErrPINAuthInvalid
	}
	if !p.verify(a.pin.token, msg, param) {
		return ErrPINAuthInvalid
	}
	if a.pin.permissions&perm == 0 {
		return ErrPINAuthInvalid
	}
	if rpID != "" {
		if a.pin.rpID != "" && a.pin.rpID != rpID {
			return ErrPINAuthInvalid
		}
		a.pin.rpID = rpID
	}
	return nil
}
