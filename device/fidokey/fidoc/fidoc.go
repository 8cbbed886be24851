// Package fidoc is keydesk's own thin cgo layer over libfido2 1.12 for what
// github.com/keys-pub/go-libfido2 does not reach: a device handle the caller
// holds for one operation so another goroutine can cancel it
// (fido_dev_cancel, CTAPHID_CANCEL, CTAP 2.1 §11.2.9.1.5), the whole
// authenticatorGetInfo response (CTAP 2.1 §6.4: minPINLength,
// forcePINChange, remainingDiscoverableCredentials, firmwareVersion),
// authenticatorConfig (CTAP 2.1 §6.11: setMinPINLength, forceChangePin,
// enableEnterpriseAttestation), the raw authenticator data and attestation
// statement of a new credential, and each discoverable credential's
// credProtect level from credential management (CTAP 2.1 §6.8).
//
// Every function returns a Code for libfido2 failures; callers map codes to
// their own errors. Nothing here prompts, prints or logs.
package fidoc

/*
#cgo !windows,!linux pkg-config: libfido2
#include <fido.h>
#include <fido/credman.h>
#include <stdlib.h>
#include "late.h"
*/
import "C"

import (
	"fmt"
	"sync"
	"time"
	"unsafe"
)

// call runs one libfido2 call that talks to the device under Guard.
func call(f func() C.int) error {
	var r C.int
	Guard(func() { r = f() })
	return check(r)
}

func init() { C.fido_init(0) }

// Code is a libfido2 result: a CTAP2 status (CTAP 2.1 §8.2.1, positive) or
// one of libfido2's own (negative).
type Code int

func (c Code) Error() string {
	return fmt.Sprintf("libfido2: %s (%d)", C.GoString(C.fido_strerr(C.int(c))), int(c))
}

// Codes callers act on (fido/err.h).
const (
	OK                   Code = C.FIDO_OK
	ErrTX                Code = C.FIDO_ERR_TX
	ErrRX                Code = C.FIDO_ERR_RX
	ErrInternal          Code = C.FIDO_ERR_INTERNAL
	ErrInvalidArgument   Code = C.FIDO_ERR_INVALID_ARGUMENT
	ErrInvalidCommand    Code = C.FIDO_ERR_INVALID_COMMAND
	ErrInvalidParameter  Code = C.FIDO_ERR_INVALID_PARAMETER
	ErrUnsupportedOption Code = C.FIDO_ERR_UNSUPPORTED_OPTION
	ErrInvalidOption     Code = C.FIDO_ERR_INVALID_OPTION
	ErrKeepaliveCancel   Code = C.FIDO_ERR_KEEPALIVE_CANCEL
	ErrNoCredentials     Code = C.FIDO_ERR_NO_CREDENTIALS
	ErrUserActionTimeout Code = C.FIDO_ERR_USER_ACTION_TIMEOUT
	ErrActionTimeout     Code = C.FIDO_ERR_ACTION_TIMEOUT
	ErrNotAllowed        Code = C.FIDO_ERR_NOT_ALLOWED
	ErrPINInvalid        Code = C.FIDO_ERR_PIN_INVALID
	ErrPINBlocked        Code = C.FIDO_ERR_PIN_BLOCKED
	ErrPINAuthInvalid    Code = C.FIDO_ERR_PIN_AUTH_INVALID
	ErrPINAuthBlocked    Code = C.FIDO_ERR_PIN_AUTH_BLOCKED
	ErrPINNotSet         Code = C.FIDO_ERR_PIN_NOT_SET
	ErrPINRequired       Code = C.FIDO_ERR_PIN_REQUIRED
	ErrPINPolicy         Code = C.FIDO_ERR_PIN_POLICY_VIOLATION
	ErrUnauthorizedPerm  Code = C.FIDO_ERR_UNAUTHORIZED_PERM
	ErrOperationDenied   Code = C.FIDO_ERR_OPERATION_DENIED
	ErrCredentialExclude Code = C.FIDO_ERR_CREDENTIAL_EXCLUDED
	ErrUnsupportedAlg    Code = C.FIDO_ERR_UNSUPPORTED_ALGORITHM
	ErrKeyStoreFull      Code = C.FIDO_ERR_KEY_STORE_FULL
)

func check(r C.int) error {
	if r == C.FIDO_OK {
		return nil
	}
	if r == C.KD_ERR_MISSING {
		return errMissing
	}
	return Code(r)
}

// cstr is a C copy of s that the caller frees; nil for "" when nilEmpty.
func cstr(s string, nilEmpty bool) *C.char {
	if s == "" && nilEmpty {
		return nil
	}
	return C.CString(s)
}

