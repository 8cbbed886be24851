package cli

import (
	"bytes"
	"flag"
	"fmt"
	"os"
	"sort"
	"strings"
	"text/tabwriter"

	"github.com/spf13/cobra"

	"github.com/keydesk/keydesk/app/inventory"
	"github.com/keydesk/keydesk/app/migrate"
	"github.com/keydesk/keydesk/registry"
)

const migrateUsage = "migrate needs a subcommand: list | plan FILE.json | show ID | readiness ID [--csv FILE] | dry-run ID | advance ID --to STATE [--percent N] [--resume] | halt ID --reason R | rollback ID --reason R"

// migrateOpts are the flags of the migrate subcommands.
type migrateOpts struct {
	csvPath, to, reason string
	percent             float64
	resume              bool
}

// migrateCmd is "keydesk migrate" (docs/migrations.md).
func migrateCmd(e *env) *cobra.Command {
	var o migrateOpts
	declare := func(fs *flag.FlagSet) {
		fs.StringVar(&o.csvPath, "csv", "", "also write the report as CSV to this file (for outreach)")
		fs.StringVar(&o.to, "to", "", "the state to go to: dry_run, canary, staged, complete")
		fs.Float64Var(&o.percent, "percent", 0, "with --to staged: the percent of the scope (default: the next planned stage)")
		fs.BoolVar(&o.resume, "resume", false, "clear a halt and re-run or continue the halted stage")
		fs.StringVar(&o.reason, "reason", "", "why (kept in the audit log)")
	}
	sub := func(use, short string, flags ...string) *cobra.Command {
		name, _, _ := strings.Cut(use, " ")
		c := &cobra.Command{Use: use, Short: short, RunE: func(_ *cobra.Command, args []string) error { return runMigrate(e, name, o, args) }}
		addFlags(c, declare, flags...)
		return c
	}
	return group(e, "migrate", "key migrations: plan, readiness, dry run, advance, halt, roll back (docs/migrations.md)", migrateUsage,
		sub("list", "every migration and its state"),
		sub("plan FILE.json", "create a migration from a plan file"),
		sub("show ID", "one migration, by id or name"),
		sub("readiness ID", "who is ready and who is not, with the reason", "csv"),
		sub("dry-run ID", "who each stage would move, changing nothing"),
		sub("advance ID", "move to the next state (--to); shows who moves, then asks", "to", "percent", "resume"),
		sub("halt ID", "stop where it is (--reason)", "reason"),
		sub("rollback ID", "go back to the keys before it (--reason)", "reason"),
	)
}

// runMigrate: keydesk migrate SUBCOMMAND (docs/migrations.md). Advance,
// halt and rollback show exactly who they would move, then ask (or take
// --yes).
func runMigrate(e *env, sub string, o migrateOpts, pos []string) error {
	step, err := migrateStep(sub, o, pos)
	if err != nil {
		return err
	}
	var plan migrate.Plan
	if sub == "plan" {
		b, err := readArg("plan", pos[0])
		if err != nil {
			return err
		}
		if plan, err = migrate.LoadPlan(bytes.NewReader(b)); err != nil {
			return err
		}
	}
	conn, _, err := e.openRegistry()
	if err != nil {
		return err
	}
	defer conn.Close()
	svc := migrate.New(conn.Client)
	id := ""
	if sub != "list" && sub != "plan" {
		m, err := svc.Resolve(e.ctx, pos[0])
		if err != nil {
			return err
		}
		id = m.ID
	}
	switch sub {
	case "list":
		return migrateList(e, svc)
	case "plan":
		return migratePlan(e, svc, plan)
	case "show":
		return migrateShow(e, svc, id)
	case "readiness":
		return migrateReadiness(e, svc, id, o.csvPath)
	case "dry-run":
		return migrateDryRun(e, svc, id)
	}
	return migrateAct(e, svc, id, sub, step)
}

// migrateStep checks sub's arguments and flags and returns the step it
// takes (none for the subcommands that only read).
func migrateStep(sub string, o migrateOpts, pos []string) (migrate.Step, error) {
	want := 1
	if sub == "list" {
		want = 0
	}
	if len(pos) != want {
		if want == 0 {
			return migrate.Step{}, usagef("migrate list takes no arguments")
		}
		what := "a migration id or name"
		if sub == "plan" {
			what = "a plan file (JSON)"
		}
		return migrate.Step{}, usagef("migrate %s takes %s\n%s", sub, what, migrateUsage)
	}
	switch sub {
	case "list", "plan", "show", "readiness", "dry-run":
		return migrate.Step{}, nil
	case "advance":
		if r := registry.MigrationState(o.to).Rank(); r <= 0 {
			return migrate.Step{}, usagef("migrate advance needs --to dry_run|canary|staged|complete (rollback is its own subcommand)")
		}
		return migrate.Step{Action: "advance", To: registry.MigrationState(o.to), Percent: o.percent, Resume: o.resume}, nil
	case "halt", "rollback":
		if strings.TrimSpace(o.reason) == "" {
			return migrate.Step{}, usagef("migrate %s needs --reason, kept in the audit log", sub)
		}
		return migrate.Step{Action: sub, Reason: o.reason}, nil
	}
	return migrate.Step{}, usagef("unknown migrate subcommand %q\n%s", sub, migrateUsage)
}

