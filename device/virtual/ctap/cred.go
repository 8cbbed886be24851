package ctap

import (
	"bytes"
	"crypto"
	"crypto/aes"
	"crypto/cipher"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"encoding/binary"
	"math/big"
	"sort"
	"time"

	"github.com/fxamacker/cbor/v2"
)

// A credential ID is the credential's private key sealed with the key's wrap
// key, bound to the RP ID hash, so non-discoverable credentials need no
// storage (as on a YubiKey):
//
//	version(1) alg(1) credProtect(1) nonce(12) AES-256-GCM(seed(32)) tag(16)
const (
	credIDVersion = 1
	credIDLen     = 3 + 12 + 32 + 16
	algES256      = 1
	algEdDSA      = 2
)

// sealedKey is what a credential ID carries.
type sealedKey struct {
	alg         byte
	credProtect byte
	hmacSecret  bool // made with the hmac-secret extension
	// discoverable: made as a discoverable credential, which lives in the
	// key's storage; once deleted (credential management, CTAP 2.1
	// §6.8.5) or wiped by a reset its id no longer signs, as on a YubiKey.
	discoverable bool
	seed         []byte
}

// flagDiscoverable marks, in the credProtect byte of a credential ID, a
// discoverable credential.
const flagDiscoverable = 0x20

// flagHMACSecret marks, in the credProtect byte of a credential ID, a
// credential made with hmac-secret.
const flagHMACSecret = 0x10

func (a *Authenticator) wrap(rpIDHash []byte, k sealedKey) ([]byte, error) {
	b, err := aes.NewCipher(a.st.WrapKey)
	if err != nil {
		return nil, err
	}
	g, err := cipher.NewGCM(b)
	if err != nil {
		return nil, err
	}
	prot := k.credProtect
	if k.hmacSecret {
		prot |= flagHMACSecret
	}
	if k.discoverable {
		prot |= flagDiscoverable
	}
	hdr := []byte{credIDVersion, k.alg, prot}
	nonce := make([]byte, g.NonceSize())
	if _, err := rand.Read(nonce); err != nil {
		return nil, err
	}
	id := append(hdr, nonce...)
	return g.Seal(id, nonce, k.seed, append(append([]byte(nil), hdr...), rpIDHash...)), nil
}

// unwrap opens a credential ID made for rpIDHash; ok is false for anything
// else (another RP, another key, garbage).
func (a *Authenticator) unwrap(rpIDHash, id []byte) (sealedKey, bool) {
	if len(id) != credIDLen || id[0] != credIDVersion {
		return sealedKey{}, false
	}
	b, err := aes.NewCipher(a.st.WrapKey)
	if err != nil {
		return sealedKey{}, false
	}
	g, err := cipher.NewGCM(b)
	if err != nil {
		return sealedKey{}, false
	}
	hdr := id[:3]
	seed, err := g.Open(nil, id[3:15], id[15:], append(append([]byte(nil), hdr...), rpIDHash...))
	if err != nil {
		return sealedKey{}, false
	}
	return sealedKey{alg: hdr[1], credProtect: hdr[2] &^ (flagHMACSecret | flagDiscoverable), hmacSecret: hdr[2]&flagHMACSecret != 0,
		discoverable: hdr[2]&flagDiscoverable != 0, seed: seed}, true
}

// signer rebuilds the credential's private key from its seed.
func (k sealedKey) signer() crypto.Signer {
	if k.alg == algEdDSA {
		return ed25519.NewKeyFromSeed(k.seed)
	}
	n := elliptic.P256().Params().N
	d := new(big.Int).SetBytes(k.seed)
	d.Mod(d, new(big.Int).Sub(n, big.NewInt(1)))
	d.Add(d, big.NewInt(1))
	return ecdsaFromScalar(d.FillBytes(make([]byte, 32)))
}

func (k sealedKey) cose() coseKey {
	switch s := k.signer().(type) {
	case ed25519.PrivateKey:
		return coseKey{Kty: 1, Alg: coseAlgEdDSA, Crv: 6, X: []byte(s.Public().(ed25519.PublicKey))}
	case *ecdsa.PrivateKey:
		return coseKey{Kty: 2, Alg: coseAlgES256, Crv: 1, X: s.X.FillBytes(make([]byte, 32)), Y: s.Y.FillBytes(make([]byte, 32))}
	}
	return coseKey{}
}

