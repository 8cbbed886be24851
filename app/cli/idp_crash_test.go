package cli_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"fmt"
	"path/filepath"
	"strconv"
	"sync"

	"github.com/rogpeppe/go-internal/testscript"

	"github.com/keydesk/keydesk/app/idp"
	"github.com/keydesk/keydesk/app/idp/idptest"
	"github.com/keydesk/keydesk/app/settings"
	"github.com/keydesk/keydesk/internal/crashpoint"
	"github.com/keydesk/keydesk/registry"
	"github.com/keydesk/keydesk/registry/client"
	"github.com/keydesk/keydesk/registry/credential"
)

func init() {
	workflowCmds["crash-idp"] = cmdCrashIDP
}

// withProvider adds an idptest provider named name at s to the script's
// desk settings.
func withProvider(ts *testscript.TestScript, s *idptest.Server, name string) {
	p := filepath.Join(ts.Getenv("XDG_CONFIG_HOME"), "keydesk", "settings.json")
	st, err := settings.Load(p)
	ts.Check(err)
	st.Providers = append(st.Providers, s.Config(name))
	ts.Check(settings.Save(p, st))
}

// registeredKey registers an active key with one FIDO2 credential for a
// new user ext, straight through the admin's client, and returns its
// detail.
func registeredKey(ts *testscript.TestScript, admin *client.Client, ext, serial string) client.KeyDetail {
	ctx := context.Background()
	k, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	e, err := admin.Enrol(ctx, client.Enrolment{User: client.EnrolUser{ExternalID: ext, DisplayName: ext},
		Key:   client.EnrolKey{Serial: serial, Model: "YubiKey 5 NFC"},
		FIDO2: []client.FIDO2Credential{{CredentialID: []byte("cred-" + serial), PublicKey: credential.COSEKeyES256(&k.PublicKey), RPID: "keydesk.example"}}})
	ts.Check(err)
	_, err = admin.SetKeyStatus(ctx, e.Key.ID, e.Key.Version, registry.KeyActive, "a test key")
	ts.Check(err)
	kd, err := admin.Key(ctx, e.Key.ID)
	ts.Check(err)
	return kd
}

// cmdCrashIDP kills keydesk idp register at every crash point of a
// provider write and recovers: "crash-idp".
//
// The provider is a real HTTP server in this test process (idptest) that
// counts the writes it accepts. A traced run must pass every point
// internal/crashpoint declares for it (IDPPoints). Then, for each point, a
// key is registered in the registry, keydesk idp register runs armed,
// stops at the point and is killed with SIGKILL; the same command runs
// again (the documented recovery), and keydesk idp sync after it. The
// provider must then hold exactly one method for the user — one write,
// never two, including after a kill between the provider's answer and the
// registry's link — and the registry one active link naming that method.
func cmdCrashIDP(ts *testscript.TestScript, neg bool, args []string) {
	if neg || len(args) != 0 {
		ts.Fatalf("usage: crash-idp")
	}
	r := scriptReg(ts)
	admin, closeAdmin := r.client(ts)
	defer closeAdmin()
	ctx := context.Background()
	srv := idptest.Start()
	defer srv.Close()
	withProvider(ts, srv, "corp")

	check := func(what, ext string, kd client.KeyDetail, writes int) {
		ms := srv.Methods(ext)
		if len(ms) != 1 || srv.Writes() != writes {
			ts.Fatalf("%s: the provider holds %d methods for %s after %d writes in all (want 1 and %d)", what, len(ms), ext, srv.Writes(), writes)
		}
		ls, err := admin.IDPLinks(ctx, client.LinkQuery{KeyID: kd.ID})
		ts.Check(err)
		if len(ls) != 1 || ls[0].State != registry.LinkActive || ls[0].MethodID != ms[0].ID || ls[0].Provider != "corp" {
			ts.Fatalf("%s: links %+v, provider's methods %+v", what, ls, ms)
		}
	}
	serial := 41000000
	next := func(ext string) (client.KeyDetail, string) {
		serial++
		s := strconv.Itoa(serial)
		return registeredKey(ts, admin, ext, s), s
	}

	plain := crashRun{ts: ts, env: crashEnv(ts)}
	kd, s := next("idptrace")
	points := plain.traced("idp register", crashpoint.IDPPoints(), "idp", "register", s)
	writes := 1
	check("traced", "idptrace", kd, writes)
	for i, point := range points {
		ext := fmt.Sprintf("idp%02d", i)
		kd, s := next(ext)
		plain.killAt(point, "idp", "register", s)
		if code, out, stderr, _ := plain.run("idp", "register", s); code != 0 {
			ts.Fatalf("%s: keydesk idp register again: exit %d\n%s%s", point, code, out, stderr)
		}
		if code, out, stderr, _ := plain.run("idp", "sync"); code != 0 {
			ts.Fatalf("%s: keydesk idp sync: exit %d\n%s%s", point, code, out, stderr)
		}
		writes++
		check(point, ext, kd, writes)
		ts.Logf("%s: killed, recovered; the provider wrote once", point)
	}

	// Deleting: keydesk recover lost takes the key out of service, then
	// deletes its method at the provider; killed at each point of that,
	// keydesk idp sync finishes it, and the provider deletes once.
	deletes := srv.Deletes()
	lost := func(ext string) (client.KeyDetail, string) {
		kd, s := next(ext)
		next(ext) // a second active key, so the first is not the last
		if code, out, stderr, _ := plain.run("idp", "register", s); code != 0 {
			ts.Fatalf("%s: idp register: exit %d\n%s%s", ext, code, out, stderr)
		}
		writes++
		return kd, s
	}
	kd, s = lost("idpdeltrace")
	points = plain.traced("recover lost", crashpoint.IDPDeletePoints(), "recover", "lost", s, "--pass-validity", "")
	deletes++
	gone := func(what, ext string, kd client.KeyDetail) {
		if n := len(srv.Methods(ext)); n != 0 || srv.Deletes() != deletes || srv.Writes() != writes {
			ts.Fatalf("%s: %d methods left for %s, %d deletes (want %d), %d writes (want %d)", what, n, ext, srv.Deletes(), deletes, srv.Writes(), writes)
		}
		ls, err := admin.IDPLinks(ctx, client.LinkQuery{KeyID: kd.ID})
		ts.Check(err)
		if len(ls) != 1 || ls[0].State != registry.LinkDeleted || ls[0].KeyStatus != registry.KeyLost {
			ts.Fatalf("%s: links %+v", what, ls)
		}
	}
	gone("traced delete", "idpdeltrace", kd)
	for i, point := range points {
		ext := fmt.Sprintf("idpdel%02d", i)
		kd, s := lost(ext)
		plain.killAt(point, "recover", "lost", s, "--pass-validity", "")
		for range 2 {
			if code, out, stderr, _ := plain.run("idp", "sync"); code != 0 {
				ts.Fatalf("%s: keydesk idp sync: exit %d\n%s%s", point, code, out, stderr)
			}
		}
		deletes++
		gone(point, ext, kd)
		ts.Logf("%s: killed, recovered; the provider deleted once", point)
	}
}

