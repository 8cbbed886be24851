// Package sim assembles virtual YubiKey 5s from their applets, keeps their
// state in files so credentials survive restarts, attaches them to the real
// transports, and runs them for practice mode and tests (keydesk-sim).
package sim

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"sync"

	"github.com/keydesk/keydesk/device/virtual"
	"github.com/keydesk/keydesk/device/virtual/ctap"
	"github.com/keydesk/keydesk/device/virtual/iso7816"
	"github.com/keydesk/keydesk/device/virtual/mgmtapplet"
	"github.com/keydesk/keydesk/device/virtual/pivapplet"
	"github.com/keydesk/keydesk/device/virtual/ptyhid"
	"github.com/keydesk/keydesk/device/virtual/vpcd"
)

// Options describe a virtual key to create when no saved state exists.
type Options struct {
	Serial     uint32
	Firmware   virtual.Version
	FormFactor virtual.FormFactor
	// StatePath, when set, is the file the key's state is loaded from and
	// saved to after every change. It holds private keys and PINs (it is the
	// virtual secure element) and is written with mode 0600.
	StatePath string
}

// YubiKey is one virtual YubiKey 5: its physical model, its applets, the
// card that routes PC/SC commands to them, and its FIDO2 authenticator.
type YubiKey struct {
	Key  *virtual.Key
	PIV  *pivapplet.Applet
	Mgmt *mgmtapplet.Applet
	Card *iso7816.Card
	FIDO *ctap.Authenticator
	// HID is the pseudo-terminal libfido2 opens, while Run runs.
	HID *ptyhid.Device

	path  string
	dirty chan struct{}
	saved sync.WaitGroup
	mu    sync.Mutex
	err   error
}

type stateFile struct {
	Identity virtual.Identity `json:"identity"`
	PIV      json.RawMessage  `json:"piv"`
	FIDO     json.RawMessage  `json:"fido,omitempty"`
}

// New creates a virtual key, or loads it from opts.StatePath when that file
// exists.
func New(opts Options) (*YubiKey, error) {
	y := &YubiKey{path: opts.StatePath}
	var saved *stateFile
	if opts.StatePath != "" {
		b, err := os.ReadFile(opts.StatePath)
		switch {
		case err == nil:
			saved = &stateFile{}
			if err := json.Unmarshal(b, saved); err != nil {
				return nil, fmt.Errorf("loading virtual key from %s: %w", opts.StatePath, err)
			}
		case !os.IsNotExist(err):
			return nil, fmt.Errorf("loading virtual key: %w", err)
		}
	}
	var err error
	if saved != nil {
		y.Key = virtual.NewKey(saved.Identity)
		if y.PIV, err = pivapplet.Restore(y.Key, saved.PIV); err != nil {
			return nil, fmt.Errorf("loading virtual key from %s: piv: %w", opts.StatePath, err)
		}
	} else {
		id := virtual.DefaultIdentity(opts.Serial)
		if opts.Firmware != (virtual.Version{}) {
			id.Firmware = opts.Firmware
		}
		if opts.FormFactor != 0 {
			id.FormFactor = opts.FormFactor
		}
		y.Key = virtual.NewKey(id)
		if y.PIV, err = pivapplet.New(y.Key); err != nil {
			return nil, err
		}
	}
	if y.FIDO, err = ctap.New(y.Key); err != nil {
		return nil, err
	}
	if saved != nil && len(saved.FIDO) > 0 {
		if err := y.FIDO.UnmarshalState(saved.FIDO); err != nil {
			return nil, fmt.Errorf("loading virtual key from %s: fido: %w", opts.StatePath, err)
		}
	}
	y.Mgmt = mgmtapplet.New(y.Key)
	y.Card = iso7816.NewCard(y.enabled, y.PIV, y.Mgmt)
	if y.path != "" {
		y.dirty = make(chan struct{}, 1)
		y.Key.OnChange(func() {
			select {
			case y.dirty <- struct{}{}:
			default:
			}
		})
		if saved == nil {
			if err := y.Save(); err != nil {
				return nil, err
			}
		}
	}
	return y, nil
}

// enabled applies the management applet's USB application switches to
// selection over CCID: a disabled application cannot be selected.
func (y *YubiKey) enabled(a iso7816.Applet) bool {
	id := y.Key.Identity()
	switch a.(type) {
	case *pivapplet.Applet:
		return id.EnabledUSB.Has(virtual.CapPIV)
	}
	return true
}

// Serial is the key's serial number.
func (y *YubiKey) Serial() uint32 { return y.Key.Identity().Serial }

// Save writes the state file now (atomically, mode 0600).
func (y *YubiKey) Save() error {
	if y.path == "" {
		return nil
	}
	y.mu.Lock()
	defer y.mu.Unlock()
	pivState, err := y.PIV.MarshalState()
	if err != nil {
		return err
	}
	fidoState, err := y.FIDO.MarshalState()
	if err != nil {
		return err
	}
	b, err := json.MarshalIndent(stateFile{Identity: y.Key.Identity(), PIV: pivState, FIDO: fidoState}, "", "  ")
	if err != nil {
		return err
	}
	if err := os.MkdirAll(filepath.Dir(y.path), 0o700); err != nil {
		return err
	}
	tmp := y.path + ".tmp"
	if err := os.WriteFile(tmp, b, 0o600); err != nil {
		return err
	}
	return os.Rename(tmp, y.path)
}

// Run attaches the key's card to the vpcd reader at pcscAddr and saves state
// after every change, until ctx ends. The returned slot says when pcscd has
// the card. With hidLink set, it also opens the FIDO pseudo-terminal and keeps
// a symbolic link to it at that path (its directory must exist).
func (y *YubiKey) Run(ctx context.Context, pcscAddr, hidLink string) (*vpcd.Slot, error) {
	if hidLink != "" {
		hid, err := ptyhid.Open(y.Key, y.FIDO, hidLink)
		if err != nil {
			return nil, fmt.Errorf("opening the fido transport: %w", err)
		}
		y.HID = hid
		y.saved.Add(1)
		go func() {
			defer y.saved.Done()
			<-ctx.Done()
			hid.Close()
		}()
	}
	if y.dirty != nil {
		y.saved.Add(1)
		go func() {
			defer y.saved.Done()
			for {
				select {
				case <-ctx.Done():
					y.setErr(y.Save())
					return
				case <-y.dirty:
					y.setErr(y.Save())
				}
			}
		}()
	}
	return vpcd.Attach(ctx, pcscAddr, y.Key, y.Card), nil
}

func (y *YubiKey) setErr(err error) {
	if err != nil {
		y.mu.Lock()
		y.err = err
		y.mu.Unlock()
	}
}

// Wait blocks until Run's saver has written the final state, and returns the
// first save error.
func (y *YubiKey) Wait() error {
	y.saved.Wait()
	y.mu.Lock()
	defer y.mu.Unlock()
	return y.err
}
