package invui

import (
	"context"
	"encoding/csv"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	"fyne.io/fyne/v2"
	"fyne.io/fyne/v2/storage"
	"fyne.io/fyne/v2/test"

	"github.com/keydesk/keydesk/app/backup"
	"github.com/keydesk/keydesk/app/inventory"
	"github.com/keydesk/keydesk/app/ui/uikit"
	"github.com/keydesk/keydesk/registry"
	"github.com/keydesk/keydesk/registry/client"
)

// figures are the coverage counts a test expects, computed from what it
// seeded (not from the inventory code).
type figures struct {
	users, active, keys, activeKeys, covered, noBackup, noPrimary, noActive, unverified, stale int
	uncovered                                                                                  []string // external ids of active users lacking a key
}

func expect(us []seedUser, verificationsKnown, allStale bool) figures {
	var f figures
	for _, u := range us {
		f.users++
		f.keys += len(u.Keys)
		var prim, back, act int
		unver, stale := false, false
		for _, k := range u.Keys {
			if k.Status == registry.KeyActive {
				f.activeKeys++
				act++
				if k.Role == registry.RoleBackup {
					back++
				} else {
					prim++
				}
				if verificationsKnown && !k.Verified {
					unver = true
				}
				if verificationsKnown && k.Verified && allStale {
					stale = true
				}
			}
			if k.Status == registry.KeyPending && !k.Verified {
				unver = true
			}
		}
		if u.Status != registry.UserActive {
			continue
		}
		f.active++
		if prim > 0 && back > 0 {
			f.covered++
		} else {
			f.uncovered = append(f.uncovered, u.Ext)
		}
		if back == 0 {
			f.noBackup++
		}
		if prim == 0 {
			f.noPrimary++
		}
		if act == 0 {
			f.noActive++
		}
		if unver {
			f.unverified++
		}
		if stale {
			f.stale++
		}
	}
	return f
}

// loadInventory builds the screen on env and waits for its first load.
func loadInventory(t *testing.T, env *uikit.Env, opt inventory.Options) (*Inventory, chan error) {
	t.Helper()
	v := newInventory(env)
	v.Options = opt
	done := make(chan error, 4)
	v.loaded = func(err error) { done <- err }
	env.Window.SetContent(v.Root)
	v.Load()
	if err := wait(t, done, "the inventory to load"); err != nil {
		t.Fatalf("loading: %v", err)
	}
	return v, done
}

func checkCounts(t *testing.T, v *Inventory, f figures, unverifiedLabel string) {
	t.Helper()
	got := v.Counts.Text
	for _, want := range []string{
		fmt.Sprintf("Users %d (active %d)", f.users, f.active),
		fmt.Sprintf("Keys %d (active %d)", f.keys, f.activeKeys),
		fmt.Sprintf("Covered %d ", f.covered),
		fmt.Sprintf("No backup %d ", f.noBackup),
		fmt.Sprintf("No primary %d ", f.noPrimary),
		fmt.Sprintf("No active key %d ", f.noActive),
		fmt.Sprintf("%s %d ", unverifiedLabel, f.unverified),
	} {
		if !strings.Contains(got, want) {
			t.Errorf("counts %q lack %q", got, want)
		}
	}
}

// shownExt lists the external ids of the rows the table shows, read
// through its cells.
func shownExt(v *Inventory) []string {
	var out []string
	for r := 0; r < v.Shown(); r++ {
		out = append(out, v.Cell(r, 1))
	}
	sort.Strings(out)
	return out
}

func want(us []seedUser, keep func(u seedUser) bool) []string {
	var out []string
	for _, u := range us {
		if keep(u) {
			out = append(out, u.Ext)
		}
	}
	sort.Strings(out)
	return out
}

func same(t *testing.T, what string, got, want []string) {
	t.Helper()
	if strings.Join(got, ",") != strings.Join(want, ",") {
		t.Errorf("%s: table shows %v, want %v", what, got, want)
	}
}

