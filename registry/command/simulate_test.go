package command_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"testing"

	"github.com/keydesk/keydesk/registry/command"
	"github.com/keydesk/keydesk/registry/simulation"
)

// TestSimulateCommand runs keydesk-registry simulate on its own temporary
// SQLite database and reads the JSON report.
func TestSimulateCommand(t *testing.T) {
	var out, errOut bytes.Buffer
	err := command.Run(context.Background(), []string{"simulate", "--users", "400", "--canary", "50", "--stages", "75", "--json"}, &out, &errOut)
	if err != nil {
		t.Fatalf("%v\n%s", err, errOut.String())
	}
	var rep simulation.Report
	if err := json.Unmarshal(out.Bytes(), &rep); err != nil {
		t.Fatalf("%v\n%s", err, out.String())
	}
	if rep.Users != 400 || rep.Broken < 10 || rep.Broken > 14 || !rep.HaltFired || rep.MaxLockedOut != 0 || !rep.RollbackRestored {
		t.Errorf("report %+v", rep)
	}
	if len(rep.Problems()) != 0 {
		t.Errorf("problems: %v", rep.Problems())
	}
	if !bytes.Contains(errOut.Bytes(), []byte("halt: halted by itself")) {
		t.Errorf("no halt in the progress:\n%s", errOut.String())
	}
}

// TestSimulateCommandUsage: a bad flag is a usage error, and a canary of
// 100% is refused by the plan's own validation.
func TestSimulateCommandUsage(t *testing.T) {
	var out, errOut bytes.Buffer
	if err := command.Run(context.Background(), []string{"simulate", "--stages", "ten"}, &out, &errOut); !errors.Is(err, command.ErrUsage) {
		t.Errorf("--stages ten: %v", err)
	}
	err := command.Run(context.Background(), []string{"simulate", "--users", "10", "--canary", "100", "--quiet"}, &out, &errOut)
	if err == nil || !bytes.Contains([]byte(err.Error()), []byte("percent_out_of_range")) && !bytes.Contains([]byte(err.Error()), []byte("outside")) {
		t.Errorf("--canary 100: %v", err)
	}
}
