package invui

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"fyne.io/fyne/v2"
	"fyne.io/fyne/v2/container"
	"fyne.io/fyne/v2/theme"
	"fyne.io/fyne/v2/widget"

	"github.com/keydesk/keydesk/app/activity"
	"github.com/keydesk/keydesk/app/ui/uikit"
	"github.com/keydesk/keydesk/registry/client"
)

// PollEvery is how often the Activity screen asks for new entries while it
// is on screen.
var PollEvery = 3 * time.Second

// pageSize is how many entries one page of the Activity screen shows.
const pageSize = 100

// actions the registry writes, offered in the action filter.
var knownActions = []string{"user.create", "user.update", "key.create", "key.status", "key.activate", "key.break_glass",
	"key.activate_break_glass", "key.fido2_reset", "fido2_credential.create", "fido2_credential.revoke", "piv_slot.create",
	"verification", "escrow.put", "access_pass.create", "access_pass.redeem", "token.create", "token.revoke",
	"migration.create", "migration.advance", "migration.halt", "migration.rollback", "registry.restore"}

var activityColumns = []column{{"Time", 170}, {"Actor", 170}, {"Action", 190}, {"Details", 480}}

// Activity is the Activity screen: the registry's audit log, newest first.
type Activity struct {
	env *uikit.Env

	Root    fyne.CanvasObject
	Banner  *Banner
	Actor   *uikit.Entry
	Action  *widget.SelectEntry
	Subject *uikit.Entry
	Since   *uikit.Entry
	Until   *uikit.Entry
	Apply   *widget.Button
	Clear   *widget.Button
	Older   *widget.Button
	Verify  *widget.Button
	// VerifyResult is the last chain check's outcome.
	VerifyResult *widget.Label
	Status       *widget.Label
	Table        *widget.Table

	entries  []client.AuditEntry
	next     int64 // cursor of the older page; 0 at the end
	head     int64 // highest seq seen (live refresh reads after it)
	query    activity.Query
	terms    activity.Terms
	loadedAt time.Time
	gen      int // bumps with every new query; stale answers are dropped
	busy     bool
	polling  bool
	denied   bool // the registry refused the token the audit log
	// settled is called after each read settles (tests wait on it).
	settled func(what string, err error)
}

// NewActivity builds the screen, reads the newest entries and starts the
// live refresh, which asks the registry only while the screen is shown.
func NewActivity(env *uikit.Env) *Activity {
	a := newActivity(env)
	a.Reload()
	a.startPolling()
	return a
}

func newActivity(env *uikit.Env) *Activity {
	a := &Activity{env: env}
	a.Banner = newBanner(func() { a.Reload() })
	a.Actor = uikit.NewEntry()
	a.Actor.SetPlaceHolder("Actor (admin:name)")
	a.Action = widget.NewSelectEntry(knownActions)
	a.Action.SetPlaceHolder("Action")
	a.Subject = uikit.NewEntry()
	a.Subject.SetPlaceHolder("Key serial, user id or text")
	a.Since = uikit.NewEntry()
	a.Since.SetPlaceHolder("From (YYYY-MM-DD [HH:MM], or 7d back)")
	a.Until = uikit.NewEntry()
	a.Until.SetPlaceHolder("To (YYYY-MM-DD [HH:MM], or 1d back)")
	for _, e := range []*uikit.Entry{a.Actor, a.Subject, a.Since, a.Until} {
		e.OnSubmitted = func(string) { a.Reload() }
	}
	a.Action.OnSubmitted = func(string) { a.Reload() }
	a.Apply = widget.NewButtonWithIcon("Apply", theme.SearchIcon(), func() { a.Reload() })
	a.Apply.Importance = widget.HighImportance
	a.Clear = widget.NewButtonWithIcon("Clear", theme.ContentClearIcon(), func() {
		for _, e := range []*uikit.Entry{a.Actor, a.Subject, a.Since, a.Until} {
			e.SetText("")
		}
		a.Action.SetText("")
		a.Reload()
	})
	a.Older = widget.NewButtonWithIcon("Older entries", theme.MoreVerticalIcon(), a.loadOlder)
	a.Older.Disable()
	a.Verify = widget.NewButtonWithIcon("Verify audit chain", theme.ConfirmIcon(), a.verify)
	a.VerifyResult = widget.NewLabel("")
	a.VerifyResult.Wrapping = fyne.TextWrapWord
	a.Status = widget.NewLabel("")
	a.Status.Truncation = fyne.TextTruncateEllipsis

	a.Table = newTextTable(activityColumns, func() int { return len(a.entries) }, a.Cell)

	filters := container.NewGridWithColumns(5, a.Actor, a.Action, a.Subject, a.Since, a.Until)
	buttons := container.NewHBox(a.Apply, a.Clear, widget.NewSeparator(), a.Verify)
	top := container.NewVBox(a.Banner.Root, filters, buttons, a.VerifyResult)
	bottom := container.NewBorder(nil, nil, nil, a.Older, a.Status)
	a.Root = container.NewBorder(top, bottom, nil, nil, a.Table)
	return a
}

