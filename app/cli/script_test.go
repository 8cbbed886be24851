package cli_test

import (
	"context"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/rogpeppe/go-internal/testscript"

	"github.com/keydesk/keydesk/app/cli"
	"github.com/keydesk/keydesk/device/virtual"
	"github.com/keydesk/keydesk/device/virtual/sim"
)

func TestMain(m *testing.M) {
	testscript.Main(m, map[string]func(){
		"keydesk": func() { os.Exit(cli.Run(context.Background(), os.Args[1:], os.Stdin, os.Stdout, os.Stderr)) },
	})
}

var (
	fleetMu    sync.Mutex
	fleetState string
)

// TestScripts drives the keydesk binary through testdata/script against two
// practice-mode virtual keys behind a private pcscd, per script.
func TestScripts(t *testing.T) {
	fleetState = t.TempDir()
	testscript.Run(t, testscript.Params{
		Dir:  "testdata/script",
		Cmds: workflowCmds,
		Setup: func(env *testscript.Env) error {
			// One fleet at a time: each script's keys live behind their own
			// pcscd, and the test process's PC/SC client follows one socket.
			fleetMu.Lock()
			env.Defer(fleetMu.Unlock)
			// The fleet lives at the same path for every script, because
			// libpcsclite reads PCSCLITE_CSOCK_NAME once per process; each
			// script starts from factory-fresh keys.
			state := fleetState
			dir := filepath.Join(state, "keydesk", "sim")
			if err := os.RemoveAll(dir); err != nil {
				return err
			}
			ctx, cancel := context.WithCancel(context.Background())
			f, err := sim.Start(ctx, dir, 2, virtual.Version{Major: 5, Minor: 7, Patch: 2})
			if err != nil {
				cancel()
				return err
			}
			env.Defer(func() { cancel(); f.Stop() })
			if err := f.Serve(ctx, dir); err != nil {
				return err
			}
			wctx, done := context.WithTimeout(ctx, 20*time.Second)
			defer done()
			os.Setenv("PCSCLITE_CSOCK_NAME", f.Daemon.Socket())
			for i := range f.Keys {
				if err := f.Daemon.WaitCard(wctx, i, true); err != nil {
					return err
				}
			}
			env.Setenv("XDG_STATE_HOME", state)
			env.Setenv("KEYDESK_PRACTICE", "1")
			return nil
		},
	})
}
