package ui

import (
	"github.com/keydesk/keydesk/app/ui/enrolui"
	"github.com/keydesk/keydesk/app/ui/helpdeskui"
	"github.com/keydesk/keydesk/app/ui/invui"
	"github.com/keydesk/keydesk/app/ui/keysui"
	"github.com/keydesk/keydesk/app/ui/migrateui"
	"github.com/keydesk/keydesk/app/ui/settingsui"
	"github.com/keydesk/keydesk/app/ui/uikit"
	"github.com/keydesk/keydesk/app/ui/verifyui"
)

// Screens is every screen of the app, in navigation order; Ctrl+1…9 follow
// this order among the screens a person's role sees. Each screen's package
// exports its uikit.Screen; this is the one list of them.
func Screens() []uikit.Screen {
	s := []uikit.Screen{keysui.Screen()}
	s = append(s, enrolui.Screens()...) // Enrol, Batch
	s = append(s, verifyui.Screen(), helpdeskui.Screen())
	s = append(s, invui.Screens()...) // Inventory, Activity
	s = append(s, migrateui.Screen(), settingsui.Screen())
	return s
}
