package invui

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"fyne.io/fyne/v2"
	"fyne.io/fyne/v2/container"
	"fyne.io/fyne/v2/layout"
	"fyne.io/fyne/v2/theme"
	"fyne.io/fyne/v2/widget"

	"github.com/keydesk/keydesk/app/activity"
	"github.com/keydesk/keydesk/app/ui/uikit"
	"github.com/keydesk/keydesk/registry/client"
)

// PollEvery is how often the Activity screen asks whether there are new
// entries while it is on screen.
var PollEvery = 3 * time.Second

// readEvery is how many polls may pass without reading the audit log while
// the change feed's head stays put: entries audited without a change (a
// verification that changes nothing else) still show within
// readEvery×PollEvery.
const readEvery = 10

// pageSize is how many entries one page of the Activity screen shows.
const pageSize = 100

// actions the registry writes, offered in the action filter.
var knownActions = []string{"user.create", "user.update", "key.create", "key.status", "key.activate", "key.break_glass",
	"key.activate_break_glass", "key.fido2_reset", "fido2_credential.create", "fido2_credential.revoke", "piv_slot.create",
	"verification", "escrow.put", "access_pass.create", "access_pass.redeem", "token.create", "token.revoke",
	"migration.create", "migration.advance", "migration.halt", "migration.rollback", "registry.restore"}

var activityColumns = []column{{"Time", 170}, {"Actor", 170}, {"Action", 190}, {"Details", 480}}

// The Actor and Action columns fit the longest text shown, within these
// bounds (a person can still drag any column's edge in the header).
const (
	minFitWidth = 90
	maxFitWidth = 360
)

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
	// Detail shows every field of the entry chosen in the table: who, what,
	// the payload with users and keys named, and its place in the hash
	// chain. DetailTitle heads it.
	Detail      *fyne.Container
	DetailTitle *widget.Label

	// names turns the registry ids in entries into names and serials.
	names *activity.Names
	// chosen is the seq of the entry the detail shows; 0 when none.
	chosen int64
	// fitted are the widths fitColumns gave the Actor and Action columns.
	fitted [2]float32

	entries []client.AuditEntry
	next    int64 // cursor of the older page; 0 at the end
	head    int64 // highest seq seen (live refresh reads after it)
	// feedHead is the change feed's head when the log was last read, and
	// quiet the polls since that found it unmoved (and read nothing).
	feedHead string
	quiet    int
	reads    int // polls that read the log (tests count them)
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
	a := &Activity{env: env, names: activity.NewNames()}
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
	a.Table.OnSelected = func(id widget.TableCellID) {
		if id.Row >= 0 && id.Row < len(a.entries) {
			a.showDetail(a.entries[id.Row])
		}
	}
	a.DetailTitle = widget.NewLabelWithStyle("Choose an entry to see all of it.", fyne.TextAlignLeading, fyne.TextStyle{Bold: true})
	a.Detail = container.New(layout.NewFormLayout())

	filters := container.NewGridWithColumns(5, a.Actor, a.Action, a.Subject, a.Since, a.Until)
	buttons := container.NewHBox(a.Apply, a.Clear, widget.NewSeparator(), a.Verify)
	top := container.NewVBox(a.Banner.Root, filters, buttons, a.VerifyResult)
	bottom := container.NewBorder(nil, nil, nil, a.Older, a.Status)
	detail := container.NewBorder(a.DetailTitle, nil, nil, nil, container.NewVScroll(a.Detail))
	split := container.NewVSplit(a.Table, detail)
	split.Offset = 0.62
	a.Root = container.NewBorder(top, bottom, nil, nil, split)
	return a
}

// showDetail shows every field of e.
func (a *Activity) showDetail(e client.AuditEntry) {
	a.chosen = e.Seq
	a.DetailTitle.SetText(fmt.Sprintf("Entry %d: %s by %s", e.Seq, e.Action, e.Actor))
	rows := [][2]string{
		{"Time", e.Time.Local().Format("2006-01-02 15:04:05.000 MST") + " (" + e.Time.UTC().Format(time.RFC3339Nano) + ")"},
		{"Actor", e.Actor},
		{"Action", e.Action},
		{"About", a.names.Describe(e)},
	}
	for _, f := range a.names.Fields(e) {
		rows = append(rows, [2]string{"  " + f[0], f[1]})
	}
	pos := fmt.Sprintf("entry %d", e.Seq)
	if a.head >= e.Seq {
		pos += fmt.Sprintf(" of %d read so far", a.head)
	}
	rows = append(rows, [2]string{"Chain position", pos}, [2]string{"Hash", e.Hash}, [2]string{"Previous hash", e.PrevHash})
	objs := make([]fyne.CanvasObject, 0, 2*len(rows))
	for _, r := range rows {
		k := widget.NewLabelWithStyle(r[0], fyne.TextAlignTrailing, fyne.TextStyle{Bold: true})
		v := widget.NewLabel(r[1])
		v.Wrapping = fyne.TextWrapBreak
		v.Selectable = true
		if r[0] == "Hash" || r[0] == "Previous hash" {
			v.TextStyle = fyne.TextStyle{Monospace: true}
		}
		objs = append(objs, k, v)
	}
	a.Detail.Objects = objs
	a.Detail.Refresh()
}

