package invui

import (
	"context"
	"strings"
	"testing"
	"time"

	"fyne.io/fyne/v2/container"
	"fyne.io/fyne/v2/test"
	"fyne.io/fyne/v2/widget"

	"github.com/keydesk/keydesk/app/ui/uikit"
	"github.com/keydesk/keydesk/registry/client"
)

// settledRead is what a test learns when an Activity read settles: the
// entries as they were then (copied on the goroutine that changed them).
type settledRead struct {
	what    string
	err     error
	entries []client.AuditEntry
	next    int64
}

func openActivity(t *testing.T, env *uikit.Env) (*Activity, chan settledRead) {
	t.Helper()
	a := newActivity(env)
	ch := make(chan settledRead, 16)
	a.settled = func(what string, err error) {
		ch <- settledRead{what, err, append([]client.AuditEntry(nil), a.entries...), a.next}
	}
	env.Window.SetContent(a.Root)
	return a, ch
}

func next(t *testing.T, ch chan settledRead, what string) settledRead {
	t.Helper()
	for {
		s := wait(t, ch, what)
		if s.what == what {
			return s
		}
	}
}

// allAudit reads the whole audit log through the client, oldest first: the
// test's own view to compare the screen with.
func allAudit(t *testing.T, c *client.Client) []client.AuditEntry {
	t.Helper()
	var out []client.AuditEntry
	q := client.AuditQuery{Limit: 1000}
	for {
		pg, err := c.Audit(context.Background(), q)
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, pg.Entries...)
		if pg.Next == 0 {
			return out
		}
		q.After = pg.Next
	}
}

func newestFirst(t *testing.T, es []client.AuditEntry) {
	t.Helper()
	for i := 1; i < len(es); i++ {
		if es[i].Seq >= es[i-1].Seq {
			t.Fatalf("entries not newest first at %d: %d after %d", i, es[i].Seq, es[i-1].Seq)
		}
	}
}

