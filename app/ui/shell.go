package ui

import (
	"image/color"

	"fyne.io/fyne/v2"
	"fyne.io/fyne/v2/canvas"
	"fyne.io/fyne/v2/container"
	"fyne.io/fyne/v2/driver/desktop"
	"fyne.io/fyne/v2/theme"
	"fyne.io/fyne/v2/widget"

	"github.com/keydesk/keydesk/app/ui/uikit"
	"github.com/keydesk/keydesk/internal/buildinfo"
)

// Shell is the main window's frame: the navigation listing the screens the
// person's role sees, the current screen (each built on its first visit),
// a status line, the theme switch and the About box. Its widgets are fields
// so tests can tap them.
type Shell struct {
	env     *uikit.Env
	all     []uikit.Screen
	visible []uikit.Screen
	made    map[string]fyne.CanvasObject
	current string
	dark    bool

	Nav     *widget.List
	Content *fyne.Container
	// Viewport scrolls Content when the screen needs more room than the
	// window gives it.
	Viewport *container.Scroll
	Status   *widget.Label
	Badge    *widget.Label // VIRTUAL in practice mode
	Theme    *widget.Button
	About    *widget.Button
	Root     fyne.CanvasObject

	// OnRefresh runs on Ctrl+R (the shell rescans the keys).
	OnRefresh func()
}

// NewShell lays out screens for env's role; nothing is built until shown.
func NewShell(env *uikit.Env, screens []uikit.Screen) *Shell {
	s := &Shell{env: env, all: screens, made: map[string]fyne.CanvasObject{}}
	env.Open = s.Show
	s.Content = container.NewStack()
	s.Status = widget.NewLabel("Starting…")
	s.Status.Truncation = fyne.TextTruncateEllipsis
	s.Badge = widget.NewLabelWithStyle("", fyne.TextAlignCenter, fyne.TextStyle{Bold: true})
	s.Badge.Importance = widget.WarningImportance
	s.Badge.Hide()
	s.Nav = widget.NewList(
		func() int { return len(s.visible) },
		func() fyne.CanvasObject {
			return container.NewHBox(widget.NewIcon(theme.ComputerIcon()), widget.NewLabel("Screen title"))
		},
		func(i widget.ListItemID, o fyne.CanvasObject) {
			row := o.(*fyne.Container)
			sc := s.visible[i]
			icon := sc.Icon
			if icon == nil {
				icon = theme.NavigateNextIcon()
			}
			row.Objects[0].(*widget.Icon).SetResource(icon)
			row.Objects[1].(*widget.Label).SetText(sc.Title)
		})
	s.Nav.OnSelected = func(i widget.ListItemID) {
		if i >= 0 && i < len(s.visible) && s.visible[i].ID != s.current {
			s.Show(s.visible[i].ID)
		}
	}
	s.Theme = widget.NewButtonWithIcon("Dark", theme.ColorPaletteIcon(), s.ToggleTheme)
	s.About = widget.NewButtonWithIcon("About", theme.InfoIcon(), s.ShowAbout)
	title := widget.NewLabelWithStyle("keydesk", fyne.TextAlignLeading, fyne.TextStyle{Bold: true})
	side := container.NewBorder(
		container.NewVBox(container.NewHBox(title, s.Badge), widget.NewSeparator()),
		container.NewVBox(widget.NewSeparator(), container.NewGridWithColumns(2, s.Theme, s.About)),
		nil, nil, s.Nav)
	// The screen scrolls when it needs more room than the window has, so
	// the window's minimum size is the frame's, not the largest screen
	// visited: it shrinks to a small screen (1024×700) and nothing is cut
	// off out of reach.
	s.Viewport = container.NewScroll(s.Content)
	split := container.NewHSplit(side, container.NewPadded(s.Viewport))
	split.Offset = 0.18
	s.Root = container.NewBorder(nil, container.NewVBox(widget.NewSeparator(), s.Status), nil, nil, split)
	s.filter()
	if len(s.visible) > 0 {
		s.Show(s.visible[0].ID)
	}
	return s
}

func (s *Shell) filter() {
	s.visible = s.visible[:0]
	for _, sc := range s.all {
		if sc.Visible(s.env) {
			s.visible = append(s.visible, sc)
		}
	}
}

// Visible lists the IDs of the screens the person sees, in order.
func (s *Shell) Visible() []string {
	ids := make([]string, len(s.visible))
	for i, sc := range s.visible {
		ids[i] = sc.ID
	}
	return ids
}

// Current is the ID of the screen shown.
func (s *Shell) Current() string { return s.current }

