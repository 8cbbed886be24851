package ctap

import (
	"context"
	"crypto/ecdh"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"testing"
	"time"

	"github.com/fxamacker/cbor/v2"

	"github.com/keydesk/keydesk/device/virtual"
)

func newAuth(t *testing.T) (*Authenticator, *virtual.Key) {
	t.Helper()
	k := virtual.NewKey(virtual.DefaultIdentity(42))
	a, err := New(k)
	if err != nil {
		t.Fatal(err)
	}
	return a, k
}

// call sends one command with CBOR parameters (nil: none) and returns the
// status and the decoded response map.
func call(t *testing.T, a *Authenticator, cmd byte, params any) (Status, map[int]cbor.RawMessage) {
	t.Helper()
	req := []byte{cmd}
	if params != nil {
		b, err := encMode.Marshal(params)
		if err != nil {
			t.Fatal(err)
		}
		req = append(req, b...)
	}
	resp := a.CBOR(context.Background(), req, nil)
	if len(resp) == 0 {
		t.Fatal("empty response")
	}
	var m map[int]cbor.RawMessage
	if len(resp) > 1 {
		if err := cbor.Unmarshal(resp[1:], &m); err != nil {
			t.Fatalf("response is not a CBOR map: %v", err)
		}
	}
	return Status(resp[0]), m
}

func want(t *testing.T, got, w Status, what string) {
	t.Helper()
	if got != w {
		t.Fatalf("%s: status 0x%02x, want 0x%02x", what, byte(got), byte(w))
	}
}

// platform is the client half of a PIN/UV auth protocol.
type platform struct {
	t      *testing.T
	a      *Authenticator
	p      protocol
	secret []byte
	pubKey coseKey
}

func newPlatform(t *testing.T, a *Authenticator, p protocol) *platform {
	st, m := call(t, a, cmdClientPIN, map[int]any{1: int(p), 2: pinGetKeyAgreement})
	want(t, st, StatusOK, "getKeyAgreement")
	var ka coseKey
	if err := cbor.Unmarshal(m[1], &ka); err != nil {
		t.Fatal(err)
	}
	priv, _ := ecdh.P256().GenerateKey(rand.Reader)
	secret, err := p.sharedSecret(priv, ka)
	if err != nil {
		t.Fatal(err)
	}
	pub := priv.PublicKey().Bytes()
	return &platform{t: t, a: a, p: p, secret: secret, pubKey: coseKey{Kty: 2, Alg: coseAlgECDHHKDF, Crv: 1, X: pub[1:33], Y: pub[33:]}}
}

func (pl *platform) mac(key, msg []byte) []byte {
	h := hmac.New(sha256.New, key)
	h.Write(msg)
	s := h.Sum(nil)
	if pl.p == 1 {
		return s[:16]
	}
	return s
}

func (pl *platform) enc(pt []byte) []byte {
	ct, err := pl.p.encrypt(pl.secret, pt)
	if err != nil {
		pl.t.Fatal(err)
	}
	return ct
}

func padPIN(pin string) []byte {
	b := make([]byte, 64)
	copy(b, pin)
	return b
}

func (pl *platform) setPIN(pin string) Status {
	ne := pl.enc(padPIN(pin))
	st, _ := call(pl.t, pl.a, cmdClientPIN, map[int]any{1: int(pl.p), 2: pinSetPIN, 3: pl.pubKey, 4: pl.mac(pl.p.hmacKey(pl.secret), ne), 5: ne})
	return st
}

func (pl *platform) changePIN(old, pin string) Status {
	ne := pl.enc(padPIN(pin))
	ph := pl.enc(pinHash([]byte(old)))
	st, _ := call(pl.t, pl.a, cmdClientPIN, map[int]any{1: int(pl.p), 2: pinChangePIN, 3: pl.pubKey, 4: pl.mac(pl.p.hmacKey(pl.secret), append(append([]byte{}, ne...), ph...)), 5: ne, 6: ph})
	return st
}

