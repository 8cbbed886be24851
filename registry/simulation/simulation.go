// Package simulation runs a key migration end to end against a real
// registry store: it creates synthetic users, each with a key in the old
// set and a key in the new set (a share of the new keys broken), runs a
// migration through canary, staged and complete while playing an auth
// server that reports every failed sign-in, and measures what users went
// through: who was cut over or held back, whether anyone was ever left
// without a valid credential, when the halt fired, and how long rollback
// took.
package simulation

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"strconv"
	"time"

	"github.com/keydesk/keydesk/registry"
	"github.com/keydesk/keydesk/registry/store/sqlstore"
)

// Options configure Run.
type Options struct {
	Users  int     // synthetic users (default 1,000)
	Broken float64 // share of users whose new key fails every sign-in (default 0.03)
	NoBKey float64 // share of users who never received a new key (default 0)
	// Canary is the canary's percent of users (default 1); Stages the
	// staged percentages before complete (default 10, 50).
	Canary float64
	Stages []float64
	// Threshold is the halt threshold, a share of the stage's cohort
	// (default 0.01).
	Threshold float64
	Seed      uint64
	From, To  string // key set names (default legacy-2024, yk5-2026)
	// Progress, when set, is told what the simulation is doing.
	Progress func(msg string)
}

// Stage is what one step of the migration did.
type Stage struct {
	Plan      int    `json:"plan"` // 1: first attempt; 2: after the halt and the desk's verification sweep
	Stage     string `json:"stage"`
	CutOver   int    `json:"cut_over"`
	HeldBack  int    `json:"held_back"`
	Signals   int    `json:"failure_reports"`
	Cohort    int    `json:"cohort"`
	Halted    bool   `json:"halted"`
	Affected  int    `json:"affected"`
	LockedOut int    `json:"locked_out"` // most users without a valid credential at any version checked in this stage
	Versions  int    `json:"versions_checked"`
	// AdvanceTime is how long the cut-over change set took.
	AdvanceTime time.Duration `json:"advance_time"`
}

// Report is the outcome of a simulation.
type Report struct {
	Users, Broken, NoBKey int
	Threshold             float64 // the plan's halt threshold
	SetupTime             time.Duration
	DryRunHeldBack        []int // per stage of the first plan's dry run
	DryRunLockedOut       int
	Stages                []Stage
	HaltFired             bool
	HaltStage             string
	HaltAfterReports      int
	HaltCohort            int
	HaltShare             float64 // affected share of the cohort when the halt fired
	SweepFailed           int     // new keys the verification sweep found failing
	RollbackUsers         int
	RollbackTime          time.Duration
	RollbackVersions      [2]int64 // the view's version before and after the rollback
	RollbackRestored      bool     // the view after rollback equals the view before the migration
	MaxLockedOut          int      // over every version checked; must be 0
	VersionsChecked       int
}

type user struct {
	id, bKey string
	bCred    string
	broken   bool
}

type sim struct {
	ctx   context.Context
	st    *sqlstore.Store
	opt   Options
	rep   *Report
	users []user
	byID  map[string]*user
}

// Run simulates on st, which must hold no users.
func Run(ctx context.Context, st *sqlstore.Store, opt Options) (*Report, error) {
	if opt.Users == 0 {
		opt.Users = 1000
	}
	if opt.Broken == 0 {
		opt.Broken = 0.03
	}
	if opt.Canary == 0 {
		opt.Canary = 1
	}
	if opt.Stages == nil {
		opt.Stages = []float64{10, 50}
	}
	if opt.Threshold == 0 {
		opt.Threshold = 0.01
	}
	if opt.From == "" {
		opt.From, opt.To = "legacy-2024", "yk5-2026"
	}
	if opt.Progress == nil {
		opt.Progress = func(string) {}
	}
	if opt.Users < 1 || opt.Broken < 0 || opt.Broken > 1 || opt.NoBKey < 0 || opt.NoBKey+opt.Broken > 1 {
		return nil, errors.New("simulation: users must be positive and broken + no-b-key shares within 0-1")
	}
	if us, err := st.ListUsers(ctx, "", 1); err != nil {
		return nil, err
	} else if len(us) > 0 {
		return nil, errors.New("simulation: the store already holds users; simulate on an empty database")
	}
	s := &sim{ctx: ctx, st: st, opt: opt, rep: &Report{Users: opt.Users, Threshold: opt.Threshold}, byID: map[string]*user{}}
	t0 := time.Now()
	if err := s.setup(); err != nil {
		return nil, err
	}
	s.rep.SetupTime = time.Since(t0)
	if err := s.run(); err != nil {
		return s.rep, err
	}
	return s.rep, nil
}

