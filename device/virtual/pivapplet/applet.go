package pivapplet

import (
	"bytes"
	"context"
	"crypto"
	"crypto/aes"
	"crypto/cipher"
	"crypto/des"
	"crypto/ecdh"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/rsa"
	"crypto/subtle"
	"crypto/x509"
	"encoding/json"
	"errors"
	"math/big"
	"sync"
	"time"

	"github.com/keydesk/keydesk/device/virtual"
	"github.com/keydesk/keydesk/device/virtual/iso7816"
	"github.com/keydesk/keydesk/device/virtual/tlv"
)

// AID is the PIV application identifier (SP 800-73-4 Part 1 §2.2).
var AID = []byte{0xA0, 0x00, 0x00, 0x03, 0x08, 0x00, 0x00, 0x10, 0x00, 0x01, 0x00}

// Instructions (SP 800-73-4 Part 2 §3; Yubico extensions).
const (
	insVerify         = 0x20
	insChangeRef      = 0x24
	insResetRetry     = 0x2C
	insGenerate       = 0x47
	insAuthenticate   = 0x87
	insGetData        = 0xCB
	insPutData        = 0xDB
	insGetMetadata    = 0xF7
	insGetSerial      = 0xF8
	insAttest         = 0xF9
	insSetPINRetries  = 0xFA
	insReset          = 0xFB
	insGetVersion     = 0xFD
	insImportKey      = 0xFE
	insSetMgmKey      = 0xFF
	touchCacheSeconds = 15
)

// Data object tags with access rules of their own.
const (
	tagDiscovery   = 0x7E
	tagPrinted     = 0x5FC109
	tagAttestation = 0x5FFF01
)

// discovery is the fixed discovery object (SP 800-73-4 Part 1 §3.3.2): the
// PIV AID and PIN usage policy "application PIN only".
var discovery = tlv.Encode(tagDiscovery, append(tlv.Encode(0x4F, AID), tlv.Encode(0x5F2F, []byte{0x40, 0x00})...))

// Applet is the PIV application of one virtual key. It is safe for concurrent
// use, though the card serialises commands anyway.
type Applet struct {
	key *virtual.Key

	mu sync.Mutex
	st *State
	// session state, dropped on deselect or power loss
	pinVerified bool
	pinJustNow  bool // VERIFY was the previous PIN-checked step (PIN policy "always")
	mgmAuthed   bool
	witness     []byte
	lastTouch   time.Time
}

// New returns the applet of a factory-fresh key: default PIN, PUK and
// management key, and a factory attestation key in slot F9.
func New(key *virtual.Key) (*Applet, error) {
	attKey, attCert, err := factoryAttestation(key.Identity())
	if err != nil {
		return nil, err
	}
	st := factoryState(key.Identity())
	st.Slots[SlotAttest] = &KeySlot{Algorithm: AlgECCP256, PINPolicy: PINPolicyNever, TouchPolicy: TouchPolicyNever, Origin: OriginGenerated, Private: attKey}
	st.Objects[tagAttestation] = certObject(attCert)
	return &Applet{key: key, st: st}, nil
}

// Restore returns an applet with a state saved by MarshalState.
func Restore(key *virtual.Key, state []byte) (*Applet, error) {
	st := &State{}
	if err := json.Unmarshal(state, st); err != nil {
		return nil, err
	}
	if st.Slots[SlotAttest] == nil {
		return nil, errors.New("saved piv state has no attestation key")
	}
	return &Applet{key: key, st: st}, nil
}

// MarshalState returns the persistent state (with secrets; see the package doc).
func (a *Applet) MarshalState() ([]byte, error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	return json.Marshal(a.st)
}

// factoryManagementAlg is the algorithm of the factory management key: 3DES
// before firmware 5.7, AES-192 from 5.7 (Yubico, "PIV: default values").
func factoryManagementAlg(fw virtual.Version) byte {
	if fw.AtLeast(5, 7, 0) {
		return AlgAES192
	}
	return Alg3DES
}

func factoryState(id virtual.Identity) *State {
	return &State{
		PIN: bytes.Clone(DefaultPIN), PUK: bytes.Clone(DefaultPUK),
		PINTries: defaultRetries, PINLeft: defaultRetries, PUKTries: defaultRetries, PUKLeft: defaultRetries,
		ManagementKey: bytes.Clone(DefaultManagementKey), ManagementAlg: factoryManagementAlg(id.Firmware), ManagementTch: TouchPolicyNever,
		Slots: map[byte]*KeySlot{}, Objects: map[uint32][]byte{},
	}
}

