module github.com/keydesk/keydesk

go 1.25.0

require (
	filippo.io/age v1.3.2
	github.com/ebfe/scard v0.0.0-20230420082256-7db3f9b7c8a7
	github.com/go-piv/piv-go/v2 v2.6.0
	github.com/zalando/go-keyring v0.2.8
)

require (
	filippo.io/hpke v0.4.0 // indirect
	github.com/danieljoos/wincred v1.2.3 // indirect
	github.com/godbus/dbus/v5 v5.2.2 // indirect
	golang.org/x/crypto v0.55.0 // indirect
	golang.org/x/sys v0.47.0 // indirect
)
