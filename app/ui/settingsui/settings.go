// Package settingsui is the Settings screen of keydesk's desktop app.
package settingsui

import (
	"fyne.io/fyne/v2"
	"fyne.io/fyne/v2/theme"
	"fyne.io/fyne/v2/widget"

	"github.com/keydesk/keydesk/app/ui/uikit"
)

// Screen is the Settings screen; every role sees it.
func Screen() uikit.Screen {
	return uikit.Screen{ID: "settings", Title: "Settings", Icon: theme.SettingsIcon(), Make: func(env *uikit.Env) fyne.CanvasObject { return widget.NewLabel("settings") }}
}
