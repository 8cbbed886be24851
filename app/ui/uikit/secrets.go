package uikit

import (
	"context"
	"errors"

	"fyne.io/fyne/v2"
	"fyne.io/fyne/v2/dialog"
	"fyne.io/fyne/v2/widget"
)

// ErrNotGiven: the person closed a PIN dialog without answering.
var ErrNotGiven = errors.New("canceled; nothing was changed")

// SecretForm is an open dialog asking for secrets (PINs, PUKs), one masked
// entry each. Tests type into Entries and call Submit.
type SecretForm struct {
	Entries []*Entry
	// Labels name the entries, in order.
	Labels []string
	dlg    *dialog.FormDialog
	done   func([]string, bool)
	closed bool
}

// Submit answers the dialog with what the entries hold.
func (f *SecretForm) Submit() {
	if f.closed {
		return
	}
	f.closed = true
	f.dlg.Hide()
	vals := make([]string, len(f.Entries))
	for i, e := range f.Entries {
		vals[i] = e.Text
	}
	f.done(vals, true)
}

// Cancel closes the dialog unanswered.
func (f *SecretForm) Cancel() {
	if f.closed {
		return
	}
	f.closed = true
	f.dlg.Hide()
	f.done(nil, false)
}

// ChainEntries makes Enter in each entry of a dialog's form move to the
// next one, and Enter in the last call submit.
func ChainEntries(w fyne.Window, entries []*Entry, submit func()) {
	for i, e := range entries {
		if i == len(entries)-1 {
			e.OnSubmitted = func(string) { submit() }
		} else {
			next := entries[i+1]
			e.OnSubmitted = func(string) { w.Canvas().Focus(next) }
		}
	}
}

// AskSecrets shows a dialog with one masked entry per label; done gets the
// values, or ok false when the person canceled. Enter in the last entry
// submits. Call it on the UI goroutine. The values are never logged.
func AskSecrets(w fyne.Window, title string, labels []string, done func(values []string, ok bool)) *SecretForm {
	f := &SecretForm{done: done, Labels: labels}
	var items []*widget.FormItem
	for _, l := range labels {
		e := NewPasswordEntry()
		e.OnEscape = func() { f.Cancel() }
		f.Entries = append(f.Entries, e)
		items = append(items, widget.NewFormItem(l, e))
	}
	ChainEntries(w, f.Entries, f.Submit)
	f.dlg = dialog.NewForm(title, "OK", "Cancel", items, func(ok bool) {
		if f.closed {
			return
		}
		f.closed = true
		if !ok {
			done(nil, false)
			return
		}
		vals := make([]string, len(f.Entries))
		for i, e := range f.Entries {
			vals[i] = e.Text
		}
		done(vals, true)
	}, w)
	f.dlg.Resize(fyne.NewSize(420, 0))
	UnfocusOnClose(f.dlg, f.Entries...)
	f.dlg.Show()
	if len(f.Entries) > 0 {
		w.Canvas().Focus(f.Entries[0])
	}
	return f
}

// AwaitSecrets is AskSecrets for background work: it shows the dialog
// through fyne.Do and blocks until the person answers or ctx ends. opened,
// when not nil, gets the form on the UI goroutine (tests fill it in).
func AwaitSecrets(ctx context.Context, w fyne.Window, title string, labels []string, opened func(*SecretForm)) ([]string, error) {
	type answer struct {
		vals []string
		ok   bool
	}
	ch := make(chan answer, 1)
	var form *SecretForm
	Do(func() {
		form = AskSecrets(w, title, labels, func(v []string, ok bool) { ch <- answer{v, ok} })
		if opened != nil {
			opened(form)
		}
	})
	select {
	case a := <-ch:
		if !a.ok {
			return nil, ErrNotGiven
		}
		return a.vals, nil
	case <-ctx.Done():
		Do(func() {
			if form != nil {
				form.Cancel()
			}
		})
		return nil, ctx.Err()
	}
}