func free(p *C.char) {
	if p != nil {
		C.free(unsafe.Pointer(p))
	}
}

// wipeFree overwrites a C string holding a PIN before freeing it.
func wipeFree(p *C.char, n int) {
	if p == nil {
		return
	}
	b := unsafe.Slice((*byte)(unsafe.Pointer(p)), n)
	for i := range b {
		b[i] = 0
	}
	C.free(unsafe.Pointer(p))
}

func goBytes(p *C.uchar, n C.size_t) []byte {
	if p == nil || n == 0 {
		return nil
	}
	return C.GoBytes(unsafe.Pointer(p), C.int(n))
}

func cBytes(b []byte) (*C.uchar, C.size_t, func()) {
	if len(b) == 0 {
		return nil, 0, func() {}
	}
	p := C.CBytes(b)
	return (*C.uchar)(p), C.size_t(len(b)), func() { C.free(p) }
}

// pinArg is a PIN as libfido2 takes it: NULL when empty.
type pinArg struct {
	p *C.char
	n int
}

func newPIN(pin string) pinArg {
	if pin == "" {
		return pinArg{}
	}
	return pinArg{p: C.CString(pin), n: len(pin)}
}

func (a pinArg) free() { wipeFree(a.p, a.n) }

// Dev is an open device. One goroutine runs operations on it; any other may
// call Cancel meanwhile. Close it when the operation is done.
type Dev struct {
	mu     sync.Mutex
	d      *C.fido_dev_t
	closed bool
}

// responseLimit is the longest libfido2 waits for a device to answer one
// request (fido_dev_set_timeout(3)); libfido2's own default is forever. A
// YubiKey waiting for a touch sends keep-alives and gives up by itself
// after about 30 s, so only a device that stopped answering reaches it:
// the request then fails with ErrRX instead of blocking its caller for
// good.
var responseLimit = 60 * time.Second

// Open opens the FIDO device at path (CTAPHID INIT included), loading
// libfido2 first if no call has yet (Load).
func Open(path string) (*Dev, error) {
	if err := Load(); err != nil {
		return nil, err
	}
	d := C.fido_dev_new()
	if d == nil {
		return nil, ErrInternal
	}
	C.kd_dev_set_timeout(d, C.int(responseLimit/time.Millisecond))
	cp := C.CString(path)
	defer free(cp)
	if err := call(func() C.int { return C.fido_dev_open(d, cp) }); err != nil {
		C.fido_dev_free(&d)
		return nil, err
	}
	return &Dev{d: d}, nil
}

// Close closes and frees the device. It is safe to call twice.
func (d *Dev) Close() {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.closed {
		return
	}
	d.closed = true
	C.fido_dev_close(d.d) // no wait for the device: nothing to guard
	C.fido_dev_free(&d.d)
}

// Cancel sends CTAPHID_CANCEL for the request in flight, if any.
func (d *Dev) Cancel() {
	d.mu.Lock()
	defer d.mu.Unlock()
	if !d.closed {
		call(func() C.int { return C.fido_dev_cancel(d.d) })
	}
}

// IsFIDO2 reports whether the device speaks CTAP2.
func (d *Dev) IsFIDO2() bool { return bool(C.fido_dev_is_fido2(d.d)) }

// HIDVersion is the device version CTAPHID INIT reported (CTAP 2.1
// §11.2.9.1.3); on a YubiKey 4 or later it is the firmware version.
func (d *Dev) HIDVersion() (major, minor, build uint8) {
	return uint8(C.fido_dev_major(d.d)), uint8(C.fido_dev_minor(d.d)), uint8(C.fido_dev_build(d.d))
}

// Info is authenticatorGetInfo (CTAP 2.1 §6.4).
type Info struct {
	Versions        []string
	Extensions      []string
	AAGUID          []byte
	Options         map[string]bool
	Protocols       []uint8
	MinPINLength    int
	ForcePINChange  bool
	RemainingRK     int64 // -1 when the key does not say
	FirmwareVersion uint64
	MaxCredCount    uint64
	MaxMsgSize      uint64
}

