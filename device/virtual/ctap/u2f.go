package ctap

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/rand"
	"crypto/x509"
	"encoding/binary"
)

var (
	swNoError            = []byte{0x90, 0x00}
	swConditionsNotSatis = []byte{0x69, 0x85}
	swWrongData          = []byte{0x6a, 0x80}
	swWrongLength        = []byte{0x67, 0x00}
)

func (r *request) u2fTouch() bool { return r.userPresence() == nil }

// u2fRegister is U2F_REGISTER (FIDO U2F Raw Message Formats §4).
func (r *request) u2fRegister(data []byte) []byte {
	a := r.a
	if len(data) != 64 {
		return swWrongLength
	}
	challenge, app := data[:32], data[32:]
	if !r.u2fTouch() {
		return swConditionsNotSatis
	}
	sk := sealedKey{alg: algES256, credProtect: 1, seed: make([]byte, 32)}
	if _, err := rand.Read(sk.seed); err != nil {
		return []byte{0x6f, 0x00}
	}
	handle, err := a.wrap(app, sk)
	if err != nil {
		return []byte{0x6f, 0x00}
	}
	pub := sk.signer().(*ecdsa.PrivateKey).PublicKey
	point := append([]byte{4}, append(pub.X.FillBytes(make([]byte, 32)), pub.Y.FillBytes(make([]byte, 32))...)...)
	msg := append(append(append(append([]byte{0}, app...), challenge...), handle...), point...)
	attKey, err := x509.ParsePKCS8PrivateKey(a.st.AttestKey)
	if err != nil {
		return []byte{0x6f, 0x00}
	}
	sig, err := sign(attKey.(crypto.Signer), msg)
	if err != nil {
		return []byte{0x6f, 0x00}
	}
	resp := append([]byte{0x05}, point...)
	resp = append(resp, byte(len(handle)))
	resp = append(resp, handle...)
	resp = append(resp, a.st.AttestCert...)
	resp = append(resp, sig...)
	return append(resp, swNoError...)
}

// u2fAuthenticate is U2F_AUTHENTICATE (FIDO U2F Raw Message Formats §5).
func (r *request) u2fAuthenticate(control byte, data []byte) []byte {
	a := r.a
	if len(data) < 65 || len(data) != 65+int(data[64]) {
		return swWrongLength
	}
	challenge, app, handle := data[:32], data[32:64], data[65:]
	k, ok := a.unwrap(app, handle)
	if !ok || k.alg != algES256 {
		return swWrongData
	}
	var flags byte
	switch control {
	case 0x07: // check-only
		return swConditionsNotSatis
	case 0x03: // enforce-user-presence-and-sign
		if !r.u2fTouch() {
			return swConditionsNotSatis
		}
		flags = flagUP
	case 0x08: // dont-enforce-user-presence-and-sign
	default:
		return swWrongData
	}
	a.st.SignCount++
	a.dirty = true
	counter := binary.BigEndian.AppendUint32(nil, a.st.SignCount)
	msg := append(append(append(append([]byte(nil), app...), flags), counter...), challenge...)
	sig, err := sign(k.signer(), msg)
	if err != nil {
		return []byte{0x6f, 0x00}
	}
	resp := append(append([]byte{flags}, counter...), sig...)
	return append(resp, swNoError...)
}