func certObject(der []byte) []byte {
	return tlv.EncodeAll(tlv.TLV{Tag: 0x70, Value: der}, tlv.TLV{Tag: 0x71, Value: []byte{0}}, tlv.TLV{Tag: 0xFE})
}

// AID implements iso7816.Applet.
func (a *Applet) AID() []byte { return AID }

// Select answers with the application property template (SP 800-73-4 Part 2 §3.1.1).
func (a *Applet) Select() ([]byte, uint16) {
	apt := tlv.Encode(0x61, append(tlv.Encode(0x4F, []byte{0x00, 0x00, 0x10, 0x00, 0x01, 0x00}),
		tlv.Encode(0x79, tlv.Encode(0x4F, AID[:5]))...))
	return apt, iso7816.SWOK
}

// Deselect drops the security status.
func (a *Applet) Deselect() {
	a.mu.Lock()
	a.pinVerified, a.pinJustNow, a.mgmAuthed, a.witness = false, false, false, nil
	a.mu.Unlock()
}

// Redact marks commands whose data or answers carry secrets.
func (a *Applet) Redact(c iso7816.Command) bool {
	switch c.INS {
	case insVerify, insChangeRef, insResetRetry, insSetMgmKey, insImportKey:
		return true
	case insAuthenticate:
		return c.P2 == RefManagement
	case insGetData:
		return bytes.Equal(c.Data, []byte{0x5C, 0x03, 0x5F, 0xC1, 0x09})
	}
	return false
}

// Process implements iso7816.Applet.
func (a *Applet) Process(ctx context.Context, c iso7816.Command) ([]byte, uint16) {
	a.mu.Lock()
	defer a.mu.Unlock()
	justNow := a.pinJustNow
	a.pinJustNow = false
	fw := a.key.Identity().Firmware
	switch c.INS {
	case insVerify:
		return a.verify(c)
	case insChangeRef:
		return a.changeReference(c)
	case insResetRetry:
		return a.resetRetry(c)
	case insAuthenticate:
		return a.authenticate(ctx, c, justNow)
	case insGenerate:
		return a.generate(c)
	case insGetData:
		return a.getData(c)
	case insPutData:
		return a.putData(c)
	case insGetVersion:
		return []byte{fw.Major, fw.Minor, fw.Patch}, iso7816.SWOK
	case insGetSerial:
		s := a.key.Identity().Serial
		return []byte{byte(s >> 24), byte(s >> 16), byte(s >> 8), byte(s)}, iso7816.SWOK
	case insGetMetadata:
		if !fw.AtLeast(5, 3, 0) {
			return nil, iso7816.SWInsNotSupported
		}
		return a.metadata(c)
	case insAttest:
		return a.attest(c)
	case insSetMgmKey:
		return a.setManagementKey(ctx, c)
	case insSetPINRetries:
		return a.setRetries(c)
	case insImportKey:
		return a.importKey(c)
	case insReset:
		return a.reset()
	}
	return nil, iso7816.SWInsNotSupported
}

// changed signals persistence; the hook only notes the change (see virtual.Key.OnChange).
func (a *Applet) changed() { a.key.Changed() }

func unpad(b []byte) []byte { return bytes.TrimRight(b, "\xff") }

func retriesSW(left int) uint16 {
	if left <= 0 {
		return iso7816.SWAuthBlocked
	}
	return iso7816.SWVerifyFail | uint16(left)
}

// verify is VERIFY (SP 800-73-4 Part 2 §3.2.1), including the empty-data
// status query and Yubico's P1=FF "forget the PIN".
func (a *Applet) verify(c iso7816.Command) ([]byte, uint16) {
	if c.P2 != RefPIN {
		return nil, iso7816.SWReferenceNotFound
	}
	if c.P1 == 0xFF {
		if len(c.Data) != 0 {
			return nil, iso7816.SWWrongData
		}
		a.pinVerified = false
		return nil, iso7816.SWOK
	}
	if c.P1 != 0x00 {
		return nil, iso7816.SWIncorrectP1P2
	}
	if len(c.Data) == 0 {
		if a.pinVerified {
			return nil, iso7816.SWOK
		}
		return nil, retriesSW(a.st.PINLeft)
	}
	if len(c.Data) != 8 {
		return nil, iso7816.SWWrongData
	}
	if a.st.PINLeft <= 0 {
		return nil, iso7816.SWAuthBlocked
	}
	if subtle.ConstantTimeCompare(unpad(c.Data), a.st.PIN) != 1 {
		a.st.PINLeft--
		a.pinVerified = false
		a.changed()
		return nil, retriesSW(a.st.PINLeft)
	}
	if a.st.PINLeft != a.st.PINTries {
		a.st.PINLeft = a.st.PINTries
		a.changed()
	}
	a.pinVerified, a.pinJustNow = true, true
	return nil, iso7816.SWOK
}

