package cli

import (
	"flag"
	"fmt"

	"github.com/keydesk/keydesk/app/cli/keyview"
	"github.com/keydesk/keydesk/app/keys"
	"github.com/keydesk/keydesk/device"
)

// The key views and report live in keyview, which cmd/keydesk's status
// path shares; these are their names here.
type (
	keyView  = keyview.KeyView
	pivView  = keyview.PIVView
	fidoView = keyview.FIDOView
)

func viewKey(k device.Key) keyView             { return keyview.ViewKey(k) }
func viewPIV(st *device.PIVStatus) *pivView    { return keyview.ViewPIV(st) }
func viewFIDO(st *device.FIDOStatus) *fidoView { return keyview.ViewFIDO(st) }
func printReport(e *env, r *keys.Report)       { keyview.PrintReport(e.stdout, r) }
func label(k device.Key) string                { return keyview.Label(k) }
func tries(n int) string                       { return keyview.Tries(n) }

func runKeys(e *env, _ *flag.FlagSet, args []string) error {
	if len(args) > 0 {
		return usagef("keys takes no arguments")
	}
	svc, err := e.service()
	if err != nil {
		return err
	}
	list, err := svc.List(e.ctx)
	if err != nil {
		return err
	}
	if e.json {
		out := make([]keyView, len(list))
		for i, k := range list {
			out[i] = viewKey(k)
		}
		return e.printJSON(map[string]any{"keys": out})
	}
	if len(list) == 0 {
		fmt.Fprintln(e.stdout, "No keys attached.")
		return nil
	}
	for _, k := range list {
		fmt.Fprintln(e.stdout, label(k))
	}
	return nil
}

func runInfo(e *env, _ *flag.FlagSet, args []string) error {
	if len(args) > 0 {
		return usagef("info takes no arguments; choose the key with --serial")
	}
	k, err := e.key()
	if err != nil {
		return err
	}
	svc, _ := e.service()
	r := svc.Inspect(e.ctx, k, nil)
	if e.json {
		return e.printJSON(struct {
			Key       keyView   `json:"key"`
			PIV       *pivView  `json:"piv,omitempty"`
			PIVError  string    `json:"piv_error,omitempty"`
			FIDO      *fidoView `json:"fido2,omitempty"`
			FIDOError string    `json:"fido2_error,omitempty"`
		}{viewKey(r.Key), viewPIV(r.PIV), r.PIVError, viewFIDO(r.FIDO), r.FIDOError})
	}
	printReport(e, r)
	return nil
}
