package ui

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"time"
	_ "unsafe" // go:linkname, below

	"fyne.io/fyne/v2"
	"fyne.io/fyne/v2/canvas"
	"fyne.io/fyne/v2/container"
	"fyne.io/fyne/v2/widget"

	"github.com/keydesk/keydesk/app/ui/uikit"
)

// The layout dump is a test hook, inert unless KEYDESK_UI_DUMP names a
// file: then, each time a file of that name with ".want" appended
// appears, the window's visible text, buttons and entries are written to
// the file as JSON (UIDump) and the ".want" file is removed, so that a test
// driving the real binary under Xvfb (TestRound in cmd/keydesk) can wait
// for a screen state and find where to click without fixed coordinates.
// Nothing is walked while nobody asks, so the app idles as it would
// without the hook. Password entries are dumped without their text.

// UIDump is what the layout dump writes.
type UIDump struct {
	Seq   int     `json:"seq"`   // counts the writes
	Scale float32 `json:"scale"` // device pixels per Fyne unit
	W     float32 `json:"w"`     // the canvas, in Fyne units
	H     float32 `json:"h"`
	MinW  float32 `json:"min_w"` // the window content's minimum size
	MinH  float32 `json:"min_h"`
	// The current screen's minimum size and the room it has: where it
	// needs more, it scrolls.
	ScreenMinW float32    `json:"screen_min_w"`
	ScreenMinH float32    `json:"screen_min_h"`
	ScreenW    float32    `json:"screen_w"`
	ScreenH    float32    `json:"screen_h"`
	Focused    string     `json:"focused,omitempty"` // type and text of the focused object
	Objects    []UIObject `json:"objects"`
}

// UIObject is one visible object, in Fyne units from the canvas's top left;
// X, Y, W, H are already cut to the scroll area the object is in.
type UIObject struct {
	Type     string  `json:"type"` // "text", "label" (whole, though cut on screen), "button", "entry", "select", "check"
	Text     string  `json:"text"`
	X        float32 `json:"x"`
	Y        float32 `json:"y"`
	W        float32 `json:"w"`
	H        float32 `json:"h"`
	Disabled bool    `json:"disabled,omitempty"`
	Focused  bool    `json:"focused,omitempty"`
}

// cachedRenderer is Fyne's renderer cache lookup (fyne.io/fyne/v2/internal/
// cache), which its own test package also uses to walk widget trees; it
// creates no renderer.
//
//go:linkname cachedRenderer fyne.io/fyne/v2/internal/cache.CachedRenderer
func cachedRenderer(wid fyne.Widget) (fyne.WidgetRenderer, bool)

// dumpLayout answers requests for w's layout at path (see above), looking
// for one every 50 ms until ctx ends.
func dumpLayout(ctx context.Context, w fyne.Window, screen, viewport fyne.CanvasObject, path string) {
	want := path + ".want"
	seq := 0
	t := time.NewTicker(50 * time.Millisecond)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		if _, err := os.Stat(want); err != nil {
			continue
		}
		var d UIDump
		uikit.DoAndWait(func() {
			d = layoutOf(w)
			m := screen.MinSize()
			d.ScreenMinW, d.ScreenMinH = m.Width, m.Height
			d.ScreenW, d.ScreenH = viewport.Size().Width, viewport.Size().Height
		})
		seq++
		d.Seq = seq
		b, _ := json.Marshal(d)
		if os.WriteFile(path+".tmp", b, 0o600) == nil {
			os.Rename(path+".tmp", path)
		}
		os.Remove(want)
	}
}

func layoutOf(w fyne.Window) UIDump {
	c := w.Canvas()
	d := UIDump{Scale: c.Scale(), W: c.Size().Width, H: c.Size().Height}
	if w.Content() != nil {
		m := w.Content().MinSize()
		d.MinW, d.MinH = m.Width, m.Height
	}
	if f := c.Focused(); f != nil {
		d.Focused = describe(f)
	}
	full := rect{0, 0, d.W, d.H}
	walk(w.Content(), fyne.Position{}, full, c.Focused(), &d.Objects)
	for _, o := range c.Overlays().List() {
		walk(o, fyne.Position{}, full, c.Focused(), &d.Objects)
	}
	return d
}

func describe(o any) string {
	if e, ok := o.(*uikit.Entry); ok {
		o = &e.Entry
	}
	switch o := o.(type) {
	case *widget.Button:
		return "button " + o.Text
	case *widget.Entry:
		if o.Password {
			return "entry (password)"
		}
		return "entry " + o.Text
	}
	return fmt.Sprintf("%T", o)
}

type rect struct{ x, y, w, h float32 }

func (r rect) cut(o rect) rect {
	x0, y0 := max(r.x, o.x), max(r.y, o.y)
	x1, y1 := min(r.x+r.w, o.x+o.w), min(r.y+r.h, o.y+o.h)
	return rect{x0, y0, max(0, x1-x0), max(0, y1-y0)}
}

func walk(o fyne.CanvasObject, off fyne.Position, clip rect, focused fyne.Focusable, out *[]UIObject) {
	if o == nil || !o.Visible() {
		return
	}
	p := o.Position().Add(off)
	r := clip.cut(rect{p.X, p.Y, o.Size().Width, o.Size().Height})
	if r.w == 0 || r.h == 0 {
		return
	}
	add := func(typ, text string, disabled bool) {
		f, _ := o.(fyne.Focusable)
		*out = append(*out, UIObject{Type: typ, Text: text, X: r.x, Y: r.y, W: r.w, H: r.h, Disabled: disabled, Focused: f != nil && f == focused})
	}
	var children []fyne.CanvasObject
	switch o := o.(type) {
	case *canvas.Text:
		if o.Text != "" {
			add("text", o.Text, false)
		}
		return
	case *fyne.Container:
		children = o.Objects
	case fyne.Widget:
		var w any = o
		if e, ok := o.(*uikit.Entry); ok {
			w = &e.Entry
		}
		switch w := w.(type) {
		case *widget.Button:
			add("button", w.Text, w.Disabled())
		case *widget.Entry:
			text := w.Text
			if w.Password {
				text = ""
			}
			add("entry", text, w.Disabled())
		case *widget.Select:
			add("select", w.Selected, w.Disabled())
		case *widget.Check:
			add("check", w.Text, w.Disabled())
		case *widget.Label:
			// The whole text, also where the screen shows it cut short.
			add("label", w.Text, false)
		}
		if _, ok := o.(*container.Scroll); ok {
			clip = r
		}
		if rd, ok := cachedRenderer(o); ok {
			children = rd.Objects()
		}
	}
	for _, c := range children {
		walk(c, p, clip, focused, out)
	}
}