func sign(s crypto.Signer, msg []byte) ([]byte, error) {
	if _, ok := s.(ed25519.PrivateKey); ok {
		return s.Sign(rand.Reader, msg, crypto.Hash(0))
	}
	h := sha256.Sum256(msg)
	return s.Sign(rand.Reader, h[:], crypto.SHA256)
}

type rpEntity struct {
	ID   *string `cbor:"id"`
	Name string  `cbor:"name,omitempty"`
}

type userEntity struct {
	ID          []byte `cbor:"id"`
	Name        string `cbor:"name,omitempty"`
	DisplayName string `cbor:"displayName,omitempty"`
}

type credParam struct {
	Alg  *int   `cbor:"alg"`
	Type string `cbor:"type"`
}

type credDescriptor struct {
	Type       string   `cbor:"type"`
	ID         []byte   `cbor:"id"`
	Transports []string `cbor:"transports,omitempty"`
}

type makeCredentialReq struct {
	ClientDataHash []byte                     `cbor:"1,keyasint"`
	RP             *rpEntity                  `cbor:"2,keyasint"`
	User           *userEntity                `cbor:"3,keyasint"`
	Params         []credParam                `cbor:"4,keyasint"`
	ExcludeList    []credDescriptor           `cbor:"5,keyasint"`
	Extensions     map[string]cbor.RawMessage `cbor:"6,keyasint"`
	Options        map[string]bool            `cbor:"7,keyasint"`
	PinUvAuth      []byte                     `cbor:"8,keyasint"`
	Protocol       *int                       `cbor:"9,keyasint"`
	EnterpriseAtt  *int                       `cbor:"10,keyasint"`
}

type attStmt struct {
	Alg int      `cbor:"alg"`
	Sig []byte   `cbor:"sig"`
	X5C [][]byte `cbor:"x5c"`
}

type makeCredentialResp struct {
	Fmt      string  `cbor:"1,keyasint"`
	AuthData []byte  `cbor:"2,keyasint"`
	AttStmt  attStmt `cbor:"3,keyasint"`
}

// authData flags (WebAuthn L2 §6.1).
const (
	flagUP = 0x01
	flagUV = 0x04
	flagAT = 0x40
	flagED = 0x80
)

// zeroLengthPinUvAuth handles a pinUvAuthParam of length zero, which
// platforms send to make the user pick a key (CTAP 2.1 §6.1.2 step 1).
func (r *request) zeroLengthPinUvAuth() error {
	if err := r.userPresence(); err != nil {
		return err
	}
	if r.a.st.PINHash != nil {
		return ErrPINInvalid
	}
	return ErrPINNotSet
}

