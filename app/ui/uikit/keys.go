package uikit

import (
	"fyne.io/fyne/v2"
	"fyne.io/fyne/v2/dialog"
	"fyne.io/fyne/v2/driver/desktop"
	"fyne.io/fyne/v2/widget"
)

// Entry is the text entry of keydesk's screens and dialogs: a
// widget.Entry that runs OnEscape on Escape (a dialog's entry cancels the
// dialog) and passes the window's own shortcuts (WindowShortcut) on to the
// window while it has the keyboard focus. Fyne hands a focused widget
// every shortcut, and an entry drops those it does not know, so without
// this Ctrl+1…9 stop working as soon as a search field is clicked.
type Entry struct {
	widget.Entry
	// OnEscape runs when Escape is pressed in the entry; nil ignores it.
	OnEscape func()
	focused  bool
}

// NewEntry is a single-line Entry.
func NewEntry() *Entry {
	e := &Entry{}
	e.ExtendBaseWidget(e)
	return e
}

// NewPasswordEntry is a masked Entry with Fyne's reveal button.
func NewPasswordEntry() *Entry {
	e := &Entry{}
	e.Password = true
	e.Wrapping = fyne.TextWrap(fyne.TextTruncateClip)
	e.ExtendBaseWidget(e)
	return e
}

// NewMultiLineEntry is a multi-line Entry.
func NewMultiLineEntry() *Entry {
	e := &Entry{}
	e.MultiLine = true
	e.Wrapping = fyne.TextWrapWord
	e.ExtendBaseWidget(e)
	return e
}

// FocusGained is the entry's, noted (Focused).
func (e *Entry) FocusGained() {
	e.focused = true
	e.Entry.FocusGained()
}

// FocusLost is the entry's, noted (Focused).
func (e *Entry) FocusLost() {
	e.focused = false
	e.Entry.FocusLost()
}

// Focused says whether the entry holds the keyboard focus, as far as it
// has been told.
func (e *Entry) Focused() bool { return e.focused }

// TypedKey runs OnEscape on Escape; any other key is the entry's.
func (e *Entry) TypedKey(ev *fyne.KeyEvent) {
	if ev.Name == fyne.KeyEscape && e.OnEscape != nil {
		e.OnEscape()
		return
	}
	e.Entry.TypedKey(ev)
}

// TypedShortcut gives the window its own shortcuts; the rest (copy,
// paste, select all, undo) are the entry's.
func (e *Entry) TypedShortcut(s fyne.Shortcut) {
	if WindowShortcut(s) {
		if c, ok := fyne.CurrentApp().Driver().CanvasForObject(e).(fyne.Shortcutable); ok {
			c.TypedShortcut(s)
			return
		}
	}
	e.Entry.TypedShortcut(s)
}

// WindowShortcut says whether s is one of the main window's shortcuts,
// which work whatever has the focus: Ctrl+1…9 (screens), Ctrl+R (list the
// keys again), Ctrl+T (theme), Ctrl+Q (quit).
func WindowShortcut(s fyne.Shortcut) bool {
	cs, ok := s.(*desktop.CustomShortcut)
	if !ok || cs.Modifier != fyne.KeyModifierShortcutDefault {
		return false
	}
	switch cs.KeyName {
	case fyne.Key1, fyne.Key2, fyne.Key3, fyne.Key4, fyne.Key5, fyne.Key6, fyne.Key7, fyne.Key8, fyne.Key9,
		fyne.KeyR, fyne.KeyT, fyne.KeyQ:
		return true
	}
	return false
}

// KeyCatcher shows child and, while it has the keyboard focus, turns
// Enter and Escape into calls: a dialog without an entry gives it the
// focus so that Enter confirms and Escape cancels there too.
type KeyCatcher struct {
	widget.BaseWidget
	child    fyne.CanvasObject
	OnEnter  func()
	OnEscape func()
}

// NewKeyCatcher wraps child.
func NewKeyCatcher(child fyne.CanvasObject, onEnter, onEscape func()) *KeyCatcher {
	k := &KeyCatcher{child: child, OnEnter: onEnter, OnEscape: onEscape}
	k.ExtendBaseWidget(k)
	return k
}

func (k *KeyCatcher) CreateRenderer() fyne.WidgetRenderer { return widget.NewSimpleRenderer(k.child) }
func (k *KeyCatcher) FocusGained()                        {}
func (k *KeyCatcher) FocusLost()                          {}
func (k *KeyCatcher) TypedRune(rune)                      {}

// TypedKey runs OnEnter on Enter or Return and OnEscape on Escape.
func (k *KeyCatcher) TypedKey(ev *fyne.KeyEvent) {
	switch ev.Name {
	case fyne.KeyReturn, fyne.KeyEnter:
		if k.OnEnter != nil {
			k.OnEnter()
		}
	case fyne.KeyEscape:
		if k.OnEscape != nil {
			k.OnEscape()
		}
	}
}

// TypedShortcut passes the window's shortcuts on, as Entry does.
func (k *KeyCatcher) TypedShortcut(s fyne.Shortcut) {
	if c, ok := fyne.CurrentApp().Driver().CanvasForObject(k).(fyne.Shortcutable); ok && WindowShortcut(s) {
		c.TypedShortcut(s)
	}
}

// ShowInfo shows text in a dialog with a Close button that Enter and
// Escape close too; it has the keyboard focus while open.
func ShowInfo(title, text string, w fyne.Window) dialog.Dialog {
	return ShowClosable(title, wrapLabel(text), w)
}

// ShowClosable shows body in a dialog with a Close button that Enter and
// Escape close too.
func ShowClosable(title string, body fyne.CanvasObject, w fyne.Window) dialog.Dialog {
	var d dialog.Dialog
	k := NewKeyCatcher(body, func() { d.Hide() }, func() { d.Hide() })
	d = dialog.NewCustom(title, "Close", k, w)
	d.Show()
	w.Canvas().Focus(k)
	return d
}
