package server_test

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/keydesk/keydesk/registry/audit"
	"github.com/keydesk/keydesk/registry/pgtest"
	"github.com/keydesk/keydesk/registry/regtest"
	"github.com/keydesk/keydesk/registry/store/sqlstore"
)

// tamperReg is a running registry whose database a test edits behind its
// back, the way someone with access to the database would: with the
// sqlite3 command-line shell on the state dir's registry.db, or psql on
// the PostgreSQL database.
type tamperReg struct {
	*reg
	state, dsn string // dsn is "" for SQLite
}

// dialects runs fn on a fresh registry process on SQLite and on PostgreSQL.
func dialects(t *testing.T, fn func(t *testing.T, tr *tamperReg)) {
	for _, d := range []string{"sqlite", "postgres"} {
		t.Run(d, func(t *testing.T) {
			dsn := ""
			if d == "postgres" {
				dsn = pgtest.Database(t)
			}
			fn(t, startTamper(t, dsn))
		})
	}
}

func startTamper(t *testing.T, dsn string) *tamperReg {
	t.Helper()
	tr := &tamperReg{state: t.TempDir(), dsn: dsn}
	out, err := exec.Command(bin, tr.args("token", "create", "--role", "admin", "--name", "first-admin")...).Output()
	if err != nil {
		t.Fatalf("token create: %v", err)
	}
	admin := strings.TrimSpace(string(out))
	regtest.Secret(admin)
	var extra []string
	if dsn != "" {
		extra = []string{"--db", dsn}
	}
	p, err := regtest.Start(bin, tr.state, extra...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(p.Stop)
	tr.reg = &reg{t: t, p: p, admin: admin}
	for i := range 6 {
		tr.enrol(fmt.Sprintf("user-%d", i), fmt.Sprint(1000+i), i%2 == 0)
	}
	tr.mustVerify()
	return tr
}

// args is a keydesk-registry command line on this registry's state.
func (tr *tamperReg) args(cmd ...string) []string {
	a := append(cmd, "--state", tr.state)
	if tr.dsn != "" {
		a = append(a, "--db", tr.dsn)
	}
	return a
}

// sql runs statements with the database's own command-line client.
func (tr *tamperReg) sql(stmts ...string) {
	tr.t.Helper()
	script := strings.Join(stmts, ";\n") + ";\n"
	var cmd *exec.Cmd
	if tr.dsn == "" {
		cmd = exec.Command("sqlite3", "-bail", "-cmd", ".timeout 10000", filepath.Join(tr.state, "registry.db"))
	} else {
		cmd = exec.Command("psql", "-X", "-q", "-v", "ON_ERROR_STOP=1", tr.dsn)
	}
	cmd.Stdin = strings.NewReader("BEGIN;\n" + script + "COMMIT;\n")
	if out, err := cmd.CombinedOutput(); err != nil {
		tr.t.Fatalf("%s: %v: %s\n%s", cmd.Args[0], err, out, script)
	}
}

// blob is a binary literal in the database's SQL.
func (tr *tamperReg) blob(b []byte) string {
	if tr.dsn == "" {
		return "X'" + hex.EncodeToString(b) + "'"
	}
	return `'\x` + hex.EncodeToString(b) + `'::bytea`
}

func quote(s string) string { return "'" + strings.ReplaceAll(s, "'", "''") + "'" }

// chain reads the audit log and checkpoints as they are now.
func (tr *tamperReg) chain() ([]audit.Entry, []audit.Checkpoint) {
	tr.t.Helper()
	dsn := tr.dsn
	if dsn == "" {
		dsn = filepath.Join(tr.state, "registry.db")
	}
	st, err := sqlstore.Open(context.Background(), dsn, sqlstore.Options{})
	if err != nil {
		tr.t.Fatal(err)
	}
	defer st.Close()
	l, err := st.AuditChain(context.Background())
	if err != nil {
		tr.t.Fatal(err)
	}
	return l.Entries, l.Checkpoints
}

// setEntries writes es over the rows with the same seq (or inserts them).
func (tr *tamperReg) setEntries(es []audit.Entry, insert bool) []string {
	var stmts []string
	for _, e := range es {
		if insert {
			stmts = append(stmts, fmt.Sprintf("INSERT INTO audit_log (seq, at, actor, action, payload, prev_hash, hash) VALUES (%d, %d, %s, %s, %s, %s, %s)",
				e.Seq, e.Time, quote(e.Actor), quote(e.Action), quote(string(e.Payload)), tr.blob(e.PrevHash), tr.blob(e.Hash)))
			continue
		}
		stmts = append(stmts, fmt.Sprintf("UPDATE audit_log SET actor = %s, payload = %s, prev_hash = %s, hash = %s WHERE seq = %d",
			quote(e.Actor), quote(string(e.Payload)), tr.blob(e.PrevHash), tr.blob(e.Hash), e.Seq))
	}
	return stmts
}

func (tr *tamperReg) setHead(seq int64, hash []byte) string {
	return fmt.Sprintf("UPDATE registry_head SET audit_seq = %d, audit_hash = %s WHERE id = 1", seq, tr.blob(hash))
}

// mustVerify: both GET /v1/audit/verify and `keydesk-registry audit verify`
// pass.
func (tr *tamperReg) mustVerify(extra ...string) map[string]any {
	tr.t.Helper()
	res := tr.must(tr.do(tr.admin, "GET", "/v1/audit/verify", nil), 200)
	if res["ok"] != true {
		tr.t.Fatalf("GET /v1/audit/verify on an untampered registry: %v", res)
	}
	out, err := exec.Command(bin, tr.args(append([]string{"audit", "verify"}, extra...)...)...).CombinedOutput()
	if err != nil || !strings.Contains(string(out), "audit ok") {
		tr.t.Fatalf("audit verify on an untampered registry: %v: %s", err, out)
	}
	return res
}

// mustFail: both verifications fail and name want ("audit entry 7",
// "pending audit row 3"); the API also gives the seq or pending id.
func (tr *tamperReg) mustFail(want string, field string, id int64, extra ...string) {
	tr.t.Helper()
	res := tr.must(tr.do(tr.admin, "GET", "/v1/audit/verify", nil), 200)
	if res["ok"] != false || !strings.Contains(fmt.Sprint(res["error"]), want) || res[field] != float64(id) {
		tr.t.Fatalf("GET /v1/audit/verify: %v, want a failure naming %q (%s %d)", res, want, field, id)
	}
	out, err := exec.Command(bin, tr.args(append([]string{"audit", "verify"}, extra...)...)...).CombinedOutput()
	if err == nil || !strings.Contains(string(out), want) {
		tr.t.Fatalf("audit verify: %v: %s, want a failure naming %q", err, out, want)
	}
	tr.t.Logf("detected: %s", strings.TrimSpace(string(out)))
}

// writeRefused: a legitimate write fails with audit_tampered and signs
// nothing.
func (tr *tamperReg) writeRefused() {
	tr.t.Helper()
	_, before := tr.chain()
	res := tr.do(tr.admin, "POST", "/v1/users", map[string]any{"external_id": "late", "display_name": "late"})
	if res.status != http.StatusInternalServerError || res.body["code"] != "audit_tampered" {
		tr.t.Fatalf("write over a tampered chain: %d %s", res.status, res.raw)
	}
	if _, after := tr.chain(); len(after) != len(before) {
		tr.t.Fatalf("a checkpoint was signed over the tampered chain: %d -> %d", len(before), len(after))
	}
	// A fresh process (nothing remembered) refuses too.
	out, err := exec.Command(bin, tr.args("token", "create", "--role", "admin", "--name", "late")...).CombinedOutput()
	if err == nil || !strings.Contains(string(out), "audit") {
		tr.t.Fatalf("token create over a tampered chain: %v: %s", err, out)
	}
}

// TestAuditRewriteDetected: every entry from the third change set on
// rewritten with recomputed hashes, the checkpoints over them deleted and
// the head row set to the new hash.
func TestAuditRewriteDetected(t *testing.T) {
	dialects(t, func(t *testing.T, tr *tamperReg) {
		es, cs := tr.chain()
		from := cs[1].Seq + 1
		forged := append([]audit.Entry{}, es[from-1:]...)
		forged[0].Actor = "admin:mallory"
		prev := es[from-2].Hash
		for i := range forged {
			audit.Seal(&forged[i], forged[i].Seq-1, prev)
			prev = forged[i].Hash
		}
		stmts := tr.setEntries(forged, false)
		stmts = append(stmts, fmt.Sprintf("DELETE FROM audit_checkpoints WHERE seq >= %d", from), tr.setHead(forged[len(forged)-1].Seq, prev))
		tr.sql(stmts...)
		tr.mustFail(fmt.Sprintf("audit entry %d:", from), "seq", from)
		tr.writeRefused()

		// Restarted, the registry refuses to serve the rewritten chain.
		tr.p.Stop()
		var extra []string
		if tr.dsn != "" {
			extra = []string{"--db", tr.dsn}
		}
		if p, err := regtest.Start(bin, tr.state, extra...); err == nil {
			p.Stop()
			t.Fatal("the registry started on a rewritten chain")
		} else if !strings.Contains(err.Error(), "audit witness") {
			t.Fatalf("start on a rewritten chain: %v", err)
		}
	})
}

// TestAuditTruncationDetected: the last change set deleted with its
// checkpoint; then also the head row set to match; then also the witness
// file removed, which the head exported earlier still catches.
func TestAuditTruncationDetected(t *testing.T) {
	dialects(t, func(t *testing.T, tr *tamperReg) {
		head, err := exec.Command(bin, tr.args("audit", "head")...).Output()
		if err != nil {
			t.Fatalf("audit head: %v", err)
		}
		exported := filepath.Join(t.TempDir(), "head.json")
		if err := os.WriteFile(exported, head, 0o600); err != nil {
			t.Fatal(err)
		}
		es, cs := tr.chain()
		prev := cs[len(cs)-2].Seq // the checkpoint before the last change set's
		if cs[len(cs)-1].Seq != int64(len(es)) {
			t.Fatalf("newest checkpoint %d, %d entries", cs[len(cs)-1].Seq, len(es))
		}
		tr.sql(fmt.Sprintf("DELETE FROM audit_log WHERE seq > %d", prev), fmt.Sprintf("DELETE FROM audit_checkpoints WHERE seq > %d", prev))
		want := fmt.Sprintf("audit entry %d:", prev+1)
		tr.mustFail(want, "seq", prev+1)
		tr.writeRefused()

		tr.sql(tr.setHead(prev, es[prev-1].Hash))
		tr.mustFail(want, "seq", prev+1)
		tr.writeRefused()

		// Without the witness file the database alone looks consistent:
		// the head anchored elsewhere shows the truncation.
		if err := os.Remove(filepath.Join(tr.state, audit.WitnessFile)); err != nil {
			t.Fatal(err)
		}
		out, err := exec.Command(bin, tr.args("audit", "verify", "--witness", exported)...).CombinedOutput()
		if err == nil || !strings.Contains(string(out), want) {
			t.Fatalf("audit verify --witness: %v: %s", err, out)
		}
		// The running registry remembers the head it signed.
		res := tr.must(tr.do(tr.admin, "GET", "/v1/audit/verify", nil), 200)
		if res["ok"] != false || res["seq"] != float64(prev+1) {
			t.Fatalf("GET /v1/audit/verify without the witness file: %v", res)
		}
	})
}

// TestAuditForgedAppendDetected: an entry with a valid hash appended after
// the head; the next legitimate write refuses to sign over it, with the
// head row left alone and with it moved to the forged entry.
func TestAuditForgedAppendDetected(t *testing.T) {
	dialects(t, func(t *testing.T, tr *tamperReg) {
		es, _ := tr.chain()
		last := es[len(es)-1]
		e := audit.Entry{Time: last.Time + 1, Actor: "admin:mallory", Action: "key.break_glass", Payload: []byte(`{"reason":"forged"}`)}
		audit.Seal(&e, last.Seq, last.Hash)
		tr.sql(tr.setEntries([]audit.Entry{e}, true)...)
		want := fmt.Sprintf("audit entry %d:", e.Seq)
		tr.mustFail(want, "seq", e.Seq)
		tr.writeRefused()

		tr.sql(tr.setHead(e.Seq, e.Hash))
		tr.mustFail(want, "seq", e.Seq)
		tr.writeRefused()

		// The machine-readable form names the entry too, with exit status 1.
		out, err := exec.Command(bin, tr.args("audit", "verify", "--json")...).Output()
		var res struct {
			OK  bool  `json:"ok"`
			Seq int64 `json:"seq"`
		}
		if ee, ok := err.(*exec.ExitError); !ok || ee.ExitCode() != 1 || json.Unmarshal(out, &res) != nil || res.OK || res.Seq != e.Seq {
			t.Fatalf("audit verify --json: %v: %s", err, out)
		}
	})
}

// TestAuditForgedPendingRejected: a row inserted into audit_pending is not
// chained: the sequencer quarantines it and verification reports it.
// Writes go on (the chain itself is intact).
func TestAuditForgedPendingRejected(t *testing.T) {
	dialects(t, func(t *testing.T, tr *tamperReg) {
		es, _ := tr.chain()
		tr.sql(fmt.Sprintf("INSERT INTO audit_pending (at, actor, action, payload, mac) VALUES (%d, 'admin:forged', 'key.break_glass', '{\"reason\":\"forged\"}', %s)",
			es[len(es)-1].Time+1, tr.blob(make([]byte, 32))))
		var id int64
		if tr.dsn == "" {
			out, err := exec.Command("sqlite3", filepath.Join(tr.state, "registry.db"), "SELECT MAX(id) FROM audit_pending").Output()
			if err != nil {
				t.Fatal(err)
			}
			fmt.Sscan(string(out), &id)
		} else {
			out, err := exec.Command("psql", "-X", "-At", tr.dsn, "-c", "SELECT MAX(id) FROM audit_pending").Output()
			if err != nil {
				t.Fatal(err)
			}
			fmt.Sscan(string(out), &id)
		}
		if id == 0 {
			t.Fatal("forged pending row not found")
		}
		// A verification of an active key chains through the sequencer too.
		tr.enrol("after", "9999", true)
		tr.mustFail(fmt.Sprintf("pending audit row %d:", id), "pending_id", id)
		after, _ := tr.chain()
		for _, e := range after {
			if e.Actor == "admin:forged" {
				t.Fatalf("the forged pending row was chained as entry %d", e.Seq)
			}
		}
		if len(after) <= len(es) {
			t.Fatalf("legitimate writes were not chained: %d -> %d entries", len(es), len(after))
		}
	})
}

// TestAuditConcurrentWritesVerify: enrolments and verifications of active
// keys (chained by the sequencer) from many clients at once leave a chain
// that verifies, whose exported head verify --witness accepts.
func TestAuditConcurrentWritesVerify(t *testing.T) {
	dialects(t, func(t *testing.T, tr *tamperReg) {
		var active []map[string]any
		for i := range 4 {
			active = append(active, tr.enrol(fmt.Sprintf("busy-%d", i), fmt.Sprint(2000+i), true))
		}
		var wg sync.WaitGroup
		errs := make(chan error, 16)
		for g := range 8 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for i := range 6 {
					var err error
					if g%2 == 0 {
						a := active[(g+i)%len(active)]
						err = verifyPIV(tr.p.URL, tr.admin, a["key"].(map[string]any)["id"].(string), a["piv"].([]any)[0].(map[string]any)["id"].(string), fmt.Sprintf("c-%d-%d", g, i))
					} else {
						err = post(tr.p.URL, tr.admin, "/v1/users", fmt.Sprintf("u-%d-%d", g, i), map[string]any{"external_id": fmt.Sprintf("c-%d-%d", g, i), "display_name": "c"}, nil)
					}
					if err != nil {
						errs <- err
						return
					}
				}
			}()
		}
		// Verifications while the writes go on: each sees a consistent
		// snapshot and witnessed heads it contains.
		for v := range 3 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for range 4 {
					if err := verifyOK(tr, v == 0); err != nil {
						errs <- err
						return
					}
				}
			}()
		}
		wg.Wait()
		close(errs)
		for err := range errs {
			t.Fatal(err)
		}
		// The last change set is the server's (a command-line verify may
		// have chained pending entries itself), so its log has the head.
		tr.must(tr.do(tr.admin, "POST", "/v1/users", map[string]any{"external_id": "last", "display_name": "last"}), 201)
		res := tr.mustVerify()
		head, err := exec.Command(bin, tr.args("audit", "head")...).Output()
		if err != nil {
			t.Fatalf("audit head: %v", err)
		}
		var h audit.SignedHead
		if err := json.Unmarshal(head, &h); err != nil || h.Seq != int64(res["entries"].(float64)) {
			t.Fatalf("audit head %s (%v), verify says %v entries", head, err, res["entries"])
		}
		if log := tr.p.Log(); !strings.Contains(log, "audit checkpoint") || !strings.Contains(log, h.Hash) {
			t.Fatalf("no log line for the checkpoint over entry %d (%s):\n%s", h.Seq, h.Hash, log)
		}
		exported := filepath.Join(t.TempDir(), "head.json")
		os.WriteFile(exported, head, 0o600)
		tr.mustVerify("--witness", exported)
		w, err := os.Stat(filepath.Join(tr.state, audit.WitnessFile))
		if err != nil || w.Mode().Perm() != 0o600 {
			t.Fatalf("witness file: %v %v", w, err)
		}
	})
}

