package cli

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"flag"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/keydesk/keydesk/app/enrol"
	"github.com/keydesk/keydesk/app/idp"
	"github.com/keydesk/keydesk/app/keys"
	"github.com/keydesk/keydesk/app/roster"
	"github.com/keydesk/keydesk/app/settings"
	"github.com/keydesk/keydesk/device"
	"github.com/keydesk/keydesk/device/fidokey"
	"github.com/keydesk/keydesk/device/virtual/sim"
	"github.com/keydesk/keydesk/registry"
	"github.com/keydesk/keydesk/registry/client"
)

type enrolFlags struct {
	user     string
	role     string
	batch    string
	resume   bool
	noBackup bool
	autoIns  bool
	// A new user, created by the enrolment: --name (and --email, --group).
	name, email string
	groups      recipientList
	// regWait is --registry-wait.
	regWait waitFlag
}

var enrolOpts enrolFlags

func enrolFlagSet(e *env, fs *flag.FlagSet) {
	fs.StringVar(&enrolOpts.user, "user", "", "the user to enrol a key for: registry id or external id")
	fs.StringVar(&enrolOpts.role, "role", "", "primary or backup (default: primary if the user has none, else backup)")
	fs.StringVar(&enrolOpts.batch, "batch", "", "enrol everyone in this CSV roster (external_id,display_name,email[,groups][,keys])")
	fs.BoolVar(&enrolOpts.resume, "resume", false, "finish an enrolment that stopped part-way (with --serial), or list unfinished ones")
	fs.BoolVar(&enrolOpts.noBackup, "no-backup", false, "do not offer to enrol the backup key after a user's first key")
	fs.StringVar(&enrolOpts.name, "name", "", "with --user: a user new to the registry, created by this enrolment with this display name")
	fs.StringVar(&enrolOpts.email, "email", "", "with --name: the new user's email")
	fs.Var(&enrolOpts.groups, "group", "with --name: a group of the new user; repeatable")
	fs.BoolVar(&enrolOpts.autoIns, "auto-insert", false, "practice mode: when a fresh key is needed, keydesk-sim swaps an enrolled key for a factory-fresh one")
	fs.Var(&e.wait, "wait", waitUsage)
	fs.Var(&enrolOpts.regWait, "registry-wait", "how long to wait for a registry that cannot be reached, per key (per user with --batch; also with --resume), like 45s or 2m; 0 does not wait (default 30s)")
}

// registryWait is --registry-wait as enrol.Config.RegistryWait: unset is
// the default, 0 does not wait.
func (o enrolFlags) registryWait() time.Duration {
	switch {
	case !o.regWait.set:
		return 0
	case o.regWait.d == 0:
		return -1
	}
	return o.regWait.d
}

const waitUsage = "how long to wait for a key to be inserted, like 45s or 2m; 0 waits until Ctrl+C (default: until Ctrl+C when stdin is a terminal, else 30s)"

// defaultScriptWait is how long a command waits for a key when stdin is not
// a terminal and --wait is not given: a script gets an answer, not a hang.
const defaultScriptWait = 30 * time.Second

// waitFlag is --wait: a duration, and whether it was given.
type waitFlag struct {
	d   time.Duration
	set bool
}

func (w *waitFlag) String() string {
	if w == nil || !w.set {
		return ""
	}
	return w.d.String()
}

func (w *waitFlag) Set(s string) error {
	d, err := time.ParseDuration(s)
	if s == "0" {
		d, err = 0, nil
	}
	if err != nil || d < 0 {
		return fmt.Errorf("%q is not a duration like 45s or 2m", s)
	}
	w.d, w.set = d, true
	return nil
}

// insertWait is how long to wait for a key to be inserted: --wait, else
// without limit at a terminal (a person is there to press Ctrl+C) and
// defaultScriptWait otherwise.
func (e *env) insertWait() time.Duration {
	switch {
	case e.wait.set:
		return e.wait.d
	case e.prompt.tty:
		return 0
	}
	return defaultScriptWait
}

