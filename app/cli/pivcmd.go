package cli

import (
	"context"
	"crypto/x509"
	"encoding/hex"
	"encoding/pem"
	"flag"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/keydesk/keydesk/app/keys"
	"github.com/keydesk/keydesk/device"
	"github.com/keydesk/keydesk/device/discover"
	"github.com/keydesk/keydesk/device/pivkey"
	"github.com/keydesk/keydesk/device/virtual/pivapplet"
)

const pivUsage = `usage: keydesk piv SUBCOMMAND [flags]

  status                          PIN/PUK tries, management key, slots
  change-pin | change-puk         asks for the current and the new value
  unblock-pin                     asks for the PUK and a new PIN
  set-retries PIN_TRIES PUK_TRIES resets PIN and PUK to their defaults (destructive)
  rotate-management-key           a new random key; --protect stores it behind the PIN (as ykman does)
  generate SLOT                   --algorithm ECCP256 --pin-policy once --touch-policy never (destructive)
  attest SLOT                     the key's attestation of SLOT, verified
  csr SLOT --subject CN=name      a PKCS#10 request, PEM on stdout
  self-sign SLOT --subject CN=x   a self-signed certificate stored in SLOT
  objects show [chuid|ccc]        the card identifiers: CHUID (its GUID is the key's PKCS#11 serial) and CCC
  objects generate chuid|ccc|all  new ones, replacing what the key holds (destructive; self-sign writes
                                  them where the key has none)
  reset                           wipe PIV (destructive)
`

