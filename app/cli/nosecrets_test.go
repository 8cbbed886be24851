package cli_test

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/hex"
	"os"
	"path/filepath"
	"strings"

	"github.com/rogpeppe/go-internal/testscript"

	"github.com/keydesk/keydesk/app/enrol"
	"github.com/keydesk/keydesk/app/escrow"
)

// cmdNoSecrets: "nosecrets PINFILE..." searches everything the script left
// in $WORK — the registry's database and its log, the desk's outbox,
// journal and settings, and every output the script copied there — for
// each PIN the script typed (the lines of PINFILEs, which are themselves
// skipped) and each PUK and management key the enrolments generated (read
// back from the registry's escrow with the harness's helpdesk identity). It
// fails on any hit, and when there was nothing to search.
func cmdNoSecrets(ts *testscript.TestScript, neg bool, args []string) {
	if neg || len(args) == 0 {
		ts.Fatalf("usage: nosecrets PINFILE...")
	}
	r := scriptReg(ts)
	work := ts.Getenv("WORK")
	type secret struct {
		what string
		b    []byte
	}
	var secrets []secret
	skip := map[string]bool{}
	for _, a := range args {
		p := ts.MkAbs(a)
		skip[p] = true
		for _, l := range strings.Split(string(ts.ReadFile(a)), "\n") {
			if l = strings.TrimSpace(l); l != "" {
				secrets = append(secrets, secret{"PIN from " + a, []byte(l)})
			}
		}
	}
	pins := len(secrets)

	// The generated secrets, from the escrow.
	c, closeClient := r.client(ts)
	ctx := context.Background()
	users, _, err := c.Users(ctx, "", 1000)
	ts.Check(err)
	escrows := 0
	for _, u := range users {
		ks, err := c.UserKeys(ctx, u.ID)
		ts.Check(err)
		for _, k := range ks {
			blob, err := c.Escrow(ctx, k.ID, enrol.EscrowKind)
			ts.Check(err)
			s, err := escrow.Open(blob.Blob, r.identity)
			ts.Check(err)
			if s.PUK == "" || len(s.ManagementKey) < 16 || s.PUK == "12345678" {
				ts.Fatalf("key %s: escrow holds no generated PUK and management key", k.Serial)
			}
			mk := s.ManagementKey
			secrets = append(secrets,
				secret{"PUK of key " + k.Serial, []byte(s.PUK)},
				secret{"management key of key " + k.Serial, mk},
				secret{"management key (hex) of key " + k.Serial, []byte(hex.EncodeToString(mk))},
				secret{"management key (HEX) of key " + k.Serial, []byte(strings.ToUpper(hex.EncodeToString(mk)))},
				secret{"management key (base64) of key " + k.Serial, []byte(base64.StdEncoding.EncodeToString(mk))},
				secret{"management key (base64url) of key " + k.Serial, []byte(base64.RawURLEncoding.EncodeToString(mk))})
			escrows++
		}
	}
	closeClient()
	if escrows == 0 || pins == 0 {
		ts.Fatalf("nothing to search for: %d PINs, %d escrows", pins, escrows)
	}

	must := map[string]bool{
		filepath.Join(r.state, "registry.db"):                          false,
		filepath.Join(work, ".local", "share", "keydesk", "outbox.db"): false,
	}
	if r.proc != nil {
		// Stop the registry so its database and log are complete.
		r.proc.Stop()
		ts.Check(os.WriteFile(filepath.Join(work, "registry.log"), []byte(r.proc.Stderr()), 0o600))
		must[filepath.Join(work, "registry.log")] = false
	}
	files, size := 0, 0
	ts.Check(filepath.Walk(work, func(p string, fi os.FileInfo, err error) error {
		if err != nil || fi.IsDir() || skip[p] {
			return err
		}
		b, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		if _, ok := must[p]; ok {
			must[p] = true
		}
		files++
		size += len(b)
		for _, s := range secrets {
			if bytes.Contains(b, s.b) {
				ts.Fatalf("%s holds the %s", p, s.what)
			}
		}
		return nil
	}))
	for p, seen := range must {
		if !seen {
			ts.Fatalf("%s was not there to search", p)
		}
	}
	ts.Logf("searched %d files (%d bytes) for %d PINs and the PUK and management key of %d keys: none found", files, size, pins, escrows)
}