// TestActivity reads the audit log of a seeded registry on the screen:
// newest first in pages, each filter typed as a person would, the chain
// check, and the live refresh that stops while the screen is hidden.
func TestActivity(t *testing.T) {
	r := startRegistry(t)
	us := plan(28)
	r.seed(us)
	log := allAudit(t, r.admin)
	if len(log) <= pageSize {
		t.Fatalf("seeding wrote only %d audit entries; the test needs more than a page", len(log))
	}
	env := newEnv(t, r.admin, uikit.Admin)
	a, ch := openActivity(t, env)
	a.Reload()
	s := next(t, ch, "reload")
	if s.err != nil {
		t.Fatal(s.err)
	}
	if len(s.entries) != pageSize || s.entries[0].Seq != log[len(log)-1].Seq || s.next == 0 {
		t.Fatalf("first page: %d entries from seq %d (log head %d), next %d", len(s.entries), s.entries[0].Seq, log[len(log)-1].Seq, s.next)
	}
	newestFirst(t, s.entries)
	if a.Cell(0, 1) != log[len(log)-1].Actor || a.Cell(0, 2) != log[len(log)-1].Action {
		t.Errorf("first row %q %q, newest entry %s %s", a.Cell(0, 1), a.Cell(0, 2), log[len(log)-1].Actor, log[len(log)-1].Action)
	}
	// Older pages until the start of the log: every entry once.
	for s.next != 0 {
		test.Tap(a.Older)
		s = next(t, ch, "older")
		if s.err != nil {
			t.Fatal(s.err)
		}
	}
	if len(s.entries) != len(log) {
		t.Fatalf("paged through %d entries, the log holds %d", len(s.entries), len(log))
	}
	newestFirst(t, s.entries)

	count := func(keep func(client.AuditEntry) bool) int {
		n := 0
		for _, e := range log {
			if keep(e) {
				n++
			}
		}
		return n
	}
	apply := func() settledRead {
		t.Helper()
		test.Tap(a.Apply)
		s := next(t, ch, "reload")
		if s.err != nil {
			t.Fatal(s.err)
		}
		newestFirst(t, s.entries)
		return s
	}
	// Action.
	test.Type(a.Action, "key.status")
	s = apply()
	if want := count(func(e client.AuditEntry) bool { return e.Action == "key.status" }); len(s.entries) != want || want == 0 {
		t.Errorf("action key.status: %d entries, the log has %d", len(s.entries), want)
	}
	a.Action.SetText("")
	// Actor: the helpdesk wrote nothing, the admin everything but the
	// tokens' creation.
	test.Type(a.Actor, "helpdesk:desk-1")
	if s = apply(); len(s.entries) != 0 {
		t.Errorf("actor helpdesk:desk-1: %d entries", len(s.entries))
	}
	a.Actor.SetText("")
	test.Type(a.Actor, "admin:first-admin")
	want := count(func(e client.AuditEntry) bool { return e.Actor == "admin:first-admin" })
	s = apply()
	for s.next != 0 {
		test.Tap(a.Older)
		s = next(t, ch, "older")
	}
	if len(s.entries) != want || want == 0 {
		t.Errorf("actor admin:first-admin: %d entries, the log has %d", len(s.entries), want)
	}
	a.Actor.SetText("")
	// Key serial: its creation, its activation by a verification, and the
	// verification itself name the key.
	k := us[5].Keys[0] // lost after verification
	test.Type(a.Subject, k.Serial)
	s = apply()
	actions := map[string]bool{}
	for _, e := range s.entries {
		actions[e.Action] = true
	}
	for _, w := range []string{"key.create", "verification", "key.activate", "key.status"} {
		if !actions[w] {
			t.Errorf("serial %s: no %s among %v", k.Serial, w, actions)
		}
	}
	if len(s.entries) >= len(log)/4 {
		t.Errorf("serial %s matched %d of %d entries", k.Serial, len(s.entries), len(log))
	}
	a.Subject.SetText("")
	// User: their external id finds the user's own entries.
	test.Type(a.Subject, "u013")
	s = apply()
	if len(s.entries) == 0 || !actions2(s.entries)["user.update"] {
		t.Errorf("user u013 (suspended): %d entries, actions %v", len(s.entries), actions2(s.entries))
	}
	a.Subject.SetText("")
	// Time range.
	test.Type(a.Since, time.Now().Add(time.Hour).Format("2006-01-02 15:04"))
	if s = apply(); len(s.entries) != 0 {
		t.Errorf("from an hour ahead: %d entries", len(s.entries))
	}
	a.Since.SetText("")
	test.Type(a.Until, time.Now().Add(-48*time.Hour).Format("2006-01-02"))
	if s = apply(); len(s.entries) != 0 {
		t.Errorf("until two days ago: %d entries", len(s.entries))
	}
	a.Until.SetText("")
	test.Type(a.Since, log[len(log)-10].Time.Local().Format(time.RFC3339Nano))
	test.Type(a.Until, log[len(log)-3].Time.Local().Format(time.RFC3339Nano))
	s = apply()
	want = count(func(e client.AuditEntry) bool {
		return !e.Time.Before(log[len(log)-10].Time) && !e.Time.After(log[len(log)-3].Time)
	})
	if len(s.entries) != want || want < 8 {
		t.Errorf("time range: %d entries, the log has %d", len(s.entries), want)
	}
	a.Since.SetText("not a date")
	test.Tap(a.Apply)
	if s = next(t, ch, "reload"); s.err == nil || !strings.Contains(a.Status.Text, "YYYY-MM-DD") {
		t.Errorf("a bad date: %v, status %q", s.err, a.Status.Text)
	}
	// A span back from now, as keydesk activity --since takes it.
	a.Since.SetText("7d")
	test.Tap(a.Apply)
	if s = next(t, ch, "reload"); s.err != nil || len(s.entries) == 0 {
		t.Errorf("since 7d: %v, %d entries, status %q", s.err, len(s.entries), a.Status.Text)
	}
	test.Tap(a.Clear)
	next(t, ch, "reload")

	// The chain check.
	test.Tap(a.Verify)
	if s = next(t, ch, "verify"); s.err != nil || !strings.Contains(a.VerifyResult.Text, "Audit chain verified") {
		t.Errorf("verify: %v %q", s.err, a.VerifyResult.Text)
	}
	// Checked again: while it runs the result is neither green nor red.
	test.Tap(a.Verify)
	if a.VerifyResult.Importance != widget.MediumImportance || !a.Verify.Disabled() {
		t.Errorf("while checking again: %q, importance %v, button enabled %v", a.VerifyResult.Text, a.VerifyResult.Importance, !a.Verify.Disabled())
	}
	next(t, ch, "verify")

	// Live refresh: a new entry appears on top at the next beat; while the
	// screen is hidden nothing is asked.
	r.call("POST", "/v1/users", map[string]any{"external_id": "newcomer", "display_name": "New Comer"}, nil)
	if !a.tick() {
		t.Fatal("the shown screen did not poll")
	}
	s = next(t, ch, "poll")
	if s.err != nil || len(s.entries) == 0 || s.entries[0].Action != "user.create" || !strings.Contains(string(s.entries[0].Payload), "newcomer") {
		t.Fatalf("after a new user: %v, top %+v", s.err, s.entries[0])
	}
	// Nothing changed since: the poll asks only for the change feed's
	// head and leaves the log alone, but reads it every readEvery polls
	// (entries audited without a change do not move the head).
	reads := a.reads
	for i := 1; i < readEvery; i++ {
		if !a.tick() {
			t.Fatal("the shown screen did not poll")
		}
		if s = next(t, ch, "poll"); s.err != nil || a.reads != reads {
			t.Fatalf("poll %d with nothing changed: %v, %d reads of the log (was %d)", i, s.err, a.reads, reads)
		}
	}
	a.tick()
	if s = next(t, ch, "poll"); s.err != nil || a.reads != reads+1 {
		t.Fatalf("poll %d: %v, %d reads of the log; want %d", readEvery, s.err, a.reads, reads+1)
	}
	env.Window.SetContent(container.NewStack(widget.NewLabel("another screen")))
	if a.tick() {
		t.Error("a hidden screen polled")
	}
	env.Window.SetContent(container.NewBorder(nil, nil, nil, nil, container.NewHSplit(widget.NewLabel("nav"), container.NewPadded(container.NewStack(a.Root)))))
	if !a.tick() {
		t.Error("the screen inside the shell's layout did not poll")
	}
	next(t, ch, "poll")
}