// TestInventory seeds an organisation through the API and checks the
// screen against it: the rows, the coverage figures (and app/backup's own
// report), every filter typed or picked as a person would, the detail of a
// selected user, and the CSV export of a filtered view.
func TestInventory(t *testing.T) {
	r := startRegistry(t)
	us := plan(28)
	r.seed(us)
	env := newEnv(t, r.admin, uikit.Admin)
	v, _ := loadInventory(t, env, inventory.Options{PageSize: 10})

	if v.Shown() != len(us) {
		t.Fatalf("table shows %d users, seeded %d", v.Shown(), len(us))
	}
	for row := 0; row < v.Shown(); row++ {
		ext := v.Cell(row, 1)
		var u *seedUser
		for i := range us {
			if us[i].Ext == ext {
				u = &us[i]
			}
		}
		if u == nil || v.Cell(row, 0) != u.Name || v.Cell(row, 2) != u.Email || v.Cell(row, 4) != fmt.Sprint(len(u.Keys)) {
			t.Fatalf("row %d: %q %q %q %q", row, v.Cell(row, 0), ext, v.Cell(row, 2), v.Cell(row, 4))
		}
	}
	f := expect(us, true, false)
	t.Log(v.Counts.Text)
	checkCounts(t, v, f, "unverified keys")
	if !strings.Contains(v.Counts.Text, "verified long ago 0 ") {
		t.Errorf("counts %q: nothing was verified long ago", v.Counts.Text)
	}

	// app/backup asks the registry's coverage endpoint user by user: the
	// screen must agree with it.
	rep, err := backup.Coverage(context.Background(), r.admin)
	if err != nil {
		t.Fatal(err)
	}
	if rep.Covered != f.covered || rep.Uncovered != len(f.uncovered) {
		t.Errorf("app/backup: %d covered, %d not; seeded %d and %d", rep.Covered, rep.Uncovered, f.covered, len(f.uncovered))
	}
	mine := (&inventory.Inventory{Users: v.users}).Report()
	byUser := map[string]backup.UserCoverage{}
	for _, c := range mine.Users {
		byUser[c.UserID] = c
	}
	if len(mine.Users) != len(rep.Users) || mine.Covered != rep.Covered {
		t.Errorf("screen's report: %d users, %d covered; app/backup: %d, %d", len(mine.Users), mine.Covered, len(rep.Users), rep.Covered)
	}
	for _, c := range rep.Users {
		m := byUser[c.UserID]
		if m.Covered != c.Covered || m.ActiveKeys != c.ActiveKeys || strings.Join(m.Missing, ",") != strings.Join(c.Missing, ",") {
			t.Errorf("user %s: screen %+v, registry %+v", c.ExternalID, m, c)
		}
	}

	// Filters, as a person types and picks them.
	test.Type(v.Search, "GRACE")
	same(t, "search by name", shownExt(v), want(us, func(u seedUser) bool { return strings.Contains(strings.ToLower(u.Name), "grace") }))
	v.Search.SetText("")
	test.Type(v.Search, "person007@")
	same(t, "search by email", shownExt(v), []string{"u007"})
	v.Search.SetText("")
	test.Type(v.Search, "u01")
	same(t, "search by external id", shownExt(v), want(us, func(u seedUser) bool { return strings.HasPrefix(u.Ext, "u01") }))
	v.Search.SetText("")
	serial := us[12].Keys[0].Serial
	test.Type(v.Search, serial)
	same(t, "search by serial", shownExt(v), []string{us[12].Ext})
	v.Search.SetText("")

	v.Group.SetSelected("oncall")
	same(t, "group", shownExt(v), want(us, func(u seedUser) bool { return strings.Contains(strings.Join(u.Groups, ","), "oncall") }))
	v.Group.SetSelected(anyChoice)

	holds := func(st registry.KeyStatus, role registry.KeyRole) func(seedUser) bool {
		return func(u seedUser) bool {
			for _, k := range u.Keys {
				if (st == "" || k.Status == st) && (role == "" || k.Role == role) {
					return true
				}
			}
			return false
		}
	}
	v.KeyStat.SetSelected("pending")
	same(t, "key status pending", shownExt(v), want(us, holds(registry.KeyPending, "")))
	v.KeyStat.SetSelected("lost")
	same(t, "key status lost", shownExt(v), want(us, holds(registry.KeyLost, "")))
	v.KeyRole.SetSelected("primary")
	same(t, "lost primary", shownExt(v), want(us, holds(registry.KeyLost, registry.RolePrimary)))
	v.KeyStat.SetSelected(anyChoice)
	v.KeyRole.SetSelected("backup")
	same(t, "role backup", shownExt(v), want(us, holds("", registry.RoleBackup)))
	v.KeyRole.SetSelected(anyChoice)

	v.Problem.SetSelected(inventory.NoBackup.Label())
	noBackup := shownExt(v)
	if len(noBackup) != f.noBackup {
		t.Errorf("filter no backup: %d rows, expected %d", len(noBackup), f.noBackup)
	}
	v.Problem.SetSelected(inventory.NoActive.Label())
	if v.Shown() != f.noActive {
		t.Errorf("filter no active key: %d rows, expected %d", v.Shown(), f.noActive)
	}
	v.Problem.SetSelected(inventory.Unverified.Label())
	if v.Shown() != f.unverified {
		t.Errorf("filter unverified: %d rows, expected %d", v.Shown(), f.unverified)
	}
	v.Problem.SetSelected("Any problem")
	uncovered := append([]string(nil), f.uncovered...)
	for _, u := range us {
		if u.Status == registry.UserActive && !contains(uncovered, u.Ext) && expect([]seedUser{u}, true, false).unverified > 0 {
			uncovered = append(uncovered, u.Ext)
		}
	}
	sort.Strings(uncovered)
	same(t, "any problem", shownExt(v), uncovered)
	if !strings.Contains(v.Counts.Text, fmt.Sprintf("Showing %d", len(uncovered))) {
		t.Errorf("counts %q do not say how many rows show", v.Counts.Text)
	}

	// CSV of the filtered view: users lacking a backup key, for outreach.
	v.Problem.SetSelected(inventory.NoBackup.Label())
	path := filepath.Join(t.TempDir(), "outreach.csv")
	v.ChooseFile = func(cb func(fyne.URIWriteCloser, error)) {
		w, err := storage.Writer(storage.NewFileURI(path))
		cb(w, err)
	}
	exported := make(chan error, 1)
	v.exported = func(err error) { exported <- err }
	test.Tap(v.Export)
	if err := wait(t, exported, "the CSV export"); err != nil {
		t.Fatal(err)
	}
	raw, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	body := string(raw)
	rows, err := csv.NewReader(strings.NewReader(body)).ReadAll()
	if err != nil || len(rows) == 0 {
		t.Fatalf("CSV %q: %v", body, err)
	}
	if strings.Join(rows[0], ",") != strings.Join(inventory.CSVHeader, ",") {
		t.Errorf("CSV header %v", rows[0])
	}
	var csvExt []string
	for _, row := range rows[1:] {
		csvExt = append(csvExt, row[0])
		if !strings.Contains(row[9], "no-backup") || row[7] != "false" {
			t.Errorf("CSV row %v is not a user lacking a backup key", row)
		}
	}
	sort.Strings(csvExt)
	same(t, "CSV rows", csvExt, noBackup)
	v.Problem.SetSelected(anyChoice)

	// The selected user's keys.
	test.Type(v.Search, "u005")
	if v.Shown() != 1 {
		t.Fatalf("u005: %d rows", v.Shown())
	}
	v.SelectRow(0)
	lines := v.DetailLines()
	if len(lines) != len(us[5].Keys) {
		t.Fatalf("detail of u005: %q", lines)
	}
	for i, k := range us[5].Keys {
		l := lines[i]
		if !strings.Contains(l, k.Serial) || !strings.Contains(l, string(k.Role)) || !strings.Contains(l, string(k.Status)) || !strings.Contains(l, "last verified today") {
			t.Errorf("detail line %q for %+v", l, k)
		}
	}
	if !strings.Contains(v.Detail.Text, "no primary key") {
		t.Errorf("detail %q does not say what is missing", v.Detail.Text)
	}
	v.Search.SetText("u003")
	v.SelectRow(0)
	if l := v.DetailLines(); len(l) != 1 || !strings.Contains(l[0], "never verified") || !strings.Contains(l[0], "pending") {
		t.Errorf("detail of u003: %q", l)
	}
	if !strings.Contains(v.Detail.Text, ", 1 key\n") {
		t.Errorf("detail of u003 does not count its one key: %q", v.Detail.Text)
	}

	// Read user by user (a registry without GET /v1/inventory, last
	// verifications from the audit log): the same inventory.
	vp, _ := loadInventory(t, newEnv(t, r.admin, uikit.Admin), inventory.Options{PerUser: true, PageSize: 9})
	if a, b := digest(v.users), digest(vp.users); a != b {
		t.Errorf("user by user:\n%s\nin pages:\n%s", b, a)
	}

	// Half a year on, every verified key was verified long ago.
	later := time.Now().Add(200 * 24 * time.Hour)
	v2, _ := loadInventory(t, newEnv(t, r.admin, uikit.Admin), inventory.Options{Now: func() time.Time { return later }})
	fl := expect(us, true, true)
	if !strings.Contains(v2.Counts.Text, fmt.Sprintf("verified long ago %d ", fl.stale)) || fl.stale == 0 {
		t.Errorf("200 days on: counts %q, expected %d verified long ago", v2.Counts.Text, fl.stale)
	}
	v2.Problem.SetSelected(inventory.Stale.Label())
	if v2.Shown() != fl.stale {
		t.Errorf("filter verified long ago: %d rows, expected %d", v2.Shown(), fl.stale)
	}
}

