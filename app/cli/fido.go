package cli

import (
	"context"

	"github.com/keydesk/keydesk/device"
	"github.com/keydesk/keydesk/device/fidokey"
)

// The FIDO2 adapter: discovery reads each FIDO device's serial so it merges
// with the key's PC/SC entry, and info reads its state.
func init() {
	fidoInfo = func(ctx context.Context, path string) (uint32, device.Version, bool, error) {
		return fidokey.Open(path).Info(ctx)
	}
	fidoStatus = func(ctx context.Context, path string) (*device.FIDOStatus, error) {
		st, err := fidokey.Open(path).Status(ctx)
		if err != nil {
			return nil, err
		}
		return &st, nil
	}
}
