package cli

import (
	"encoding/hex"
	"flag"
	"fmt"

	"github.com/keydesk/keydesk/device/virtual/sim"
)

// runSim is keydesk-sim inside keydesk: practice-mode virtual keys.
func runSim(e *env, _ *flag.FlagSet, args []string) error {
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
