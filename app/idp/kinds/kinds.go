// Package kinds links every identity-provider connector kind into the
// desk: importing it (as app/regconn does, which both the desktop app and
// the command line open their providers through) registers each kind with
// app/idp, so the settings' provider list can name it. A new connector
// package adds itself here.
package kinds

import (
	_ "github.com/keydesk/keydesk/app/idp/entra"  // kind "entra"
	_ "github.com/keydesk/keydesk/app/idp/kratos" // kind "kratos"
	_ "github.com/keydesk/keydesk/app/idp/okta"   // kind "okta"
)
