package ctap

import (
	"bytes"
	"testing"

	"github.com/fxamacker/cbor/v2"

	"github.com/keydesk/keydesk/device/virtual/mgmtapplet"
)

func TestReadConfigVendorCommand(t *testing.T) {
	a, k := newAuth(t)
	got, ok := a.Vendor(cmdReadConfig, []byte{0})
	if !ok || !bytes.Equal(got, mgmtapplet.DeviceInfo(k.Identity())) {
		t.Fatalf("read config page 0: %x, %v", got, ok)
	}
	if got, ok := a.Vendor(cmdReadConfig, nil); !ok || !bytes.Equal(got, mgmtapplet.DeviceInfo(k.Identity())) {
		t.Fatalf("read config without a page: %x, %v", got, ok)
	}
	if got, ok := a.Vendor(cmdReadConfig, []byte{1}); !ok || !bytes.Equal(got, []byte{0}) {
		t.Fatalf("read config page 1: %x, %v", got, ok)
	}
	if _, ok := a.Vendor(0x43, nil); ok {
		t.Fatal("unknown vendor command answered")
	}
}

func TestSetMinPINLength(t *testing.T) {
	a, _ := newAuth(t)
	cfg := func(params map[int]any, protoAndMAC func(msg []byte) map[int]any) Status {
		p, _ := encMode.Marshal(params)
		req := map[int]any{1: cfgSetMinPINLength, 2: cbor.RawMessage(p)}
		if protoAndMAC != nil {
			msg := append(bytes.Repeat([]byte{0xff}, 32), cmdConfig, cfgSetMinPINLength)
			for k, v := range protoAndMAC(append(msg, p...)) {
				req[k] = v
			}
		}
		st, _ := call(t, a, cmdConfig, req)
		return st
	}
	// No PIN: allowed without a token, but forceChangePin needs a PIN.
	want(t, cfg(map[int]any{1: 5}, nil), StatusOK, "raise to 5 without a pin")
	want(t, cfg(map[int]any{3: true}, nil), ErrPINNotSet, "force change without a pin")
	want(t, cfg(map[int]any{1: 4}, nil), ErrPINPolicyViolation, "lowering")
	if a.st.MinPINLength != 5 {
		t.Fatalf("min pin length %d", a.st.MinPINLength)
	}
	for _, sub := range []int{cfgEnableEnterpriseAttestation, cfgToggleAlwaysUv} {
		st, _ := call(t, a, cmdConfig, map[int]any{1: sub})
		want(t, st, ErrUnsupportedOption, "unsupported subcommand")
	}

	pl := newPlatform(t, a, 2)
	want(t, pl.setPIN("123456"), StatusOK, "set pin")
	want(t, cfg(map[int]any{1: 6}, nil), ErrPUATRequired, "no token with a pin set")
	st, tok := pl.token("123456", permAuthenticatorCfg, "")
	want(t, st, StatusOK, "acfg token")
	mac := func(msg []byte) map[int]any { return map[int]any{3: 2, 4: pl.mac(tok, msg)} }
	want(t, cfg(map[int]any{1: 6}, mac), StatusOK, "raise to the pin's length")
	if a.st.ForcePINChange {
		t.Fatal("a pin as long as the minimum was forced to change")
	}
	want(t, cfg(map[int]any{1: 7}, mac), StatusOK, "raise above the pin's length")
	if !a.st.ForcePINChange || a.st.MinPINLength != 7 {
		t.Fatalf("after raising above the pin: min %d force %v", a.st.MinPINLength, a.st.ForcePINChange)
	}
	st, _ = pl.token("123456", permMakeCredential, "")
	want(t, st, ErrPINPolicyViolation, "token while a change is forced")
	// A token without the acfg permission is refused.
	a2, _ := newAuth(t)
	pl2 := newPlatform(t, a2, 2)
	want(t, pl2.setPIN("123456"), StatusOK, "set pin")
	_, cm := pl2.token("123456", permCredentialMgmt, "")
	a = a2
	want(t, cfg(map[int]any{1: 8}, func(msg []byte) map[int]any { return map[int]any{3: 2, 4: pl2.mac(cm, msg)} }), ErrPINAuthInvalid, "token without acfg")
}
