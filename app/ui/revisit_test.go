package ui_test

import (
	"testing"

	"fyne.io/fyne/v2"
	"fyne.io/fyne/v2/widget"

	"github.com/keydesk/keydesk/app/ui"
	"github.com/keydesk/keydesk/app/ui/uikit"
	"github.com/keydesk/keydesk/app/ui/uitest"
)

// probe is a screen's content that counts how often it was shown again.
type probe struct {
	*widget.Label
	shown int
}

func (p *probe) Shown() { p.shown++ }

// TestRevisitedScreensHearOfIt: a screen shown again after another one is
// told (uikit.Revisited); built the first time or picked while already
// shown, it is not.
func TestRevisitedScreensHearOfIt(t *testing.T) {
	env := uitest.Env(t, uikit.Admin, "", uitest.Fleet.Admin)
	p := &probe{Label: widget.NewLabel("a")}
	screens := []uikit.Screen{
		{ID: "a", Title: "A", Make: func(*uikit.Env) fyne.CanvasObject { return p }},
		{ID: "b", Title: "B", Make: func(*uikit.Env) fyne.CanvasObject { return widget.NewLabel("b") }},
	}
	s := ui.NewShell(env, screens)
	env.Window.SetContent(s.Root)
	s.Show("a")
	if p.shown != 0 {
		t.Fatalf("built and shown: told %d times, want 0", p.shown)
	}
	s.Show("a")
	if p.shown != 0 {
		t.Fatalf("picked while shown: told %d times, want 0", p.shown)
	}
	s.Show("b")
	s.Show("a")
	if p.shown != 1 {
		t.Fatalf("shown again after another screen: told %d times, want 1", p.shown)
	}
}