// token gets a pinUvAuthToken; perms 0 means the legacy getPinToken.
func (pl *platform) token(pin string, perms int, rpID string) (Status, []byte) {
	q := map[int]any{1: int(pl.p), 2: pinGetPinToken, 3: pl.pubKey, 6: pl.enc(pinHash([]byte(pin)))}
	if perms != 0 {
		q[2], q[9] = pinGetTokenUsingPINWithPerm, perms
		if rpID != "" {
			q[10] = rpID
		}
	}
	st, m := call(pl.t, pl.a, cmdClientPIN, q)
	if st != StatusOK {
		return st, nil
	}
	var enc []byte
	if err := cbor.Unmarshal(m[2], &enc); err != nil {
		pl.t.Fatal(err)
	}
	tok, err := pl.p.decrypt(pl.secret, enc)
	if err != nil {
		pl.t.Fatal(err)
	}
	return st, tok
}

func retries(t *testing.T, a *Authenticator) int {
	st, m := call(t, a, cmdClientPIN, map[int]any{1: 2, 2: pinGetRetries})
	want(t, st, StatusOK, "getRetries")
	var n int
	cbor.Unmarshal(m[3], &n)
	return n
}

func mcParams(rp string, cdh []byte, extra map[int]any) map[int]any {
	q := map[int]any{
		1: cdh,
		2: map[string]any{"id": rp, "name": rp},
		3: map[string]any{"id": []byte("user-1"), "name": "u1", "displayName": "User One"},
		4: []map[string]any{{"alg": -7, "type": "public-key"}},
	}
	for k, v := range extra {
		q[k] = v
	}
	return q
}

func TestGetInfo(t *testing.T) {
	a, _ := newAuth(t)
	st, m := call(t, a, cmdGetInfo, nil)
	want(t, st, StatusOK, "getInfo")
	var versions []string
	cbor.Unmarshal(m[1], &versions)
	if len(versions) != 4 || versions[3] != "FIDO_2_1" {
		t.Errorf("versions %v", versions)
	}
	var aaguid []byte
	cbor.Unmarshal(m[3], &aaguid)
	if string(aaguid) != string(AAGUID[:]) {
		t.Errorf("aaguid %x", aaguid)
	}
	var opts map[string]bool
	cbor.Unmarshal(m[4], &opts)
	if !opts["rk"] || !opts["up"] || opts["plat"] || opts["clientPin"] || !opts["credMgmt"] || !opts["pinUvAuthToken"] || opts["alwaysUv"] {
		t.Errorf("options %v", opts)
	}
	var fw int
	cbor.Unmarshal(m[14], &fw)
	if fw != 0x050702 {
		t.Errorf("firmware %x", fw)
	}
	if st, _ := call(t, a, cmdGetInfo, map[int]any{1: 1}); st != ErrInvalidLength {
		t.Errorf("getInfo with parameters: 0x%02x", byte(st))
	}
}