func validNewPIN(p []byte) bool { return len(p) >= 6 && len(p) <= 8 }

// changeReference is CHANGE REFERENCE DATA for the PIN (80) or PUK (81)
// (SP 800-73-4 Part 2 §3.2.2).
func (a *Applet) changeReference(c iso7816.Command) ([]byte, uint16) {
	if c.P1 != 0 {
		return nil, iso7816.SWIncorrectP1P2
	}
	var cur *[]byte
	var left *int
	var tries int
	switch c.P2 {
	case RefPIN:
		cur, left, tries = &a.st.PIN, &a.st.PINLeft, a.st.PINTries
	case RefPUK:
		cur, left, tries = &a.st.PUK, &a.st.PUKLeft, a.st.PUKTries
	default:
		return nil, iso7816.SWReferenceNotFound
	}
	if len(c.Data) != 16 {
		return nil, iso7816.SWWrongData
	}
	if *left <= 0 {
		return nil, iso7816.SWAuthBlocked
	}
	if subtle.ConstantTimeCompare(unpad(c.Data[:8]), *cur) != 1 {
		*left--
		if c.P2 == RefPIN {
			a.pinVerified = false
		}
		a.changed()
		return nil, retriesSW(*left)
	}
	next := unpad(c.Data[8:])
	if !validNewPIN(next) {
		return nil, iso7816.SWWrongData
	}
	*cur = bytes.Clone(next)
	*left = tries
	a.changed()
	return nil, iso7816.SWOK
}

// resetRetry is RESET RETRY COUNTER: unblock the PIN with the PUK (§3.2.3).
func (a *Applet) resetRetry(c iso7816.Command) ([]byte, uint16) {
	if c.P1 != 0 || c.P2 != RefPIN {
		return nil, iso7816.SWIncorrectP1P2
	}
	if len(c.Data) != 16 {
		return nil, iso7816.SWWrongData
	}
	if a.st.PUKLeft <= 0 {
		return nil, iso7816.SWAuthBlocked
	}
	if subtle.ConstantTimeCompare(unpad(c.Data[:8]), a.st.PUK) != 1 {
		a.st.PUKLeft--
		a.changed()
		return nil, retriesSW(a.st.PUKLeft)
	}
	next := unpad(c.Data[8:])
	if !validNewPIN(next) {
		return nil, iso7816.SWWrongData
	}
	a.st.PIN, a.st.PINLeft, a.st.PUKLeft = bytes.Clone(next), a.st.PINTries, a.st.PUKTries
	a.changed()
	return nil, iso7816.SWOK
}

func (a *Applet) mgmCipher() (cipher.Block, error) {
	switch a.st.ManagementAlg {
	case Alg3DES:
		return des.NewTripleDESCipher(a.st.ManagementKey)
	case AlgAES128, AlgAES192, AlgAES256:
		return aes.NewCipher(a.st.ManagementKey)
	}
	return nil, errors.New("unknown management key algorithm")
}

// touch asks for presence per the policy, honouring the cached window.
func (a *Applet) touch(ctx context.Context, policy byte) bool {
	if policy != TouchPolicyAlways && policy != TouchPolicyCached {
		return true
	}
	now := a.key.Now()
	if policy == TouchPolicyCached && now.Sub(a.lastTouch) < touchCacheSeconds*time.Second {
		return true
	}
	if err := a.key.Presence.Request(ctx, nil); err != nil {
		return false
	}
	a.lastTouch = a.key.Now()
	return true
}

