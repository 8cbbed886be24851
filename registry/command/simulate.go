package command

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/keydesk/keydesk/registry/simulation"
	"github.com/keydesk/keydesk/registry/store/sqlstore"
)

// ErrSimulationFailed: the simulated migration broke one of its promises
// (a user left without a valid credential, no halt in the canary, or a
// rollback that did not restore the view).
var ErrSimulationFailed = errors.New("simulated migration failed its checks")

// simulate runs registry/simulation on a database of its own: a new SQLite
// file in a temporary directory unless --db names an empty database. It
// never touches the registry's own database by default.
func simulate(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("simulate", flag.ContinueOnError)
	var opt simulation.Options
	var stages, db string
	var asJSON, quiet bool
	fs.IntVar(&opt.Users, "users", 1000, "synthetic users")
	fs.Float64Var(&opt.Broken, "broken", 0.03, "share of users whose new key fails every sign-in")
	fs.Float64Var(&opt.NoBKey, "no-new-key", 0, "share of users who never received a new key")
	fs.Float64Var(&opt.Canary, "canary", 1, "canary cohort, percent of users")
	fs.StringVar(&stages, "stages", "10,50", "staged percentages before complete, comma-separated")
	fs.Float64Var(&opt.Threshold, "threshold", 0.01, "halt threshold, share of the current cohort")
	fs.Uint64Var(&opt.Seed, "seed", 1, "random seed (the same seed gives the same run)")
	fs.StringVar(&db, "db", "", "an empty database to simulate on: a postgres:// URL or a SQLite file (default: a temporary SQLite file)")
	fs.BoolVar(&asJSON, "json", false, "print the report as JSON")
	fs.BoolVar(&quiet, "quiet", false, "no progress on stderr")
	if err := parse(fs, args, stdout); err != nil {
		return err
	}
	opt.Stages = []float64{}
	for _, f := range strings.Split(stages, ",") {
		if f = strings.TrimSpace(f); f == "" {
			continue
		}
		p, err := strconv.ParseFloat(f, 64)
		if err != nil {
			return fmt.Errorf("%w: --stages: %q is not a percentage\n%s", ErrUsage, f, usage)
		}
		opt.Stages = append(opt.Stages, p)
	}
	if !quiet {
		opt.Progress = func(msg string) { fmt.Fprintln(stderr, msg) }
	}
	if db == "" {
		dir, err := os.MkdirTemp("", "keydesk-simulate-")
		if err != nil {
			return fmt.Errorf("creating simulation directory: %w", err)
		}
		defer os.RemoveAll(dir)
		db = filepath.Join(dir, "simulation.db")
	}
	// The audit chain of a throwaway database is signed with a throwaway key.
	_, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return fmt.Errorf("generating simulation audit key: %w", err)
	}
	st, err := sqlstore.Open(ctx, db, sqlstore.Options{Signer: priv})
	if err != nil {
		return err
	}
	defer st.Close()
	rep, err := simulation.Run(ctx, st, opt)
	if err != nil {
		return fmt.Errorf("simulating: %w", err)
	}
	if asJSON {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		if err := enc.Encode(rep); err != nil {
			return err
		}
	} else {
		fmt.Fprint(stdout, simulation.Format(rep))
	}
	if why := rep.Problems(); len(why) > 0 {
		return fmt.Errorf("%w: %s", ErrSimulationFailed, strings.Join(why, "; "))
	}
	return nil
}