func actions2(es []client.AuditEntry) map[string]bool {
	m := map[string]bool{}
	for _, e := range es {
		m[e.Action] = true
	}
	return m
}

// TestActivityLive: the real ticker brings a new entry without a tap.
func TestActivityLive(t *testing.T) {
	r := startRegistry(t)
	old := PollEvery
	PollEvery = 200 * time.Millisecond
	defer func() { PollEvery = old }()
	env := newEnv(t, r.admin, uikit.Admin)
	a, ch := openActivity(t, env)
	a.Reload()
	next(t, ch, "reload")
	a.startPolling()
	r.call("POST", "/v1/users", map[string]any{"external_id": "live-one"}, nil)
	for {
		s := next(t, ch, "poll")
		if s.err != nil {
			t.Fatal(s.err)
		}
		if len(s.entries) > 0 && strings.Contains(string(s.entries[0].Payload), "live-one") {
			break
		}
	}
}

// TestActivityRegistryDown: the registry stops under the screen; a reload
// shows the banner and keeps the entries marked stale; the live refresh
// keeps failing quietly; after a restart Retry works.
func TestActivityRegistryDown(t *testing.T) {
	r := startRegistry(t)
	r.seed(plan(3))
	env := newEnv(t, r.admin, uikit.Admin)
	a, ch := openActivity(t, env)
	a.Reload()
	s := next(t, ch, "reload")
	n := len(s.entries)
	r.proc.Stop()
	test.Tap(a.Apply)
	if s = next(t, ch, "reload"); s.err == nil {
		t.Fatal("reload with the registry stopped succeeded")
	}
	if !a.Banner.Shown() || !strings.Contains(a.Banner.Message.Text, "cannot be reached") || !strings.HasPrefix(a.Status.Text, "Stale") || len(a.Entries()) != n {
		t.Errorf("banner %v %q, status %q, %d entries of %d", a.Banner.Shown(), a.Banner.Message.Text, a.Status.Text, len(a.Entries()), n)
	}
	test.Tap(a.Verify)
	if s = next(t, ch, "verify"); s.err == nil || !strings.Contains(a.VerifyResult.Text, "Could not check") {
		t.Errorf("verify while down: %v %q", s.err, a.VerifyResult.Text)
	}
	r.restart()
	test.Tap(a.Banner.Retry)
	if s = next(t, ch, "reload"); s.err != nil || a.Banner.Shown() || len(s.entries) != n {
		t.Errorf("retry: %v, banner %v, %d entries of %d", s.err, a.Banner.Shown(), len(s.entries), n)
	}
}

// TestActivityHelpdesk: the audit log is for admins; a helpdesk desk is
// told so, with what to do.
func TestActivityHelpdesk(t *testing.T) {
	r := startRegistry(t)
	a, ch := openActivity(t, newEnv(t, r.desk, uikit.Helpdesk))
	a.Reload()
	if s := next(t, ch, "reload"); s.err == nil || !strings.Contains(a.Banner.Message.Text, "admins only") || !strings.Contains(a.Banner.Message.Text, "admin token") {
		t.Errorf("helpdesk: %v %q", s.err, a.Banner.Message.Text)
	}
	// The live refresh does not keep asking for what was refused.
	if !a.tick() || a.busy || a.polling {
		t.Error("a refused screen asked again (or was not shown)")
	}
}
