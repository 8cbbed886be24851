package cli

import (
	"errors"
	"flag"
	"fmt"
	"os"
	"strings"
	"time"

	"github.com/keydesk/keydesk/app/activity"
	"github.com/keydesk/keydesk/app/inventory"
	"github.com/keydesk/keydesk/registry"
	"github.com/keydesk/keydesk/registry/client"
)

func inventoryFlags(_ *env, fs *flag.FlagSet) {
	fs.String("search", "", "only users whose name, email, external id or key serial holds this text")
	fs.String("group", "", "only users in this group")
	fs.String("status", "", "only users holding a key in this status (active, pending, suspended, lost, revoked, retired)")
	fs.String("role", "", "only users holding a key in this role (primary, backup); with --status, the same key")
	fs.String("problem", "", "only users with one of these problems, comma-separated: no-backup, no-primary, no-active, unverified, stale, idp-drift, any (exit 7 when someone has one)")
	fs.String("csv", "", "also write the users shown to this file as CSV (the Inventory screen's export)")
	fs.String("stale-after", "180d", "how old a last verification may be before it counts as stale (like 90d or 36h)")
}

// problemFlagNames are --problem's words; the package's own names
// (inventory.Problem.String) are accepted too.
var problemFlagNames = map[string]inventory.Problem{
	"no-backup":  inventory.NoBackup,
	"no-primary": inventory.NoPrimary,
	"no-active":  inventory.NoActive,
	"unverified": inventory.Unverified,
	"stale":      inventory.Stale,
	"idp-drift":  inventory.IDPDrift,
}

// parseProblems reads --problem: one or more problem names, or "any".
func parseProblems(s string) (inventory.Problem, error) {
	var p inventory.Problem
	for _, w := range strings.Split(s, ",") {
		w = strings.ToLower(strings.TrimSpace(w))
		if w == "" {
			continue
		}
		if w == "any" {
			for _, q := range inventory.Problems {
				p |= q
			}
			continue
		}
		q, ok := problemFlagNames[w]
		if !ok {
			for _, r := range inventory.Problems {
				if r.String() == w {
					q, ok = r, true
				}
			}
		}
		if !ok {
			return 0, usagef("--problem %q: use no-backup, no-primary, no-active, unverified, stale, idp-drift or any", w)
		}
		p |= q
	}
	return p, nil
}

// inventoryFilter reads the filter flags into app/inventory's Filter.
func inventoryFilter(fs *flag.FlagSet) (inventory.Filter, error) {
	f := inventory.Filter{Text: flagValue(fs, "search"), Group: strings.TrimSpace(flagValue(fs, "group"))}
	if s := strings.TrimSpace(flagValue(fs, "status")); s != "" {
		f.KeyStatus = registry.KeyStatus(s)
		if !f.KeyStatus.Valid() {
			return f, usagef("--status %q: use active, pending, suspended, lost, revoked or retired", s)
		}
	}
	switch r := registry.KeyRole(strings.TrimSpace(flagValue(fs, "role"))); r {
	case "", registry.RolePrimary, registry.RoleBackup:
		f.KeyRole = r
	default:
		return f, usagef("--role %q: use primary or backup", r)
	}
	p, err := parseProblems(flagValue(fs, "problem"))
	if err != nil {
		return f, err
	}
	f.Problems = p
	return f, nil
}

func flagValue(fs *flag.FlagSet, name string) string { return fs.Lookup(name).Value.String() }

