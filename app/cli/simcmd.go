package cli

import (
	"encoding/hex"
	"fmt"

	"github.com/spf13/cobra"

	"github.com/keydesk/keydesk/device/virtual/sim"
)

// simCmd is keydesk-sim inside keydesk: practice-mode virtual keys. Its
// subcommands parse their own flags (keydesk-sim's).
func simCmd(e *env) *cobra.Command {
	return &cobra.Command{Use: "sim run|list|insert|remove|touch|power-cycle [flags]", Short: "practice-mode virtual keys (keydesk-sim)",
		DisableFlagParsing: true, ValidArgs: []string{"run", "list", "insert", "remove", "touch", "power-cycle"},
		RunE: func(_ *cobra.Command, args []string) error { return runSim(e, args) }}
}

// runSim runs keydesk-sim's command line on args, in --sim-dir.
func runSim(e *env, args []string) error {
	if len(args) == 0 {
		return usagef("sim needs a subcommand: run, list, insert, remove, touch, power-cycle")
	}
	return sim.Main(e.ctx, append(args, "--state", e.simDir), e.stdout, e.stderr)
}

func decodeHex(s string, n int) ([]byte, error) {
	b, err := hex.DecodeString(s)
	if err != nil || len(b) != n {
		return nil, fmt.Errorf("expected %d hex digits", 2*n)
	}
	return b, nil
}
