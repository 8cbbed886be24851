package cli

import (
	"context"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/hex"
	"encoding/pem"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/keydesk/keydesk/app/keys"
	"github.com/keydesk/keydesk/device"
	"github.com/keydesk/keydesk/device/discover"
	"github.com/keydesk/keydesk/device/pivkey"
	"github.com/keydesk/keydesk/device/virtual/pivapplet"
)

// pivCmd is "keydesk piv": one command per PIV operation, each with its
// own flags.
func pivCmd(e *env) *cobra.Command {
	var o pivOpts
	generate := pivSub(e, "generate SLOT", "generate a key in SLOT (destructive)", nargs(1, ""), func(s *pivSession, args []string) error { return s.generate(args[0], o) })
	generate.Flags().StringVar(&o.alg, "algorithm", "ECCP256", "ECCP256, ECCP384, RSA2048, RSA3072, RSA4096, ED25519")
	generate.Flags().StringVar(&o.pinPolicy, "pin-policy", "once", "never, once, always")
	generate.Flags().StringVar(&o.touchPolicy, "touch-policy", "never", "never, always, cached")
	rotate := pivSub(e, "rotate-management-key", "a new random management key; --protect stores it behind the PIN (as ykman does)", nil, func(s *pivSession, _ []string) error { return s.rotate(o.protect) })
	rotate.Flags().BoolVar(&o.protect, "protect", true, "store the new key on the key behind the PIN")
	csr := pivSub(e, "csr SLOT", "a PKCS#10 request for SLOT's key, PEM on stdout", nargs(1, ""), func(s *pivSession, args []string) error { return s.csr(args[0], o.subject) })
	csr.Flags().StringVar(&o.subject, "subject", "", "the subject, as CN=name[,O=org]")
	selfSign := pivSub(e, "self-sign SLOT", "a self-signed certificate for SLOT's key, stored in SLOT", nargs(1, ""), func(s *pivSession, args []string) error { return s.selfSign(args[0], o.subject, o.days) })
	selfSign.Flags().StringVar(&o.subject, "subject", "", "the subject, as CN=name[,O=org]")
	selfSign.Flags().IntVar(&o.days, "days", 365, "validity in days")
	return group(e, "piv", "PIV: status, PINs and PUK, management key, keys, attestation, certificates, card identifiers, reset", "piv needs a subcommand",
		pivSub(e, "status", "PIN/PUK tries, management key, slots", nil, (*pivSession).status),
		pivSub(e, "change-pin", "change the PIN (asks for the current and the new value)", nil, func(s *pivSession, _ []string) error { return s.changePIN(false) }),
		pivSub(e, "change-puk", "change the PUK (asks for the current and the new value)", nil, func(s *pivSession, _ []string) error { return s.changePIN(true) }),
		pivSub(e, "unblock-pin", "asks for the PUK and a new PIN", nil, (*pivSession).unblockPIN),
		pivSub(e, "set-retries PIN_TRIES PUK_TRIES", "set the PIN and PUK tries; resets both to their defaults (destructive)", nargs(2, ""), (*pivSession).setRetries),
		rotate, generate,
		pivSub(e, "attest SLOT", "the key's attestation of SLOT, verified", nargs(1, ""), func(s *pivSession, args []string) error { return s.attest(args[0]) }),
		csr, selfSign,
		pivSub(e, "objects show [chuid|ccc] | generate chuid|ccc|all", "the card identifiers: CHUID (its GUID is the key's PKCS#11 serial) and CCC; generate replaces them (destructive; self-sign writes them where the key has none)", nil,
			func(s *pivSession, args []string) error { return pivObjects(s.e, s.k, s.card, s.cb, args) }),
		pivSub(e, "reset", "wipe PIV (destructive)", nil, (*pivSession).reset),
	)
}

// pivOpts are the flags of the piv subcommands that have some.
type pivOpts struct {
	protect                     bool
	alg, pinPolicy, touchPolicy string
	subject                     string
	days                        int
}

// pivSession is one piv subcommand's key, its PIV application and the
// prompts it answers.
type pivSession struct {
	e    *env
	svc  *keys.Service
	k    device.Key
	card *pivkey.Card
	cb   device.Callbacks
}

// pivSub is one piv subcommand: it finds the key (over PC/SC only) and
// runs fn on its PIV application.
func pivSub(e *env, use, short string, args cobra.PositionalArgs, fn func(*pivSession, []string) error) *cobra.Command {
	return &cobra.Command{Use: use, Short: short, Args: args, RunE: func(_ *cobra.Command, args []string) error {
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
		return fn(&pivSession{e: e, svc: svc, k: k, card: card, cb: cb}, args)
	}}
}

func (s *pivSession) status([]string) error {
	st, err := s.card.Status(s.e.ctx)
	if err != nil {
		return err
	}
	if s.e.json {
		return s.e.printJSON(viewPIV(st))
	}
	printReport(s.e, &keys.Report{Key: s.k, PIV: st})
	return nil
}

func (s *pivSession) changePIN(puk bool) error {
	what := pivkey.PromptPIN
	if puk {
		what = pivkey.PromptPUK
	}
	old, err := s.e.prompt.secret("Current " + what)
	if err != nil {
		return err
	}
	nw, err := s.e.prompt.newSecret("New " + what)
	if err != nil {
		return err
	}
	if puk {
		err = s.card.ChangePUK(s.e.ctx, old, nw)
	} else {
		err = s.card.ChangePIN(s.e.ctx, old, nw)
	}
	if err == nil {
		fmt.Fprintf(s.e.stdout, "%s changed on key %d.\n", what, s.k.Serial)
	}
	return err
}

