package main

import (
	"encoding/binary"
	"errors"
	"fmt"
	"image"
	"image/color"
)

// readXWD decodes an X Window Dump of a 24- or 32-bit TrueColor ZPixmap,
// what xwd writes for an Xvfb screen of depth 24 (X11 XWDFile.h).
func readXWD(b []byte) (*image.RGBA, error) {
	if len(b) < 100 {
		return nil, errors.New("xwd: short file")
	}
	var be binary.ByteOrder = binary.BigEndian
	if be.Uint32(b[4:]) != 7 {
		if binary.LittleEndian.Uint32(b[4:]) != 7 {
			return nil, errors.New("xwd: not version 7")
		}
		be = binary.LittleEndian
	}
	u := func(i int) uint32 { return be.Uint32(b[4*i:]) }
	hdr, format, w, h := u(0), u(2), int(u(4)), int(u(5))
	byteOrder, bpp, bpl := u(7), u(11), int(u(12))
	rmask, gmask, bmask := u(14), u(15), u(16)
	ncolors := int(u(19))
	if format != 2 || (bpp != 32 && bpp != 24) {
		return nil, fmt.Errorf("xwd: format %d, %d bits per pixel unsupported", format, bpp)
	}
	off := int(hdr) + 12*ncolors
	if len(b) < off+bpl*h {
		return nil, errors.New("xwd: truncated pixels")
	}
	shift := func(m uint32) uint {
		s := uint(0)
		for m != 0 && m&1 == 0 {
			m >>= 1
			s++
		}
		return s
	}
	rs, gs, bs := shift(rmask), shift(gmask), shift(bmask)
	img := image.NewRGBA(image.Rect(0, 0, w, h))
	step := int(bpp / 8)
	for y := 0; y < h; y++ {
		row := b[off+y*bpl:]
		for x := 0; x < w; x++ {
			p := row[x*step:]
			var v uint32
			if byteOrder == 0 { // LSBFirst
				for i := step - 1; i >= 0; i-- {
					v = v<<8 | uint32(p[i])
				}
			} else {
				for i := 0; i < step; i++ {
					v = v<<8 | uint32(p[i])
				}
			}
			img.SetRGBA(x, y, color.RGBA{uint8((v & rmask) >> rs), uint8((v & gmask) >> gs), uint8((v & bmask) >> bs), 255})
		}
	}
	return img, nil
}
