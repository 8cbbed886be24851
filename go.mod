module github.com/keydesk/keydesk

go 1.25.0

require (
	filippo.io/age v1.3.2
	github.com/ebfe/scard v0.0.0-20230420082256-7db3f9b7c8a7
	github.com/fxamacker/cbor/v2 v2.10.0
	github.com/go-piv/piv-go/v2 v2.6.0
	github.com/keys-pub/go-libfido2 v1.5.4-0.20230628025503-281619cff413
	github.com/zalando/go-keyring v0.2.8
	golang.org/x/sys v0.47.0
)

require (
	filippo.io/hpke v0.4.0 // indirect
	github.com/danieljoos/wincred v1.2.3 // indirect
	github.com/godbus/dbus/v5 v5.2.2 // indirect
	github.com/pkg/errors v0.9.1 // indirect
	github.com/x448/float16 v0.8.4 // indirect
	golang.org/x/crypto v0.55.0 // indirect
)