// Info reads authenticatorGetInfo.
func (d *Dev) Info() (*Info, error) {
	ci := C.fido_cbor_info_new()
	if ci == nil {
		return nil, ErrInternal
	}
	defer C.fido_cbor_info_free(&ci)
	if err := call(func() C.int { return C.fido_dev_get_cbor_info(d.d, ci) }); err != nil {
		return nil, err
	}
	in := &Info{
		AAGUID:          goBytes(C.fido_cbor_info_aaguid_ptr(ci), C.fido_cbor_info_aaguid_len(ci)),
		Protocols:       goBytes(C.fido_cbor_info_protocols_ptr(ci), C.fido_cbor_info_protocols_len(ci)),
		MinPINLength:    int(C.kd_cbor_info_minpinlen(ci)),
		ForcePINChange:  bool(C.kd_cbor_info_new_pin_required(ci)),
		RemainingRK:     int64(C.kd_cbor_info_rk_remaining(ci)),
		FirmwareVersion: uint64(C.fido_cbor_info_fwversion(ci)),
		MaxCredCount:    uint64(C.kd_cbor_info_maxcredcntlst(ci)),
		MaxMsgSize:      uint64(C.fido_cbor_info_maxmsgsiz(ci)),
		Options:         map[string]bool{},
	}
	in.Versions = goStrings(C.fido_cbor_info_versions_ptr(ci), C.fido_cbor_info_versions_len(ci))
	in.Extensions = goStrings(C.fido_cbor_info_extensions_ptr(ci), C.fido_cbor_info_extensions_len(ci))
	n := int(C.fido_cbor_info_options_len(ci))
	names := goStrings(C.fido_cbor_info_options_name_ptr(ci), C.size_t(n))
	if vp := C.fido_cbor_info_options_value_ptr(ci); vp != nil && n > 0 {
		vals := unsafe.Slice(vp, n)
		for i, name := range names {
			in.Options[name] = bool(vals[i])
		}
	}
	return in, nil
}

func goStrings(p **C.char, n C.size_t) []string {
	if p == nil || n == 0 {
		return nil
	}
	out := make([]string, 0, int(n))
	for _, s := range unsafe.Slice(p, int(n)) {
		out = append(out, C.GoString(s))
	}
	return out
}

// Retries is clientPIN getPINRetries (CTAP 2.1 §6.5.5.2).
func (d *Dev) Retries() (int, error) {
	var n C.int
	if err := call(func() C.int { return C.fido_dev_get_retry_count(d.d, &n) }); err != nil {
		return 0, err
	}
	return int(n), nil
}

// SetPIN sets the first PIN (old "") or changes it (CTAP 2.1 §6.5.5.5,
// §6.5.5.6).
func (d *Dev) SetPIN(pin, old string) error {
	p, o := newPIN(pin), newPIN(old)
	defer p.free()
	defer o.free()
	return call(func() C.int { return C.fido_dev_set_pin(d.d, p.p, o.p) })
}

// SetPINMinLen is authenticatorConfig setMinPINLength with
// newMinPINLength (CTAP 2.1 §6.11.4).
func (d *Dev) SetPINMinLen(n int, pin string) error {
	p := newPIN(pin)
	defer p.free()
	return call(func() C.int { return C.kd_dev_set_pin_minlen(d.d, C.size_t(n), p.p) })
}

// ForcePINChange is authenticatorConfig setMinPINLength with
// forceChangePin true (CTAP 2.1 §6.11.4).
func (d *Dev) ForcePINChange(pin string) error {
	p := newPIN(pin)
	defer p.free()
	return call(func() C.int { return C.kd_dev_force_pin_change(d.d, p.p) })
}

// EnableEnterpriseAttestation is authenticatorConfig
// enableEnterpriseAttestation (CTAP 2.1 §6.11.1).
func (d *Dev) EnableEnterpriseAttestation(pin string) error {
	p := newPIN(pin)
	defer p.free()
	return call(func() C.int { return C.kd_dev_enable_entattest(d.d, p.p) })
}

// Reset is authenticatorReset (CTAP 2.1 §6.6).
func (d *Dev) Reset() error { return call(func() C.int { return C.fido_dev_reset(d.d) }) }

// COSE algorithm identifiers libfido2 takes as credential types.
const (
	ES256 = C.COSE_ES256
	EDDSA = C.COSE_EDDSA
)

// MakeCredArgs are the inputs of authenticatorMakeCredential
// (CTAP 2.1 §6.1).
type MakeCredArgs struct {
	ClientDataHash []byte
	RPID, RPName   string
	UserID         []byte
	UserName       string
	DisplayName    string
	Discoverable   bool
	CredProtect    int // 0: not requested; 1-3 (CTAP 2.1 §12.1)
	Alg            int // ES256 when 0
	PIN            string
	// Exclude is the exclude list: credential ids the key must not
	// already hold for RPID (CTAP 2.1 §6.1, excludeList).
	Exclude [][]byte
	// HMACSecret asks for the hmac-secret extension (CTAP 2.1 §12.5).
	HMACSecret bool
}