func migrateList(e *env, svc *migrate.Service) error {
	ms, err := svc.List(e.ctx)
	if err != nil {
		return err
	}
	if e.json {
		return e.printJSON(ms)
	}
	if len(ms) == 0 {
		fmt.Fprintln(e.stdout, "no migrations")
		return nil
	}
	tw := tabwriter.NewWriter(e.stdout, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "ID\tNAME\tFROM → TO\tSTATE\tSTAGE\tCUT OVER\tHALTED")
	for _, m := range ms {
		fmt.Fprintf(tw, "%s\t%s\t%s → %s\t%s\t%s\t%d\t%s\n", m.ID, m.Name, m.From, m.To, m.State, m.Stage, m.CutOver, yesNo(m.Halted))
	}
	return tw.Flush()
}

func migratePlan(e *env, svc *migrate.Service, plan migrate.Plan) error {
	m, err := svc.Create(e.ctx, plan)
	if err != nil {
		return err
	}
	if e.json {
		return e.printJSON(m)
	}
	fmt.Fprintf(e.stdout, "planned migration %s %q: %s → %s, state %s\n", m.ID, m.Name, m.From, m.To, m.State)
	fmt.Fprintf(e.stdout, "next: keydesk migrate readiness %s, keydesk migrate dry-run %s, then keydesk migrate advance %s --to dry_run\n", m.ID, m.ID, m.ID)
	return nil
}

func migrateShow(e *env, svc *migrate.Service, id string) error {
	m, err := svc.Get(e.ctx, id)
	if err != nil {
		return err
	}
	if e.json {
		return e.printJSON(m)
	}
	printMigration(e, m)
	return nil
}

