package uikit

import (
	"errors"
	"regexp"
	"strings"
	"testing"

	"github.com/keydesk/keydesk/app/enrol"
	"github.com/keydesk/keydesk/registry/client"
)

// TestMessageNamesNoCommand: the errors whose hints name a command line
// for the CLI ("keydesk enrol --resume", "keydesk piv reset") read, in the
// desktop app, with its own screens instead; the CLI's hint stays theirs.
func TestMessageNamesNoCommand(t *testing.T) {
	command := regexp.MustCompile(`keydesk (recover|enrol|piv|fido|keys|verify)\b`)
	cause := errors.New("registry: unreachable")
	errs := []error{&enrol.NotInsertedError{Serial: 31000001}, &enrol.NotInsertedError{},
		&enrol.RefusedError{Serial: 31000001, State: client.Conflict}, &enrol.RefusedError{Serial: 31000001, State: client.Rejected}}
	for _, st := range []enrol.Stage{enrol.StageDevice, enrol.StageSealed, enrol.StagePrepared, enrol.StageQueued, enrol.StageRegistered, enrol.StageEscrowed} {
		errs = append(errs, &enrol.InterruptedError{Serial: 31000001, Stage: st, Err: cause})
	}
	errs = append(errs, &enrol.InterruptedError{Serial: 31000001, Stage: enrol.StageQueued, Err: &enrol.RefusedError{Serial: 31000001, State: client.Conflict}})
	for _, err := range errs {
		msg := Message(err)
		if c := command.FindString(msg); c != "" || strings.Contains(msg, "run the same command") {
			t.Errorf("%v reads %q in the app", err, msg)
		}
		if !strings.Contains(msg, "screen") && !strings.Contains(msg, "Insert") {
			t.Errorf("%v: the app's hint names no screen: %q", err, msg)
		}
	}
}