func TestClientPINBothProtocols(t *testing.T) {
	for _, p := range []protocol{1, 2} {
		t.Run(map[protocol]string{1: "protocol1", 2: "protocol2"}[p], func(t *testing.T) {
			a, k := newAuth(t)
			pl := newPlatform(t, a, p)
			if st, _ := pl.token("1234", 0, ""); st != ErrPINNotSet {
				t.Fatalf("token before setPIN: 0x%02x", byte(st))
			}
			want(t, pl.changePIN("1234", "5678"), ErrPINNotSet, "changePIN without a PIN")
			want(t, pl.setPIN("123"), ErrPINPolicyViolation, "3-character PIN")
			// A forged pinUvAuthParam.
			ne := pl.enc(padPIN("1234"))
			st, _ := call(t, a, cmdClientPIN, map[int]any{1: int(p), 2: pinSetPIN, 3: pl.pubKey, 4: pl.mac([]byte("wrong key"), ne), 5: ne})
			want(t, st, ErrPINAuthInvalid, "setPIN with a forged MAC")
			// Wrong-length newPinEnc.
			short := pl.enc(make([]byte, 32))
			st, _ = call(t, a, cmdClientPIN, map[int]any{1: int(p), 2: pinSetPIN, 3: pl.pubKey, 4: pl.mac(pl.p.hmacKey(pl.secret), short), 5: short})
			want(t, st, ErrInvalidParameter, "setPIN with a short newPinEnc")
			want(t, pl.setPIN("1234"), StatusOK, "setPIN")
			want(t, pl.setPIN("1234"), ErrNotAllowed, "setPIN twice")
			if n := retries(t, a); n != 8 {
				t.Fatalf("retries %d", n)
			}
			want(t, pl.changePIN("1234", "56789"), StatusOK, "changePIN")

			// Wrong PINs: regenerated key agreement each time, so a new platform.
			pl = newPlatform(t, a, p)
			if st, _ := pl.token("0000", 0, ""); st != ErrPINInvalid {
				t.Fatalf("wrong pin 1: 0x%02x", byte(st))
			}
			if st, _ := pl.token("56789", 0, ""); st == StatusOK {
				t.Fatal("a stale key agreement was accepted after a wrong PIN")
			}
			pl = newPlatform(t, a, p)
			st, tok := pl.token("56789", 0, "")
			want(t, st, StatusOK, "getPinToken")
			if n := retries(t, a); n != 8 {
				t.Fatalf("retries after the right pin %d", n)
			}
			// The token works for makeCredential and getAssertion.
			cdh := sha256.Sum256([]byte("cdh"))
			st, m := call(t, a, cmdMakeCredential, mcParams("a.example", cdh[:], map[int]any{8: pl.mac(tok, cdh[:]), 9: int(p)}))
			want(t, st, StatusOK, "makeCredential with a token")
			var ad []byte
			cbor.Unmarshal(m[2], &ad)
			if ad[32]&flagUV == 0 {
				t.Error("UV flag missing")
			}
			// A MAC with the wrong protocol number.
			other := 3 - int(p)
			st, _ = call(t, a, cmdMakeCredential, mcParams("a.example", cdh[:], map[int]any{8: pl.mac(tok, cdh[:]), 9: other}))
			want(t, st, ErrPINAuthInvalid, "token used under the other protocol")
			st, _ = call(t, a, cmdMakeCredential, mcParams("a.example", cdh[:], map[int]any{8: pl.mac(tok, cdh[:]), 9: 7}))
			want(t, st, ErrInvalidParameter, "unknown protocol")
			st, _ = call(t, a, cmdMakeCredential, mcParams("a.example", cdh[:], map[int]any{8: pl.mac(tok, cdh[:])}))
			want(t, st, ErrMissingParameter, "pinUvAuthParam without protocol")

			// Permissions and RP binding.
			st, tok = pl.token("56789", permCredentialMgmt, "")
			want(t, st, StatusOK, "token with cm")
			st, _ = call(t, a, cmdMakeCredential, mcParams("a.example", cdh[:], map[int]any{8: pl.mac(tok, cdh[:]), 9: int(p)}))
			want(t, st, ErrPINAuthInvalid, "mc with a cm-only token")
			st, tok = pl.token("56789", permMakeCredential, "a.example")
			want(t, st, StatusOK, "token bound to a.example")
			st, _ = call(t, a, cmdMakeCredential, mcParams("b.example", cdh[:], map[int]any{8: pl.mac(tok, cdh[:]), 9: int(p)}))
			want(t, st, ErrPINAuthInvalid, "mc for another rp")
			if st, _ := pl.token("56789", permBioEnrollment, ""); st != ErrUnauthorizedPermission {
				t.Fatalf("be permission: 0x%02x", byte(st))
			}
			st, _ = call(t, a, cmdClientPIN, map[int]any{1: int(p), 2: pinGetTokenUsingPINWithPerm, 3: pl.pubKey, 6: pl.enc(pinHash([]byte("56789"))), 9: 0})
			want(t, st, ErrInvalidParameter, "zero permissions")
			st, _ = call(t, a, cmdClientPIN, map[int]any{1: int(p), 2: pinGetTokenUsingPINWithPerm, 3: pl.pubKey, 6: pl.enc(pinHash([]byte("56789")))})
			want(t, st, ErrMissingParameter, "no permissions")

			// Three wrong in a row: blocked until power cycle.
			for i, w := range []Status{ErrPINInvalid, ErrPINInvalid, ErrPINAuthBlocked, ErrPINAuthBlocked} {
				pl = newPlatform(t, a, p)
				want(t, pl.changePIN("0000", "9999"), w, "wrong pin")
				_ = i
			}
			pl = newPlatform(t, a, p)
			if st, _ := pl.token("56789", 0, ""); st != ErrPINAuthBlocked {
				t.Fatalf("right pin while blocked: 0x%02x", byte(st))
			}
			st, m = call(t, a, cmdClientPIN, map[int]any{1: int(p), 2: pinGetRetries})
			var pc bool
			cbor.Unmarshal(m[4], &pc)
			if !pc {
				t.Error("powerCycleState false while blocked")
			}
			k.PowerCycle()
			pl = newPlatform(t, a, p)
			if st, _ := pl.token("56789", 0, ""); st != StatusOK {
				t.Fatalf("right pin after power cycle: 0x%02x", byte(st))
			}
			// Down to zero.
			for n := 0; n < 8; n++ {
				if n%3 == 0 {
					k.PowerCycle()
				}
				pl = newPlatform(t, a, p)
				pl.token("0000", 0, "")
			}
			if n := retries(t, a); n != 0 {
				t.Fatalf("retries %d, want 0", n)
			}
			k.PowerCycle()
			pl = newPlatform(t, a, p)
			if st, _ := pl.token("56789", 0, ""); st != ErrPINBlocked {
				t.Fatalf("right pin when blocked: 0x%02x", byte(st))
			}
			want(t, pl.changePIN("56789", "1111"), ErrPINBlocked, "changePIN when blocked")
		})
	}
}