// Show shows the screen with id, building it on its first visit. It returns
// false when the person's role does not see that screen. It holds the UI
// lock (see uikit.Do): a screen built here may start background work that
// ends in Do while the new screen is still being laid out.
func (s *Shell) Show(id string) bool {
	unlock := uikit.LockUI()
	defer unlock()
	for i, sc := range s.visible {
		if sc.ID != id {
			continue
		}
		obj, ok := s.made[id]
		if !ok {
			obj = sc.Make(s.env)
			s.made[id] = obj
		} else if r, ok := obj.(uikit.Revisited); ok && s.current != id {
			// Shown again: a screen that shows registry state reads it anew.
			r.Shown()
		}
		if s.current != id && s.env.Window != nil {
			// The focus stays with the screen it was on: keys typed after
			// a switch must not reach a widget no longer shown (Enter
			// would go on with a hidden enrolment).
			s.env.Window.Canvas().Unfocus()
			if s.current != "" {
				// The screen left keeps its widgets, not its text
				// rendered in the GL driver: a revisit renders it again.
				dropTextTextures(s.env.Window)
			}
		}
		s.current = id
		s.Content.Objects = []fyne.CanvasObject{obj}
		s.Content.Refresh()
		s.Nav.Select(i)
		return true
	}
	return false
}

// Made says whether the screen with id has been built.
func (s *Shell) Made(id string) bool { _, ok := s.made[id]; return ok }

// SetRole changes the person's role (once the registry has said whose
// token the desk holds): the navigation is filtered again and screens are
// rebuilt on their next visit, so nothing built for another role stays.
func (s *Shell) SetRole(role uikit.Role, user string) {
	if role == s.env.Role && user == s.env.User {
		return
	}
	unlock := uikit.LockUI()
	defer unlock()
	s.env.SetRole(role, user)
	s.made = map[string]fyne.CanvasObject{}
	s.filter()
	s.Nav.UnselectAll()
	s.Nav.Refresh()
	cur := s.current
	s.current = ""
	if !s.Show(cur) && len(s.visible) > 0 {
		s.Show(s.visible[0].ID)
	}
}

// SetStatus sets the status line.
func (s *Shell) SetStatus(text string) { s.Status.SetText(text) }

// SetPractice shows or hides the VIRTUAL badge.
func (s *Shell) SetPractice(on bool) {
	if on {
		s.Badge.SetText("VIRTUAL KEYS")
		s.Badge.Show()
	} else {
		s.Badge.Hide()
	}
}

// Dark says whether the dark theme is on.
func (s *Shell) Dark() bool { return s.dark }

// SetDark switches between the light and the dark theme.
func (s *Shell) SetDark(dark bool) {
	s.dark = dark
	s.Theme.SetText("Dark")
	if dark {
		s.Theme.SetText("Light")
	}
	s.env.App.Settings().SetTheme(Theme(dark))
	// Screens built but not shown now pick the theme up too.
	for _, o := range s.made {
		o.Refresh()
	}
	s.Root.Refresh()
}

// ToggleTheme flips the theme.
func (s *Shell) ToggleTheme() { s.SetDark(!s.dark) }

// AboutText is what the About box says.
func AboutText() string {
	return buildinfo.String("keydesk") + "\n\nEnrol, verify and recover YubiKeys and keep them in step with the key registry."
}

// ShowAbout shows the About box.
func (s *Shell) ShowAbout() {
	uikit.ShowInfo("About keydesk", AboutText(), s.env.Window)
}

// Shortcuts installs the keyboard shortcuts on w: Ctrl+1…9 open the
// screens in navigation order, Ctrl+R rescans the keys, Ctrl+T switches
// the theme, F1 shows About, Ctrl+Q quits.
func (s *Shell) Shortcuts(w fyne.Window) {
	keys := []fyne.KeyName{fyne.Key1, fyne.Key2, fyne.Key3, fyne.Key4, fyne.Key5, fyne.Key6, fyne.Key7, fyne.Key8, fyne.Key9}
	for i, k := range keys {
		i := i
		w.Canvas().AddShortcut(&desktop.CustomShortcut{KeyName: k, Modifier: fyne.KeyModifierShortcutDefault}, func(fyne.Shortcut) {
			if i < len(s.visible) {
				s.Show(s.visible[i].ID)
			}
		})
	}
	w.Canvas().AddShortcut(&desktop.CustomShortcut{KeyName: fyne.KeyR, Modifier: fyne.KeyModifierShortcutDefault}, func(fyne.Shortcut) {
		if s.OnRefresh != nil {
			s.OnRefresh()
		}
	})
	w.Canvas().AddShortcut(&desktop.CustomShortcut{KeyName: fyne.KeyT, Modifier: fyne.KeyModifierShortcutDefault}, func(fyne.Shortcut) { s.ToggleTheme() })
	w.Canvas().AddShortcut(&desktop.CustomShortcut{KeyName: fyne.KeyQ, Modifier: fyne.KeyModifierShortcutDefault}, func(fyne.Shortcut) { w.Close() })
	w.Canvas().SetOnTypedKey(func(ev *fyne.KeyEvent) {
		if ev.Name == fyne.KeyF1 {
			s.ShowAbout()
		}
	})
}

// firstFrame is a one-pixel transparent raster: Fyne paints it with the
// window's first frame, which calls painted once.
func firstFrame(painted func()) fyne.CanvasObject {
	done := false
	r := canvas.NewRasterWithPixels(func(x, y, w, h int) color.Color {
		if !done {
			done = true
			painted()
		}
		return color.Transparent
	})
	r.SetMinSize(fyne.NewSize(1, 1))
	return r
}