// runInventory: keydesk inventory [filters] [--csv FILE] [--json]. The
// registry's users with their keys and coverage, filtered as on the desktop
// app's Inventory screen, with the counts at the end. With --problem it is
// a check: exit 7 when anyone has one of the problems named.
func runInventory(e *env, fs *flag.FlagSet, args []string) error {
	if len(args) > 0 {
		return usagef("inventory takes no arguments; filter with --search, --group, --status, --role and --problem")
	}
	f, err := inventoryFilter(fs)
	if err != nil {
		return err
	}
	stale, err := activity.ParseSpan(flagValue(fs, "stale-after"))
	if err != nil {
		return usagef("--stale-after: %v", err)
	}
	csvPath := flagValue(fs, "csv")
	conn, _, err := e.openRegistry()
	if err != nil {
		return err
	}
	defer conn.Close()
	inv, err := inventory.Load(e.ctx, conn.Client, inventory.Options{StaleAfter: stale}, nil)
	var ae *client.APIError
	switch {
	case errors.As(err, &ae) && ae.Status == 403:
		return hinted{err: err, hint: "The inventory is open to admin and helpdesk tokens: ask one of them, or store such a token with: keydesk login"}
	case err != nil:
		return reachable(conn.URL, err)
	}
	inventory.SortByName(inv.Users)
	shown := f.Select(inv.Users)
	sum := inventory.Summarise(inv.Users)
	if csvPath != "" {
		if err := writeInventoryCSV(csvPath, inv.Users, shown); err != nil {
			return err
		}
	}
	if e.json {
		out := inventoryJSON{Registry: conn.URL, At: inv.At, Verifications: inv.Verifications, Summary: summaryJSON(sum), Shown: len(shown), Users: []userJSON{}}
		for _, i := range shown {
			out.Users = append(out.Users, viewUser(&inv.Users[i]))
		}
		if err := e.printJSON(out); err != nil {
			return err
		}
	} else {
		now := time.Now()
		for _, i := range shown {
			printInventoryUser(e, &inv.Users[i], inv.Verifications, now)
		}
		fmt.Fprintln(e.stdout, countsLine(sum, inv.Verifications, len(shown)))
		if !inv.Verifications {
			fmt.Fprintln(e.stdout, "Last verifications come from the audit log, which only an admin token may read.")
		}
	}
	if csvPath != "" && !e.json {
		fmt.Fprintf(e.stderr, "wrote %s to %s\n", count(len(shown), "user", "users"), csvPath)
	}
	if f.Problems != 0 && len(shown) > 0 {
		return problemsFound{n: len(shown), what: problemWords(f.Problems)}
	}
	return nil
}

// problemsFound: inventory --problem matched someone (exit 7).
type problemsFound struct {
	n    int
	what string
}

func (p problemsFound) Error() string {
	return fmt.Sprintf("%s with %s", count(p.n, "user", "users"), p.what)
}
func (p problemsFound) Is(target error) bool { return target == errChecksFailed }

func problemWords(p inventory.Problem) string {
	var w []string
	if n := len(inventory.Problems); p == 1<<n-1 {
		return "a problem"
	}
	for _, q := range inventory.Problems {
		if p&q != 0 {
			w = append(w, q.Label())
		}
	}
	return strings.Join(w, " or ")
}

// writeInventoryCSV writes the users at idx as the Inventory screen's
// export does; a failed write leaves no file behind.
func writeInventoryCSV(path string, us []inventory.User, idx []int) error {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return fmt.Errorf("writing the CSV: %w", err)
	}
	err = inventory.WriteCSV(f, us, idx)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		os.Remove(path)
		return fmt.Errorf("writing %s: %w", path, err)
	}
	return nil
}

func printInventoryUser(e *env, u *inventory.User, verified bool, now time.Time) {
	name := u.DisplayName
	if name == "" {
		name = u.ExternalID
	}
	line := fmt.Sprintf("%s (%s)", name, u.ExternalID)
	if u.Email != "" {
		line += " <" + u.Email + ">"
	}
	if len(u.Groups) > 0 {
		line += " [" + strings.Join(u.Groups, ", ") + "]"
	}
	fmt.Fprintf(e.stdout, "%s: %s; last verified %s\n", line, u.Standing(), inventory.Ago(u.LastVerified, now))
	for _, k := range u.Keys {
		last := "last verified " + inventory.Ago(k.LastVerified, now)
		switch {
		case k.LastVerified.IsZero() && !verified:
			last = "last verification: admin only"
		case k.LastVerified.IsZero():
			last = "never verified"
		default:
			last += " (" + k.LastVerified.UTC().Format("2006-01-02 15:04 UTC") + ")"
		}
		model := k.Model
		if model == "" {
			model = "key"
		}
		if names := k.ModelNames(); len(names) > 0 {
			last += "; FIDO2: " + strings.Join(names, ", ")
		}
		fmt.Fprintf(e.stdout, "    %-10s %-8s %-9s %s, %s\n", k.Serial, k.Role, k.Status, model, last)
	}
	for _, d := range u.Drift {
		what := d.Detail
		if d.Serial != "" {
			what = "key " + d.Serial + ": " + what
		}
		if d.MethodID != "" {
			what += " (method " + d.MethodID + ")"
		}
		fmt.Fprintf(e.stdout, "    drift at %s: %s\n", d.Provider, what)
	}
}