// authenticate is GENERAL AUTHENTICATE (§3.2.4): management-key mutual
// authentication on 9B, and private-key operations on the other slots.
func (a *Applet) authenticate(ctx context.Context, c iso7816.Command, pinJustNow bool) ([]byte, uint16) {
	tmpl, ok := tlv.Find(c.Data, 0x7C)
	if !ok {
		return nil, iso7816.SWWrongData
	}
	fields, err := tlv.Map(tmpl)
	if err != nil {
		return nil, iso7816.SWWrongData
	}
	if c.P2 == RefManagement {
		return a.mgmAuthenticate(ctx, c.P1, fields)
	}
	ks := a.st.Slots[c.P2]
	if ks == nil || !isKeySlot(c.P2) || c.P2 == SlotAttest {
		return nil, iso7816.SWFileNotFound
	}
	if ks.Algorithm != c.P1 {
		return nil, iso7816.SWWrongData
	}
	switch effectivePIN(c.P2, ks.PINPolicy) {
	case PINPolicyOnce:
		if !a.pinVerified {
			return nil, iso7816.SWSecurityStatus
		}
	case PINPolicyAlways:
		if !a.pinVerified || !pinJustNow {
			return nil, iso7816.SWSecurityStatus
		}
	}
	if !a.touch(ctx, ks.TouchPolicy) {
		return nil, iso7816.SWConditionsNotSatisfied
	}
	if peer, ok := fields[0x85]; ok {
		secret, err := ecdhWith(ks, peer)
		if err != nil {
			return nil, iso7816.SWWrongData
		}
		return tlv.Encode(0x7C, tlv.Encode(0x82, secret)), iso7816.SWOK
	}
	chal, ok := fields[0x81]
	if _, resp := fields[0x82]; !ok || !resp {
		return nil, iso7816.SWWrongData
	}
	sig, err := signWith(ks, chal)
	if err != nil {
		return nil, iso7816.SWWrongData
	}
	return tlv.Encode(0x7C, tlv.Encode(0x82, sig)), iso7816.SWOK
}

func (a *Applet) mgmAuthenticate(ctx context.Context, alg byte, f map[uint32][]byte) ([]byte, uint16) {
	if alg != a.st.ManagementAlg {
		return nil, iso7816.SWWrongData
	}
	block, err := a.mgmCipher()
	if err != nil {
		return nil, iso7816.SWUnknown
	}
	n := block.BlockSize()
	witness, hasW := f[0x80]
	chal, hasC := f[0x81]
	switch {
	case hasW && len(witness) == 0: // step 1: the card's encrypted witness
		a.mgmAuthed = false
		a.witness = make([]byte, n)
		rand.Read(a.witness)
		out := make([]byte, n)
		block.Encrypt(out, a.witness)
		return tlv.Encode(0x7C, tlv.Encode(0x80, out)), iso7816.SWOK
	case hasW && hasC: // step 2: the host decrypted it and challenges back
		expected := a.witness
		a.witness = nil
		if expected == nil || len(witness) != n || len(chal) != n || subtle.ConstantTimeCompare(witness, expected) != 1 {
			a.mgmAuthed = false
			return nil, iso7816.SWSecurityStatus
		}
		if !a.touch(ctx, a.st.ManagementTch) {
			return nil, iso7816.SWConditionsNotSatisfied
		}
		out := make([]byte, n)
		block.Encrypt(out, chal)
		a.mgmAuthed = true
		return tlv.Encode(0x7C, tlv.Encode(0x82, out)), iso7816.SWOK
	case hasC && len(chal) == n: // single challenge: prove the card knows the key
		out := make([]byte, n)
		block.Encrypt(out, chal)
		return tlv.Encode(0x7C, tlv.Encode(0x82, out)), iso7816.SWOK
	}
	return nil, iso7816.SWWrongData
}

func isKeySlot(ref byte) bool {
	switch {
	case ref == SlotAuth, ref == SlotSign, ref == SlotKeyMgmt, ref == SlotCardAuth, ref == SlotAttest:
		return true
	case ref >= 0x82 && ref <= 0x95:
		return true
	}
	return false
}

// effectivePIN resolves the "default" PIN policy per slot (Yubico defaults).
func effectivePIN(slot, p byte) byte {
	if p != PINPolicyDefault {
		return p
	}
	switch slot {
	case SlotSign:
		return PINPolicyAlways
	case SlotCardAuth, SlotAttest:
		return PINPolicyNever
	}
	return PINPolicyOnce
}

func effectiveTouch(p byte) byte {
	if p == TouchPolicyDefault {
		return TouchPolicyNever
	}
	return p
}

func signWith(ks *KeySlot, msg []byte) ([]byte, error) {
	switch k := ks.Private.(type) {
	case *rsa.PrivateKey:
		return rawRSA(k, msg)
	case *ecdsa.PrivateKey:
		return ecdsa.SignASN1(rand.Reader, k, msg)
	case ed25519.PrivateKey:
		return k.Sign(rand.Reader, msg, crypto.Hash(0))
	}
	return nil, errors.New("slot key cannot sign")
}

