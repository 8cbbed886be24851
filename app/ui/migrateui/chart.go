package migrateui

import (
	"fmt"
	"image/color"
	"math"
	"strings"

	"fyne.io/fyne/v2"
	"fyne.io/fyne/v2/canvas"
	"fyne.io/fyne/v2/theme"
	"fyne.io/fyne/v2/widget"

	"github.com/keydesk/keydesk/registry"
)

// Readiness bar colours: ready is the theme's success colour, blocked its
// error colour, so they follow light and dark themes.
func readyColor() color.Color   { return theme.Color(theme.ColorNameSuccess) }
func blockedColor() color.Color { return theme.Color(theme.ColorNameError) }

// Chart plots a readiness report: per cohort, a bar of ready users beside a
// bar of blocked users, on a y axis of users with gridline ticks, the
// cohorts along the x axis, and a legend. It is drawn with canvas
// primitives only.
type Chart struct {
	widget.BaseWidget
	totals []registry.CohortTotals
}

// NewChart returns an empty chart.
func NewChart() *Chart {
	c := &Chart{}
	c.ExtendBaseWidget(c)
	return c
}

// SetTotals replaces the plotted totals (UI goroutine).
func (c *Chart) SetTotals(t []registry.CohortTotals) {
	c.totals = append([]registry.CohortTotals(nil), t...)
	c.Refresh()
}

// MinSize keeps the plot readable.
func (c *Chart) MinSize() fyne.Size { return fyne.NewSize(420, 240) }

func (c *Chart) CreateRenderer() fyne.WidgetRenderer {
	r := &chartRenderer{c: c}
	r.rebuild()
	return r
}

type chartRenderer struct {
	c       *Chart
	objects []fyne.CanvasObject
	size    fyne.Size
}

func (r *chartRenderer) Destroy()                     {}
func (r *chartRenderer) MinSize() fyne.Size           { return r.c.MinSize() }
func (r *chartRenderer) Objects() []fyne.CanvasObject { return r.objects }
func (r *chartRenderer) Layout(s fyne.Size)           { r.size = s; r.rebuild() }
func (r *chartRenderer) Refresh()                     { r.rebuild(); canvas.Refresh(r.c) }

// niceStep picks a tick step of 1, 2 or 5 × 10^n giving at most 5 ticks.
func niceStep(max int) int {
	if max <= 5 {
		return 1
	}
	raw := float64(max) / 5
	p := math.Pow(10, math.Floor(math.Log10(raw)))
	for _, m := range []float64{1, 2, 5, 10} {
		if m*p >= raw {
			return int(m * p)
		}
	}
	return int(10 * p)
}

func text(s string, size float32, col color.Color) *canvas.Text {
	t := canvas.NewText(s, col)
	t.TextSize = size
	return t
}

// rebuild lays the whole plot out for the current size and totals.
func (r *chartRenderer) rebuild() {
	s := r.size
	if s.Width == 0 || s.Height == 0 {
		s = r.c.MinSize()
	}
	fg := theme.Color(theme.ColorNameForeground)
	grid := theme.Color(theme.ColorNameSeparator)
	small := theme.TextSize() * 0.85
	var objs []fyne.CanvasObject

	const left, top, right, bottom = 56, 28, 12, 46
	plotW, plotH := s.Width-left-right, s.Height-top-bottom
	x0, y0 := float32(left), float32(top)+plotH // origin

	max := 0
	for _, t := range r.c.totals {
		max = int(math.Max(float64(max), math.Max(float64(t.Ready), float64(t.Blocked))))
	}
	step := niceStep(max)
	ymax := step * int(math.Ceil(float64(max)/float64(step)))
	if ymax == 0 {
		ymax = step
	}
	// y ticks and gridlines
	for v := 0; v <= ymax; v += step {
		y := y0 - plotH*float32(v)/float32(ymax)
		g := canvas.NewLine(grid)
		g.Position1, g.Position2 = fyne.NewPos(x0, y), fyne.NewPos(x0+plotW, y)
		objs = append(objs, g)
		l := text(fmt.Sprint(v), small, fg)
		l.Alignment = fyne.TextAlignTrailing
		ls := l.MinSize()
		l.Move(fyne.NewPos(x0-6-ls.Width, y-ls.Height/2))
		l.Resize(ls)
		objs = append(objs, l)
	}
	// axes
	ax := canvas.NewLine(fg)
	ax.StrokeWidth = 1.5
	ax.Position1, ax.Position2 = fyne.NewPos(x0, y0), fyne.NewPos(x0+plotW, y0)
	ay := canvas.NewLine(fg)
	ay.StrokeWidth = 1.5
	ay.Position1, ay.Position2 = fyne.NewPos(x0, y0), fyne.NewPos(x0, float32(top))
	objs = append(objs, ax, ay)
	// axis titles
	yt := text("users", small, fg)
	yt.Move(fyne.NewPos(4, 4))
	objs = append(objs, yt)
	xt := text("cohort", small, fg)
	xs := xt.MinSize()
	xt.Move(fyne.NewPos(x0+plotW/2-xs.Width/2, s.Height-xs.Height-2))
	objs = append(objs, xt)
	// legend
	lx := x0 + plotW
	for _, it := range []struct {
		name string
		col  color.Color
	}{{"blocked", blockedColor()}, {"ready", readyColor()}} {
		t := text(it.name, small, fg)
		ts := t.MinSize()
		lx -= ts.Width
		t.Move(fyne.NewPos(lx, 4))
		sw := canvas.NewRectangle(it.col)
		sw.Resize(fyne.NewSize(10, 10))
		lx -= 14
		sw.Move(fyne.NewPos(lx, 4+ts.Height/2-5))
		lx -= 14
		objs = append(objs, sw, t)
	}
	// bars
	n := len(r.c.totals)
	if n == 0 {
		t := text("no readiness report", theme.TextSize(), fg)
		ts := t.MinSize()
		t.Move(fyne.NewPos(x0+plotW/2-ts.Width/2, float32(top)+plotH/2-ts.Height/2))
		objs = append(objs, t)
	}
	for i, t := range r.c.totals {
		slot := plotW / float32(n)
		bw := float32(math.Min(float64(slot)*0.3, 48))
		cx := x0 + slot*(float32(i)+0.5)
		for j, v := range []struct {
			n   int
			col color.Color
		}{{t.Ready, readyColor()}, {t.Blocked, blockedColor()}} {
			h := plotH * float32(v.n) / float32(ymax)
			bx := cx - bw - 1
			if j == 1 {
				bx = cx + 1
			}
			b := canvas.NewRectangle(v.col)
			b.Move(fyne.NewPos(bx, y0-h))
			b.Resize(fyne.NewSize(bw, h))
			objs = append(objs, b)
			lbl := text(fmt.Sprint(v.n), small, fg)
			ls := lbl.MinSize()
			lbl.Move(fyne.NewPos(bx+bw/2-ls.Width/2, y0-h-ls.Height))
			objs = append(objs, lbl)
		}
		name := text(strings.ReplaceAll(t.Cohort, "staged:", "")+suffix(t.Cohort), small, fg)
		ns := name.MinSize()
		name.Move(fyne.NewPos(cx-ns.Width/2, y0+4))
		objs = append(objs, name)
	}
	r.objects = objs
}

// suffix marks staged cohorts as percentages ("10%").
func suffix(cohort string) string {
	if strings.HasPrefix(cohort, "staged:") {
		return "%"
	}
	return ""
}