func TestClientPINMalformed(t *testing.T) {
	a, _ := newAuth(t)
	for _, c := range []struct {
		q    any
		want Status
	}{
		{map[int]any{1: 2}, ErrMissingParameter},
		{map[int]any{1: 2, 2: 0x42}, ErrInvalidSubcommand},
		{map[int]any{1: 2, 2: pinGetUVRetries}, ErrInvalidSubcommand},
		{map[int]any{2: pinGetKeyAgreement}, ErrMissingParameter},
		{map[int]any{1: 9, 2: pinGetKeyAgreement}, ErrInvalidParameter},
		{map[int]any{1: 2, 2: pinSetPIN}, ErrMissingParameter},
		{map[int]any{1: "two", 2: pinGetKeyAgreement}, ErrCBORUnexpectedType},
		{map[int]any{1: 2, 2: pinSetPIN, 3: map[int]any{1: 2, 3: -25, -1: 1, -2: make([]byte, 32), -3: make([]byte, 32)}, 4: []byte{1}, 5: make([]byte, 80)}, ErrInvalidParameter},
		{[]int{1, 2}, ErrCBORUnexpectedType},
	} {
		if st, _ := call(t, a, cmdClientPIN, c.q); st != c.want {
			t.Errorf("%v: 0x%02x, want 0x%02x", c.q, byte(st), byte(c.want))
		}
	}
	if resp := a.CBOR(context.Background(), []byte{cmdClientPIN, 0xa1, 0x01}, nil); Status(resp[0]) != ErrInvalidCBOR {
		t.Errorf("truncated CBOR: 0x%02x", resp[0])
	}
	if resp := a.CBOR(context.Background(), []byte{0x55}, nil); Status(resp[0]) != ErrInvalidCommand {
		t.Errorf("unknown command: 0x%02x", resp[0])
	}
	if resp := a.CBOR(context.Background(), nil, nil); Status(resp[0]) != ErrInvalidLength {
		t.Errorf("empty request: 0x%02x", resp[0])
	}
}

