package cli

import (
	"flag"
	"fmt"
	"strings"
	"time"

	"github.com/keydesk/keydesk/device"
	"github.com/keydesk/keydesk/device/mgmt"
)

type ifaceOpts struct {
	enable, disable string
	nfc             bool
}

var iface ifaceOpts

func ifaceFlags(_ *env, fs *flag.FlagSet) {
	fs.StringVar(&iface.enable, "enable", "", "applications to enable, comma-separated (OTP, U2F, FIDO2, OATH, PIV, OpenPGP, HSMAUTH)")
	fs.StringVar(&iface.disable, "disable", "", "applications to disable, comma-separated; e.g. OTP stops stray touches typing codes")
	fs.BoolVar(&iface.nfc, "nfc", false, "change the NFC interface instead of USB")
}

func parseApps(list string) (device.Application, error) {
	var a device.Application
	for _, s := range strings.Split(list, ",") {
		if s = strings.TrimSpace(s); s == "" {
			continue
		}
		x, err := device.ParseApplication(s)
		if err != nil {
			return 0, usagef("%v", err)
		}
		a |= x
	}
	return a, nil
}

func runInterfaces(e *env, _ *flag.FlagSet, args []string) error {
	if len(args) > 0 {
		return usagef("interfaces takes flags only")
	}
	k, err := e.key()
	if err != nil {
		return err
	}
	if iface.enable == "" && iface.disable == "" {
		return showInterfaces(e, k)
	}
	ch, cur, next, err := interfaceChange(k)
	if err != nil {
		return err
	}
	if e.serial == 0 {
		return usagef("changing interfaces restarts the key: name it with --serial %d", k.Serial)
	}
	if k.ConfigLocked {
		code, err := e.prompt.secret("Configuration lock code (32 hex digits)")
		if err != nil {
			return err
		}
		if ch.LockCode, err = decodeHex(code, 16); err != nil {
			return err
		}
	}
	if err := mgmt.Apply(e.ctx, k.Reader, k.Serial, ch); err != nil {
		return err
	}
	where := "USB"
	if iface.nfc {
		where = "NFC"
	}
	fmt.Fprintf(e.stdout, "Key %d over %s now enables: %s.\n", k.Serial, where, next)
	if iface.nfc || next == cur {
		return nil
	}
	return awaitInterfaces(e, k, next)
}

// awaitInterfaces waits for k to restart with the USB applications next,
// as the next command would otherwise find no key.
func awaitInterfaces(e *env, k device.Key, next device.Application) error {
	fmt.Fprintf(e.stdout, "Waiting for key %d to restart...\n", k.Serial)
	svc, err := e.service()
	if err != nil {
		return err
	}
	if _, err := svc.AwaitRestart(e.ctx, k.Serial, next, 10*time.Second); err != nil {
		return fmt.Errorf("waiting for the restart: %w; remove and reinsert it", err)
	}
	fmt.Fprintf(e.stdout, "Key %d is back.\n", k.Serial)
	return nil
}

func showInterfaces(e *env, k device.Key) error {
	if e.json {
		return e.printJSON(viewKey(k))
	}
	fmt.Fprintf(e.stdout, "Key %d\n  USB enabled: %s\n  USB supported: %s\n", k.Serial, k.EnabledUSB, k.SupportedUSB)
	if k.SupportedNFC != 0 {
		fmt.Fprintf(e.stdout, "  NFC enabled: %s\n  NFC supported: %s\n", k.EnabledNFC, k.SupportedNFC)
	}
	return nil
}

// interfaceChange is the change --enable, --disable and --nfc ask of k,
// with the applications enabled now and after it.
func interfaceChange(k device.Key) (ch mgmt.Change, cur, next device.Application, err error) {
	en, err := parseApps(iface.enable)
	if err != nil {
		return ch, 0, 0, err
	}
	dis, err := parseApps(iface.disable)
	if err != nil {
		return ch, 0, 0, err
	}
	if en&dis != 0 {
		return ch, 0, 0, usagef("%s both enabled and disabled", en&dis)
	}
	cur = k.EnabledUSB
	if iface.nfc {
		cur = k.EnabledNFC
	}
	next = (cur | en) &^ dis
	if iface.nfc {
		ch.NFC = &next
	} else {
		ch.USB = &next
	}
	return ch, cur, next, nil
}