// Cred is what authenticatorMakeCredential returned.
type Cred struct {
	Format   string
	AuthData []byte // raw authenticator data (WebAuthn L2 §6.1)
	AttStmt  []byte // the attestation statement as the key encoded it (CBOR)
	ID       []byte
	X5C      []byte // the first attestation certificate (DER), if any
	Sig      []byte
	Prot     int
}

// MakeCred runs authenticatorMakeCredential.
func (d *Dev) MakeCred(a MakeCredArgs) (*Cred, error) {
	c := C.fido_cred_new()
	if c == nil {
		return nil, ErrInternal
	}
	defer C.fido_cred_free(&c)
	cdh, cdhLen, f1 := cBytes(a.ClientDataHash)
	defer f1()
	if err := check(C.fido_cred_set_clientdata_hash(c, cdh, cdhLen)); err != nil {
		return nil, err
	}
	rpid, rpname := cstr(a.RPID, false), cstr(a.RPName, true)
	defer free(rpid)
	defer free(rpname)
	if err := check(C.fido_cred_set_rp(c, rpid, rpname)); err != nil {
		return nil, err
	}
	uid, uidLen, f2 := cBytes(a.UserID)
	defer f2()
	name, disp := cstr(a.UserName, true), cstr(a.DisplayName, true)
	defer free(name)
	defer free(disp)
	if err := check(C.fido_cred_set_user(c, uid, uidLen, name, disp, nil)); err != nil {
		return nil, err
	}
	alg := a.Alg
	if alg == 0 {
		alg = ES256
	}
	if err := check(C.fido_cred_set_type(c, C.int(alg))); err != nil {
		return nil, err
	}
	rk := C.fido_opt_t(C.FIDO_OPT_OMIT)
	if a.Discoverable {
		rk = C.FIDO_OPT_TRUE
	}
	if err := check(C.fido_cred_set_rk(c, rk)); err != nil {
		return nil, err
	}
	if a.HMACSecret {
		// Before fido_cred_set_prot: set_extensions replaces the mask.
		if err := check(C.fido_cred_set_extensions(c, C.FIDO_EXT_HMAC_SECRET)); err != nil {
			return nil, err
		}
	}
	if a.CredProtect != 0 {
		if err := check(C.fido_cred_set_prot(c, C.int(a.CredProtect))); err != nil {
			return nil, err
		}
	}
	for _, id := range a.Exclude {
		p, n, f := cBytes(id)
		err := check(C.fido_cred_exclude(c, p, n))
		f()
		if err != nil {
			return nil, err
		}
	}
	p := newPIN(a.PIN)
	defer p.free()
	if err := call(func() C.int { return C.fido_dev_make_cred(d.d, c, p.p) }); err != nil {
		return nil, err
	}
	return &Cred{
		Format:   C.GoString(C.fido_cred_fmt(c)),
		AuthData: goBytes(C.kd_cred_authdata_raw_ptr(c), C.kd_cred_authdata_raw_len(c)),
		AttStmt:  goBytes(C.kd_cred_attstmt_ptr(c), C.kd_cred_attstmt_len(c)),
		ID:       goBytes(C.fido_cred_id_ptr(c), C.fido_cred_id_len(c)),
		X5C:      goBytes(C.fido_cred_x5c_ptr(c), C.fido_cred_x5c_len(c)),
		Sig:      goBytes(C.fido_cred_sig_ptr(c), C.fido_cred_sig_len(c)),
		Prot:     int(C.fido_cred_prot(c)),
	}, nil
}

// AssertArgs are the inputs of authenticatorGetAssertion (CTAP 2.1 §6.2).
type AssertArgs struct {
	RPID           string
	ClientDataHash []byte
	AllowList      [][]byte
	PIN            string // empty: no user verification
}

// Assertion is the first assertion the key returned.
type Assertion struct {
	AuthDataCBOR []byte // authenticator data as a CBOR byte string
	Sig          []byte
	ID           []byte
	UserID       []byte
	Count        int
}

