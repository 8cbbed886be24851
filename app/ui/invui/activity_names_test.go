package invui

import (
	"strings"
	"testing"

	"fyne.io/fyne/v2"
	"fyne.io/fyne/v2/canvas"
	"fyne.io/fyne/v2/driver/desktop"
	"fyne.io/fyne/v2/test"
	"fyne.io/fyne/v2/theme"
	"fyne.io/fyne/v2/widget"

	"github.com/keydesk/keydesk/app/ui/uikit"
)

// walkDrawn calls f for obj and everything it draws, through containers and
// widgets' renderers.
func walkDrawn(obj fyne.CanvasObject, f func(fyne.CanvasObject)) {
	if obj == nil || !obj.Visible() {
		return
	}
	f(obj)
	if c, ok := obj.(*fyne.Container); ok {
		for _, o := range c.Objects {
			walkDrawn(o, f)
		}
		return
	}
	if w, ok := obj.(fyne.Widget); ok {
		for _, o := range test.WidgetRenderer(w).Objects() {
			walkDrawn(o, f)
		}
	}
}

// TestActivityAuditTool: the Activity screen as an audit tool over a
// seeded registry. Details name users and keys (external ids, names,
// serials), never the registry's usr_/key_ ids; the Actor and Action
// columns are wide enough for every actor and action shown at 1920×1080
// and at 1024×700; a column's edge dragged in the header makes it wider;
// a chosen entry shows all its fields, its hash and its place in the
// chain.
func TestActivityAuditTool(t *testing.T) {
	r := startRegistry(t)
	us := plan(12)
	r.seed(us)
	env := newEnv(t, r.admin, uikit.Admin)
	a, ch := openActivity(t, env)
	a.Reload()
	if s := next(t, ch, "reload"); s.err != nil || len(s.entries) == 0 {
		t.Fatalf("reload: %v, %d entries", s.err, len(s.entries))
	}
	serials := map[string]bool{}
	for _, u := range us {
		for _, k := range u.Keys {
			serials[k.Serial] = true
		}
	}
	named := 0
	for row, e := range a.Entries() {
		d := a.Cell(row, 3)
		if strings.Contains(d, "usr_") || strings.Contains(d, "key_") {
			t.Errorf("entry %d (%s) shows registry ids: %q", e.Seq, e.Action, d)
		}
		if e.Action == "key.status" {
			for s := range serials {
				if strings.Contains(d, "key "+s+" of u") {
					named++
					break
				}
			}
		}
	}
	if named == 0 {
		t.Error("no key.status entry names its key by serial and owner")
	}

	// Not cut short, on a large screen and a small one.
	for _, size := range []fyne.Size{{Width: 1920, Height: 1080}, {Width: 1024, Height: 700}} {
		env.Window.Resize(size)
		a.Table.Refresh()
		walkDrawn(a.Table, func(o fyne.CanvasObject) {
			txt, ok := o.(*canvas.Text)
			if !ok || !strings.HasSuffix(txt.Text, "…") {
				return
			}
			cut := strings.TrimSuffix(txt.Text, "…")
			for _, e := range a.Entries() {
				if strings.HasPrefix(e.Actor, cut) || strings.HasPrefix(e.Action, cut) {
					t.Errorf("at %v the actor or action %q is cut to %q", size, e.Actor+" / "+e.Action, txt.Text)
					return
				}
			}
		})
	}

	// The Actor column's right edge dragged 120 px to the right.
	env.Window.Resize(fyne.NewSize(1280, 800))
	header := func() float32 {
		var w float32
		walkDrawn(a.Table, func(o fyne.CanvasObject) {
			if l, ok := o.(*widget.Label); ok && l.Text == "Actor" {
				w = l.Size().Width
			}
		})
		return w
	}
	before := header()
	pad := theme.Padding()
	edge := fyne.NewPos(activityColumns[0].width+pad+a.fitted[0]+pad/2, 5)
	a.Table.MouseMoved(&desktop.MouseEvent{PointEvent: fyne.PointEvent{Position: edge}})
	a.Table.MouseDown(&desktop.MouseEvent{PointEvent: fyne.PointEvent{Position: edge}})
	a.Table.Dragged(&fyne.DragEvent{PointEvent: fyne.PointEvent{Position: edge.AddXY(120, 0)}})
	a.Table.DragEnd()
	a.Table.Refresh()
	if after := header(); after < before+100 {
		t.Errorf("the Actor column is %.0f px wide after a drag of 120 px from %.0f", after, before)
	}

	// The detail of an entry: every field, its hash and chain position.
	var row int
	for i, e := range a.Entries() {
		if e.Action == "key.status" {
			row = i
			break
		}
	}
	e := a.Entries()[row]
	a.Table.Select(widget.TableCellID{Row: row, Col: 1})
	d := a.DetailText()
	for _, want := range []string{"Actor: " + e.Actor, "Action: key.status", "Hash: " + e.Hash, "Previous hash: " + e.PrevHash, "Chain position: entry", "owner_id: usr_", "key "} {
		if !strings.Contains(d, want) {
			t.Errorf("detail lacks %q:\n%s", want, d)
		}
	}
	if e.Hash == "" {
		t.Error("the entry has no hash to show")
	}
}
