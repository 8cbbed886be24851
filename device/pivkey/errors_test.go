package pivkey

import (
	"errors"
	"fmt"
	"testing"

	"github.com/go-piv/piv-go/v2/piv"
	"github.com/keydesk/keydesk/device"
)

func TestMapAuth(t *testing.T) {
	var wp *device.WrongPINError
	if err := mapAuth(fmt.Errorf("verify: %w", piv.AuthErr{Retries: 2}), false); !errors.As(err, &wp) || wp.Retries != 2 || wp.PUK {
		t.Errorf("retries 2: %v", err)
	}
	if err := mapAuth(piv.AuthErr{}, false); !errors.Is(err, device.ErrPINBlocked) {
		t.Errorf("pin blocked: %v", err)
	}
	if err := mapAuth(piv.AuthErr{}, true); !errors.Is(err, device.ErrPUKBlocked) {
		t.Errorf("puk blocked: %v", err)
	}
	other := errors.New("x")
	if mapAuth(other, false) != other {
		t.Error("unrelated error changed")
	}
}