// rawRSA is the PIV RSA operation: the host pads, the card exponentiates.
func rawRSA(k *rsa.PrivateKey, msg []byte) ([]byte, error) {
	size := k.Size()
	if len(msg) != size {
		return nil, errors.New("rsa input is not the modulus size")
	}
	m := new(big.Int).SetBytes(msg)
	if m.Cmp(k.N) >= 0 {
		return nil, errors.New("rsa input out of range")
	}
	k.Precompute()
	p, q := k.Primes[0], k.Primes[1]
	m1 := new(big.Int).Exp(m, k.Precomputed.Dp, p)
	m2 := new(big.Int).Exp(m, k.Precomputed.Dq, q)
	h := new(big.Int).Sub(m1, m2)
	h.Mul(h, k.Precomputed.Qinv).Mod(h, p)
	s := h.Mul(h, q).Add(h, m2)
	return s.FillBytes(make([]byte, size)), nil
}

func ecdhWith(ks *KeySlot, peer []byte) ([]byte, error) {
	if ks.Algorithm == AlgX25519 {
		priv, err := ecdh.X25519().NewPrivateKey(ks.X25519)
		if err != nil {
			return nil, err
		}
		pub, err := ecdh.X25519().NewPublicKey(peer)
		if err != nil {
			return nil, err
		}
		return priv.ECDH(pub)
	}
	k, ok := ks.Private.(*ecdsa.PrivateKey)
	if !ok {
		return nil, errors.New("slot key cannot agree keys")
	}
	priv, err := k.ECDH()
	if err != nil {
		return nil, err
	}
	pub, err := priv.Curve().NewPublicKey(peer)
	if err != nil {
		return nil, err
	}
	return priv.ECDH(pub)
}

// publicKeyTLV encodes a public key as GENERATE returns it inside 7F49.
func publicKeyTLV(ks *KeySlot) []byte {
	if ks.Algorithm == AlgX25519 {
		priv, err := ecdh.X25519().NewPrivateKey(ks.X25519)
		if err != nil {
			return nil
		}
		return tlv.Encode(0x86, priv.PublicKey().Bytes())
	}
	switch k := ks.Private.Public().(type) {
	case *rsa.PublicKey:
		return append(tlv.Encode(0x81, k.N.Bytes()), tlv.Encode(0x82, big.NewInt(int64(k.E)).Bytes())...)
	case *ecdsa.PublicKey:
		pub, err := k.ECDH()
		if err != nil {
			return nil
		}
		return tlv.Encode(0x86, pub.Bytes())
	case ed25519.PublicKey:
		return tlv.Encode(0x86, k)
	}
	return nil
}

func slotPublic(ks *KeySlot) crypto.PublicKey {
	if ks.Algorithm == AlgX25519 {
		priv, err := ecdh.X25519().NewPrivateKey(ks.X25519)
		if err != nil {
			return nil
		}
		return priv.PublicKey()
	}
	return ks.Private.Public()
}

// algSupported gates algorithms on firmware (Yubico: Ed25519, X25519, RSA
// 3072 and 4096 arrived in 5.7).
func algSupported(fw virtual.Version, alg byte) bool {
	switch alg {
	case AlgRSA1024, AlgRSA2048, AlgECCP256, AlgECCP384:
		return true
	case AlgRSA3072, AlgRSA4096, AlgEd25519, AlgX25519:
		return fw.AtLeast(5, 7, 0)
	}
	return false
}

func validPolicies(pin, touch byte) bool {
	return pin <= PINPolicyAlways && touch <= TouchPolicyCached
}

// generate is GENERATE ASYMMETRIC KEY PAIR (§3.3.2).
func (a *Applet) generate(c iso7816.Command) ([]byte, uint16) {
	if !a.mgmAuthed {
		return nil, iso7816.SWSecurityStatus
	}
	if c.P1 != 0 || !isKeySlot(c.P2) || c.P2 == SlotAttest {
		return nil, iso7816.SWIncorrectP1P2
	}
	tmpl, ok := tlv.Find(c.Data, 0xAC)
	if !ok {
		return nil, iso7816.SWWrongData
	}
	f, err := tlv.Map(tmpl)
	if err != nil || len(f[0x80]) != 1 {
		return nil, iso7816.SWWrongData
	}
	alg := f[0x80][0]
	if !algSupported(a.key.Identity().Firmware, alg) {
		return nil, iso7816.SWWrongData
	}
	ks := &KeySlot{Algorithm: alg, Origin: OriginGenerated}
	if v := f[0xAA]; len(v) == 1 {
		ks.PINPolicy = v[0]
	}
	if v := f[0xAB]; len(v) == 1 {
		ks.TouchPolicy = v[0]
	}
	if !validPolicies(ks.PINPolicy, ks.TouchPolicy) {
		return nil, iso7816.SWWrongData
	}
	ks.PINPolicy = effectivePIN(c.P2, ks.PINPolicy)
	ks.TouchPolicy = effectiveTouch(ks.TouchPolicy)
	if err := newKey(ks); err != nil {
		return nil, iso7816.SWUnknown
	}
	a.st.Slots[c.P2] = ks
	a.changed()
	return tlv.Encode(0x7F49, publicKeyTLV(ks)), iso7816.SWOK
}