func (s *sim) write(actor string, fn func(*sqlstore.Tx) error) error {
	_, _, err := s.st.Write(s.ctx, actor, nil, func(tx *sqlstore.Tx) (sqlstore.Result, error) { return sqlstore.Result{}, fn(tx) })
	return err
}

var pub = make([]byte, 77) // stands in for a public key: the simulation verifies nothing cryptographically

// setup creates the key sets and the users: each an active old-set key with
// a FIDO2 credential and a PIV slot, and (unless NoBKey picks them) an
// active new-set key with a FIDO2 credential that passed a verification.
func (s *sim) setup() error {
	if err := s.write("simulate", func(tx *sqlstore.Tx) error {
		if err := tx.CreateKeySet(&registry.KeySet{Name: s.opt.From, Description: "simulated old keys"}); err != nil {
			return err
		}
		return tx.CreateKeySet(&registry.KeySet{Name: s.opt.To, Description: "simulated new keys"})
	}); err != nil {
		return err
	}
	rng := rand.New(rand.NewPCG(s.opt.Seed, 1))
	noB := int(float64(s.opt.Users)*s.opt.NoBKey + 0.5)
	skip := map[int]bool{}
	for _, i := range rng.Perm(s.opt.Users)[:noB] {
		skip[i] = true
	}
	s.rep.NoBKey = noB
	s.users = make([]user, s.opt.Users)
	const batch = 1000
	for off := 0; off < s.opt.Users; off += batch {
		if err := s.write("simulate", func(tx *sqlstore.Tx) error {
			for i := off; i < min(off+batch, s.opt.Users); i++ {
				n := strconv.Itoa(i)
				u := registry.User{ExternalID: "sim-" + n, DisplayName: "Simulated " + n, Email: "sim-" + n + "@example.org"}
				if err := tx.CreateUser(&u); err != nil {
					return err
				}
				a := registry.Key{Serial: "A" + n, OwnerID: u.ID, Status: registry.KeyActive, KeySets: []string{s.opt.From}}
				if err := tx.CreateKey(&a); err != nil {
					return err
				}
				if err := tx.AddFIDOCredential(&registry.FIDOCredential{KeyID: a.ID, CredentialID: []byte("A" + n), RPID: "example.org", PublicKey: pub}); err != nil {
					return err
				}
				if err := tx.AddPIVSlot(&registry.PIVSlot{KeyID: a.ID, Slot: "9a", PublicKey: pub}); err != nil {
					return err
				}
				s.users[i].id = u.ID
				if skip[i] {
					continue
				}
				b := registry.Key{Serial: "B" + n, OwnerID: u.ID, Status: registry.KeyActive, KeySets: []string{s.opt.To}}
				if err := tx.CreateKey(&b); err != nil {
					return err
				}
				c := registry.FIDOCredential{KeyID: b.ID, CredentialID: []byte("B" + n), RPID: "example.org", PublicKey: pub}
				if err := tx.AddFIDOCredential(&c); err != nil {
					return err
				}
				// Enrolment checked the new key once; that is all the
				// registry knows of it until someone signs in.
				if err := tx.RecordVerification(&registry.Verification{KeyID: b.ID, Kind: "fido2", CredentialID: c.ID, OK: true}); err != nil {
					return err
				}
				s.users[i].bKey, s.users[i].bCred = b.ID, c.ID
			}
			return nil
		}); err != nil {
			return fmt.Errorf("creating users: %w", err)
		}
		s.opt.Progress(fmt.Sprintf("created %d users", min(off+batch, s.opt.Users)))
	}
	for i := range s.users {
		s.byID[s.users[i].id] = &s.users[i]
	}
	return nil
}

// check counts users without a valid credential at the current version.
func (s *sim) check(st *Stage) error {
	_, bare, err := s.st.UsersWithoutCredential(s.ctx)
	if err != nil {
		return err
	}
	s.rep.VersionsChecked++
	s.rep.MaxLockedOut = max(s.rep.MaxLockedOut, len(bare))
	if st != nil {
		st.Versions++
		st.LockedOut = max(st.LockedOut, len(bare))
	}
	return nil
}

// pickBroken marks exactly round(Broken × size) users with a new key as
// broken in each cohort of the plan, so every cohort carries the share.
func (s *sim) pickBroken(migID string) error {
	rd, err := s.st.Readiness(s.ctx, migID)
	if err != nil {
		return err
	}
	by := map[string][]*user{}
	var order []string
	for _, r := range rd.Users {
		u := s.byID[r.UserID]
		if u == nil || u.bKey == "" {
			continue
		}
		if by[r.Cohort] == nil {
			order = append(order, r.Cohort)
		}
		by[r.Cohort] = append(by[r.Cohort], u)
	}
	rng := rand.New(rand.NewPCG(s.opt.Seed, 2))
	for _, c := range order {
		us := by[c]
		n := int(float64(len(us))*s.opt.Broken + 0.5)
		for _, i := range rng.Perm(len(us))[:n] {
			us[i].broken = true
			s.rep.Broken++
		}
	}
	return nil
}