// digest is every user's judgement and keys in one string, to compare two
// loads.
func digest(us []inventory.User) string {
	var b strings.Builder
	for _, u := range us {
		fmt.Fprintf(&b, "%s %v %v %+v\n", u.ExternalID, u.Problems, u.LastVerified.Round(time.Millisecond), u.Coverage)
		for _, k := range u.Keys {
			fmt.Fprintf(&b, "  %s %s %s %v\n", k.Serial, k.Role, k.Status, k.LastVerified.Round(time.Millisecond))
		}
	}
	return b.String()
}

func contains(ss []string, s string) bool {
	for _, x := range ss {
		if x == s {
			return true
		}
	}
	return false
}

// TestInventoryHelpdesk: a helpdesk token reads the inventory with last
// verifications (GET /v1/inventory). Read user by user, as from a registry
// without that endpoint, it may not read the audit log: the screen says so
// and only pending keys count as unverified.
func TestInventoryHelpdesk(t *testing.T) {
	r := startRegistry(t)
	us := plan(14)
	r.seed(us)
	v, _ := loadInventory(t, newEnv(t, r.desk, uikit.Helpdesk), inventory.Options{})
	if v.Shown() != len(us) {
		t.Fatalf("%d rows, seeded %d", v.Shown(), len(us))
	}
	checkCounts(t, v, expect(us, true, false), "unverified keys")
	v, _ = loadInventory(t, newEnv(t, r.desk, uikit.Helpdesk), inventory.Options{PerUser: true})
	checkCounts(t, v, expect(us, false, false), "pending keys")
	if !strings.Contains(v.Status.Text, "only an admin") || v.Banner.Shown() {
		t.Errorf("status %q, banner %v", v.Status.Text, v.Banner.Shown())
	}
}

