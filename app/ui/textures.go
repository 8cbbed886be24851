package ui

import (
	_ "unsafe" // go:linkname

	"fyne.io/fyne/v2"
)

// deleteTextTexturesFor frees every text texture Fyne's GL painter holds
// for c (fyne.io/fyne/v2/internal/cache, Fyne v2.7). Fyne keeps a texture
// per distinct string, style and colour for a minute after it was last
// painted, so the text of a screen just left stays in the GL driver's
// memory (under Mesa's software rasteriser, in the C heap) for that
// minute. Fyne has no public call for it; should a Fyne release drop the
// function, the link fails, not the app.
//
//go:linkname deleteTextTexturesFor fyne.io/fyne/v2/internal/cache.DeleteTextTexturesFor
func deleteTextTexturesFor(c fyne.Canvas)

// glContexter is a window of Fyne's GL driver: it runs f with its GL
// context current (the textures are freed through it).
type glContexter interface {
	RunWithContext(f func())
}

// dropTextTextures frees the text textures of w's canvas, which the next
// frame paints anew for what it shows; the rest (the screen left) is then
// gone. It does nothing for a window of another driver (Fyne's test driver).
func dropTextTextures(w fyne.Window) {
	g, ok := w.(glContexter)
	if !ok {
		return
	}
	c := w.Canvas()
	g.RunWithContext(func() { deleteTextTexturesFor(c) })
}