func newKey(ks *KeySlot) error {
	var err error
	switch ks.Algorithm {
	case AlgRSA1024, AlgRSA2048, AlgRSA3072, AlgRSA4096:
		bits := map[byte]int{AlgRSA1024: 1024, AlgRSA2048: 2048, AlgRSA3072: 3072, AlgRSA4096: 4096}[ks.Algorithm]
		ks.Private, err = rsa.GenerateKey(rand.Reader, bits)
	case AlgECCP256:
		ks.Private, err = ecdsa.GenerateKey(ecdsaCurve(AlgECCP256), rand.Reader)
	case AlgECCP384:
		ks.Private, err = ecdsa.GenerateKey(ecdsaCurve(AlgECCP384), rand.Reader)
	case AlgEd25519:
		_, ks.Private, err = ed25519.GenerateKey(rand.Reader)
	case AlgX25519:
		var k *ecdh.PrivateKey
		k, err = ecdh.X25519().GenerateKey(rand.Reader)
		if err == nil {
			ks.X25519 = k.Bytes()
		}
	default:
		err = errors.New("unsupported algorithm")
	}
	return err
}

func objectTag(data []byte) (uint32, bool) {
	v, ok := tlv.Find(data, 0x5C)
	if !ok || len(v) == 0 || len(v) > 3 {
		return 0, false
	}
	var tag uint32
	for _, b := range v {
		tag = tag<<8 | uint32(b)
	}
	return tag, true
}

// getData is GET DATA (§3.1.2).
func (a *Applet) getData(c iso7816.Command) ([]byte, uint16) {
	if c.P1 != 0x3F || c.P2 != 0xFF {
		return nil, iso7816.SWIncorrectP1P2
	}
	tag, ok := objectTag(c.Data)
	if !ok {
		return nil, iso7816.SWWrongData
	}
	if tag == tagDiscovery {
		return discovery, iso7816.SWOK
	}
	if tag == tagPrinted && !a.pinVerified {
		return nil, iso7816.SWSecurityStatus
	}
	v, ok := a.st.Objects[tag]
	if !ok {
		return nil, iso7816.SWFileNotFound
	}
	return tlv.Encode(0x53, v), iso7816.SWOK
}

// writableObject reports whether PUT DATA may write tag. A YubiKey accepts
// any tag in 0x5F0000–0x5FFFFF (the PIV data objects of SP 800-73-4 Part 1
// Table 3 and Yubico's own 0x5FFFxx objects among them) and the BIT group
// template 0x7F61; the discovery object 0x7E and everything else are
// refused.
func writableObject(tag uint32) bool {
	return (tag >= 0x5F0000 && tag <= 0x5FFFFF) || tag == 0x7F61
}

// putData is PUT DATA (§3.3.1); an empty value deletes the object.
func (a *Applet) putData(c iso7816.Command) ([]byte, uint16) {
	if !a.mgmAuthed {
		return nil, iso7816.SWSecurityStatus
	}
	if c.P1 != 0x3F || c.P2 != 0xFF {
		return nil, iso7816.SWIncorrectP1P2
	}
	objs, err := tlv.Parse(c.Data)
	if err != nil || len(objs) != 2 || objs[0].Tag != 0x5C || objs[1].Tag != 0x53 {
		return nil, iso7816.SWWrongData
	}
	tag, ok := objectTag(c.Data)
	if !ok || !writableObject(tag) {
		return nil, iso7816.SWWrongData
	}
	if len(objs[1].Value) > MaxObjectSize {
		return nil, iso7816.SWNotEnoughMemory
	}
	if len(objs[1].Value) == 0 {
		delete(a.st.Objects, tag)
	} else {
		a.st.Objects[tag] = bytes.Clone(objs[1].Value)
	}
	a.changed()
	return nil, iso7816.SWOK
}