func migrateReadiness(e *env, svc *migrate.Service, id, csvPath string) error {
	rd, err := svc.Readiness(e.ctx, id)
	if err != nil {
		return err
	}
	if csvPath != "" {
		f, err := os.OpenFile(csvPath, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
		if err != nil {
			return err
		}
		err = svc.ReadinessCSV(e.ctx, id, f)
		if cerr := f.Close(); err == nil {
			err = cerr
		}
		if err != nil {
			os.Remove(csvPath)
			return err
		}
	}
	if e.json {
		return e.printJSON(rd)
	}
	printReadiness(e, rd)
	if csvPath != "" {
		fmt.Fprintf(e.stdout, "wrote %s to %s\n", count(len(rd.Users), "user", "users"), csvPath)
	}
	return nil
}

func migrateDryRun(e *env, svc *migrate.Service, id string) error {
	d, err := svc.DryRun(e.ctx, id)
	if err != nil {
		return err
	}
	if e.json {
		return e.printJSON(d)
	}
	fmt.Fprintf(e.stdout, "dry run of %s at view version %d (nothing written):\n", d.MigrationID, d.Version)
	for _, st := range d.Stages {
		fmt.Fprintf(e.stdout, "  %-12s %d cut over, %d held back, %d without a valid credential\n", st.Stage, len(st.CutOver), len(st.HeldBack), len(st.LockedOut))
		for _, h := range st.HeldBack {
			fmt.Fprintf(e.stdout, "      held back %s: %s\n", userName(h), strings.Join(h.Reasons, ", "))
		}
	}
	return nil
}

// migrateAct is advance, halt and rollback: it shows who the step would
// move, asks (or takes --yes), then takes it.
func migrateAct(e *env, svc *migrate.Service, id, sub string, step migrate.Step) error {
	p, err := svc.Preview(e.ctx, id, step)
	if err != nil {
		return err
	}
	if !e.json {
		printPreview(e, p)
	}
	if !e.yes {
		ok, err := e.prompt.yesNo("Go ahead? [y/N] ")
		if err != nil {
			return fmt.Errorf("%w (answer on stdin, or pass --yes)", err)
		}
		if !ok {
			return errCanceled
		}
	}
	res, err := svc.Do(e.ctx, id, step)
	if err != nil {
		return err
	}
	if e.json {
		return e.printJSON(res)
	}
	m := res.Migration
	switch sub {
	case "advance":
		fmt.Fprintf(e.stdout, "%s is in %s: %s cut over to %s, %d held back; %d on %s in all\n", m.ID, m.Stage, count(res.CutOver, "user", "users"), m.To, len(res.HeldBack), m.CutOver, m.To)
	case "halt":
		fmt.Fprintf(e.stdout, "%s halted in %s: %s\n", m.ID, m.Stage, m.HaltReason)
	case "rollback":
		fmt.Fprintf(e.stdout, "%s rolled back: %s back on %s\n", m.ID, count(res.Reverted, "user", "users"), m.From)
	}
	return nil
}

func yesNo(b bool) string {
	if b {
		return "yes"
	}
	return "no"
}

func userName(u registry.UserReadiness) string {
	if u.ExternalID != "" {
		return u.ExternalID
	}
	return u.UserID
}

func printMigration(e *env, m registry.Migration) {
	w := e.stdout
	fmt.Fprintf(w, "%s %q: %s → %s\n", m.ID, m.Name, m.From, m.To)
	fmt.Fprintf(w, "  state %s, stage %s, %s on %s\n", m.State, m.Stage, count(m.CutOver, "user", "users"), m.To)
	if m.Halted {
		fmt.Fprintf(w, "  HALTED: %s\n", m.HaltReason)
	}
	fmt.Fprintf(w, "  stages %v then complete; halt threshold %g%% of the current cohort (%d of %d affected)\n", m.Stages, 100*m.Policy.HaltThreshold, m.StageAffected, m.StageCohort)
	fmt.Fprintf(w, "  policy: %s, backup required %v, verified within %s, grace period %d h\n",
		count(m.Policy.MinVerifiedB, "verified new key", "verified new keys"), m.Policy.BackupRequired, count(m.Policy.MaxVerificationAgeDays, "day", "days"), m.Policy.GracePeriodHours)
}

func printReadiness(e *env, rd registry.Readiness) {
	w := e.stdout
	fmt.Fprintf(w, "readiness of %s at view version %d:\n", rd.MigrationID, rd.Version)
	for _, t := range rd.Totals {
		fmt.Fprintf(w, "  %-12s %s: %d ready, %d blocked", t.Cohort, count(t.Users, "user", "users"), t.Ready, t.Blocked)
		var rs []string
		for r, n := range t.Reasons {
			rs = append(rs, fmt.Sprintf("%s %d", r, n))
		}
		sort.Strings(rs)
		if len(rs) > 0 {
			fmt.Fprintf(w, " (%s)", strings.Join(rs, ", "))
		}
		if t.IDPDrift > 0 {
			fmt.Fprintf(w, "; identity provider drift: %s", count(t.IDPDrift, "user", "users"))
		}
		fmt.Fprintln(w)
	}
	// The FIDO Metadata Service's names for the new keys, when the
	// registry holds a BLOB: how many users hold each model.
	models := map[string]int{}
	for _, u := range rd.Users {
		for _, n := range (inventory.Key{FIDO2Models: u.BModels}).ModelNames() {
			models[n]++
		}
	}
	if len(models) > 0 {
		var ms []string
		for n, c := range models {
			ms = append(ms, fmt.Sprintf("%s: %s", n, count(c, "user", "users")))
		}
		sort.Strings(ms)
		fmt.Fprintf(w, "  new keys' FIDO2 models: %s\n", strings.Join(ms, "; "))
	}
	for _, u := range rd.Users {
		if !u.Ready {
			fmt.Fprintf(w, "  blocked %s (%s): %s\n", userName(u), u.Cohort, strings.Join(u.Reasons, ", "))
		}
	}
	for _, u := range rd.Users {
		for _, d := range u.IDPDrift {
			what := d.Detail
			if d.Serial != "" {
				what = "key " + d.Serial + ": " + what
			}
			fmt.Fprintf(w, "  drift %s at %s: %s\n", userName(u), d.Provider, what)
		}
	}
}

// printPreview says exactly who a step would move, before it is confirmed.
func printPreview(e *env, p migrate.Preview) {
	w := e.stdout
	fmt.Fprintln(w, p.Summary())
	list := func(label string, us []registry.UserReadiness, why bool) {
		const most = 50
		for i, u := range us {
			if i == most {
				fmt.Fprintf(w, "  … and %d more (keydesk migrate dry-run / readiness --csv list them all)\n", len(us)-most)
				break
			}
			if why {
				fmt.Fprintf(w, "  %s %s: %s\n", label, userName(u), strings.Join(u.Reasons, ", "))
			} else {
				fmt.Fprintf(w, "  %s %s\n", label, userName(u))
			}
		}
	}
	list("cut over", p.CutOver, false)
	list("held back", p.HeldBack, true)
	list("moved back", p.MovedBack, false)
	for _, u := range p.LockedOut {
		fmt.Fprintf(w, "  WITHOUT A VALID CREDENTIAL %s\n", u)
	}
}