func TestMakeCredentialAndAssertionErrors(t *testing.T) {
	a, k := newAuth(t)
	cdh := sha256.Sum256([]byte("x"))
	for _, c := range []struct {
		name string
		q    map[int]any
		want Status
	}{
		{"no rp", map[int]any{1: cdh[:], 3: map[string]any{"id": []byte{1}}, 4: []map[string]any{{"alg": -7, "type": "public-key"}}}, ErrMissingParameter},
		{"unsupported alg", mcParams("a.example", cdh[:], map[int]any{4: []map[string]any{{"alg": -257, "type": "public-key"}}}), ErrUnsupportedAlgorithm},
		{"up false", mcParams("a.example", cdh[:], map[int]any{7: map[string]bool{"up": false}}), ErrInvalidOption},
		{"uv true", mcParams("a.example", cdh[:], map[int]any{7: map[string]bool{"uv": true}}), ErrInvalidOption},
		{"zero-length pinUvAuthParam", mcParams("a.example", cdh[:], map[int]any{8: []byte{}, 9: 2}), ErrPINNotSet},
		{"bad credProtect", mcParams("a.example", cdh[:], map[int]any{6: map[string]any{"credProtect": 4}}), ErrInvalidOption},
		{"rp id not a string", mcParams("a.example", cdh[:], map[int]any{2: map[string]any{"id": 5}}), ErrCBORUnexpectedType},
		{"enterprise attestation", mcParams("a.example", cdh[:], map[int]any{10: 1}), ErrInvalidParameter},
	} {
		if st, _ := call(t, a, cmdMakeCredential, c.q); st != c.want {
			t.Errorf("%s: 0x%02x, want 0x%02x", c.name, byte(st), byte(c.want))
		}
	}
	// excludeList.
	st, m := call(t, a, cmdMakeCredential, mcParams("a.example", cdh[:], nil))
	want(t, st, StatusOK, "makeCredential")
	var ad []byte
	cbor.Unmarshal(m[2], &ad)
	id := ad[55 : 55+credIDLen]
	st, _ = call(t, a, cmdMakeCredential, mcParams("a.example", cdh[:], map[int]any{5: []map[string]any{{"type": "public-key", "id": id}}}))
	want(t, st, ErrCredentialExcluded, "excluded credential")
	st, _ = call(t, a, cmdMakeCredential, mcParams("b.example", cdh[:], map[int]any{5: []map[string]any{{"type": "public-key", "id": id}}}))
	want(t, st, StatusOK, "exclude list of another rp")

	// getAssertion.
	ga := func(extra map[int]any) Status {
		q := map[int]any{1: "a.example", 2: cdh[:]}
		for k, v := range extra {
			q[k] = v
		}
		st, _ := call(t, a, cmdGetAssertion, q)
		return st
	}
	want(t, ga(map[int]any{3: []map[string]any{{"type": "public-key", "id": id}}}), StatusOK, "assertion")
	want(t, ga(nil), ErrNoCredentials, "no discoverable credentials")
	want(t, ga(map[int]any{5: map[string]bool{"rk": true}}), ErrUnsupportedOption, "rk option")
	want(t, ga(map[int]any{5: map[string]bool{"uv": true}}), ErrInvalidOption, "uv option")
	want(t, ga(map[int]any{3: []map[string]any{{"type": "public-key", "id": []byte("nope")}}}), ErrNoCredentials, "unknown id")
	st, _ = call(t, a, cmdGetAssertion, map[int]any{1: "a.example"})
	want(t, st, ErrMissingParameter, "no clientDataHash")
	st, _ = call(t, a, cmdGetNextAssertion, nil)
	want(t, st, ErrNotAllowed, "getNextAssertion without getAssertion")

	// Touch timeout and cancellation.
	k.Presence.SetMode(virtual.TouchNever)
	k.Presence.SetTimeout(20 * time.Millisecond)
	want(t, ga(map[int]any{3: []map[string]any{{"type": "public-key", "id": id}}}), ErrUserActionTimeout, "no touch")
	want(t, ga(map[int]any{3: []map[string]any{{"type": "public-key", "id": id}}, 5: map[string]bool{"up": false}}), StatusOK, "silent assertion")
	k.Presence.SetMode(virtual.TouchManual)
	k.Presence.SetTimeout(time.Minute)
	ctx, cancel := context.WithCancel(context.Background())
	waiting := k.Presence.Waiting()
	go func() { <-waiting; cancel() }()
	b, _ := encMode.Marshal(map[int]any{1: "a.example", 2: cdh[:], 3: []map[string]any{{"type": "public-key", "id": id}}})
	if resp := a.CBOR(ctx, append([]byte{cmdGetAssertion}, b...), nil); Status(resp[0]) != ErrKeepaliveCancel {
		t.Fatalf("cancelled: 0x%02x", resp[0])
	}
	k.Presence.SetMode(virtual.TouchAuto)
	want(t, ga(map[int]any{3: []map[string]any{{"type": "public-key", "id": id}}}), StatusOK, "after cancel")

	// Selection.
	st, _ = call(t, a, cmdSelection, nil)
	want(t, st, StatusOK, "selection")
}

