package keysui

import (
	"image/color"

	"fyne.io/fyne/v2"
	"fyne.io/fyne/v2/canvas"
	"fyne.io/fyne/v2/widget"
)

// Form factors as the management application reports them (Yubico's
// YubiKey Manager, FORM_FACTOR: 1 USB-A keychain, 2 USB-A nano, 3 USB-C
// keychain, 4 USB-C nano, 5 USB-C and Lightning, 6 USB-A Bio, 7 USB-C Bio).
const (
	formA     = 1
	formANano = 2
	formC     = 3
	formCNano = 4
	formCi    = 5
	formABio  = 6
	formCBio  = 7
)

// Glyph is a small drawing of a key's shape: a keychain key (USB-A or
// USB-C connector), a nano, the 5Ci with its two connectors, a Bio with
// its fingerprint pad. It says which key is which at a glance, as
// Yubico Authenticator's picture of the key does.
type Glyph struct {
	widget.BaseWidget
	Form uint8
	// Scale enlarges the drawing (1 when zero): the Overview shows the
	// key larger than its card does.
	Scale float32
}

// NewGlyph draws form.
func NewGlyph(form uint8) *Glyph {
	g := &Glyph{Form: form}
	g.ExtendBaseWidget(g)
	return g
}

// SetForm changes the shape drawn.
func (g *Glyph) SetForm(form uint8) {
	if g.Form != form {
		g.Form = form
		g.Refresh()
	}
}

var (
	glyphBody    = color.NRGBA{0x26, 0x26, 0x28, 0xff}
	glyphEdge    = color.NRGBA{0x8A, 0x8A, 0x8E, 0xff}
	glyphMetal   = color.NRGBA{0xB8, 0xBC, 0xC2, 0xff}
	glyphGold    = color.NRGBA{0xD4, 0xA5, 0x2C, 0xff}
	glyphPadBlue = color.NRGBA{0x50, 0x60, 0x70, 0xff}
)

const glyphW, glyphH = 40, 72

func (g *Glyph) CreateRenderer() fyne.WidgetRenderer {
	r := &glyphRenderer{g: g}
	r.Refresh()
	return r
}

type glyphRenderer struct {
	g    *Glyph
	objs []fyne.CanvasObject
}

func (r *glyphRenderer) scale() float32 {
	if r.g.Scale <= 0 {
		return 1
	}
	return r.g.Scale
}

func (r *glyphRenderer) Refresh() {
	k := r.scale()
	rect := func(c color.Color, x, y, w, h, radius float32) *canvas.Rectangle {
		o := canvas.NewRectangle(c)
		o.CornerRadius = radius * k
		o.Move(fyne.NewPos(x*k, y*k))
		o.Resize(fyne.NewSize(w*k, h*k))
		return o
	}
	circle := func(c color.Color, x, y, d float32) *canvas.Circle {
		o := canvas.NewCircle(c)
		o.Move(fyne.NewPos(x*k, y*k))
		o.Resize(fyne.NewSize(d*k, d*k))
		return o
	}
	var o []fyne.CanvasObject
	switch f := r.g.Form; f {
	case formANano, formCNano:
		// A nano: a short body that sits in the port, a small contact.
		w := float32(20)
		if f == formANano {
			w = 28
		}
		x := (glyphW - w) / 2
		o = append(o, rect(glyphMetal, x+3, 40, w-6, 20, 2), rect(glyphBody, x, 22, w, 20, 3), rect(glyphGold, x+w/2-4, 28, 8, 6, 2))
	default:
		body := rect(glyphBody, 6, 4, 28, 50, 6)
		body.StrokeColor, body.StrokeWidth = glyphEdge, k
		o = append(o, body, circle(color.White, 16, 8, 8))
		switch f {
		case formABio, formCBio:
			o = append(o, rect(glyphPadBlue, 12, 24, 16, 18, 6))
		default:
			o = append(o, circle(glyphGold, 12, 26, 16))
		}
		switch f {
		case formA, formABio:
			o = append(o, rect(glyphMetal, 9, 54, 22, 16, 1))
		case formCi:
			o = append(o, rect(glyphMetal, 14, 54, 12, 12, 3), rect(glyphGold, 16, 0, 8, 5, 1))
		default: // USB-C, and a key whose form the management application did not say
			o = append(o, rect(glyphMetal, 13, 54, 14, 12, 4))
		}
	}
	r.objs = o
	canvas.Refresh(r.g)
}

func (r *glyphRenderer) Layout(fyne.Size) {}
func (r *glyphRenderer) MinSize() fyne.Size {
	return fyne.NewSize(glyphW*r.scale(), glyphH*r.scale())
}
func (r *glyphRenderer) Objects() []fyne.CanvasObject { return r.objs }
func (r *glyphRenderer) Destroy()                     {}