// makeCredential is authenticatorMakeCredential (CTAP 2.1 §6.1).
func (r *request) makeCredential(params []byte) (any, error) {
	a := r.a
	var q makeCredentialReq
	if err := decode(params, &q); err != nil {
		return nil, err
	}
	if q.ClientDataHash == nil || q.RP == nil || q.User == nil || q.Params == nil {
		return nil, ErrMissingParameter
	}
	if q.RP.ID == nil || q.User.ID == nil {
		return nil, ErrMissingParameter
	}
	if len(q.User.ID) > 64 {
		return nil, ErrInvalidLength
	}
	if q.PinUvAuth != nil && len(q.PinUvAuth) == 0 {
		return nil, r.zeroLengthPinUvAuth()
	}
	if q.PinUvAuth != nil && q.Protocol == nil {
		return nil, ErrMissingParameter
	}
	alg := byte(0)
	for _, p := range q.Params {
		if p.Alg == nil || p.Type == "" {
			return nil, ErrMissingParameter
		}
		if p.Type != "public-key" {
			continue
		}
		if *p.Alg == coseAlgES256 {
			alg = algES256
			break
		}
		if *p.Alg == coseAlgEdDSA {
			alg = algEdDSA
			break
		}
	}
	if alg == 0 {
		return nil, ErrUnsupportedAlgorithm
	}
	rk := false
	for k, v := range q.Options {
		switch k {
		case "rk":
			rk = v
		case "up":
			if !v {
				return nil, ErrInvalidOption
			}
		case "uv":
			if v {
				return nil, ErrInvalidOption // no built-in user verification
			}
		}
	}
	if q.EnterpriseAtt != nil {
		return nil, ErrInvalidParameter // enterprise attestation is not enabled
	}
	credProtect := byte(1)
	hmacSecret := false
	for name, raw := range q.Extensions {
		switch name {
		case "credProtect":
			var v int
			if err := decMode.Unmarshal(raw, &v); err != nil {
				return nil, ErrCBORUnexpectedType
			}
			if v < 1 || v > 3 {
				return nil, ErrInvalidOption
			}
			credProtect = byte(v)
		case "hmac-secret":
			if err := decMode.Unmarshal(raw, &hmacSecret); err != nil {
				return nil, ErrCBORUnexpectedType
			}
		}
	}
	rpID := *q.RP.ID
	rpIDHash := sha256.Sum256([]byte(rpID))

	uv := false
	if q.PinUvAuth != nil {
		if a.st.PINHash == nil {
			return nil, ErrPINNotSet
		}
		if err := r.checkToken(q.Protocol, q.PinUvAuth, q.ClientDataHash, permMakeCredential, rpID); err != nil {
			return nil, err
		}
		uv = true
	} else if a.st.PINHash != nil && (rk || credProtect == 3) {
		// makeCredUvNotRqd covers non-discoverable credentials only.
		return nil, ErrPUATRequired
	}

	for _, d := range q.ExcludeList {
		if d.ID == nil {
			return nil, ErrMissingParameter
		}
		if d.Type != "public-key" {
			continue
		}
		k, ok := a.unwrap(rpIDHash[:], d.ID)
		if !ok {
			continue
		}
		if k.credProtect == 3 && !uv {
			continue
		}
		if err := r.userPresence(); err != nil {
			return nil, err
		}
		return nil, ErrCredentialExcluded
	}
	if rk && a.replacing(rpID, q.User.ID) == nil && len(a.st.Resident) >= maxDiscoverable {
		return nil, ErrKeyStoreFull
	}
	if err := r.userPresence(); err != nil {
		return nil, err
	}

	sk := sealedKey{alg: alg, credProtect: credProtect, hmacSecret: hmacSecret, discoverable: rk, seed: make([]byte, 32)}
	if _, err := rand.Read(sk.seed); err != nil {
		return nil, err
	}
	id, err := a.wrap(rpIDHash[:], sk)
	if err != nil {
		return nil, err
	}
	pub, err := encMode.Marshal(sk.cose())
	if err != nil {
		return nil, err
	}
	ext := map[string]any{}
	if credProtect > 1 || q.Extensions["credProtect"] != nil {
		ext["credProtect"] = credProtect
	}
	if hmacSecret {
		ext["hmac-secret"] = true
	}
	flags := byte(flagUP | flagAT)
	if uv {
		flags |= flagUV
	}
	var extBytes []byte
	if len(ext) > 0 {
		flags |= flagED
		if extBytes, err = encMode.Marshal(ext); err != nil {
			return nil, err
		}
	}
	a.st.SignCount++
	a.dirty = true
	ad := authData(rpIDHash[:], flags, a.st.SignCount)
	ad = append(ad, AAGUID[:]...)
	ad = binary.BigEndian.AppendUint16(ad, uint16(len(id)))
	ad = append(ad, id...)
	ad = append(ad, pub...)
	ad = append(ad, extBytes...)

	if rk {
		c := &credential{ID: id, RPID: rpID, RPName: q.RP.Name, UserID: q.User.ID, UserName: q.User.Name, DisplayName: q.User.DisplayName, Created: a.nextCreated()}
		if old := a.replacing(rpID, q.User.ID); old != nil {
			*old = *c
		} else {
			a.st.Resident = append(a.st.Resident, c)
		}
	}

	attKey, err := x509.ParsePKCS8PrivateKey(a.st.AttestKey)
	if err != nil {
		return nil, err
	}
	sig, err := sign(attKey.(crypto.Signer), append(append([]byte(nil), ad...), q.ClientDataHash...))
	if err != nil {
		return nil, err
	}
	return makeCredentialResp{Fmt: "packed", AuthData: ad, AttStmt: attStmt{Alg: coseAlgES256, Sig: sig, X5C: [][]byte{a.st.AttestCert}}}, nil
}