func TestResidentKeysGetNextAndState(t *testing.T) {
	a, k := newAuth(t)
	pl := newPlatform(t, a, 2)
	want(t, pl.setPIN("1234"), StatusOK, "setPIN")
	cdh := sha256.Sum256([]byte("x"))
	st, _ := call(t, a, cmdMakeCredential, mcParams("a.example", cdh[:], map[int]any{7: map[string]bool{"rk": true}}))
	want(t, st, ErrPUATRequired, "rk without token")
	_, tok := pl.token("1234", permMakeCredential|permGetAssertion|permCredentialMgmt, "")
	for _, u := range []string{"u1", "u2", "u3"} {
		q := mcParams("a.example", cdh[:], map[int]any{7: map[string]bool{"rk": true}, 8: pl.mac(tok, cdh[:]), 9: 2})
		q[3] = map[string]any{"id": []byte(u), "name": u}
		want(t, func() Status { s, _ := call(t, a, cmdMakeCredential, q); return s }(), StatusOK, "rk "+u)
	}
	st, m := call(t, a, cmdGetAssertion, map[int]any{1: "a.example", 2: cdh[:]})
	want(t, st, StatusOK, "discoverable assertion")
	var n int
	cbor.Unmarshal(m[5], &n)
	if n != 3 {
		t.Fatalf("numberOfCredentials %d", n)
	}
	for i := 0; i < 2; i++ {
		st, _ = call(t, a, cmdGetNextAssertion, nil)
		want(t, st, StatusOK, "getNextAssertion")
	}
	st, _ = call(t, a, cmdGetNextAssertion, nil)
	want(t, st, ErrNotAllowed, "getNextAssertion past the end")

	// Credential management errors. The token used above is now bound to
	// a.example, which getCredsMetadata refuses (CTAP 2.1 §6.8.2).
	st, _ = call(t, a, cmdCredentialMgmt, map[int]any{1: cmGetCredsMetadata, 3: 2, 4: pl.mac(tok, []byte{cmGetCredsMetadata})})
	want(t, st, ErrPINAuthInvalid, "getCredsMetadata with an rp-bound token")
	_, tok = pl.token("1234", permCredentialMgmt, "")
	st, _ = call(t, a, cmdCredentialMgmt, map[int]any{1: cmGetCredsMetadata})
	want(t, st, ErrPUATRequired, "credMgmt without token")
	st, _ = call(t, a, cmdCredentialMgmt, map[int]any{1: cmGetCredsMetadata, 3: 2, 4: pl.mac(tok, []byte{9})})
	want(t, st, ErrPINAuthInvalid, "credMgmt with a wrong MAC")
	st, m = call(t, a, cmdCredentialMgmt, map[int]any{1: cmGetCredsMetadata, 3: 2, 4: pl.mac(tok, []byte{cmGetCredsMetadata})})
	want(t, st, StatusOK, "getCredsMetadata")
	cbor.Unmarshal(m[1], &n)
	if n != 3 {
		t.Fatalf("existing %d", n)
	}
	st, _ = call(t, a, cmdCredentialMgmt, map[int]any{1: 0x33, 3: 2, 4: []byte{}})
	want(t, st, ErrInvalidSubcommand, "unknown subcommand")
	st, _ = call(t, a, cmdCredentialMgmt, map[int]any{1: cmEnumerateRPsGetNext})
	want(t, st, ErrNotAllowed, "getNextRP without begin")

	// State survives a round trip through JSON.
	js, err := a.MarshalState()
	if err != nil {
		t.Fatal(err)
	}
	b, err := New(k)
	if err != nil {
		t.Fatal(err)
	}
	if err := b.UnmarshalState(js); err != nil {
		t.Fatal(err)
	}
	st, m = call(t, b, cmdGetAssertion, map[int]any{1: "a.example", 2: cdh[:]})
	want(t, st, StatusOK, "assertion after reload")
	if err := b.UnmarshalState([]byte(`{"version":1}`)); err == nil {
		t.Error("incomplete state accepted")
	}

	// Reset: only in the window.
	now := time.Now()
	k.SetClock(func() time.Time { return now })
	now = now.Add(11 * time.Second)
	st, _ = call(t, a, cmdReset, nil)
	want(t, st, ErrNotAllowed, "reset outside the window")
	k.PowerCycle()
	st, _ = call(t, a, cmdReset, nil)
	want(t, st, StatusOK, "reset inside the window")
	st, _ = call(t, a, cmdGetAssertion, map[int]any{1: "a.example", 2: cdh[:]})
	want(t, st, ErrNoCredentials, "assertion after reset")
}