// metadata is Yubico's GET METADATA (firmware 5.3 and later).
func (a *Applet) metadata(c iso7816.Command) ([]byte, uint16) {
	if c.P1 != 0 {
		return nil, iso7816.SWIncorrectP1P2
	}
	isDefault := func(b bool) []byte {
		if b {
			return []byte{1}
		}
		return []byte{0}
	}
	switch c.P2 {
	case RefPIN:
		return tlv.EncodeAll(tlv.TLV{Tag: 0x01, Value: []byte{AlgPIN}}, tlv.TLV{Tag: 0x02, Value: []byte{0, 0}},
			tlv.TLV{Tag: 0x05, Value: isDefault(bytes.Equal(a.st.PIN, DefaultPIN))},
			tlv.TLV{Tag: 0x06, Value: []byte{byte(a.st.PINTries), byte(max(a.st.PINLeft, 0))}}), iso7816.SWOK
	case RefPUK:
		return tlv.EncodeAll(tlv.TLV{Tag: 0x01, Value: []byte{AlgPIN}}, tlv.TLV{Tag: 0x02, Value: []byte{0, 0}},
			tlv.TLV{Tag: 0x05, Value: isDefault(bytes.Equal(a.st.PUK, DefaultPUK))},
			tlv.TLV{Tag: 0x06, Value: []byte{byte(a.st.PUKTries), byte(max(a.st.PUKLeft, 0))}}), iso7816.SWOK
	case RefManagement:
		return tlv.EncodeAll(tlv.TLV{Tag: 0x01, Value: []byte{a.st.ManagementAlg}},
			tlv.TLV{Tag: 0x02, Value: []byte{PINPolicyNever, a.st.ManagementTch}},
			tlv.TLV{Tag: 0x05, Value: isDefault(a.st.ManagementAlg == factoryManagementAlg(a.key.Identity().Firmware) &&
				bytes.Equal(a.st.ManagementKey, DefaultManagementKey))}), iso7816.SWOK
	}
	ks := a.st.Slots[c.P2]
	if !isKeySlot(c.P2) {
		return nil, iso7816.SWIncorrectP1P2
	}
	if ks == nil {
		return nil, iso7816.SWFileNotFound
	}
	return tlv.EncodeAll(tlv.TLV{Tag: 0x01, Value: []byte{ks.Algorithm}},
		tlv.TLV{Tag: 0x02, Value: []byte{ks.PINPolicy, ks.TouchPolicy}},
		tlv.TLV{Tag: 0x03, Value: []byte{ks.Origin}},
		tlv.TLV{Tag: 0x04, Value: publicKeyTLV(ks)}), iso7816.SWOK
}

// attest is Yubico's ATTEST: a certificate for a key generated on the key.
func (a *Applet) attest(c iso7816.Command) ([]byte, uint16) {
	if c.P2 != 0 {
		return nil, iso7816.SWIncorrectP1P2
	}
	ks := a.st.Slots[c.P1]
	if !isKeySlot(c.P1) || c.P1 == SlotAttest {
		return nil, iso7816.SWIncorrectP1P2
	}
	if ks == nil {
		return nil, iso7816.SWFileNotFound
	}
	if ks.Origin != OriginGenerated {
		return nil, iso7816.SWWrongData // imported keys cannot be attested
	}
	att := a.st.Slots[SlotAttest]
	obj := a.st.Objects[tagAttestation]
	der, ok := tlv.Find(obj, 0x70)
	if att == nil || !ok {
		return nil, iso7816.SWConditionsNotSatisfied
	}
	attCert, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, iso7816.SWConditionsNotSatisfied
	}
	out, err := attestSlot(a.key.Identity(), c.P1, ks, slotPublic(ks), att.Private, attCert)
	if err != nil {
		return nil, iso7816.SWUnknown
	}
	return out, iso7816.SWOK
}

// setManagementKey is Yubico's SET MANAGEMENT KEY (P2 FE: touch required).
func (a *Applet) setManagementKey(ctx context.Context, c iso7816.Command) ([]byte, uint16) {
	if !a.mgmAuthed {
		return nil, iso7816.SWSecurityStatus
	}
	if c.P1 != 0xFF || (c.P2 != 0xFF && c.P2 != 0xFE) {
		return nil, iso7816.SWIncorrectP1P2
	}
	if len(c.Data) < 3 || c.Data[1] != RefManagement || int(c.Data[2]) != len(c.Data)-3 {
		return nil, iso7816.SWWrongData
	}
	alg, key := c.Data[0], c.Data[3:]
	want := map[byte]int{Alg3DES: 24, AlgAES128: 16, AlgAES192: 24, AlgAES256: 32}[alg]
	if want == 0 || len(key) != want {
		return nil, iso7816.SWWrongData
	}
	if alg != Alg3DES && !a.key.Identity().Firmware.AtLeast(5, 4, 0) {
		return nil, iso7816.SWWrongData
	}
	a.st.ManagementAlg, a.st.ManagementKey = alg, bytes.Clone(key)
	a.st.ManagementTch = TouchPolicyNever
	if c.P2 == 0xFE {
		a.st.ManagementTch = TouchPolicyAlways
	}
	a.changed()
	return nil, iso7816.SWOK
}