// DetailText is the detail pane's text, a field a line (for tests).
func (a *Activity) DetailText() string {
	var b strings.Builder
	b.WriteString(a.DetailTitle.Text + "\n")
	for i := 0; i+1 < len(a.Detail.Objects); i += 2 {
		b.WriteString(a.Detail.Objects[i].(*widget.Label).Text + ": " + a.Detail.Objects[i+1].(*widget.Label).Text + "\n")
	}
	return b.String()
}

// fitColumns widens the Actor and Action columns to the longest text
// shown, so neither is cut short (within minFitWidth and maxFitWidth).
func (a *Activity) fitColumns() {
	size := theme.TextSize()
	pad := 2*theme.InnerPadding() + theme.Padding()
	fit := func(col int, text func(client.AuditEntry) string) {
		w := fyne.MeasureText(activityColumns[col].title, size, fyne.TextStyle{Bold: true}).Width
		for _, e := range a.entries {
			w = max(w, fyne.MeasureText(text(e), size, fyne.TextStyle{}).Width)
		}
		w = min(max(w+pad, minFitWidth), maxFitWidth)
		a.fitted[col-1] = w
		a.Table.SetColumnWidth(col, w)
	}
	fit(1, func(e client.AuditEntry) string { return e.Actor })
	fit(2, func(e client.AuditEntry) string { return e.Action })
	// Details as wide as the longest shown, so a wide screen shows them
	// whole; the detail pane below has every entry in full.
	w := activityColumns[3].width
	for _, e := range a.entries {
		w = max(w, fyne.MeasureText(a.names.Describe(e), size, fyne.TextStyle{}).Width+pad)
	}
	a.Table.SetColumnWidth(3, min(w, 1600))
}

// reselect keeps the entry the detail shows chosen in the table after
// rows moved (new entries on top).
func (a *Activity) reselect() {
	if a.chosen == 0 {
		return
	}
	for i, e := range a.entries {
		if e.Seq == a.chosen {
			a.Table.Select(widget.TableCellID{Row: i, Col: 0})
			return
		}
	}
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
		return a.names.Describe(e)
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
		if err == nil {
			// Names are a help, not the log: entries whose names could
			// not be read show the registry's ids.
			a.names.Resolve(ctx, reg, pg.Entries)
		}
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
			a.fitColumns()
			a.Table.UnselectAll()
			a.Table.ScrollToTop()
			a.Table.Refresh()
			a.reselect()
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
	a.Status.SetText(fmt.Sprintf("%d %s, newest first (%s) · live, checked every %s, last change read at %s", len(a.entries), noun, more, PollEvery, a.loadedAt.Local().Format("15:04:05")))
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
		if err == nil {
			a.names.Resolve(ctx, reg, pg.Entries)
		}
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
			a.fitColumns()
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
	feedWas, full := a.feedHead, a.quiet+1 >= readEvery
	a.polling = true
	var fresh []client.AuditEntry
	var head int64
	feed, skipped := feedWas, false
	a.env.Go(func(ctx context.Context) error {
		reg, err := a.env.Registry(ctx)
		if err != nil {
			return err
		}
		// The cheap question first: has the registry changed at all? The
		// log is read only when it has (or every readEvery polls), not
		// every few seconds while nothing happens.
		if h, herr := activity.FeedHead(ctx, reg, feedWas); herr == nil {
			feed = h
			if feedWas != "" && h == feedWas && !full {
				skipped = true
				return nil
			}
		}
		fresh, head, err = activity.Newer(ctx, reg, q, terms, after, 5000)
		if err == nil {
			a.names.Resolve(ctx, reg, fresh)
		}
		return activity.Explain(err)
	}, func(err error) {
		a.polling = false
		if gen != a.gen {
			return
		}
		switch {
		case err != nil:
			a.failed(err)
		case skipped:
			a.quiet++
			a.loadedAt = time.Now()
			if a.Banner.Shown() {
				a.Banner.Hide()
				a.showState()
			}
		default:
			a.feedHead, a.quiet = feed, 0
			a.reads++
			// The status line changes only when what it says does: a
			// line rewritten on every poll is a new text texture in the
			// GL driver each time, kept for a minute.
			changed := len(fresh) > 0 || a.Banner.Shown()
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
				a.fitColumns()
				a.Table.Refresh()
				a.reselect()
			}
			a.loadedAt = time.Now()
			if changed {
				a.showState()
			}
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
	every := PollEvery // read here, on the UI goroutine
	go func() {
		t := time.NewTicker(every)
		defer t.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-t.C:
				uikit.Do(func() { a.tick() })
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