func runPIV(e *env, _ *flag.FlagSet, args []string) error {
	if len(args) == 0 {
		fmt.Fprint(e.stderr, pivUsage)
		return usagef("piv needs a subcommand")
	}
	sub, args := args[0], args[1:]
	fs := flag.NewFlagSet("keydesk piv "+sub, flag.ContinueOnError)
	fs.SetOutput(e.stderr)
	protect := fs.Bool("protect", true, "rotate-management-key: store the new key on the key behind the PIN")
	alg := fs.String("algorithm", "ECCP256", "generate: ECCP256, ECCP384, RSA2048, RSA3072, RSA4096, ED25519")
	pinPolicy := fs.String("pin-policy", "once", "generate: never, once, always")
	touchPolicy := fs.String("touch-policy", "never", "generate: never, always, cached")
	subject := fs.String("subject", "", "csr, self-sign: the subject, as CN=name[,O=org]")
	days := fs.Int("days", 365, "self-sign: validity in days")
	fs.BoolVar(&e.json, "json", e.json, "print JSON")
	fs.UintVar(&e.serial, "serial", e.serial, "the key to act on")
	fs.BoolVar(&e.yes, "yes", e.yes, "answer yes to confirmations")
	fs.BoolVar(&e.practice, "practice", e.practice, "use keydesk-sim's virtual keys")
	fs.StringVar(&e.simDir, "sim-dir", e.simDir, "keydesk-sim's state directory")
	pos, err := parseInterspersed(fs, args)
	if err != nil {
		return usagef("%v", err)
	}
	k, err := e.keyVia(discover.PCSC)
	if err != nil {
		return err
	}
	svc, _ := e.service()
	card, err := svc.PIV(k)
	if err != nil {
		return err
	}
	cb := device.Callbacks{
		PIN: func(_ context.Context, what string) (string, error) { return e.prompt.secret(what) },
		Touch: func(context.Context) {
			fmt.Fprintf(e.stderr, "Touch key %d now (its light is blinking).\n", k.Serial)
		},
	}
	nargs := func(n int) error {
		if len(pos) != n {
			return usagef("piv %s takes %d argument(s)", sub, n)
		}
		return nil
	}
	ctx := e.ctx
	switch sub {
	case "status":
		st, err := card.Status(ctx)
		if err != nil {
			return err
		}
		if e.json {
			return e.printJSON(viewPIV(st))
		}
		printReport(e, &keys.Report{Key: k, PIV: st})
		return nil
	case "change-pin", "change-puk":
		what := pivkey.PromptPIN
		if sub == "change-puk" {
			what = pivkey.PromptPUK
		}
		old, err := e.prompt.secret("Current " + what)
		if err != nil {
			return err
		}
		nw, err := e.prompt.newSecret("New " + what)
		if err != nil {
			return err
		}
		if sub == "change-pin" {
			err = card.ChangePIN(ctx, old, nw)
		} else {
			err = card.ChangePUK(ctx, old, nw)
		}
		if err == nil {
			fmt.Fprintf(e.stdout, "%s changed on key %d.\n", what, k.Serial)
		}
		return err
	case "unblock-pin":
		puk, err := e.prompt.secret(pivkey.PromptPUK)
		if err != nil {
			return err
		}
		nw, err := e.prompt.newSecret("New " + pivkey.PromptPIN)
		if err != nil {
			return err
		}
		if err := card.UnblockPIN(ctx, puk, nw); err != nil {
			return err
		}
		fmt.Fprintf(e.stdout, "PIN unblocked and set on key %d.\n", k.Serial)
		return nil
	case "set-retries":
		if err := nargs(2); err != nil {
			return err
		}
		p, err1 := strconv.Atoi(pos[0])
		u, err2 := strconv.Atoi(pos[1])
		if err1 != nil || err2 != nil {
			return usagef("set-retries PIN_TRIES PUK_TRIES, as numbers")
		}
		if err := e.confirm(k, "Setting retries (it resets the PIV PIN and PUK to their defaults)"); err != nil {
			return err
		}
		if err := card.SetRetries(ctx, cb, p, u); err != nil {
			return err
		}
		fmt.Fprintf(e.stdout, "Key %d allows %d PIN and %d PUK tries; PIN and PUK are back to their defaults: change them now.\n", k.Serial, p, u)
		return nil
	case "rotate-management-key":
		alg, err := card.RotateManagementKey(ctx, cb, pivkey.RotateOptions{Protect: *protect})
		if err != nil {
			return err
		}
		where := "Keep it safe: it is not stored anywhere."
		if *protect {
			where = "It is stored on the key behind the PIN; the PIN alone now administers PIV."
		}
		fmt.Fprintf(e.stdout, "New random %s management key set on key %d. %s\n", alg, k.Serial, where)
		return nil
	case "generate":
		if err := nargs(1); err != nil {
			return err
		}
		slot, err := parseSlot(pos[0])
		if err != nil {
			return err
		}
		if err := e.confirm(k, fmt.Sprintf("Generating a key in slot %02X (it replaces what the slot holds)", slot)); err != nil {
			return err
		}
		pub, err := card.Generate(ctx, cb, slot, pivkey.KeySpec{Algorithm: *alg, PINPolicy: *pinPolicy, TouchPolicy: *touchPolicy})
		if err != nil {
			return err
		}
		der, err := x509.MarshalPKIXPublicKey(pub)
		if err != nil {
			return err
		}
		return pem.Encode(e.stdout, &pem.Block{Type: "PUBLIC KEY", Bytes: der})
	case "attest":
		if err := nargs(1); err != nil {
			return err
		}
		slot, err := parseSlot(pos[0])
		if err != nil {
			return err
		}
		att, err := card.Attest(ctx, slot)
		if err != nil {
			return err
		}
		pol := pivkey.AttestationPolicy{Serial: k.Serial}
		if svc.Practice() {
			pol.ExtraRoots = []*x509.Certificate{pivapplet.VirtualRoot()}
		}
		v, verr := pivkey.VerifyAttestation(att, pol)
		if e.json {
			out := map[string]any{"slot": fmt.Sprintf("%02x", slot), "genuine": verr == nil,
				"certificate":  pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: att.Certificate.Raw}),
				"intermediate": pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: att.Intermediate.Raw})}
			if verr != nil {
				out["error"] = verr.Error()
			} else {
				out["root"], out["yubico"], out["serial"], out["firmware"] = v.Root, v.Yubico, v.Serial, v.Version
			}
			if err := e.printJSON(out); err != nil {
				return err
			}
			return verr
		}
		if verr != nil {
			return verr
		}
		kind := "a Yubico root"
		if !v.Yubico {
			kind = "keydesk's VIRTUAL root (practice mode only)"
		}
		fmt.Fprintf(e.stdout, "Slot %02X of key %d: key generated on the key, attested by %s (%s).\nPIN policy %v, touch policy %v, firmware %d.%d.%d.\n",
			slot, v.Serial, kind, v.Root, v.PINPolicy, v.TouchPolicy, v.Version.Major, v.Version.Minor, v.Version.Patch)
		return pem.Encode(e.stdout, &pem.Block{Type: "CERTIFICATE", Bytes: att.Certificate.Raw})
	case "csr", "self-sign":
		if err := nargs(1); err != nil {
			return err
		}
		slot, err := parseSlot(pos[0])
		if err != nil {
			return err
		}
		name, err := pivkey.ParseSubject(*subject)
		if err != nil {
			return usagef("--subject: %v", err)
		}
		if sub == "csr" {
			der, err := card.CSR(ctx, cb, slot, name)
			if err != nil {
				return err
			}
			return pem.Encode(e.stdout, &pem.Block{Type: "CERTIFICATE REQUEST", Bytes: der})
		}
		c, err := card.SelfSign(ctx, cb, slot, name, time.Duration(*days)*24*time.Hour)
		if err != nil {
			return err
		}
		return pem.Encode(e.stdout, &pem.Block{Type: "CERTIFICATE", Bytes: c.Raw})
	case "objects":
		return pivObjects(e, k, card, cb, pos)
	case "reset":
		if err := e.confirm(k, "Resetting PIV (it deletes every PIV key and certificate)"); err != nil {
			return err
		}
		if err := card.Reset(ctx, k.Serial); err != nil {
			return err
		}
		fmt.Fprintf(e.stdout, "PIV on key %d is reset: PIN 123456, PUK 12345678, default management key. Change them now.\n", k.Serial)
		return nil
	}
	fmt.Fprint(e.stderr, pivUsage)
	return usagef("unknown piv subcommand %q", sub)
}

