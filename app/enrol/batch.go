package enrol

import (
	"context"
	"errors"
	"fmt"

	"github.com/keydesk/keydesk/app/roster"
	"github.com/keydesk/keydesk/registry"
	"github.com/keydesk/keydesk/registry/client"
)

// UserResult is what a batch did for one roster row.
type UserResult struct {
	Line        int       `json:"line"`
	ExternalID  string    `json:"external_id"`
	DisplayName string    `json:"display_name"`
	Wanted      int       `json:"wanted"`
	Already     int       `json:"already"` // keys the registry held before this run
	Keys        []*Result `json:"keys"`
	Covered     bool      `json:"covered"`
	Error       string    `json:"error,omitempty"`
	Hint        string    `json:"hint,omitempty"`
	// DeskHint is Hint in the desktop app's words, where Hint names a
	// command line.
	DeskHint string `json:"-"`
}

// OK reports whether the user has every key the roster asked for.
func (u *UserResult) OK() bool { return u.Error == "" && u.Already+len(u.Keys) >= u.Wanted }

// BatchReport is a whole batch's outcome.
type BatchReport struct {
	Users     []*UserResult      `json:"users"`
	RowErrors []*roster.RowError `json:"row_errors,omitempty"`
	Enrolled  int                `json:"enrolled"` // keys enrolled in this run
	Failed    int                `json:"failed"`   // users not fully enrolled
}

// hinted is an error with a plain-language next step.
type hinted interface{ Hint() string }

// Batch enrols every roster entry's keys, one key after another. It is
// resumable: the registry says which users already hold their keys, so a
// rerun after a crash enrols nobody twice; the journal finishes keys that
// were registered but not yet activated, and names keys left half set up.
// A bad roster row is reported (RowErrors) and the rest still run; one
// user's failure is recorded in that user's result and the batch goes on.
// A registry that cannot be reached (a network error or a 5xx answer) is
// waited for, with exponential back-off, up to Config.RegistryWait per
// user (DefaultRegistryWait), so a short outage delays the batch instead
// of failing every remaining user. Only ctx ending stops it early.
func (e *Enroller) Batch(ctx context.Context, r *roster.Roster, batch string, ui UI) (*BatchReport, error) {
	rep := &BatchReport{RowErrors: r.Errors}
	type plan struct {
		res  *UserResult
		need int
	}
	var plans []plan
	total := 0
	for _, en := range r.Entries {
		ur := &UserResult{Line: en.Line, ExternalID: en.ExternalID, DisplayName: en.DisplayName, Wanted: en.Keys, Keys: []*Result{}}
		rep.Users = append(rep.Users, ur)
		// Finish what an earlier run left registered but not active.
		recs, err := e.j.list(ctx, en.ExternalID)
		if err != nil {
			return rep, err
		}
		for _, rec := range recs {
			if rec.Stage == StageActive {
				continue
			}
			if halfSetUp(rec.Stage) {
				ie := &InterruptedError{Serial: rec.Serial, Stage: rec.Stage, Err: errors.New(rec.Error)}
				ur.Error, ur.Hint, ur.DeskHint = ie.Error(), ie.Hint(), ie.DeskHint()
				continue
			}
			res, err := e.resume(ctx, rec.Serial, ui, &pins{}, true)
			if err != nil {
				if ctx.Err() != nil {
					return rep, ctx.Err()
				}
				ur.Error, ur.Hint, ur.DeskHint = err.Error(), hintOf(err), deskHintOf(err)
				continue
			}
			ur.Keys = append(ur.Keys, res)
			rep.Enrolled++
		}
		var ks []registry.Key
		if err := e.waitRegistry(ctx, ui, en.ExternalID, func() (err error) {
			_, ks, err = e.userKeys(ctx, en.ExternalID)
			return err
		}); err != nil {
			return rep, err
		}
		for _, k := range ks {
			if live(k) {
				ur.Already++
			}
		}
		ur.Already -= len(ur.Keys) // resumed keys are in the registry already
		need := en.Keys - ur.Already - len(ur.Keys)
		if need > 0 {
			total += need
		}
		plans = append(plans, plan{res: ur, need: need})
	}
	done := 0
	for i, p := range plans {
		en := r.Entries[i]
		ui.progress(Event{Step: StepBatchUser, User: en.ExternalID, Detail: en.DisplayName, Done: done, Total: total})
		for n := 0; n < p.need; n++ {
			req := Request{User: client.EnrolUser{ExternalID: en.ExternalID, DisplayName: en.DisplayName, Email: en.Email, Groups: en.Groups},
				CreateUser: true, Batch: batch, Index: p.res.Already + len(p.res.Keys) + 1, Of: en.Keys, WaitRegistry: true}
			res, err := e.enrolWaiting(ctx, req, progressWith(ui, done, total))
			if err != nil {
				if ctx.Err() != nil {
					return rep, ctx.Err()
				}
				p.res.Error, p.res.Hint, p.res.DeskHint = err.Error(), hintOf(err), deskHintOf(err)
				done += p.need - n
				break
			}
			p.res.Keys = append(p.res.Keys, res)
			rep.Enrolled++
			done++
		}
		if u, err := e.FindUser(ctx, en.ExternalID); err == nil {
			if cv, err := e.cfg.Registry.Coverage(ctx, u.ID); err == nil {
				p.res.Covered = cv.Covered
			}
		}
		if !p.res.OK() {
			rep.Failed++
		}
	}
	return rep, nil
}

// progressWith stamps batch counts on every event.
func progressWith(ui UI, done, total int) UI {
	inner := ui.Progress
	if inner == nil {
		return ui
	}
	ui.Progress = func(ev Event) {
		ev.Done, ev.Total = done, total
		inner(ev)
	}
	return ui
}

// deskHintOf is err's DeskHint, "" when it has none (Hint then says it
// for every face).
func deskHintOf(err error) string {
	var h interface{ DeskHint() string }
	if errors.As(err, &h) {
		return h.DeskHint()
	}
	return ""
}

func hintOf(err error) string {
	var h hinted
	if errors.As(err, &h) {
		return h.Hint()
	}
	if msg, ok := client.Storage(err); ok {
		return "The registry took no write: " + msg + ". Run the batch again then; finished users are skipped."
	}
	if errors.Is(err, client.ErrUnreachable) {
		return "The registry could not be reached. Check the network and run the batch again; finished users are skipped."
	}
	return ""
}

// Describe is a one-line summary of a user's result.
func (u *UserResult) Describe() string {
	switch {
	case u.Error != "":
		return fmt.Sprintf("line %d %s: FAILED after %d of %d keys: %s", u.Line, u.ExternalID, u.Already+len(u.Keys), u.Wanted, u.Error)
	case len(u.Keys) == 0:
		return fmt.Sprintf("line %d %s: already has %d keys, skipped", u.Line, u.ExternalID, u.Already)
	}
	s := fmt.Sprintf("line %d %s: enrolled", u.Line, u.ExternalID)
	for _, k := range u.Keys {
		s += fmt.Sprintf(" %d (%s)", k.Serial, k.Role)
	}
	if u.Covered {
		s += "; covered"
	}
	return s
}
