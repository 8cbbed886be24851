package cli_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"

	"github.com/rogpeppe/go-internal/testscript"

	"github.com/keydesk/keydesk/registry/regtest"
	"github.com/keydesk/keydesk/registry/store/sqlstore"
)

// Commands of the inventory, activity and whoami scenarios:
//
//	registry-user EXTERNAL_ID NAME EMAIL STATUS [GROUP...]   create a user, as directory sync would
//	registry-stop                                            stop the script's registry process
//	registry-tamper SEQ                                      rewrite one audit entry's payload behind the registry's back
//	registry-self-token EXTERNAL_ID                          a self token for that user, in self.token
//	exits CODE PROGRAM [ARGS...]                             run PROGRAM as exec does; it must exit with CODE
func init() {
	workflowCmds["exits"] = cmdExits
	workflowCmds["registry-user"] = cmdRegistryUser
	workflowCmds["registry-tamper"] = cmdRegistryTamper
	workflowCmds["registry-self-token"] = cmdSelfToken
	workflowCmds["registry-stop"] = func(ts *testscript.TestScript, neg bool, args []string) { wfReg(ts).p.Stop() }
}

func cmdRegistryUser(ts *testscript.TestScript, neg bool, args []string) {
	if len(args) < 4 {
		ts.Fatalf("usage: registry-user EXTERNAL_ID NAME EMAIL STATUS [GROUP...]")
	}
	r := wfReg(ts)
	groups := append([]string{}, args[4:]...)
	body, _ := json.Marshal(map[string]any{"external_id": args[0], "display_name": args[1], "email": args[2], "status": args[3], "groups": groups})
	req, _ := http.NewRequest("POST", r.p.URL+"/v1/users", bytes.NewReader(body))
	req.Header.Set("Authorization", "Bearer "+r.token)
	req.Header.Set("Idempotency-Key", "create-"+args[0])
	req.Header.Set("Content-Type", "application/json")
	res, err := http.DefaultClient.Do(req)
	ts.Check(err)
	res.Body.Close()
	if res.StatusCode != http.StatusCreated {
		ts.Fatalf("creating user %s: status %d", args[0], res.StatusCode)
	}
}

func cmdExits(ts *testscript.TestScript, neg bool, args []string) {
	if len(args) < 2 || neg {
		ts.Fatalf("usage: exits CODE PROGRAM [ARGS...]")
	}
	want, err := strconv.Atoi(args[0])
	ts.Check(err)
	err = ts.Exec(args[1], args[2:]...)
	got := 0
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		got = ee.ExitCode()
	} else if err != nil {
		ts.Fatalf("%v", err)
	}
	if got != want {
		ts.Fatalf("%s exited with %d, want %d", args[1], got, want)
	}
}

func cmdRegistryTamper(ts *testscript.TestScript, neg bool, args []string) {
	if len(args) != 1 {
		ts.Fatalf("usage: registry-tamper SEQ")
	}
	seq, err := strconv.Atoi(args[0])
	ts.Check(err)
	st, err := sqlstore.Open(context.Background(), filepath.Join(wfReg(ts).p.State, "registry.db"), sqlstore.Options{})
	ts.Check(err)
	defer st.Close()
	res, err := st.DB().Exec(`UPDATE audit_log SET payload = '{"external_id":"mallory"}' WHERE seq = ?`, seq)
	ts.Check(err)
	if n, _ := res.RowsAffected(); n != 1 {
		ts.Fatalf("no audit entry %d", seq)
	}
}

func cmdSelfToken(ts *testscript.TestScript, neg bool, args []string) {
	if len(args) != 1 {
		ts.Fatalf("usage: registry-self-token EXTERNAL_ID")
	}
	r := wfReg(ts)
	us, _, err := r.admin.Users(context.Background(), "", 1000)
	ts.Check(err)
	for _, u := range us {
		if u.ExternalID == args[0] {
			tok, err := regtest.Token(wfRegistryBin, r.p.State, "self", "self-"+args[0], u.ID)
			ts.Check(err)
			ts.Check(os.WriteFile(ts.MkAbs("self.token"), []byte(tok+"\n"), 0o600))
			return
		}
	}
	ts.Fatalf("no user %s", args[0])
}