// Cell is the text of the table's cell at row, col.
func (a *Activity) Cell(row, col int) string {
	e := a.entries[row]
	switch col {
	case 0:
		return e.Time.Local().Format("2006-01-02 15:04:05")
	case 1:
		return e.Actor
	case 2:
		return e.Action
	case 3:
		return activity.Summary(e)
	}
	return ""
}

// Entries are the entries shown, newest first.
func (a *Activity) Entries() []client.AuditEntry { return a.entries }

// readQuery reads the filter fields.
func (a *Activity) readQuery() (activity.Query, error) {
	q := activity.Query{Actor: strings.TrimSpace(a.Actor.Text), Action: strings.TrimSpace(a.Action.Text), Subject: strings.TrimSpace(a.Subject.Text)}
	var err error
	if q.Since, err = activity.ParseTime(a.Since.Text, false, time.Now()); err != nil {
		return q, err
	}
	if q.Until, err = activity.ParseTime(a.Until.Text, true, time.Now()); err != nil {
		return q, err
	}
	if !q.Since.IsZero() && !q.Until.IsZero() && q.Until.Before(q.Since) {
		return q, errors.New("the end of the time range is before its start")
	}
	return q, nil
}

// Reload reads the newest entries the filters select.
func (a *Activity) Reload() {
	q, err := a.readQuery()
	if err != nil {
		a.Status.SetText(err.Error())
		if a.settled != nil {
			a.settled("reload", err)
		}
		return
	}
	a.gen++
	gen := a.gen
	a.busy = true
	a.Status.SetText("Reading the audit log…")
	var pg activity.Page
	var terms activity.Terms
	a.env.Go(func(ctx context.Context) error {
		reg, err := a.env.Registry(ctx)
		if err != nil {
			return err
		}
		terms = activity.Resolve(ctx, reg, q.Subject)
		pg, err = activity.Read(ctx, reg, q, terms, 0, pageSize)
		return activity.Explain(err)
	}, func(err error) {
		if gen != a.gen {
			return
		}
		a.busy = false
		if err != nil {
			a.failed(err)
		} else {
			a.denied = false
			a.Banner.Hide()
			a.query, a.terms = q, terms
			a.entries = pg.Entries
			a.next = pg.Next
			a.head = pg.Head
			a.loadedAt = time.Now()
			a.showState()
			a.Table.ScrollToTop()
			a.Table.Refresh()
		}
		if a.settled != nil {
			a.settled("reload", err)
		}
	})
}

func (a *Activity) failed(err error) {
	a.denied = errors.Is(err, activity.ErrAdminOnly)
	a.Banner.Show(err)
	if len(a.entries) > 0 {
		a.Status.SetText(staleNote(a.loadedAt))
	} else {
		a.Status.SetText("No entries read.")
	}
}

func (a *Activity) showState() {
	more := "the start of the log"
	if a.next != 0 {
		more = "older entries below"
		a.Older.Enable()
	} else {
		a.Older.Disable()
	}
	noun := "entries"
	if len(a.entries) == 1 {
		noun = "entry"
	}
	a.Status.SetText(fmt.Sprintf("%d %s, newest first (%s) · live, read at %s", len(a.entries), noun, more, a.loadedAt.Local().Format("15:04:05")))
}