// runEnrol enrols one key for a user (then offers the backup), a whole
// roster with --batch, or finishes an interrupted enrolment with --resume.
// PINs are read from the terminal with echo off, or one per line from stdin.
func runEnrol(e *env, _ *flag.FlagSet, args []string) error {
	o := enrolOpts
	if len(args) > 0 {
		return usagef("enrol takes no arguments (use --user or --batch)")
	}
	role, err := enrolRole(o)
	if err != nil {
		return err
	}
	ros, batchID, err := readRoster(o.batch)
	if err != nil {
		return err
	}
	s, err := e.enrolSettings()
	if err != nil {
		return err
	}
	conn, err := e.registry(s)
	if err != nil {
		return err
	}
	defer conn.Close()
	// Enrolment needs each key's FIDO interface merged with its PC/SC one,
	// so discovery reads FIDO serials (device/fidokey Info).
	svc, err := keys.New(keys.Config{Practice: e.practice, SimDir: e.simDir, FIDOInfo: func(ctx context.Context, path string) (uint32, device.Version, bool, error) {
		return fidokey.Open(path).Info(ctx)
	}})
	if err != nil {
		return err
	}
	prov, err := deskIDP(s, conn)
	if err != nil {
		return err
	}
	en, err := enrol.New(enrol.Config{Settings: s, Keys: svc, Registry: conn.Client, InsertWait: e.insertWait(), RegistryWait: o.registryWait(), IDP: prov})
	if err != nil {
		prov.Close()
		return err
	}
	if prov != nil && !e.json {
		fmt.Fprintf(e.stderr, "Each key is also registered with: %s\n", strings.Join(prov.Providers(), ", "))
	}
	defer en.Close()
	if o.autoIns && !e.practice {
		return usagef("--auto-insert works only in practice mode")
	}
	ui := e.enrolUI(o, en)

	switch {
	case o.batch != "":
		return enrolBatch(e, en, ros, batchID, ui)
	case o.resume:
		return enrolResume(e, en, ui)
	}
	return enrolOne(e, en, o, role, ui)
}

// enrolSettings loads the desk's settings for enrolment: practice mode as
// they say, the practice helpdesk identity on a practice desk that names
// no recipient (app/helpdeskid), and ready to enrol.
func (e *env) enrolSettings() (settings.Settings, error) {
	s, _, err := e.settings()
	if err != nil {
		return s, err
	}
	e.practice = s.Practice
	if s, _, err = e.helpdesk(s); err != nil {
		return s, err
	}
	return s, s.ReadyToEnrol()
}

// enrolRole checks that exactly one of --user, --batch and --resume is
// given, and returns --role.
func enrolRole(o enrolFlags) (registry.KeyRole, error) {
	modes := 0
	for _, on := range []bool{o.user != "", o.batch != "", o.resume} {
		if on {
			modes++
		}
	}
	if modes != 1 {
		return "", usagef("enrol needs exactly one of --user ID, --batch FILE or --resume")
	}
	switch o.role {
	case "", "primary", "backup":
		return registry.KeyRole(o.role), nil
	}
	return "", usagef("--role must be primary or backup")
}

// readRoster reads --batch's roster and names the batch by its content.
func readRoster(path string) (*roster.Roster, string, error) {
	if path == "" {
		return nil, "", nil
	}
	b, err := readArg("roster", path)
	if err != nil {
		return nil, "", err
	}
	ros, err := roster.Parse(strings.NewReader(string(b)))
	if err != nil {
		return nil, "", err
	}
	sum := sha256.Sum256(b)
	return ros, hex.EncodeToString(sum[:8]), nil
}

// enrolBatch is enrol --batch.
func enrolBatch(e *env, en *enrol.Enroller, ros *roster.Roster, batchID string, ui enrol.UI) error {
	rep, err := en.Batch(e.ctx, ros, batchID, ui)
	if rep != nil {
		e.printBatch(rep)
	}
	if err != nil {
		return err
	}
	if rep.Failed > 0 || len(rep.RowErrors) > 0 {
		return errBatchIncomplete{failed: rep.Failed, rows: len(rep.RowErrors)}
	}
	return nil
}

