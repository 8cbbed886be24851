// Package verifyui is the Verify screen of keydesk's desktop app.
package verifyui

import (
	"fyne.io/fyne/v2"
	"fyne.io/fyne/v2/theme"
	"fyne.io/fyne/v2/widget"

	"github.com/keydesk/keydesk/app/ui/uikit"
)

// Screen is the Verify screen; every role sees it.
func Screen() uikit.Screen {
	return uikit.Screen{ID: "verify", Title: "Verify", Icon: theme.ConfirmIcon(), Make: func(env *uikit.Env) fyne.CanvasObject { return widget.NewLabel("verify") }}
}