func TestOldFirmwareResetWindow(t *testing.T) {
	id := virtual.DefaultIdentity(7)
	id.Firmware = virtual.Version{Major: 5, Minor: 4, Patch: 3}
	k := virtual.NewKey(id)
	a, err := New(k)
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	k.SetClock(func() time.Time { return now })
	now = now.Add(6 * time.Second)
	if st, _ := call(t, a, cmdReset, nil); st != ErrNotAllowed {
		t.Fatalf("reset 6 s after power-up on 5.4.3: 0x%02x", byte(st))
	}
}

func TestU2FRegisterAuthenticate(t *testing.T) {
	a, k := newAuth(t)
	challenge, app := sha256.Sum256([]byte("c")), sha256.Sum256([]byte("https://u2f.example"))
	apdu := func(ins, p1 byte, data []byte) []byte {
		return append([]byte{0, ins, p1, 0, byte(len(data))}, data...)
	}
	resp := a.MSG(context.Background(), apdu(1, 0, append(challenge[:], app[:]...)), nil)
	if len(resp) < 70 || resp[0] != 5 || string(resp[len(resp)-2:]) != "\x90\x00" {
		t.Fatalf("register % x", resp)
	}
	point := resp[1:66]
	handle := resp[67 : 67+int(resp[66])]
	auth := func(p1 byte, app []byte, h []byte) []byte {
		return a.MSG(context.Background(), apdu(2, p1, append(append(append(challenge[:0:0], challenge[:]...), app...), append([]byte{byte(len(h))}, h...)...)), nil)
	}
	if got := auth(7, app[:], handle); string(got) != "\x69\x85" {
		t.Fatalf("check-only with a valid handle: % x", got)
	}
	other := sha256.Sum256([]byte("other"))
	if got := auth(7, other[:], handle); string(got) != "\x6a\x80" {
		t.Fatalf("check-only for another app: % x", got)
	}
	got := auth(3, app[:], handle)
	if len(got) < 10 || got[0] != flagUP || string(got[len(got)-2:]) != "\x90\x00" {
		t.Fatalf("authenticate % x", got)
	}
	x, y := elliptic.Unmarshal(elliptic.P256(), point)
	msg := append(append(append(app[:0:0], app[:]...), got[:5]...), challenge[:]...)
	h := sha256.Sum256(msg)
	if !ecdsa.VerifyASN1(&ecdsa.PublicKey{Curve: elliptic.P256(), X: x, Y: y}, h[:], got[5:len(got)-2]) {
		t.Fatal("u2f signature does not verify")
	}
	k.Presence.SetMode(virtual.TouchNever)
	k.Presence.SetTimeout(10 * time.Millisecond)
	if got := auth(3, app[:], handle); string(got) != "\x69\x85" {
		t.Fatalf("authenticate without a touch: % x", got)
	}
	if got := a.MSG(context.Background(), []byte{0, 2, 3, 0, 5, 1}, nil); string(got) != "\x67\x00" {
		t.Fatalf("bad Lc: % x", got)
	}
}

func TestU2FVersion(t *testing.T) {
	a, _ := newAuth(t)
	if got := string(a.MSG(context.Background(), []byte{0, 3, 0, 0}, nil)); got != "U2F_V2\x90\x00" {
		t.Fatalf("U2F_VERSION %q", got)
	}
	if got := a.MSG(context.Background(), []byte{0, 1}, nil); got[0] != 0x67 {
		t.Fatalf("short apdu % x", got)
	}
}