// enrolResume is enrol --resume: the unfinished enrolments, or with
// --serial the one to finish.
func enrolResume(e *env, en *enrol.Enroller, ui enrol.UI) error {
	if e.serial == 0 {
		recs, err := en.Unfinished(e.ctx)
		if err != nil {
			return err
		}
		if e.json {
			return e.printJSON(recView(recs))
		}
		if len(recs) == 0 {
			fmt.Fprintln(e.stdout, "no unfinished enrolments")
		}
		for _, r := range recs {
			fmt.Fprintf(e.stdout, "key %d for %s: stopped at %s: %s\n", r.Serial, r.ExternalID, r.Stage, r.Error)
		}
		return nil
	}
	// The registry is waited for (--registry-wait) as in enrol --user;
	// the PINs are asked for once.
	res, err := en.ResumeWaiting(e.ctx, uint32(e.serial), ui)
	if err != nil {
		return err
	}
	return e.printResults([]*enrol.Result{res})
}

// enrolOne is enrol --user: one key for the user, then the backup offer.
func enrolOne(e *env, en *enrol.Enroller, o enrolFlags, role registry.KeyRole, ui enrol.UI) error {
	if o.name == "" && (o.email != "" || len(o.groups) > 0) {
		return usagef("--email and --group describe a new user: give --name too")
	}
	// A registry that cannot be reached is waited for (--registry-wait),
	// as in a batch; when it stays away the enrolment stops with the
	// command that finishes it.
	req := enrol.Request{User: client.EnrolUser{ExternalID: o.user}, Serial: uint32(e.serial), Role: role, WaitRegistry: true}
	if o.name != "" {
		// An existing user keeps their registry record; these only fill a
		// new one.
		req.CreateUser = true
		req.User.DisplayName, req.User.Email, req.User.Groups = o.name, o.email, o.groups
	}
	res, err := en.EnrolUser(e.ctx, req, ui)
	if errors.Is(err, enrol.ErrNoSuchUser) {
		err = hinted{err, fmt.Sprintf("Check the id, or create the user with this enrolment: keydesk enrol --user %s --name \"Display Name\" [--email ADDRESS]", o.user)}
	}
	if len(res) > 0 {
		if perr := e.printResults(res); perr != nil {
			return perr
		}
	}
	return err
}

// errBatchIncomplete: the batch ran but not every row or user succeeded.
type errBatchIncomplete struct{ failed, rows int }

func (e errBatchIncomplete) Error() string {
	return fmt.Sprintf("batch incomplete: %s not fully enrolled, %s; fix them and run the same batch again (finished users are skipped)", count(e.failed, "user", "users"), count(e.rows, "bad roster row", "bad roster rows"))
}

type recordView struct {
	Serial     uint32 `json:"serial"`
	ExternalID string `json:"external_id"`
	Stage      string `json:"stage"`
	Error      string `json:"error,omitempty"`
}

func recView(rs []*enrol.Record) []recordView {
	out := []recordView{}
	for _, r := range rs {
		out = append(out, recordView{Serial: r.Serial, ExternalID: r.ExternalID, Stage: string(r.Stage), Error: r.Error})
	}
	return out
}