func (s *sim) advance(plan int, id string, to registry.MigrationState, resume bool) (*Stage, error) {
	st := &Stage{Plan: plan}
	var m registry.Migration
	var cut []string
	var held []registry.UserReadiness
	t0 := time.Now()
	if err := s.write("admin:simulate", func(tx *sqlstore.Tx) error {
		var err error
		m, cut, held, err = tx.AdvanceMigration(id, to, 0, resume)
		return err
	}); err != nil {
		return nil, fmt.Errorf("advancing to %s: %w", to, err)
	}
	st.AdvanceTime = time.Since(t0)
	st.Stage, st.CutOver, st.HeldBack, st.Cohort = m.Stage, len(cut), len(held), m.StageCohort
	s.opt.Progress(fmt.Sprintf("plan %d: %s: %d cut over, %d held back", plan, m.Stage, len(cut), len(held)))
	return st, s.check(st)
}

// signIns plays the auth server for the stage's cohort in a random order:
// every user signs in; a broken new key fails and the auth server reports
// it. It stops when the migration halts.
func (s *sim) signIns(id string, st *Stage, rng *rand.Rand) error {
	us, err := s.st.CutOverUsers(s.ctx, id, st.Stage)
	if err != nil {
		return err
	}
	rng.Shuffle(len(us), func(i, j int) { us[i], us[j] = us[j], us[i] })
	for _, uid := range us {
		u := s.byID[uid]
		if !u.broken {
			continue
		}
		var out registry.SignalOutcome
		if err := s.write("authserver:simulate", func(tx *sqlstore.Tx) error {
			var err error
			out, err = tx.ReportLockout(&registry.LockoutSignal{UserID: u.id, KeyID: u.bKey, Reason: "failed_signin"})
			return err
		}); err != nil {
			return err
		}
		st.Signals++
		if err := s.check(st); err != nil {
			return err
		}
		if out.Halted {
			m, err := s.st.GetMigration(s.ctx, id)
			if err != nil {
				return err
			}
			st.Halted, st.Affected = true, m.StageAffected
			if !s.rep.HaltFired {
				s.rep.HaltFired, s.rep.HaltStage, s.rep.HaltAfterReports, s.rep.HaltCohort = true, st.Stage, st.Signals, m.StageCohort
				s.rep.HaltShare = float64(m.StageAffected) / float64(m.StageCohort)
			}
			s.opt.Progress(fmt.Sprintf("halt: %s", m.HaltReason))
			return nil
		}
	}
	if m, err := s.st.GetMigration(s.ctx, id); err == nil {
		st.Affected = m.StageAffected
	}
	return nil
}

// viewByUser maps each user to the sorted ids of keys with a valid credential.
func (s *sim) viewByUser() (int64, map[string][]string, error) {
	v, err := s.st.Validity(s.ctx, "")
	if err != nil {
		return 0, nil, err
	}
	out := make(map[string][]string, len(s.users))
	for _, c := range v.Credentials {
		ks := out[c.UserID]
		if !slices.Contains(ks, c.KeyID) {
			ks = append(ks, c.KeyID)
			slices.Sort(ks)
			out[c.UserID] = ks
		}
	}
	return v.Version, out, nil
}