// setRetries is Yubico's SET PIN RETRIES; it also restores the default PIN
// and PUK, as the hardware does.
func (a *Applet) setRetries(c iso7816.Command) ([]byte, uint16) {
	if !a.mgmAuthed || !a.pinVerified {
		return nil, iso7816.SWSecurityStatus
	}
	if c.P1 == 0 || c.P2 == 0 {
		return nil, iso7816.SWIncorrectP1P2
	}
	a.st.PINTries, a.st.PINLeft, a.st.PUKTries, a.st.PUKLeft = int(c.P1), int(c.P1), int(c.P2), int(c.P2)
	a.st.PIN, a.st.PUK = bytes.Clone(DefaultPIN), bytes.Clone(DefaultPUK)
	a.changed()
	return nil, iso7816.SWOK
}

// importKey is Yubico's IMPORT ASYMMETRIC KEY.
func (a *Applet) importKey(c iso7816.Command) ([]byte, uint16) {
	if !a.mgmAuthed {
		return nil, iso7816.SWSecurityStatus
	}
	if !isKeySlot(c.P2) || !algSupported(a.key.Identity().Firmware, c.P1) {
		return nil, iso7816.SWIncorrectP1P2
	}
	f, err := tlv.Map(c.Data)
	if err != nil {
		return nil, iso7816.SWWrongData
	}
	ks := &KeySlot{Algorithm: c.P1, Origin: OriginImported}
	if v := f[0xAA]; len(v) == 1 {
		ks.PINPolicy = v[0]
	}
	if v := f[0xAB]; len(v) == 1 {
		ks.TouchPolicy = v[0]
	}
	if !validPolicies(ks.PINPolicy, ks.TouchPolicy) {
		return nil, iso7816.SWWrongData
	}
	ks.PINPolicy, ks.TouchPolicy = effectivePIN(c.P2, ks.PINPolicy), effectiveTouch(ks.TouchPolicy)
	if err := importPrivate(ks, f); err != nil {
		return nil, iso7816.SWWrongData
	}
	a.st.Slots[c.P2] = ks
	a.changed()
	return nil, iso7816.SWOK
}

func importPrivate(ks *KeySlot, f map[uint32][]byte) error {
	switch ks.Algorithm {
	case AlgRSA1024, AlgRSA2048, AlgRSA3072, AlgRSA4096:
		p, q := new(big.Int).SetBytes(f[0x01]), new(big.Int).SetBytes(f[0x02])
		if p.Sign() == 0 || q.Sign() == 0 {
			return errors.New("missing rsa primes")
		}
		e := big.NewInt(65537)
		n := new(big.Int).Mul(p, q)
		phi := new(big.Int).Mul(new(big.Int).Sub(p, big.NewInt(1)), new(big.Int).Sub(q, big.NewInt(1)))
		d := new(big.Int).ModInverse(e, phi)
		if d == nil {
			return errors.New("rsa primes do not fit e=65537")
		}
		k := &rsa.PrivateKey{PublicKey: rsa.PublicKey{N: n, E: 65537}, D: d, Primes: []*big.Int{p, q}}
		if err := k.Validate(); err != nil {
			return err
		}
		k.Precompute()
		ks.Private = k
	case AlgECCP256, AlgECCP384:
		k, err := ecdsa.ParseRawPrivateKey(ecdsaCurve(ks.Algorithm), f[0x06])
		if err != nil {
			return err
		}
		ks.Private = k
	case AlgEd25519:
		if len(f[0x07]) != ed25519.SeedSize {
			return errors.New("ed25519 seed size")
		}
		ks.Private = ed25519.NewKeyFromSeed(f[0x07])
	case AlgX25519:
		if _, err := ecdh.X25519().NewPrivateKey(f[0x08]); err != nil {
			return err
		}
		ks.X25519 = bytes.Clone(f[0x08])
	default:
		return errors.New("unsupported algorithm")
	}
	return nil
}

// reset is Yubico's RESET: only when the PIN and the PUK are both blocked.
// The factory attestation key and certificate survive.
func (a *Applet) reset() ([]byte, uint16) {
	if a.st.PINLeft > 0 || a.st.PUKLeft > 0 {
		return nil, iso7816.SWConditionsNotSatisfied
	}
	fresh := factoryState(a.key.Identity())
	fresh.Slots[SlotAttest] = a.st.Slots[SlotAttest]
	fresh.Objects[tagAttestation] = a.st.Objects[tagAttestation]
	a.st = fresh
	a.pinVerified, a.mgmAuthed, a.witness = false, false, nil
	a.changed()
	return nil, iso7816.SWOK
}