func (e *env) printResults(rs []*enrol.Result) error {
	if e.json {
		return e.printJSON(rs)
	}
	for _, r := range rs {
		cov := "not covered yet (missing " + strings.Join(r.Missing, ", ") + ")"
		if r.Covered {
			cov = "covered (primary and backup active)"
		}
		fmt.Fprintf(e.stdout, "key %d enrolled for %s (%s) as %s: %s; %s\n", r.Serial, r.DisplayName, r.ExternalID, r.Role, r.Status, cov)
		if r.CSRPath != "" {
			fmt.Fprintf(e.stdout, "  certificate request for the CA: %s\n", r.CSRPath)
		}
		if r.Status == registry.KeyActive {
			fmt.Fprintf(e.stdout, "  proofs verified by the registry: %s\n", proofs(r))
		}
		switch r.PINChange {
		case enrol.PINChangeForced:
			fmt.Fprintln(e.stdout, "  the key demands a new FIDO2 PIN at first use (PIN-change policy)")
		case enrol.PINChangeUnsupported:
			fmt.Fprintln(e.stdout, "  the key cannot be made to demand a new FIDO2 PIN (PIN-change policy not supported by its firmware)")
		}
		for _, n := range r.NotRedone {
			fmt.Fprintf(e.stdout, "  resumed, not done again: %s\n", n)
		}
		for _, p := range r.Providers {
			fmt.Fprintf(e.stdout, "  identity provider %s: %s\n", p.Provider, providerState(p))
		}
	}
	return nil
}

// proofs names the proofs the registry verified for an enrolled key.
func proofs(r *enrol.Result) string {
	var p []string
	if r.PIVProof {
		p = append(p, "PIV signature (9a, with the PIV PIN)")
	}
	if r.FIDO2Proof {
		p = append(p, "FIDO2 assertion")
	}
	if len(p) == 0 {
		return "none recorded on this desk"
	}
	return strings.Join(p, " and ")
}

// providerState is an identity provider's outcome in words.
func providerState(p idp.Outcome) string {
	line := string(p.State)
	if p.Queued {
		line += " (queued: keydesk idp sync replays it)"
	}
	if p.Hint != "" {
		line += ": " + p.Hint
	} else if p.Error != "" {
		line += ": " + p.Error
	}
	return line
}

func (e *env) printBatch(rep *enrol.BatchReport) {
	if e.json {
		e.printJSON(rep)
		return
	}
	for _, re := range rep.RowErrors {
		fmt.Fprintf(e.stdout, "roster %s: row skipped\n", re)
	}
	for _, u := range rep.Users {
		fmt.Fprintln(e.stdout, u.Describe())
		if u.Hint != "" {
			fmt.Fprintln(e.stdout, "  "+u.Hint)
		}
		for _, k := range u.Keys {
			for _, p := range k.Providers {
				fmt.Fprintf(e.stdout, "  key %d at %s: %s\n", k.Serial, p.Provider, providerState(p))
			}
		}
	}
	fmt.Fprintf(e.stdout, "%s enrolled, %s incomplete, %s\n", count(rep.Enrolled, "key", "keys"), count(rep.Failed, "user", "users"), count(len(rep.RowErrors), "bad row", "bad rows"))
}

// enrolUI is the terminal's face of enrolment: progress and prompts on
// stderr, PINs read with echo off (or from stdin lines).
func (e *env) enrolUI(o enrolFlags, en *enrol.Enroller) enrol.UI {
	return enrol.UI{
		Progress: func(ev enrol.Event) {
			if ev.Total > 0 {
				fmt.Fprintf(e.stderr, "%s %s\n", bar(ev.Done, ev.Total), describeEvent(ev))
				return
			}
			fmt.Fprintln(e.stderr, describeEvent(ev))
		},
		NewPIN: func(_ context.Context, r enrol.PINRequest) (string, error) {
			if r.Problem != "" {
				fmt.Fprintf(e.stderr, "%s\n", r.Problem)
			}
			return e.prompt.newSecret(fmt.Sprintf("New %s for %s on key %d (%d-%d characters)", r.Kind, r.User, r.Serial, r.MinLength, r.MaxLength))
		},
		PIN: func(_ context.Context, r enrol.PINRequest) (string, error) {
			return e.prompt.secret(fmt.Sprintf("%s of key %d", r.Kind, r.Serial))
		},
		Touch: func(_ context.Context, serial uint32) {
			fmt.Fprintf(e.stderr, "Touch key %d now (its light is blinking).\n", serial)
		},
		InsertKey: func(_ context.Context, r enrol.InsertRequest) error {
			fmt.Fprintf(e.stderr, "Insert %s.\n", insertWhat(r))
			if o.autoIns {
				return e.practiceSwap(en)
			}
			return nil
		},
		Confirm: func(_ context.Context, q string) (bool, error) {
			if o.noBackup {
				return false, nil
			}
			if e.yes {
				fmt.Fprintln(e.stderr, q+" yes (--yes)")
				return true, nil
			}
			ok, err := e.prompt.yesNo(q + " [y/N] ")
			if errors.Is(err, errNoInput) {
				return false, nil
			}
			return ok, err
		},
	}
}