func authData(rpIDHash []byte, flags byte, count uint32) []byte {
	ad := append(make([]byte, 0, 256), rpIDHash...)
	ad = append(ad, flags)
	return binary.BigEndian.AppendUint32(ad, count)
}

func (a *Authenticator) nextCreated() uint64 {
	var n uint64
	for _, c := range a.st.Resident {
		n = max(n, c.Created)
	}
	return n + 1
}

// replacing returns the discoverable credential a new one for the same RP
// and user overwrites (CTAP 2.1 §6.1.2 step 17).
func (a *Authenticator) replacing(rpID string, userID []byte) *credential {
	for _, c := range a.st.Resident {
		if c.RPID == rpID && bytes.Equal(c.UserID, userID) {
			return c
		}
	}
	return nil
}

type getAssertionReq struct {
	RPID           *string                    `cbor:"1,keyasint"`
	ClientDataHash []byte                     `cbor:"2,keyasint"`
	AllowList      []credDescriptor           `cbor:"3,keyasint"`
	Extensions     map[string]cbor.RawMessage `cbor:"4,keyasint"`
	Options        map[string]bool            `cbor:"5,keyasint"`
	PinUvAuth      []byte                     `cbor:"6,keyasint"`
	Protocol       *int                       `cbor:"7,keyasint"`
}

type publicUser struct {
	ID          []byte `cbor:"id"`
	Name        string `cbor:"name,omitempty"`
	DisplayName string `cbor:"displayName,omitempty"`
}

type getAssertionResp struct {
	Credential credDescriptor `cbor:"1,keyasint"`
	AuthData   []byte         `cbor:"2,keyasint"`
	Signature  []byte         `cbor:"3,keyasint"`
	User       *publicUser    `cbor:"4,keyasint,omitempty"`
	Count      int            `cbor:"5,keyasint,omitempty"`
}

// match is one credential an assertion may use.
type match struct {
	id   []byte
	key  sealedKey
	cred *credential // nil for a non-discoverable credential
}

// nextAssertion is the state authenticatorGetNextAssertion continues from
// (CTAP 2.1 §6.3).
type nextAssertion struct {
	rpIDHash, clientDataHash []byte
	flags                    byte
	uv                       bool
	rest                     []match
	hs                       *hmacSecretState
	deadline                 time.Time
}

