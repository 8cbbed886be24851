package keysui

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"fyne.io/fyne/v2"
	"fyne.io/fyne/v2/container"
	"fyne.io/fyne/v2/dialog"
	"fyne.io/fyne/v2/storage"
	"fyne.io/fyne/v2/widget"

	"github.com/keydesk/keydesk/app/ui/uikit"
)

// fileKind says whether a field names a file, and which way it goes.
type fileKind int

const (
	noFile   fileKind = iota
	saveFile          // a file keydesk writes (a save dialog)
	openFile          // a file keydesk reads (an open dialog)
)

// field is one value a ParamForm asks for.
type field struct {
	Label, Value, Hint string
	File               fileKind
}

// ParamForm is an open dialog asking for plain values (tries, a subject,
// a file name). It stays open while check refuses what was typed and says
// why in Problem. Tests type into Entries and call Submit.
type ParamForm struct {
	Entries []*uikit.Entry
	Labels  []string
	// Problem says why the values were refused; empty while none was.
	Problem *widget.Label
	dlg     dialog.Dialog
	// saves are the entries naming a file to write, with the path the
	// person agreed to replace in the save dialog.
	saves  map[*uikit.Entry]string
	check  func([]string) error
	done   func([]string)
	closed bool
}

// Submit checks the values and, when check accepts them, closes the dialog
// and goes on with them.
func (f *ParamForm) Submit() {
	if f.closed {
		return
	}
	vals := make([]string, len(f.Entries))
	for i, e := range f.Entries {
		vals[i] = strings.TrimSpace(e.Text)
	}
	for i, e := range f.Entries {
		agreed, ok := f.saves[e]
		if !ok || vals[i] == "" || vals[i] == agreed {
			continue
		}
		if st, err := os.Stat(vals[i]); err == nil && !st.IsDir() {
			f.Problem.SetText(fmt.Sprintf("%s exists already: name another file, or pick it with Choose… to replace it", vals[i]))
			f.Problem.Show()
			return
		}
	}
	if f.check != nil {
		if err := f.check(vals); err != nil {
			f.Problem.SetText(uikit.Plain(err))
			f.Problem.Show()
			return
		}
	}
	f.closed = true
	f.dlg.Hide()
	f.done(vals)
}

// Cancel closes the dialog; nothing happens.
func (f *ParamForm) Cancel() {
	if f.closed {
		return
	}
	f.closed = true
	f.dlg.Hide()
}

// askParams shows a dialog with one entry per field and an action button;
// then gets the trimmed values once check (nil: anything goes) accepts
// them. A file field has a "Choose…" button opening Fyne's file dialog.
func (d *Detail) askParams(title, action string, fields []field, check func([]string) error, then func([]string)) *ParamForm {
	w := d.env.Window
	f := &ParamForm{check: check, done: then, saves: map[*uikit.Entry]string{}}
	f.Problem = widget.NewLabel("")
	f.Problem.Wrapping = fyne.TextWrapWord
	f.Problem.Importance = widget.DangerImportance
	f.Problem.Hide()
	form := widget.NewForm()
	for _, fl := range fields {
		e := uikit.NewEntry()
		e.OnEscape = f.Cancel
		e.SetText(fl.Value)
		e.SetPlaceHolder(fl.Hint)
		f.Entries = append(f.Entries, e)
		f.Labels = append(f.Labels, fl.Label)
		var obj fyne.CanvasObject = e
		if fl.File != noFile {
			kind := fl.File
			if kind == saveFile {
				f.saves[e] = ""
			}
			chosen := func(path string) {
				e.SetText(path)
				if kind == saveFile {
					f.saves[e] = path // the save dialog asked before replacing it
				}
			}
			obj = container.NewBorder(nil, nil, nil, widget.NewButton("Choose…", func() { chooseFile(w, kind, e.Text, chosen) }), e)
		}
		form.Append(fl.Label, obj)
	}
	uikit.ChainEntries(w, f.Entries, f.Submit)
	ok := widget.NewButton(action, f.Submit)
	ok.Importance = widget.HighImportance
	cancel := widget.NewButton("Cancel", f.Cancel)
	dlg := dialog.NewCustomWithoutButtons(title, container.NewVBox(form, f.Problem), w)
	dlg.SetButtons([]fyne.CanvasObject{cancel, ok})
	dlg.Resize(fyne.NewSize(520, 0))
	f.dlg = dlg
	uikit.UnfocusOnClose(dlg, f.Entries...)
	dlg.Show()
	if len(f.Entries) > 0 {
		w.Canvas().Focus(f.Entries[0])
	}
	d.Params = f
	return f
}

// chooseFile opens Fyne's save or open dialog, starting from the file
// named in current, and gives chosen the path picked.
func chooseFile(w fyne.Window, kind fileKind, current string, chosen func(string)) {
	if kind == saveFile {
		fd := dialog.NewFileSave(func(u fyne.URIWriteCloser, err error) {
			if err == nil && u != nil {
				chosen(u.URI().Path())
				u.Close()
			}
		}, w)
		if current != "" {
			fd.SetFileName(filepath.Base(current))
			if dir, err := storage.ListerForURI(storage.NewFileURI(filepath.Dir(current))); err == nil {
				fd.SetLocation(dir)
			}
		}
		fd.Show()
		return
	}
	fd := dialog.NewFileOpen(func(u fyne.URIReadCloser, err error) {
		if err == nil && u != nil {
			chosen(u.URI().Path())
			u.Close()
		}
	}, w)
	fd.Show()
}

// tries reads a number of PIN or PUK tries: 1 to 255, as the key takes
// (Yubico SET PIN RETRIES).
func tries(what, s string) (int, error) {
	n, err := strconv.Atoi(s)
	if err != nil || n < 1 || n > 255 {
		return 0, fmt.Errorf("%s must be a whole number from 1 to 255", what)
	}
	return n, nil
}

// writablePath checks that a file can be created at path: its folder exists.
func writablePath(path string) error {
	if path == "" {
		return errors.New("give the file to write, or press Choose…")
	}
	dir := filepath.Dir(path)
	if st, err := os.Stat(dir); err != nil || !st.IsDir() {
		return fmt.Errorf("the folder %s does not exist", dir)
	}
	if st, err := os.Stat(path); err == nil && st.IsDir() {
		return fmt.Errorf("%s is a folder; name a file in it", path)
	}
	return nil
}
