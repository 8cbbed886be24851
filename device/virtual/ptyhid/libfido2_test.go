package ptyhid_test

import (
	"testing"

	libfido2 "github.com/keys-pub/go-libfido2"

	"github.com/keydesk/keydesk/device/virtual/fidotest"
)

func TestLibfido2Info(t *testing.T) {
	k := fidotest.Start(t, 1000001)
	dev, err := libfido2.NewDevice(k.Path)
	if err != nil {
		t.Fatal(err)
	}
	info, err := dev.Info()
	if err != nil {
		t.Fatalf("libfido2 getInfo: %v", err)
	}
	t.Logf("%+v", info)
	hid, err := dev.CTAPHIDInfo()
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("%+v", hid)
}