// insertWhat names the key an insert request asks for, and how long it
// is waited for.
func insertWhat(r enrol.InsertRequest) string {
	what := "a factory-fresh key"
	if r.Serial != 0 {
		what = fmt.Sprintf("key %d", r.Serial)
	}
	if r.Role != "" {
		what += " as " + string(r.Role)
	}
	if r.Of > 0 {
		what += fmt.Sprintf(" (key %d of %d)", r.Index, r.Of)
	}
	limit := "Ctrl+C to stop"
	if r.Wait > 0 {
		limit = fmt.Sprintf("waiting up to %s; --wait sets how long", r.Wait)
	}
	if r.User != "" {
		what += " for " + r.User
	}
	return fmt.Sprintf("%s (%s)", what, limit)
}

func bar(done, total int) string {
	const w = 20
	n := 0
	if total > 0 {
		n = done * w / total
	}
	return fmt.Sprintf("[%s%s] %d/%d", strings.Repeat("#", n), strings.Repeat(".", w-n), done, total)
}

func describeEvent(ev enrol.Event) string {
	switch ev.Step {
	case enrol.StepBatchUser:
		return fmt.Sprintf("%s (%s)", ev.User, ev.Detail)
	case enrol.StepUser:
		return fmt.Sprintf("%s: looking up the user", ev.User)
	case enrol.StepRegistryWait:
		return fmt.Sprintf("%s: %s", ev.User, ev.Detail)
	}
	s := fmt.Sprintf("%s: key %d: %s", ev.User, ev.Serial, ev.Step)
	if ev.Detail != "" {
		s += " (" + ev.Detail + ")"
	}
	return s
}

// practiceSwap has keydesk-sim pull one virtual key whose enrolment is
// finished and plug in a factory-fresh one in its reader: the admin's hands,
// in practice mode.
func (e *env) practiceSwap(en *enrol.Enroller) error {
	list, err := sim.Control(e.simDir, "list")
	if err != nil {
		return err
	}
	for _, l := range strings.Split(list, "\n") {
		f := strings.Fields(l)
		if len(f) < 2 || f[1] != "inserted" {
			continue
		}
		n, err := strconv.ParseUint(f[0], 10, 32)
		if err != nil {
			continue
		}
		if done, err := en.Finished(e.ctx, uint32(n)); err != nil || !done {
			continue
		}
		reply, err := sim.Control(e.simDir, "replace "+f[0])
		if err != nil {
			return err
		}
		if !strings.HasPrefix(reply, "ok:") {
			return fmt.Errorf("keydesk-sim: %s", strings.TrimSpace(reply))
		}
		fmt.Fprintf(e.stderr, "practice: keydesk-sim %s", strings.TrimPrefix(reply, "ok: "))
		return nil
	}
	return errors.New("practice: no enrolled virtual key to swap for a fresh one")
}

// hinted is an error with a next step for the person at the terminal.
type hinted struct {
	err  error
	hint string
}

func (h hinted) Error() string { return h.err.Error() }
func (h hinted) Unwrap() error { return h.err }
func (h hinted) Hint() string  { return h.hint }

// reworded says what happened in plain words instead of err's own text
// (which may be the registry's API wording), with a next step; errors.Is
// and errors.As still see err, so the exit code is err's.
type reworded struct {
	msg, hint string
	err       error
}

func (r reworded) Error() string { return r.msg }
func (r reworded) Unwrap() error { return r.err }
func (r reworded) Hint() string  { return r.hint }
