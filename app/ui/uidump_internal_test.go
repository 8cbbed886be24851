package ui

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"fyne.io/fyne/v2"
	"fyne.io/fyne/v2/container"
	"fyne.io/fyne/v2/test"
	"fyne.io/fyne/v2/widget"

	"github.com/keydesk/keydesk/app/ui/uikit"
	"github.com/keydesk/keydesk/app/ui/uitest"
)

// TestLayoutDump: the layout dump answers a request with the visible
// text, buttons (enabled or not) and entries, in window coordinates, the
// focused entry marked and a password never written; hidden widgets and
// text scrolled out of sight are left out.
func TestLayoutDump(t *testing.T) {
	uitest.HoldUI(t)
	a := test.NewTempApp(t)
	w := a.NewWindow("dump")
	ok := widget.NewButton("Save", nil)
	off := widget.NewButton("Delete", nil)
	off.Disable()
	hidden := widget.NewLabel("hidden words")
	hidden.Hide()
	pin := uikit.NewEntry()
	pin.Password = true
	var long []fyne.CanvasObject
	for i := 0; i < 50; i++ {
		long = append(long, widget.NewLabel("row"))
	}
	long = append(long, widget.NewLabel("the last row"))
	scroll := container.NewVScroll(container.NewVBox(long...))
	scroll.SetMinSize(fyne.NewSize(100, 100))
	content := container.NewVBox(widget.NewLabel("Step 1 of 5"), ok, off, hidden, pin, scroll)
	w.SetContent(content)
	w.Resize(fyne.NewSize(400, 3000)) // taller than the scrolled rows: only the scroll hides the last
	w.Canvas().Focus(pin)
	test.Type(pin, "123456")

	path := filepath.Join(t.TempDir(), "ui.json")
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go dumpLayout(ctx, w, content, content, path)
	if err := os.WriteFile(path+".want", nil, 0o600); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		if _, err := os.Stat(path + ".want"); err != nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("no answer to the layout request within 10 s")
		}
		// The dump reads the window through uikit.DoAndWait.
		uitest.Unlocked(func() { time.Sleep(10 * time.Millisecond) })
	}
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(string(b), "123456") {
		t.Fatalf("the dump holds the password: %s", b)
	}
	var d UIDump
	if err := json.Unmarshal(b, &d); err != nil {
		t.Fatal(err)
	}
	find := func(typ, text string) *UIObject {
		for i, o := range d.Objects {
			if o.Type == typ && o.Text == text {
				return &d.Objects[i]
			}
		}
		return nil
	}
	if o := find("text", "Step 1 of 5"); o == nil || o.W == 0 {
		t.Errorf("no visible text %q in %+v", "Step 1 of 5", d.Objects)
	}
	if o := find("button", "Save"); o == nil || o.Disabled {
		t.Errorf("button Save: %+v", o)
	}
	if o := find("button", "Delete"); o == nil || !o.Disabled {
		t.Errorf("button Delete: %+v", o)
	}
	if o := find("entry", ""); o == nil || !o.Focused || d.Focused != "entry (password)" {
		t.Errorf("the password entry %+v, focused %q", o, d.Focused)
	}
	if find("text", "hidden words") != nil || find("label", "hidden words") != nil {
		t.Error("a hidden label is in the dump")
	}
	if find("text", "the last row") != nil {
		t.Error("text scrolled out of sight is in the dump")
	}
	if d.W != 400 || d.H != 3000 || d.Seq != 1 {
		t.Errorf("canvas %v×%v, seq %d", d.W, d.H, d.Seq)
	}
}
