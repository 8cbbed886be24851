package command_test

import (
	"context"
	"os"
	"testing"

	"github.com/rogpeppe/go-internal/testscript"

	"github.com/keydesk/keydesk/registry/command"
)

func TestMain(m *testing.M) {
	testscript.Main(m, map[string]func(){
		"keydesk-registry": func() {
			os.Exit(command.Exit(command.Run(context.Background(), os.Args[1:], os.Stdout, os.Stderr), os.Stderr))
		},
	})
}

// TestScripts drives the keydesk-registry command line through
// testdata/script, each script on a fresh SQLite state directory.
func TestScripts(t *testing.T) {
	testscript.Run(t, testscript.Params{
		Dir: "testdata/script",
		Setup: func(env *testscript.Env) error {
			// Nothing falls back to the real user's state directory.
			env.Setenv("HOME", env.WorkDir)
			env.Setenv("STATE_DIRECTORY", env.WorkDir+"/state")
			return nil
		},
	})
}
