package ui

import (
	"image/color"

	"fyne.io/fyne/v2"
	"fyne.io/fyne/v2/theme"
)

// Theme is keydesk's theme: Fyne's default theme held to the light or the
// dark variant, whatever the desktop prefers, with the colours of text and
// of what text sits on replaced so that every pair reaches WCAG 2.1 AA
// (success criterion 1.4.3: a contrast ratio of at least 4.5:1), in every
// state a widget shows it in (normal, hovered, focused, selected).
// theme_test.go checks each pair.
//
// Fyne shows a button's focus as a tint over its background (the focus
// colour): a translucent black in the light theme and white in the dark
// one, strong enough to change every kind of button visibly (SC 2.4.7)
// while its text keeps 4.5:1. In the dark theme the primary colour is a
// light blue with dark text on it, since no single blue reads at 4.5:1
// both as text on the dark background and under white text.
func Theme(dark bool) fyne.Theme {
	if dark {
		return deskTheme{Theme: theme.DefaultTheme(), v: theme.VariantDark}
	}
	return deskTheme{Theme: theme.DefaultTheme(), v: theme.VariantLight}
}

type deskTheme struct {
	fyne.Theme
	v fyne.ThemeVariant
}

func (t deskTheme) Color(n fyne.ThemeColorName, _ fyne.ThemeVariant) color.Color {
	p := lightPalette
	if t.v == theme.VariantDark {
		p = darkPalette
	}
	if c, ok := p[n]; ok {
		return c
	}
	return t.Theme.Color(n, t.v)
}

func rgb(v uint32) color.NRGBA {
	return color.NRGBA{R: uint8(v >> 16), G: uint8(v >> 8), B: uint8(v), A: 0xff}
}

func rgba(v uint32, a uint8) color.NRGBA { c := rgb(v); c.A = a; return c }

// The colours keydesk sets; the rest are Fyne's. Ratios on the main
// background are in docs/desktop-app.md.
var lightPalette = map[fyne.ThemeColorName]color.Color{
	theme.ColorNameForeground:          rgb(0x1F1F1F),
	theme.ColorNameButton:              rgb(0xEDEDED),
	theme.ColorNameDisabledButton:      rgb(0xEDEDED),
	theme.ColorNameDisabled:            rgb(0x616161),
	theme.ColorNamePlaceHolder:         rgb(0x666666),
	theme.ColorNamePrimary:             rgb(0x1A5AC7),
	theme.ColorNameHyperlink:           rgb(0x1A5AC7),
	theme.ColorNameForegroundOnPrimary: rgb(0xFFFFFF),
	theme.ColorNameError:               rgb(0xC62828),
	theme.ColorNameForegroundOnError:   rgb(0xFFFFFF),
	theme.ColorNameSuccess:             rgb(0x18722A),
	theme.ColorNameForegroundOnSuccess: rgb(0xFFFFFF),
	theme.ColorNameWarning:             rgb(0x965200),
	theme.ColorNameForegroundOnWarning: rgb(0xFFFFFF),
	theme.ColorNameFocus:               rgba(0x000000, 0x68),
	theme.ColorNameSelection:           rgba(0x006CFF, 0x24),
}

var darkPalette = map[fyne.ThemeColorName]color.Color{
	theme.ColorNameForeground:          rgb(0xF3F3F3),
	theme.ColorNameButton:              rgb(0x33343A),
	theme.ColorNameDisabledButton:      rgb(0x28292E),
	theme.ColorNameDisabled:            rgb(0x9E9E9E),
	theme.ColorNamePlaceHolder:         rgb(0xA6A6A6),
	theme.ColorNamePrimary:             rgb(0x79A8FF),
	theme.ColorNameHyperlink:           rgb(0x79A8FF),
	theme.ColorNameForegroundOnPrimary: rgb(0x171718),
	theme.ColorNameError:               rgb(0xFF7B72),
	theme.ColorNameForegroundOnError:   rgb(0x171718),
	theme.ColorNameSuccess:             rgb(0x5FD068),
	theme.ColorNameForegroundOnSuccess: rgb(0x171718),
	theme.ColorNameWarning:             rgb(0xFFB44D),
	theme.ColorNameForegroundOnWarning: rgb(0x171718),
	theme.ColorNameFocus:               rgba(0xFFFFFF, 0x48),
}