func (s *sim) run() error {
	_, base, err := s.viewByUser()
	if err != nil {
		return err
	}
	if err := s.check(nil); err != nil {
		return err
	}
	plan := func() *registry.Migration {
		return &registry.Migration{Name: "simulated rollout", From: s.opt.From, To: s.opt.To, Scope: registry.Cohort{All: true},
			Canary: registry.Cohort{Percent: s.opt.Canary}, Stages: s.opt.Stages,
			Policy: registry.MigrationPolicy{MaxVerificationAgeDays: 30, HaltThreshold: s.opt.Threshold}}
	}
	m := plan()
	if err := s.write("admin:simulate", func(tx *sqlstore.Tx) error { return tx.CreateMigration(m) }); err != nil {
		return fmt.Errorf("creating the plan: %w", err)
	}
	if err := s.pickBroken(m.ID); err != nil {
		return err
	}
	dr, err := s.st.DryRun(s.ctx, m.ID)
	if err != nil {
		return err
	}
	for _, d := range dr.Stages {
		s.rep.DryRunHeldBack = append(s.rep.DryRunHeldBack, len(d.HeldBack))
		s.rep.DryRunLockedOut += len(d.LockedOut)
	}
	rng := rand.New(rand.NewPCG(s.opt.Seed, 3))
	if _, err := s.advance(1, m.ID, registry.MigrationDryRun, false); err != nil {
		return err
	}
	// Plan 1: straight into the canary; the broken keys are unknown.
	steps := []registry.MigrationState{registry.MigrationCanary}
	for range s.opt.Stages {
		steps = append(steps, registry.MigrationStaged)
	}
	steps = append(steps, registry.MigrationComplete)
	haltAt := -1
	for i, to := range steps {
		st, err := s.advance(1, m.ID, to, false)
		if err != nil {
			return err
		}
		if err := s.signIns(m.ID, st, rng); err != nil {
			return err
		}
		s.rep.Stages = append(s.rep.Stages, *st)
		if st.Halted {
			haltAt = i
			break
		}
	}
	if haltAt >= 0 {
		// The desk verifies every new key before going on; broken keys
		// fail and readiness holds their users back.
		if err := s.sweep(); err != nil {
			return err
		}
		if err := s.check(nil); err != nil {
			return err
		}
		// Plan 2: resume, re-running the halted stage without the users
		// the sweep or the failure reports blocked, then carry on.
		resume := true
		for _, to := range steps[haltAt:] {
			st, err := s.advance(2, m.ID, to, resume)
			if err != nil {
				return err
			}
			resume = false
			if err := s.signIns(m.ID, st, rng); err != nil {
				return err
			}
			s.rep.Stages = append(s.rep.Stages, *st)
			if st.Halted {
				return fmt.Errorf("the migration halted again at %s after the sweep", st.Stage)
			}
		}
	}
	// Roll everything back in one change set and time it.
	before, _, err := s.viewByUser()
	if err != nil {
		return err
	}
	var users []string
	t0 := time.Now()
	if err := s.write("admin:simulate", func(tx *sqlstore.Tx) error {
		var err error
		_, users, err = tx.RollbackMigration(m.ID, "simulation")
		return err
	}); err != nil {
		return err
	}
	s.rep.RollbackTime = time.Since(t0)
	s.rep.RollbackUsers = len(users)
	after, view, err := s.viewByUser()
	if err != nil {
		return err
	}
	s.rep.RollbackVersions = [2]int64{before, after}
	s.rep.RollbackRestored = len(view) == len(base)
	for u, ks := range base {
		if !slices.Equal(view[u], ks) {
			s.rep.RollbackRestored = false
			break
		}
	}
	return s.check(nil)
}

// sweep records a verification of every new key: broken ones fail.
func (s *sim) sweep() error {
	const batch = 2000
	for off := 0; off < len(s.users); off += batch {
		if err := s.write("helpdesk:simulate", func(tx *sqlstore.Tx) error {
			for _, u := range s.users[off:min(off+batch, len(s.users))] {
				if u.bKey == "" {
					continue
				}
				v := registry.Verification{KeyID: u.bKey, Kind: "fido2", CredentialID: u.bCred, OK: !u.broken}
				if u.broken {
					v.Reason = "no valid assertion"
					s.rep.SweepFailed++
				}
				if err := tx.RecordVerification(&v); err != nil {
					return err
				}
			}
			return nil
		}); err != nil {
			return fmt.Errorf("verification sweep: %w", err)
		}
	}
	s.opt.Progress(fmt.Sprintf("verification sweep: %d new keys failed", s.rep.SweepFailed))
	return nil
}

// Problems lists the promises of a safe migration the run broke: nobody is
// ever without a valid credential (in the dry run or at any version
// checked), the canary halts by itself before more than the threshold of
// its cohort is affected, and rollback restores the view from before the
// migration in one new version. Empty means the run kept them all.
func (r *Report) Problems() []string {
	var out []string
	if r.MaxLockedOut != 0 || r.DryRunLockedOut != 0 {
		out = append(out, fmt.Sprintf("users without a valid credential: %d at worst (dry run: %d)", r.MaxLockedOut, r.DryRunLockedOut))
	}
	if r.Broken > 0 && (!r.HaltFired || r.HaltStage != "canary") {
		out = append(out, fmt.Sprintf("halt fired %v at %q; want it in the canary", r.HaltFired, r.HaltStage))
	}
	if r.HaltFired && r.HaltShare > r.Threshold+1e-12 {
		out = append(out, fmt.Sprintf("halt at %.3f%% of the cohort affected, over %.3f%%", 100*r.HaltShare, 100*r.Threshold))
	}
	if !r.RollbackRestored || r.RollbackVersions[1] != r.RollbackVersions[0]+1 {
		out = append(out, fmt.Sprintf("rollback: restored %v, versions %v", r.RollbackRestored, r.RollbackVersions))
	}
	return out
}
