// Package helpdeskui is the Helpdesk screen of keydesk's desktop app.
package helpdeskui

import (
	"fyne.io/fyne/v2"
	"fyne.io/fyne/v2/theme"
	"fyne.io/fyne/v2/widget"

	"github.com/keydesk/keydesk/app/ui/uikit"
)

// Screen is the Helpdesk screen, for admins and the helpdesk.
func Screen() uikit.Screen {
	return uikit.Screen{ID: "helpdesk", Title: "Helpdesk", Icon: theme.HelpIcon(), Roles: []uikit.Role{uikit.Admin, uikit.Helpdesk}, Make: func(env *uikit.Env) fyne.CanvasObject { return widget.NewLabel("helpdesk") }}
}