// TestInventoryRegistryDown stops the registry under a loaded screen: a
// refresh shows the banner with what to do and marks the data stale while
// the rows stay; once the registry is back, Retry loads again.
func TestInventoryRegistryDown(t *testing.T) {
	r := startRegistry(t)
	us := plan(7)
	r.seed(us)
	v, done := loadInventory(t, newEnv(t, r.admin, uikit.Admin), inventory.Options{})
	r.proc.Stop()
	test.Tap(v.Refresh)
	if err := wait(t, done, "the failed refresh"); err == nil {
		t.Fatal("refresh with the registry stopped succeeded")
	}
	if !v.Banner.Shown() || !strings.Contains(v.Banner.Message.Text, "cannot be reached") || !strings.Contains(v.Banner.Message.Text, "Retry") {
		t.Errorf("banner %v %q", v.Banner.Shown(), v.Banner.Message.Text)
	}
	if !strings.HasPrefix(v.Status.Text, "Stale") || v.Shown() != len(us) {
		t.Errorf("status %q with %d rows", v.Status.Text, v.Shown())
	}
	r.restart()
	r.call("POST", "/v1/users", map[string]any{"external_id": "late-joiner", "display_name": "Late Joiner"}, nil)
	test.Tap(v.Banner.Retry)
	if err := wait(t, done, "the retry"); err != nil {
		t.Fatalf("retry: %v", err)
	}
	if v.Banner.Shown() || v.Shown() != len(us)+1 || strings.HasPrefix(v.Status.Text, "Stale") {
		t.Errorf("after retry: banner %v, %d rows, status %q", v.Banner.Shown(), v.Shown(), v.Status.Text)
	}
}

// TestInventoryNoRegistry: with no registry connection at all the screen
// says where to set one and nothing breaks.
func TestInventoryNoRegistry(t *testing.T) {
	env := newEnv(t, nil, uikit.Admin)
	env.Registry = func(context.Context) (*client.Client, error) { return nil, uikit.ErrNoRegistry }
	v := newInventory(env)
	done := make(chan error, 1)
	v.loaded = func(err error) { done <- err }
	v.Load()
	wait(t, done, "the load")
	if !v.Banner.Shown() || !strings.Contains(v.Banner.Message.Text, "Settings") || v.Shown() != 0 {
		t.Errorf("banner %v %q, %d rows", v.Banner.Shown(), v.Banner.Message.Text, v.Shown())
	}
}