func (a *Activity) loadOlder() {
	if a.next == 0 || a.busy {
		return
	}
	gen, before, q, terms := a.gen, a.next, a.query, a.terms
	a.busy = true
	a.Older.Disable()
	var pg activity.Page
	a.env.Go(func(ctx context.Context) error {
		reg, err := a.env.Registry(ctx)
		if err != nil {
			return err
		}
		pg, err = activity.Read(ctx, reg, q, terms, before, pageSize)
		return activity.Explain(err)
	}, func(err error) {
		if gen != a.gen {
			return
		}
		a.busy = false
		if err != nil {
			a.failed(err)
			a.Older.Enable()
		} else {
			a.Banner.Hide()
			a.entries = append(a.entries, pg.Entries...)
			a.next = pg.Next
			a.showState()
			a.Table.Refresh()
		}
		if a.settled != nil {
			a.settled("older", err)
		}
	})
}

// Poll asks for entries newer than those shown and puts them on top.
func (a *Activity) Poll() {
	if a.busy || a.polling {
		return
	}
	if a.denied {
		// The token may not read the log: asking again will not help
		// until someone changes it (Retry does).
		return
	}
	if a.loadedAt.IsZero() {
		// Nothing read yet (the registry was down): try the whole page
		// again, which also clears the banner once it answers.
		a.Reload()
		return
	}
	gen, after, q, terms := a.gen, a.head, a.query, a.terms
	a.polling = true
	var fresh []client.AuditEntry
	var head int64
	a.env.Go(func(ctx context.Context) error {
		reg, err := a.env.Registry(ctx)
		if err != nil {
			return err
		}
		fresh, head, err = activity.Newer(ctx, reg, q, terms, after, 5000)
		return activity.Explain(err)
	}, func(err error) {
		a.polling = false
		if gen != a.gen {
			return
		}
		if err != nil {
			a.failed(err)
		} else {
			if a.Banner.Shown() {
				a.Banner.Hide()
			}
			a.head = head
			if len(fresh) > 0 {
				n := make([]client.AuditEntry, 0, len(fresh)+len(a.entries))
				for i := len(fresh) - 1; i >= 0; i-- {
					n = append(n, fresh[i])
				}
				a.entries = append(n, a.entries...)
				a.Table.Refresh()
			}
			a.loadedAt = time.Now()
			a.showState()
		}
		if a.settled != nil {
			a.settled("poll", err)
		}
	})
}

// startPolling polls every PollEvery while the screen is on screen, until
// the window closes.
func (a *Activity) startPolling() {
	ctx := a.env.Ctx
	if ctx == nil {
		ctx = context.Background()
	}
	go func() {
		t := time.NewTicker(PollEvery)
		defer t.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-t.C:
				fyne.Do(func() { a.tick() })
			}
		}
	}()
}

// tick is one beat of the live refresh: it polls only while the screen is
// shown, and says whether it did.
func (a *Activity) tick() bool {
	if !shownIn(a.env.Window, a.Root) {
		return false
	}
	a.Poll()
	return true
}

// verify asks the registry to check its audit chain.
func (a *Activity) verify() {
	a.Verify.Disable()
	a.VerifyResult.Importance = widget.MediumImportance
	a.VerifyResult.SetText("Checking the audit chain…")
	var rep client.AuditReport
	a.env.Go(func(ctx context.Context) error {
		reg, err := a.env.Registry(ctx)
		if err != nil {
			return err
		}
		rep, err = activity.Verify(ctx, reg)
		return activity.Explain(err)
	}, func(err error) {
		a.Verify.Enable()
		switch {
		case err != nil:
			a.VerifyResult.Importance = widget.DangerImportance
			a.VerifyResult.SetText("Could not check the audit chain: " + strings.ReplaceAll(explain(err), "\n", " "))
		case rep.OK:
			a.VerifyResult.Importance = widget.SuccessImportance
			a.VerifyResult.SetText(fmt.Sprintf("Audit chain verified: %s, %s, nothing altered or missing.", uikit.Count(rep.Entries, "entry", "entries"), uikit.Count(rep.Checkpoints, "signed checkpoint", "signed checkpoints")))
		default:
			a.VerifyResult.Importance = widget.DangerImportance
			a.VerifyResult.SetText("Audit chain does NOT verify: " + rep.Error + "\nThe log may have been altered. Keep this registry's state as it is and tell your security team.")
		}
		a.VerifyResult.Refresh()
		if a.settled != nil {
			a.settled("verify", err)
		}
	})
}
