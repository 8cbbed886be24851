package cli

import (
	"flag"
	"fmt"

	"github.com/keydesk/keydesk/app/idp"
	"github.com/keydesk/keydesk/app/regconn"
	"github.com/keydesk/keydesk/app/settings"
	"github.com/keydesk/keydesk/registry/client"
)

// settled is one outbox entry keydesk sync sent.
type settled struct {
	Seq   int64  `json:"seq"`
	Kind  string `json:"kind"`
	State string `json:"state"`
	Error string `json:"error,omitempty"`
}

// syncResult is keydesk sync --json.
type syncResult struct {
	Registry string    `json:"registry"`
	Sent     []settled `json:"sent"`
	Pending  int       `json:"pending"`
	// Providers: the identity-provider writes replayed after the
	// registry's (keydesk idp sync also reconciles and reports drift).
	Providers []idp.Outcome `json:"providers,omitempty"`
}

// runSync sends the outbox's queued registry writes, in order, and reports
// the ones the registry refused or found in conflict; then the writes
// queued for the identity providers.
func runSync(e *env, _ *flag.FlagSet, args []string) error {
	if len(args) > 0 {
		return usagef("sync takes no arguments")
	}
	conn, st, err := e.openRegistry()
	if err != nil {
		return err
	}
	defer conn.Close()
	out := syncResult{Registry: conn.URL, Sent: []settled{}}
	ferr := conn.Client.Flush(e.ctx, func(p client.Progress) {
		out.Sent = append(out.Sent, settled{Seq: p.Entry.Seq, Kind: p.Entry.Kind, State: string(p.Entry.State), Error: p.Entry.Error})
		if !e.json {
			fmt.Fprintf(e.stderr, "%s %s %d: %s\n", bar(p.Done, p.Total), p.Entry.Kind, p.Entry.Seq, p.Entry.State)
		}
	})
	if ferr == nil {
		out.Providers, ferr = flushProviders(e, st, conn)
	}
	pend, err := conn.Client.Entries(e.ctx, client.Pending)
	if err != nil {
		return err
	}
	out.Pending = len(pend)
	bad := 0
	for _, s := range out.Sent {
		if s.State != string(client.Done) {
			bad++
		}
	}
	if e.json {
		if err := e.printJSON(out); err != nil {
			return err
		}
	} else {
		fmt.Fprintf(e.stdout, "%s sent to %s, %d refused or in conflict, %d still pending\n", count(len(out.Sent)-bad, "queued write", "queued writes"), conn.URL, bad, out.Pending)
		for _, s := range out.Sent {
			if s.State != string(client.Done) {
				fmt.Fprintf(e.stdout, "  %s %d %s: %s\n", s.Kind, s.Seq, s.State, s.Error)
			}
		}
		e.printProviderOutcomes(out.Providers)
	}
	if ferr != nil {
		return ferr
	}
	if bad > 0 {
		return fmt.Errorf("%d queued write(s) were refused or conflict with the registry; see above", bad)
	}
	return nil
}

// flushProviders replays the identity-provider writes queued at this desk
// (none when no provider is configured).
func flushProviders(e *env, st settings.Settings, conn *regconn.Conn) ([]idp.Outcome, error) {
	o, err := deskIDP(st, conn)
	if err != nil || o == nil {
		return nil, err
	}
	defer o.Close()
	return o.Flush(e.ctx)
}

// printProviderOutcomes prints one line per identity-provider write.
func (e *env) printProviderOutcomes(out []idp.Outcome) {
	for _, p := range out {
		fmt.Fprintf(e.stdout, "  %s key %d at %s: %s\n", p.Op, p.Serial, p.Provider, providerState(p))
	}
}
