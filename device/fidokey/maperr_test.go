package fidokey

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"testing"

	"github.com/keydesk/keydesk/device"
	"github.com/keydesk/keydesk/device/fidokey/fidoc"
)

// TestTransportFailures: a receive failure is "no answer" while the device
// node is there and "key removed" once it is gone; the libfido2 code stays
// in the chain.
func TestTransportFailures(t *testing.T) {
	ctx := context.Background()
	here := Open("/dev/null")
	err := here.mapErr(ctx, "reading info", fmt.Errorf("fido_dev_get_cbor_info: %w", fidoc.ErrRX))
	if !errors.Is(err, device.ErrNoAnswer) || errors.Is(err, device.ErrKeyRemoved) || !errors.Is(err, fidoc.ErrRX) {
		t.Errorf("device there: %v", err)
	}
	if device.Hint(err) == "" {
		t.Error("no hint for a key that stopped answering")
	}
	away := Open(filepath.Join(t.TempDir(), "hidraw-gone"))
	err = away.mapErr(ctx, "reading info", fmt.Errorf("fido_dev_get_cbor_info: %w", fidoc.ErrRX))
	if !errors.Is(err, device.ErrKeyRemoved) || errors.Is(err, device.ErrNoAnswer) {
		t.Errorf("device gone: %v", err)
	}
}
