package cli_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/rogpeppe/go-internal/testscript"

	"github.com/keydesk/keydesk/app/idp"
	"github.com/keydesk/keydesk/app/idp/kratos"
	"github.com/keydesk/keydesk/app/idp/kratos/kratostest"
	"github.com/keydesk/keydesk/app/settings"
	"github.com/keydesk/keydesk/device"
	"github.com/keydesk/keydesk/device/fidokey"
	"github.com/keydesk/keydesk/registry/client"
	"github.com/keydesk/keydesk/registry/pgtest"
)

// The Ory Kratos script commands (a real Kratos, built once per machine by
// packaging/kratos.sh, on a fresh database of the tests' PostgreSQL):
//
//	kratos-provider NAME       start Kratos (passkey rp keydesk.example) and add it to the
//	                           desk's settings as provider NAME; its public API is reached
//	                           through a front that counts passkey removals
//	kratos-down | kratos-up    stop Kratos (connections refused), serve it again
//	kratos-signin SERIAL PIN   the key signs in through Kratos's browser login flow, the
//	                           assertion made by the key (libfido2) with the credential the
//	                           registry's link names; with ! the sign-in must be refused
//	kratos-removals N          N passkey removals reached Kratos
func init() {
	workflowCmds["kratos-provider"] = cmdKratosProvider
	workflowCmds["kratos-down"] = func(ts *testscript.TestScript, neg bool, args []string) { scriptKratos(ts).srv.Halt() }
	workflowCmds["kratos-up"] = func(ts *testscript.TestScript, neg bool, args []string) { ts.Check(scriptKratos(ts).srv.Resume()) }
	workflowCmds["kratos-signin"] = cmdKratosSignIn
	workflowCmds["kratos-removals"] = func(ts *testscript.TestScript, neg bool, args []string) {
		if len(args) != 1 {
			ts.Fatalf("usage: kratos-removals N")
		}
		if got := strconv.Itoa(scriptKratos(ts).front.Removals()); got != args[0] {
			ts.Fatalf("kratos received %s passkey removals, want %s", got, args[0])
		}
	}
}

type kratosServer struct {
	name  string
	srv   *kratostest.Server
	front *kratostest.Front
}

var (
	kratosMu      sync.Mutex
	kratosServers = map[*testscript.TestScript]*kratosServer{}
)

func scriptKratos(ts *testscript.TestScript) *kratosServer {
	kratosMu.Lock()
	defer kratosMu.Unlock()
	k := kratosServers[ts]
	if k == nil {
		ts.Fatalf("this script started no kratos: kratos-provider NAME first")
	}
	return k
}

func cmdKratosProvider(ts *testscript.TestScript, neg bool, args []string) {
	if len(args) != 1 {
		ts.Fatalf("usage: kratos-provider NAME")
	}
	bin, err := kratostest.Binary()
	ts.Check(err)
	pg, err := pgtest.Shared()
	ts.Check(err)
	dsn, err := pg.NewDatabase()
	ts.Check(err)
	srv, err := kratostest.Start(bin, dsn, kratostest.Config{RPID: "keydesk.example"})
	ts.Check(err)
	ts.Defer(srv.Stop)
	front, err := kratostest.NewFront(srv.PublicURL)
	ts.Check(err)
	ts.Defer(front.Close)
	kratosMu.Lock()
	kratosServers[ts] = &kratosServer{name: args[0], srv: srv, front: front}
	kratosMu.Unlock()
	ts.Defer(func() {
		kratosMu.Lock()
		delete(kratosServers, ts)
		kratosMu.Unlock()
	})
	ks, err := json.Marshal(kratos.Settings{AdminURL: srv.AdminURL, PublicURL: front.URL, RPID: "keydesk.example"})
	ts.Check(err)
	p := filepath.Join(ts.Getenv("XDG_CONFIG_HOME"), "keydesk", "settings.json")
	st, err := settings.Load(p)
	ts.Check(err)
	st.Providers = append(st.Providers, idp.Config{Kind: "kratos", Name: args[0], Settings: ks})
	ts.Check(settings.Save(p, st))
}

func cmdKratosSignIn(ts *testscript.TestScript, neg bool, args []string) {
	if len(args) != 2 {
		ts.Fatalf("usage: kratos-signin SERIAL PIN")
	}
	k := scriptKratos(ts)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	admin, done := scriptReg(ts).client(ts)
	defer done()
	kd, err := admin.KeyBySerial(ctx, args[0])
	ts.Check(err)
	links, err := admin.IDPLinks(ctx, client.LinkQuery{KeyID: kd.ID, Provider: k.name})
	ts.Check(err)
	if len(links) != 1 {
		ts.Fatalf("the registry has %d %s links for key %s, want 1", len(links), k.name, args[0])
	}
	want := links[0].CredentialID
	_, key := practiceKey(ts, args[0])
	cb := device.Callbacks{PIN: func(context.Context, string) (string, error) { return args[1], nil }}
	s, err := kratostest.SignIn(ctx, k.srv.PublicURL, func(rpID string, challenge []byte) (kratostest.Assertion, error) {
		a, err := fidokey.Open(key.FIDOPath).GetAssertion(ctx, fidokey.AssertOptions{RPID: rpID, Challenge: challenge, UserVerification: true}, cb)
		if err != nil {
			return kratostest.Assertion{}, err
		}
		// The key's newest credential for the rp (CTAP 2.1 §6.2.2) is the
		// one it made for Kratos; any other answer would make a refusal
		// not Kratos's.
		if !bytes.Equal(a.CredentialID, want) {
			return kratostest.Assertion{}, fmt.Errorf("key %s answered with credential %x, not the registry's %x", args[0], a.CredentialID, want)
		}
		return kratostest.Assertion{CredentialID: a.CredentialID, ClientDataJSON: a.ClientDataJSON,
			AuthenticatorData: a.AuthenticatorData, Signature: a.Signature, UserHandle: a.UserHandle}, nil
	})
	if err != nil {
		// Refused means Kratos's own answer: the passkey is not one it
		// holds (message 4000008), not a failure on the way.
		if !neg || !strings.Contains(err.Error(), "(4000008)") {
			ts.Fatalf("key %s signing in through kratos: %v", args[0], err)
		}
		fmt.Fprintf(ts.Stdout(), "refused: %v\n", err)
		return
	}
	if neg {
		ts.Fatalf("key %s signed in through kratos (identity %s)", args[0], s.IdentityID)
	}
	fmt.Fprintf(ts.Stdout(), "signed in as identity %s\n", s.IdentityID)
}