// verifyOK runs GET /v1/audit/verify, or with cli `keydesk-registry audit
// verify`, from any goroutine.
func verifyOK(tr *tamperReg, cli bool) error {
	if cli {
		out, err := exec.Command(bin, tr.args("audit", "verify")...).CombinedOutput()
		if err != nil || !strings.Contains(string(out), "audit ok") {
			return fmt.Errorf("audit verify during writes: %v: %s", err, out)
		}
		return nil
	}
	req, _ := http.NewRequest("GET", tr.p.URL+"/v1/audit/verify", nil)
	req.Header.Set("Authorization", "Bearer "+tr.admin)
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		return err
	}
	defer res.Body.Close()
	var out map[string]any
	if err := json.NewDecoder(res.Body).Decode(&out); err != nil || out["ok"] != true {
		return fmt.Errorf("GET /v1/audit/verify during writes: %d %v %v", res.StatusCode, out, err)
	}
	return nil
}

// post sends one idempotent POST from any goroutine.
func post(url, tok, path, key string, body, out any) error {
	b, _ := json.Marshal(body)
	req, _ := http.NewRequest("POST", url+path, bytes.NewReader(b))
	req.Header.Set("Authorization", "Bearer "+tok)
	req.Header.Set("Idempotency-Key", key)
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		return err
	}
	defer res.Body.Close()
	raw, _ := io.ReadAll(res.Body)
	if res.StatusCode != http.StatusCreated && res.StatusCode != http.StatusOK {
		return fmt.Errorf("POST %s: %d %s", path, res.StatusCode, raw)
	}
	if out != nil {
		return json.Unmarshal(raw, out)
	}
	return nil
}

// verifyPIV proves possession of an active key's 9a slot (p256).
func verifyPIV(url, tok, keyID, slotID, key string) error {
	var c struct {
		Challenge struct {
			ID    string `json:"id"`
			Nonce string `json:"nonce"`
		} `json:"challenge"`
	}
	if err := post(url, tok, "/v1/challenges", key+"-c", map[string]any{"key_id": keyID, "kind": "piv", "credential_id": slotID}, &c); err != nil {
		return err
	}
	nonce, err := base64.StdEncoding.DecodeString(c.Challenge.Nonce)
	if err != nil {
		return err
	}
	h := sha256.Sum256(nonce)
	sig, err := ecdsa.SignASN1(rand.Reader, p256, h[:])
	if err != nil {
		return err
	}
	return post(url, tok, "/v1/verifications", key+"-v", map[string]any{"challenge_id": c.Challenge.ID, "piv": map[string]any{"signature": sig}}, nil)
}