// getAssertion is authenticatorGetAssertion (CTAP 2.1 §6.2).
func (r *request) getAssertion(params []byte) (any, error) {
	a := r.a
	var q getAssertionReq
	if err := decode(params, &q); err != nil {
		return nil, err
	}
	if q.RPID == nil || q.ClientDataHash == nil {
		return nil, ErrMissingParameter
	}
	if q.PinUvAuth != nil && len(q.PinUvAuth) == 0 {
		return nil, r.zeroLengthPinUvAuth()
	}
	if q.PinUvAuth != nil && q.Protocol == nil {
		return nil, ErrMissingParameter
	}
	up := true
	for k, v := range q.Options {
		switch k {
		case "rk":
			return nil, ErrUnsupportedOption
		case "up":
			up = v
		case "uv":
			if v {
				return nil, ErrInvalidOption
			}
		}
	}
	rpIDHash := sha256.Sum256([]byte(*q.RPID))
	var hs *hmacSecretInput
	if raw, ok := q.Extensions["hmac-secret"]; ok {
		hs = new(hmacSecretInput)
		if err := decode(raw, hs); err != nil {
			return nil, err
		}
		if hs.KeyAgreement == nil || hs.SaltEnc == nil || hs.SaltAuth == nil {
			return nil, ErrMissingParameter
		}
	}
	uv := false
	if q.PinUvAuth != nil {
		if a.st.PINHash == nil {
			return nil, ErrPINNotSet
		}
		if err := r.checkToken(q.Protocol, q.PinUvAuth, q.ClientDataHash, permGetAssertion, *q.RPID); err != nil {
			return nil, err
		}
		uv = true
	}

	var (
		found []match
		err   error
	)
	if len(q.AllowList) > 0 {
		for _, d := range q.AllowList {
			if d.ID == nil {
				return nil, ErrMissingParameter
			}
			if d.Type != "public-key" {
				continue
			}
			k, ok := a.unwrap(rpIDHash[:], d.ID)
			if !ok || (k.credProtect == 3 && !uv) {
				continue
			}
			res := a.resident(d.ID)
			if k.discoverable && res == nil {
				continue // deleted from the key's storage
			}
			found = append(found, match{id: d.ID, key: k, cred: res})
			break // CTAP 2.1 §6.2.2 step 13: one credential from an allow list
		}
	} else {
		creds := append([]*credential(nil), a.st.Resident...)
		sort.Slice(creds, func(i, j int) bool { return creds[i].Created > creds[j].Created })
		for _, c := range creds {
			if c.RPID != *q.RPID {
				continue
			}
			k, ok := a.unwrap(rpIDHash[:], c.ID)
			if !ok || (k.credProtect >= 2 && !uv) {
				continue
			}
			found = append(found, match{id: c.ID, key: k, cred: c})
		}
	}
	if len(found) == 0 {
		return nil, ErrNoCredentials
	}
	if up {
		if err := r.userPresence(); err != nil {
			return nil, err
		}
	}
	flags := byte(0)
	if up {
		flags |= flagUP
	}
	if uv {
		flags |= flagUV
	}
	var hsState *hmacSecretState
	if hs != nil {
		if hsState, err = a.openHMACSecret(hs); err != nil {
			return nil, err
		}
	}
	resp, err := a.assert(rpIDHash[:], q.ClientDataHash, flags, uv, found[0], hsState)
	if err != nil {
		return nil, err
	}
	if len(q.AllowList) == 0 && len(found) > 1 {
		resp.Count = len(found)
		a.next = &nextAssertion{rpIDHash: rpIDHash[:], clientDataHash: q.ClientDataHash, flags: flags, uv: uv, rest: found[1:], hs: hsState, deadline: a.key.Now().Add(nextAssertionTimeout)}
	}
	return resp, nil
}

// getNextAssertion is authenticatorGetNextAssertion (CTAP 2.1 §6.3).
func (r *request) getNextAssertion() (any, error) {
	a := r.a
	n := a.next
	if n == nil || len(n.rest) == 0 || a.key.Now().After(n.deadline) {
		a.next = nil
		return nil, ErrNotAllowed
	}
	m := n.rest[0]
	n.rest = n.rest[1:]
	n.deadline = a.key.Now().Add(nextAssertionTimeout)
	return a.assert(n.rpIDHash, n.clientDataHash, n.flags, n.uv, m, n.hs)
}

func (a *Authenticator) assert(rpIDHash, cdh []byte, flags byte, uv bool, m match, hs *hmacSecretState) (*getAssertionResp, error) {
	a.st.SignCount++
	a.dirty = true
	var ext []byte
	if hs != nil && m.key.hmacSecret {
		out, err := hs.output(m.key, uv)
		if err != nil {
			return nil, err
		}
		if ext, err = encMode.Marshal(map[string][]byte{"hmac-secret": out}); err != nil {
			return nil, err
		}
		flags |= flagED
	}
	ad := append(authData(rpIDHash, flags, a.st.SignCount), ext...)
	sig, err := sign(m.key.signer(), append(append([]byte(nil), ad...), cdh...))
	if err != nil {
		return nil, err
	}
	resp := &getAssertionResp{Credential: credDescriptor{Type: "public-key", ID: m.id}, AuthData: ad, Signature: sig}
	if m.cred != nil {
		resp.User = &publicUser{ID: m.cred.UserID}
		if uv {
			resp.User.Name, resp.User.DisplayName = m.cred.UserName, m.cred.DisplayName
		}
	}
	return resp, nil
}

func (a *Authenticator) resident(id []byte) *credential {
	for _, c := range a.st.Resident {
		if bytes.Equal(c.ID, id) {
			return c
		}
	}
	return nil
}