// The identity-provider script commands:
//
//	idp-provider NAME [RPID]   start a test provider (idptest) and add it to the desk's settings;
//	                           with RPID it hands out creation options for that relying party
//	idp-key EXT SERIAL         register an active key with one FIDO2 credential for new user EXT
//	idp-forget EXT             the first provider drops EXT's methods behind the desk's back
//	idp-put EXT ID             the first provider gets a method the desk never made
//	idp-down | idp-up          the first provider answers 503 to everything, or not
//	idp-writes NAME N [DELETES]   provider NAME accepted N writes (and DELETES deletes)
func init() {
	workflowCmds["idp-provider"] = cmdIDPProvider
	workflowCmds["idp-key"] = func(ts *testscript.TestScript, neg bool, args []string) {
		if len(args) != 2 {
			ts.Fatalf("usage: idp-key EXT SERIAL")
		}
		admin, done := scriptReg(ts).client(ts)
		defer done()
		registeredKey(ts, admin, args[0], args[1])
	}
	workflowCmds["idp-forget"] = func(ts *testscript.TestScript, neg bool, args []string) {
		s := idpServer(ts, "")
		for _, m := range s.Methods(args[0]) {
			s.Remove(args[0], m.ID)
		}
	}
	workflowCmds["idp-put"] = func(ts *testscript.TestScript, neg bool, args []string) {
		idpServer(ts, "").Put(args[0], idptest.Method{ID: args[1], DisplayName: "added at the provider"})
	}
	workflowCmds["idp-down"] = func(ts *testscript.TestScript, neg bool, args []string) { idpServer(ts, "").SetDown(true) }
	workflowCmds["idp-up"] = func(ts *testscript.TestScript, neg bool, args []string) { idpServer(ts, "").SetDown(false) }
	workflowCmds["idp-writes"] = func(ts *testscript.TestScript, neg bool, args []string) {
		if len(args) < 2 {
			ts.Fatalf("usage: idp-writes NAME N [DELETES]")
		}
		s := idpServer(ts, args[0])
		if got := strconv.Itoa(s.Writes()); got != args[1] {
			ts.Fatalf("%s accepted %s writes, want %s", args[0], got, args[1])
		}
		if len(args) > 2 {
			if got := strconv.Itoa(s.Deletes()); got != args[2] {
				ts.Fatalf("%s deleted %s methods, want %s", args[0], got, args[2])
			}
		}
	}
}

type namedServer struct {
	name string
	s    *idptest.Server
}

var (
	idpServersMu sync.Mutex
	idpServers   = map[*testscript.TestScript][]namedServer{}
)

// idpServer is the script's provider called name, or its first one.
func idpServer(ts *testscript.TestScript, name string) *idptest.Server {
	idpServersMu.Lock()
	defer idpServersMu.Unlock()
	for _, n := range idpServers[ts] {
		if name == "" || n.name == name {
			return n.s
		}
	}
	ts.Fatalf("no idp-provider %q in this script", name)
	return nil
}

func cmdIDPProvider(ts *testscript.TestScript, neg bool, args []string) {
	if len(args) < 1 || len(args) > 2 {
		ts.Fatalf("usage: idp-provider NAME [RPID]")
	}
	s := idptest.Start()
	if len(args) == 2 {
		s.SetOptions(&idp.CreationOptions{RPID: args[1], RPName: args[1], UserID: []byte("user-handle-" + args[0]), UserName: "user@" + args[1],
			Challenge: []byte("a challenge from " + args[1]), ResidentKey: "required", UserVerification: "required", CredProtect: 2})
	}
	idpServersMu.Lock()
	first := len(idpServers[ts]) == 0
	idpServers[ts] = append(idpServers[ts], namedServer{args[0], s})
	idpServersMu.Unlock()
	if first {
		ts.Defer(func() {
			idpServersMu.Lock()
			for _, n := range idpServers[ts] {
				n.s.Close()
			}
			delete(idpServers, ts)
			idpServersMu.Unlock()
		})
	}
	withProvider(ts, s, args[0])
}
