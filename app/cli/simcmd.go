package cli

import (
	"encoding/hex"
	"fmt"
	"strings"

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

// runSim runs keydesk-sim's command line on args, in --sim-dir (which
// may come anywhere among them).
func runSim(e *env, args []string) error {
	var rest []string
	for i := 0; i < len(args); i++ {
		switch a := args[i]; {
		case (a == "--sim-dir" || a == "-sim-dir") && i+1 < len(args):
			e.simDir = args[i+1]
			i++
		case strings.HasPrefix(a, "--sim-dir="):
			e.simDir = strings.TrimPrefix(a, "--sim-dir=")
		default:
			rest = append(rest, a)
		}
	}
	if len(rest) == 0 {
		return usagef("sim needs a subcommand: run, list, insert, remove, touch, power-cycle")
	}
	return sim.Main(e.ctx, append(rest, "--state", e.simDir), e.stdout, e.stderr)
}

func decodeHex(s string, n int) ([]byte, error) {
	b, err := hex.DecodeString(s)
	if err != nil || len(b) != n {
		return nil, fmt.Errorf("expected %d hex digits", 2*n)
	}
	return b, nil
}