func (s *pivSession) unblockPIN([]string) error {
	puk, err := s.e.prompt.secret(pivkey.PromptPUK)
	if err != nil {
		return err
	}
	nw, err := s.e.prompt.newSecret("New " + pivkey.PromptPIN)
	if err != nil {
		return err
	}
	if err := s.card.UnblockPIN(s.e.ctx, puk, nw); err != nil {
		return err
	}
	fmt.Fprintf(s.e.stdout, "PIN unblocked and set on key %d.\n", s.k.Serial)
	return nil
}

func (s *pivSession) setRetries(pos []string) error {
	p, err1 := strconv.Atoi(pos[0])
	u, err2 := strconv.Atoi(pos[1])
	if err1 != nil || err2 != nil {
		return usagef("set-retries PIN_TRIES PUK_TRIES, as numbers")
	}
	if err := s.e.confirm(s.k, "Setting retries (it resets the PIV PIN and PUK to their defaults)"); err != nil {
		return err
	}
	if err := s.card.SetRetries(s.e.ctx, s.cb, p, u); err != nil {
		return err
	}
	fmt.Fprintf(s.e.stdout, "Key %d allows %d PIN and %d PUK tries; PIN and PUK are back to their defaults: change them now.\n", s.k.Serial, p, u)
	return nil
}

func (s *pivSession) rotate(protect bool) error {
	alg, err := s.card.RotateManagementKey(s.e.ctx, s.cb, pivkey.RotateOptions{Protect: protect})
	if err != nil {
		return err
	}
	where := "Keep it safe: it is not stored anywhere."
	if protect {
		where = "It is stored on the key behind the PIN; the PIN alone now administers PIV."
	}
	fmt.Fprintf(s.e.stdout, "New random %s management key set on key %d. %s\n", alg, s.k.Serial, where)
	return nil
}

func (s *pivSession) generate(slotArg string, o pivOpts) error {
	slot, err := parseSlot(slotArg)
	if err != nil {
		return err
	}
	if err := s.e.confirm(s.k, fmt.Sprintf("Generating a key in slot %02X (it replaces what the slot holds)", slot)); err != nil {
		return err
	}
	pub, err := s.card.Generate(s.e.ctx, s.cb, slot, pivkey.KeySpec{Algorithm: o.alg, PINPolicy: o.pinPolicy, TouchPolicy: o.touchPolicy})
	if err != nil {
		return err
	}
	der, err := x509.MarshalPKIXPublicKey(pub)
	if err != nil {
		return err
	}
	return pem.Encode(s.e.stdout, &pem.Block{Type: "PUBLIC KEY", Bytes: der})
}

func (s *pivSession) attest(slotArg string) error {
	slot, err := parseSlot(slotArg)
	if err != nil {
		return err
	}
	att, err := s.card.Attest(s.e.ctx, slot)
	if err != nil {
		return err
	}
	pol := pivkey.AttestationPolicy{Serial: s.k.Serial}
	if s.svc.Practice() {
		pol.ExtraRoots = []*x509.Certificate{pivapplet.VirtualRoot()}
	}
	v, verr := pivkey.VerifyAttestation(att, pol)
	if s.e.json {
		return printAttestationJSON(s.e, slot, att, v, verr)
	}
	if verr != nil {
		return verr
	}
	kind := "a Yubico root"
	if !v.Yubico {
		kind = "keydesk's VIRTUAL root (practice mode only)"
	}
	fmt.Fprintf(s.e.stdout, "Slot %02X of key %d: key generated on the key, attested by %s (%s).\nPIN policy %v, touch policy %v, firmware %d.%d.%d.\n",
		slot, v.Serial, kind, v.Root, v.PINPolicy, v.TouchPolicy, v.Version.Major, v.Version.Minor, v.Version.Patch)
	return pem.Encode(s.e.stdout, &pem.Block{Type: "CERTIFICATE", Bytes: att.Certificate.Raw})
}

// printAttestationJSON is "piv attest --json"; it returns verr, the
// verification's error, after printing it.
func printAttestationJSON(e *env, slot byte, att *pivkey.Attestation, v *pivkey.Verdict, verr error) error {
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

func (s *pivSession) csr(slotArg, subject string) error {
	slot, name, err := slotAndSubject(slotArg, subject)
	if err != nil {
		return err
	}
	der, err := s.card.CSR(s.e.ctx, s.cb, slot, name)
	if err != nil {
		return err
	}
	return pem.Encode(s.e.stdout, &pem.Block{Type: "CERTIFICATE REQUEST", Bytes: der})
}

func (s *pivSession) selfSign(slotArg, subject string, days int) error {
	slot, name, err := slotAndSubject(slotArg, subject)
	if err != nil {
		return err
	}
	c, err := s.card.SelfSign(s.e.ctx, s.cb, slot, name, time.Duration(days)*24*time.Hour)
	if err != nil {
		return err
	}
	return pem.Encode(s.e.stdout, &pem.Block{Type: "CERTIFICATE", Bytes: c.Raw})
}

func slotAndSubject(slotArg, subject string) (byte, pkix.Name, error) {
	slot, err := parseSlot(slotArg)
	if err != nil {
		return 0, pkix.Name{}, err
	}
	name, err := pivkey.ParseSubject(subject)
	if err != nil {
		return 0, pkix.Name{}, usagef("--subject: %v", err)
	}
	return slot, name, nil
}

func (s *pivSession) reset([]string) error {
	if err := s.e.confirm(s.k, "Resetting PIV (it deletes every PIV key and certificate)"); err != nil {
		return err
	}
	if err := s.card.Reset(s.e.ctx, s.k.Serial); err != nil {
		return err
	}
	fmt.Fprintf(s.e.stdout, "PIV on key %d is reset: PIN 123456, PUK 12345678, default management key. Change them now.\n", s.k.Serial)
	return nil
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
