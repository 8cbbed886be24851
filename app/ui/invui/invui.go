// Package invui is the desktop app's view of the whole registry: the
// Inventory screen (every user and key, filters, coverage at a glance, a CSV
// of the filtered view for outreach) and the Activity screen (the audit log,
// newest first, filtered, with a check of its hash chain and live refresh).
// Both are faces over app/inventory and app/activity; every registry call
// runs through uikit.Env.Go, never on the UI goroutine.
package invui

import (
	"errors"
	"fmt"
	"strings"
	"time"

	"fyne.io/fyne/v2"
	"fyne.io/fyne/v2/container"
	"fyne.io/fyne/v2/theme"
	"fyne.io/fyne/v2/widget"

	"github.com/keydesk/keydesk/app/ui/uikit"
	"github.com/keydesk/keydesk/registry/client"
)

// Screens are the Inventory and Activity screens, for admins and the
// helpdesk.
func Screens() []uikit.Screen {
	staff := []uikit.Role{uikit.Admin, uikit.Helpdesk}
	return []uikit.Screen{
		{ID: "inventory", Title: "Inventory", Icon: theme.ListIcon(), Roles: staff,
			Make: func(env *uikit.Env) fyne.CanvasObject { return NewInventory(env).Root }},
		{ID: "activity", Title: "Activity", Icon: theme.HistoryIcon(), Roles: staff,
			Make: func(env *uikit.Env) fyne.CanvasObject { return NewActivity(env).Root }},
	}
}

// Banner says the registry could not be reached (or refused), what to do
// next, and offers a retry. It is hidden while all is well.
type Banner struct {
	Message *widget.Label
	Retry   *widget.Button
	Root    *fyne.Container
}

func newBanner(retry func()) *Banner {
	b := &Banner{Message: widget.NewLabel("")}
	b.Message.Wrapping = fyne.TextWrapWord
	b.Message.Importance = widget.DangerImportance
	b.Retry = widget.NewButtonWithIcon("Retry", theme.ViewRefreshIcon(), retry)
	b.Retry.Importance = widget.HighImportance
	b.Root = container.NewBorder(nil, widget.NewSeparator(), widget.NewIcon(theme.ErrorIcon()), container.NewCenter(b.Retry), b.Message)
	b.Root.Hide()
	return b
}

// Show shows what went wrong with err and what to do next.
func (b *Banner) Show(err error) {
	b.Message.SetText(explain(err))
	b.Root.Show()
}

// Hide hides the banner.
func (b *Banner) Hide() { b.Root.Hide() }

// Shown says whether the banner is up.
func (b *Banner) Shown() bool { return b.Root.Visible() }

// explain is the banner's text for err: what happened, then what to do.
func explain(err error) string {
	switch {
	case errors.Is(err, uikit.ErrNoRegistry):
		return "No registry connection.\nSet the registry's address and token in Settings, then press Retry."
	case storageFault(err):
		msg, _ := client.Storage(err)
		return strings.ToUpper(msg[:1]) + msg[1:] + ".\nWhat you see may be out of date; press Retry once it is fixed."
	case errors.Is(err, client.ErrUnreachable):
		return "The registry cannot be reached, so what you see may be out of date.\n" +
			"Check the network and that the registry is running (its address is in Settings), then press Retry."
	case isStatus(err, 401):
		return "The registry does not accept this desk's token (revoked or mistyped).\n" +
			"Set a valid token in Settings, then press Retry."
	case errors.Is(err, client.ErrBadResponse):
		return "Something other than the registry answered at its address.\n" +
			"Check the registry address in Settings, then press Retry."
	}
	return uikit.Message(err)
}

func storageFault(err error) bool {
	_, ok := client.Storage(err)
	return ok
}

func isStatus(err error, status int) bool {
	var ae *client.APIError
	return errors.As(err, &ae) && ae.Status == status
}

// staleNote says how old the data on screen is when the last refresh failed.
func staleNote(at time.Time) string {
	if at.IsZero() {
		return "No data loaded yet."
	}
	return fmt.Sprintf("Stale: showing what the registry said at %s.", at.Local().Format("15:04:05"))
}

// shownIn says whether target is on screen in w: visible, and reached from
// the window's content through visible containers. Where the walk meets a
// widget it cannot look into, it trusts target's own visibility.
func shownIn(w fyne.Window, target fyne.CanvasObject) bool {
	if w == nil || !target.Visible() {
		return false
	}
	found, opaque := walk(w.Content(), target)
	return found || opaque
}

func walk(o, target fyne.CanvasObject) (found, opaque bool) {
	if o == nil || !o.Visible() {
		return false, false
	}
	if o == target {
		return true, false
	}
	var kids []fyne.CanvasObject
	switch c := o.(type) {
	case *fyne.Container:
		kids = c.Objects
	case *container.Split:
		kids = []fyne.CanvasObject{c.Leading, c.Trailing}
	case *container.Scroll:
		kids = []fyne.CanvasObject{c.Content}
	case *container.AppTabs:
		if s := c.Selected(); s != nil {
			kids = []fyne.CanvasObject{s.Content}
		}
	case *container.DocTabs:
		if s := c.Selected(); s != nil {
			kids = []fyne.CanvasObject{s.Content}
		}
	case fyne.Widget:
		// Labels, buttons, lists: nothing of ours hides inside them
		// except through the containers above.
		if _, ok := c.(*widget.Card); ok {
			kids = []fyne.CanvasObject{c.(*widget.Card).Content}
		} else if isLeaf(c) {
			return false, false
		} else {
			return false, true
		}
	}
	for _, k := range kids {
		f, op := walk(k, target)
		if f {
			return true, false
		}
		opaque = opaque || op
	}
	return false, opaque
}

// isLeaf: widgets that hold no screen of ours.
func isLeaf(w fyne.Widget) bool {
	switch w.(type) {
	case *widget.Label, *widget.Button, *widget.List, *widget.Table, *widget.Entry, *uikit.Entry, *widget.Select,
		*widget.Icon, *widget.Separator, *widget.Check, *widget.ProgressBar, *widget.ProgressBarInfinite,
		*widget.RichText, *widget.Hyperlink, *widget.SelectEntry, *widget.Tree, *widget.GridWrap, *widget.Toolbar:
		return true
	}
	return false
}

// setText changes a table cell's text only when it differs: shaping text
// is what a table refresh costs, and most cells keep theirs.
func setText(l *widget.Label, s string) {
	if l.Text != s {
		l.SetText(s)
	}
}