// GetAssert runs authenticatorGetAssertion with user presence.
func (d *Dev) GetAssert(a AssertArgs) (*Assertion, error) {
	as := C.fido_assert_new()
	if as == nil {
		return nil, ErrInternal
	}
	defer C.fido_assert_free(&as)
	rpid := cstr(a.RPID, false)
	defer free(rpid)
	if err := check(C.fido_assert_set_rp(as, rpid)); err != nil {
		return nil, err
	}
	cdh, cdhLen, f1 := cBytes(a.ClientDataHash)
	defer f1()
	if err := check(C.fido_assert_set_clientdata_hash(as, cdh, cdhLen)); err != nil {
		return nil, err
	}
	for _, id := range a.AllowList {
		p, n, f := cBytes(id)
		err := check(C.fido_assert_allow_cred(as, p, n))
		f()
		if err != nil {
			return nil, err
		}
	}
	if err := check(C.fido_assert_set_up(as, C.FIDO_OPT_TRUE)); err != nil {
		return nil, err
	}
	p := newPIN(a.PIN)
	defer p.free()
	if err := call(func() C.int { return C.fido_dev_get_assert(d.d, as, p.p) }); err != nil {
		return nil, err
	}
	if C.fido_assert_count(as) == 0 {
		return nil, ErrNoCredentials
	}
	return &Assertion{
		AuthDataCBOR: goBytes(C.fido_assert_authdata_ptr(as, 0), C.fido_assert_authdata_len(as, 0)),
		Sig:          goBytes(C.fido_assert_sig_ptr(as, 0), C.fido_assert_sig_len(as, 0)),
		ID:           goBytes(C.fido_assert_id_ptr(as, 0), C.fido_assert_id_len(as, 0)),
		UserID:       goBytes(C.fido_assert_user_id_ptr(as, 0), C.fido_assert_user_id_len(as, 0)),
		Count:        int(C.fido_assert_count(as)),
	}, nil
}

// RP is a relying party with discoverable credentials on the key.
type RP struct{ ID, Name string }

// RPs is credential management enumerateRPs (CTAP 2.1 §6.8.3).
func (d *Dev) RPs(pin string) ([]RP, error) {
	rp := C.fido_credman_rp_new()
	if rp == nil {
		return nil, ErrInternal
	}
	defer C.fido_credman_rp_free(&rp)
	p := newPIN(pin)
	defer p.free()
	if err := call(func() C.int { return C.fido_credman_get_dev_rp(d.d, rp, p.p) }); err != nil {
		return nil, err
	}
	n := C.fido_credman_rp_count(rp)
	out := make([]RP, 0, int(n))
	for i := C.size_t(0); i < n; i++ {
		out = append(out, RP{ID: C.GoString(C.fido_credman_rp_id(rp, i)), Name: C.GoString(C.fido_credman_rp_name(rp, i))})
	}
	return out, nil
}

// ResidentCred is one discoverable credential as credential management
// reports it.
type ResidentCred struct {
	ID          []byte
	UserID      []byte
	UserName    string
	DisplayName string
	Prot        int
	PubKey      []byte // raw public key as libfido2 gives it
}

// RKs is credential management enumerateCredentials for one RP
// (CTAP 2.1 §6.8.4).
func (d *Dev) RKs(rpID, pin string) ([]ResidentCred, error) {
	rk := C.fido_credman_rk_new()
	if rk == nil {
		return nil, ErrInternal
	}
	defer C.fido_credman_rk_free(&rk)
	rpid := cstr(rpID, false)
	defer free(rpid)
	p := newPIN(pin)
	defer p.free()
	if err := call(func() C.int { return C.fido_credman_get_dev_rk(d.d, rpid, rk, p.p) }); err != nil {
		return nil, err
	}
	n := C.fido_credman_rk_count(rk)
	out := make([]ResidentCred, 0, int(n))
	for i := C.size_t(0); i < n; i++ {
		c := C.fido_credman_rk(rk, i)
		out = append(out, ResidentCred{
			ID:          goBytes(C.fido_cred_id_ptr(c), C.fido_cred_id_len(c)),
			UserID:      goBytes(C.fido_cred_user_id_ptr(c), C.fido_cred_user_id_len(c)),
			UserName:    C.GoString(C.fido_cred_user_name(c)),
			DisplayName: C.GoString(C.fido_cred_display_name(c)),
			Prot:        int(C.fido_cred_prot(c)),
			PubKey:      goBytes(C.fido_cred_pubkey_ptr(c), C.fido_cred_pubkey_len(c)),
		})
	}
	return out, nil
}

// DeleteRK is credential management deleteCredential (CTAP 2.1 §6.8.5).
func (d *Dev) DeleteRK(id []byte, pin string) error {
	cid, n, f := cBytes(id)
	defer f()
	p := newPIN(pin)
	defer p.free()
	return call(func() C.int { return C.fido_credman_del_dev_rk(d.d, cid, n, p.p) })
}

// HasPIN reports whether the key said at open that a PIN is set.
func (d *Dev) HasPIN() bool { return bool(C.kd_dev_has_pin(d.d)) }