// countsLine is the Inventory screen's counts, for everyone loaded, and
// how many users the filters show.
func countsLine(s inventory.Summary, verified bool, shown int) string {
	unver := fmt.Sprintf("unverified %d", s.Unverified)
	stale := fmt.Sprintf("verified long ago %d", s.Stale)
	if !verified {
		unver = fmt.Sprintf("pending keys %d", s.Unverified)
		stale = "verified long ago: admin only"
	}
	if s.IDPDrift > 0 {
		stale += fmt.Sprintf(", identity provider drift %d", s.IDPDrift)
	}
	return fmt.Sprintf("users %d (active %d), keys %d (active %d), covered %d, no backup %d, no primary %d, no active key %d, %s, %s; showing %d",
		s.Users, s.ActiveUsers, s.Keys, s.ActiveKeys, s.Covered, s.NoBackup, s.NoPrimary, s.NoActive, unver, stale, shown)
}

// inventoryJSON is inventory --json.
type inventoryJSON struct {
	Registry string    `json:"registry"`
	At       time.Time `json:"at"`
	// Verifications: last verifications were readable (see
	// inventory.Inventory).
	Verifications bool        `json:"verifications"`
	Summary       summaryJSON `json:"summary"`
	Shown         int         `json:"shown"`
	Users         []userJSON  `json:"users"`
}

// summaryJSON is inventory.Summary with the names scripts read.
type summaryJSON struct {
	Users       int `json:"users"`
	ActiveUsers int `json:"active_users"`
	Keys        int `json:"keys"`
	ActiveKeys  int `json:"active_keys"`
	Covered     int `json:"covered"`
	NoActive    int `json:"no_active_key"`
	NoPrimary   int `json:"no_primary"`
	NoBackup    int `json:"no_backup"`
	Unverified  int `json:"unverified"`
	Stale       int `json:"stale_verification"`
	IDPDrift    int `json:"idp_drift"`
}

type keyJSON struct {
	registry.Key
	LastVerified *time.Time `json:"last_verified,omitempty"`
	// FIDO2Models: the FIDO Metadata Service's names for the key's FIDO2
	// credentials, when the registry holds a BLOB.
	FIDO2Models []registry.FIDOModel `json:"fido2_models,omitempty"`
}

type userJSON struct {
	registry.User
	Keys         []keyJSON  `json:"keys"`
	ActiveKeys   int        `json:"active_keys"`
	Covered      bool       `json:"covered"`
	Missing      []string   `json:"missing"`
	Problems     []string   `json:"problems"`
	LastVerified *time.Time `json:"last_verified,omitempty"`
	// IDPDrift: where an identity provider and the registry disagree.
	IDPDrift []registry.IDPDrift `json:"idp_drift,omitempty"`
}

func viewUser(u *inventory.User) userJSON {
	v := userJSON{User: u.User, Keys: []keyJSON{}, ActiveKeys: u.Coverage.ActiveKeys, Covered: u.Coverage.Covered,
		Missing: append([]string{}, u.Coverage.Missing...), Problems: []string{}, LastVerified: timePtr(u.LastVerified), IDPDrift: u.Drift}
	for _, k := range u.Keys {
		v.Keys = append(v.Keys, keyJSON{Key: k.Key, LastVerified: timePtr(k.LastVerified), FIDO2Models: k.FIDO2Models})
	}
	for _, p := range inventory.Problems {
		if u.Problems&p != 0 {
			v.Problems = append(v.Problems, p.String())
		}
	}
	return v
}

func timePtr(t time.Time) *time.Time {
	if t.IsZero() {
		return nil
	}
	return &t
}

// reachable explains a registry that did not answer: what happened, in
// plain words, and what to do next. Other errors pass through.
func reachable(url string, err error) error {
	if err == nil || !errors.Is(err, errUnreachable) {
		return err
	}
	return unreachableError{url: url, err: err}
}
