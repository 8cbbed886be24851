package cli

import (
	"errors"
	"fmt"
	"strconv"
	"strings"

	"github.com/spf13/cobra"

	"github.com/keydesk/keydesk/app/enrol"
	"github.com/keydesk/keydesk/app/idp"
	"github.com/keydesk/keydesk/app/regconn"
	"github.com/keydesk/keydesk/app/settings"
	"github.com/keydesk/keydesk/device/discover"
)

// idpCmd is "keydesk idp": the identity providers enrolled keys are also
// registered with (docs/identity-providers.md).
func idpCmd(e *env) *cobra.Command {
	var withKey bool
	sub := func(use, short string) *cobra.Command {
		name, _, _ := strings.Cut(use, " ")
		return &cobra.Command{Use: use, Short: short, RunE: func(_ *cobra.Command, args []string) error { return runIDP(e, name, args, withKey) }}
	}
	reg := sub("register SERIAL", "register an enrolled key with every configured provider: the desk's credential, or, with --with-key, a new one made on the key for providers that hand out their own options")
	reg.Flags().BoolVar(&withKey, "with-key", false, "the key is attached: make a new credential on it (asks for its FIDO2 PIN) for each provider that hands out creation options")
	return group(e, "idp", "identity providers: the configured ones, register an enrolled key, replay queued writes and report drift",
		"idp needs a subcommand: list, register SERIAL, sync",
		sub("list", "the configured providers and the provider writes still queued"),
		reg,
		sub("sync", "replay queued provider writes once, delete the methods of keys no longer in service, and report every linked user's methods so the registry's drift is current"),
	)
}

// deskIDP opens the configured providers (regconn.Providers); nil when
// none is configured. The caller closes it.
func deskIDP(s settings.Settings, conn *regconn.Conn) (*idp.Orchestrator, error) {
	return regconn.Providers(s, conn.Client)
}

// errNoProviders: the settings name no identity provider.
var errNoProviders = errors.New("no identity provider is configured")

func runIDP(e *env, sub string, pos []string, withKey bool) error {
	conn, s, err := e.openRegistry()
	if err != nil {
		return err
	}
	defer conn.Close()
	o, err := deskIDP(s, conn)
	if err != nil {
		return err
	}
	if o == nil {
		return reworded{msg: errNoProviders.Error(), err: errNoProviders, hint: "Add the providers to the settings' \"providers\" list (docs/identity-providers.md, \"Settings\")."}
	}
	defer o.Close()
	switch sub {
	case "list":
		if len(pos) > 0 {
			return usagef("idp list takes no arguments")
		}
		return idpList(e, s, o)
	case "register":
		if len(pos) != 1 {
			return usagef("idp register takes the key's serial: keydesk idp register SERIAL")
		}
		return idpRegister(e, conn, o, pos[0], withKey)
	case "sync":
		if len(pos) > 0 {
			return usagef("idp sync takes no arguments")
		}
		return idpSync(e, conn, o)
	}
	return usagef("unknown idp subcommand %q", sub)
}

// idpList: keydesk idp list.
func idpList(e *env, s settings.Settings, o *idp.Orchestrator) error {
	queued, err := o.Outbox().Intents(e.ctx, idp.IntentPending, idp.IntentWritten, idp.IntentNeedsKey)
	if err != nil {
		return err
	}
	if e.json {
		return e.printJSON(map[string]any{"providers": s.Providers, "queued": queued})
	}
	for _, p := range s.Providers {
		fmt.Fprintf(e.stdout, "%s\t%s\n", p.Name, p.Kind)
	}
	for _, in := range queued {
		fmt.Fprintf(e.stdout, "queued: %s key %d at %s (%s)\n", in.Op, in.Serial, in.Provider, in.State)
	}
	return nil
}

// idpRegister: keydesk idp register SERIAL [--with-key].
func idpRegister(e *env, conn *regconn.Conn, o *idp.Orchestrator, serial string, withKey bool) error {
	n, err := strconv.ParseUint(serial, 10, 32)
	if err != nil {
		return usagef("serial %q: give the number printed on the key", serial)
	}
	var mk idp.Maker
	if withKey {
		e.serial = uint(n)
		k, err := e.keyVia(discover.FIDO)
		if err != nil {
			return err
		}
		svc, _ := e.service()
		dev, err := svc.FIDO(k)
		if err != nil {
			return err
		}
		mk = enrol.ProviderMaker(dev, e.callbacks(k))
	}
	kd, err := conn.Client.KeyBySerial(e.ctx, serial)
	if err != nil {
		return err
	}
	u, err := conn.Client.User(e.ctx, kd.OwnerID)
	if err != nil {
		return err
	}
	out, err := o.RegisterKey(e.ctx, kd, u, mk)
	if err != nil {
		return err
	}
	return e.printOutcomes(out)
}

// idpSync: keydesk idp sync.
func idpSync(e *env, conn *regconn.Conn, o *idp.Orchestrator) error {
	out, err := o.Reconcile(e.ctx, conn.Client)
	if err != nil {
		return err
	}
	drift, err := conn.Client.IDPDrift(e.ctx)
	if err != nil {
		return err
	}
	if e.json {
		return e.printJSON(map[string]any{"outcomes": out, "drift": drift})
	}
	if err := e.printOutcomes(out); err != nil {
		return err
	}
	fmt.Fprintf(e.stdout, "Drift: %s (keydesk inventory --problem idp-drift)\n", count(len(drift), "disagreement", "disagreements"))
	return nil
}

// printOutcomes prints what became of each provider write.
func (e *env) printOutcomes(out []idp.Outcome) error {
	if e.json {
		return e.printJSON(map[string]any{"outcomes": out})
	}
	for _, oc := range out {
		line := fmt.Sprintf("%s key %d at %s: %s", oc.Op, oc.Serial, oc.Provider, oc.State)
		if oc.Queued {
			line += " (queued: keydesk idp sync replays it)"
		}
		if oc.Error != "" {
			line += ": " + oc.Error
		}
		fmt.Fprintln(e.stdout, line)
		if oc.Hint != "" {
			fmt.Fprintln(e.stdout, "  "+oc.Hint)
		}
	}
	return nil
}