// pivObjects is "piv objects show|generate": the CHUID and the CCC (SP
// 800-73-4 Part 1 §3.1.2 and §3.1.1), as ykman's "piv objects" handles them.
func pivObjects(e *env, k device.Key, card *pivkey.Card, cb device.Callbacks, pos []string) error {
	if len(pos) == 0 || len(pos) > 2 {
		return usagef("piv objects show [chuid|ccc] | piv objects generate chuid|ccc|all")
	}
	var objs []pivkey.Object
	if len(pos) == 2 {
		switch o := pivkey.Object(pos[1]); o {
		case pivkey.CHUID, pivkey.CCC:
			objs = []pivkey.Object{o}
		case "all":
			objs = []pivkey.Object{pivkey.CHUID, pivkey.CCC}
		default:
			return usagef("piv objects: %q is not chuid, ccc or all", pos[1])
		}
	}
	ctx := e.ctx
	switch pos[0] {
	case "show":
		if len(objs) == 0 {
			objs = []pivkey.Object{pivkey.CHUID, pivkey.CCC}
		}
		ids, err := card.ReadCardIDs(ctx)
		if err != nil {
			return err
		}
		return printCardIDs(e, k, ids, objs)
	case "generate":
		if len(objs) == 0 {
			return usagef("piv objects generate needs chuid, ccc or all")
		}
		what := "Writing a new CHUID and CCC (the key's serial in PKCS#11 software and its Windows smart-card identity change)"
		if len(objs) == 1 && objs[0] == pivkey.CCC {
			what = "Writing a new CCC (the key's Windows smart-card identity changes)"
		} else if len(objs) == 1 {
			what = "Writing a new CHUID (the key's serial in PKCS#11 software changes)"
		}
		if err := e.confirm(k, what); err != nil {
			return err
		}
		if err := card.WriteCardIDs(ctx, cb, objs...); err != nil {
			return err
		}
		ids, err := card.ReadCardIDs(ctx)
		if err != nil {
			return err
		}
		if !e.json {
			fmt.Fprintf(e.stdout, "New %s written on key %d.\n", objectNames(objs), k.Serial)
		}
		return printCardIDs(e, k, ids, objs)
	}
	return usagef("piv objects: %q is not show or generate", pos[0])
}

func objectNames(objs []pivkey.Object) string {
	var names []string
	for _, o := range objs {
		names = append(names, strings.ToUpper(string(o)))
	}
	return strings.Join(names, " and ")
}

// cardIDsView is "piv objects show --json".
type cardIDsView struct {
	Serial     uint32 `json:"serial"`
	CHUID      string `json:"chuid,omitempty"`
	GUID       string `json:"guid,omitempty"`
	FASCN      string `json:"fasc_n,omitempty"`
	Expiration string `json:"expiration,omitempty"`
	Signed     *bool  `json:"signed,omitempty"`
	CHUIDError string `json:"chuid_error,omitempty"`
	CCC        string `json:"ccc,omitempty"`
}

func printCardIDs(e *env, k device.Key, ids *pivkey.CardIDs, objs []pivkey.Object) error {
	v := cardIDsView{Serial: k.Serial}
	for _, o := range objs {
		switch o {
		case pivkey.CHUID:
			v.CHUID = hex.EncodeToString(ids.CHUID)
			if p := ids.Parsed; p != nil {
				v.GUID, v.FASCN, v.Expiration, v.Signed = p.GUIDString(), hex.EncodeToString(p.FASCN), p.Expiration, &p.Signed
			} else if ids.ParseErr != nil {
				v.CHUIDError = ids.ParseErr.Error()
			}
		case pivkey.CCC:
			v.CCC = hex.EncodeToString(ids.CCC)
		}
	}
	if e.json {
		return e.printJSON(v)
	}
	for _, o := range objs {
		switch o {
		case pivkey.CHUID:
			if ids.CHUID == nil {
				fmt.Fprintf(e.stdout, "CHUID:      none (storing a certificate writes one; so does piv objects generate chuid)\n")
				continue
			}
			fmt.Fprintf(e.stdout, "CHUID:      %s\n", v.CHUID)
			if p := ids.Parsed; p != nil {
				signed := "no"
				if p.Signed {
					signed = "yes"
				}
				fmt.Fprintf(e.stdout, "  GUID:     %s\n  FASC-N:   %s\n  Expires:  %s\n  Signed:   %s\n", v.GUID, v.FASCN, p.Expiration, signed)
			} else {
				fmt.Fprintf(e.stdout, "  (unreadable: %s)\n", v.CHUIDError)
			}
		case pivkey.CCC:
			if ids.CCC == nil {
				fmt.Fprintf(e.stdout, "CCC:        none (storing a certificate writes one; so does piv objects generate ccc)\n")
				continue
			}
			fmt.Fprintf(e.stdout, "CCC:        %s\n", v.CCC)
		}
	}
	return nil
}