func TestCredentialManagementEnumerateAndUpdate(t *testing.T) {
	a, _ := newAuth(t)
	pl := newPlatform(t, a, 1)
	want(t, pl.setPIN("1234"), StatusOK, "setPIN")
	cdh := sha256.Sum256([]byte("x"))
	for _, rp := range []string{"b.example", "a.example", "a.example"} {
		_, tok := pl.token("1234", permMakeCredential, "")
		q := mcParams(rp, cdh[:], map[int]any{7: map[string]bool{"rk": true}, 8: pl.mac(tok, cdh[:]), 9: 1})
		q[3] = map[string]any{"id": []byte(rp + string(rune('0'+len(a.st.Resident)))), "name": "n"}
		if st, _ := call(t, a, cmdMakeCredential, q); st != StatusOK {
			t.Fatalf("rk for %s: 0x%02x", rp, byte(st))
		}
	}
	_, tok := pl.token("1234", permCredentialMgmt, "")
	cm := func(sub int, params any) (Status, map[int]cbor.RawMessage) {
		q := map[int]any{1: sub}
		msg := []byte{byte(sub)}
		if params != nil {
			b, _ := encMode.Marshal(params)
			q[2] = cbor.RawMessage(b)
			msg = append(msg, b...)
		}
		if sub != cmEnumerateRPsGetNext && sub != cmEnumerateCredsGetNext {
			q[3], q[4] = 1, pl.mac(tok, msg)
		}
		return call(t, a, cmdCredentialMgmt, q)
	}
	st, m := cm(cmEnumerateRPsBegin, nil)
	want(t, st, StatusOK, "enumerateRPsBegin")
	var total int
	cbor.Unmarshal(m[5], &total)
	var rp rpOut
	cbor.Unmarshal(m[3], &rp)
	if total != 2 || rp.ID != "a.example" {
		t.Fatalf("first rp %+v of %d", rp, total)
	}
	st, m = cm(cmEnumerateRPsGetNext, nil)
	want(t, st, StatusOK, "getNextRP")
	cbor.Unmarshal(m[3], &rp)
	if rp.ID != "b.example" {
		t.Fatalf("second rp %+v", rp)
	}
	st, _ = cm(cmEnumerateRPsGetNext, nil)
	want(t, st, ErrNotAllowed, "getNextRP past the end")

	h := sha256.Sum256([]byte("a.example"))
	st, m = cm(cmEnumerateCredsBegin, map[int]any{1: h[:]})
	want(t, st, StatusOK, "enumerateCredentialsBegin")
	cbor.Unmarshal(m[9], &total)
	if total != 2 {
		t.Fatalf("credentials for a.example: %d", total)
	}
	var desc credDescriptor
	cbor.Unmarshal(m[7], &desc)
	var user publicUser
	cbor.Unmarshal(m[6], &user)
	st, _ = cm(cmEnumerateCredsGetNext, nil)
	want(t, st, StatusOK, "getNextCredential")
	st, _ = cm(cmEnumerateCredsGetNext, nil)
	want(t, st, ErrNotAllowed, "getNextCredential past the end")
	nobody := sha256.Sum256([]byte("nobody.example"))
	st, _ = cm(cmEnumerateCredsBegin, map[int]any{1: nobody[:]})
	want(t, st, ErrNoCredentials, "credentials of an unknown rp")
	st, _ = cm(cmEnumerateCredsBegin, nil)
	want(t, st, ErrMissingParameter, "enumerateCredentialsBegin without rpIDHash")

	st, _ = cm(cmUpdateUserInformation, map[int]any{2: map[string]any{"type": "public-key", "id": desc.ID}, 3: map[string]any{"id": user.ID, "name": "renamed", "displayName": "Renamed"}})
	want(t, st, StatusOK, "updateUserInformation")
	if c := a.resident(desc.ID); c.UserName != "renamed" || c.DisplayName != "Renamed" {
		t.Fatalf("after update %+v", c)
	}
	st, _ = cm(cmUpdateUserInformation, map[int]any{2: map[string]any{"type": "public-key", "id": desc.ID}, 3: map[string]any{"id": []byte("someone else")}})
	want(t, st, ErrInvalidParameter, "updateUserInformation for another user id")
	st, _ = cm(cmDeleteCredential, map[int]any{2: map[string]any{"type": "public-key", "id": desc.ID}})
	want(t, st, StatusOK, "deleteCredential")
	st, _ = cm(cmDeleteCredential, map[int]any{2: map[string]any{"type": "public-key", "id": desc.ID}})
	want(t, st, ErrNoCredentials, "deleteCredential twice")
}
