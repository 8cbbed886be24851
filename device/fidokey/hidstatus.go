package fidokey

import (
	"context"
	"crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"time"

	"github.com/fxamacker/cbor/v2"

	"github.com/keydesk/keydesk/device"
)

// CTAPHID and CTAP2 numbers the HID status read uses (CTAP 2.1 §11.2.9,
// §6).
const (
	hidCBOR          = 0x10 // CTAPHID_CBOR
	hidCapCBOR       = 0x04 // CAPABILITY_CBOR in the INIT reply
	ctapGetInfo      = 0x04 // authenticatorGetInfo
	ctapClientPIN    = 0x06 // authenticatorClientPIN
	pinGetPINRetries = 0x01 // its getPINRetries subcommand
)

// getInfoReply is the part of authenticatorGetInfo's reply (CTAP 2.1 §6.4)
// that Status reports.
type getInfoReply struct {
	Versions       []string        `cbor:"1,keyasint"`
	Extensions     []string        `cbor:"2,keyasint"`
	AAGUID         []byte          `cbor:"3,keyasint"`
	Options        map[string]bool `cbor:"4,keyasint"`
	PINProtocols   []uint64        `cbor:"6,keyasint"`
	ForcePINChange bool            `cbor:"12,keyasint"`
	MinPINLength   uint64          `cbor:"13,keyasint"`
	Firmware       uint64          `cbor:"14,keyasint"`
	RemainingRK    *int64          `cbor:"20,keyasint"`
}

// InfoStatus is Info and Status in one CTAPHID session of keydesk's own,
// without libfido2: READ_CONFIG for the serial and firmware, then
// authenticatorGetInfo (CTAP 2.1 §6.4) and, when a PIN is set,
// getPINRetries (§6.5.5.2). It opens the device once and does not load
// libfido2, for keydesk's `fido status`, which needs the serial to find
// the key and then its status. The status reads as Status's does, except
// that LibraryLacks is what libfido2 lacks only where it is already linked
// (libfidoLacks). err concerns the serial (as Info); statusErr the status.
func (d *Device) InfoStatus(ctx context.Context) (serial uint32, firmware device.Version, ok bool, st device.FIDOStatus, statusErr, err error) {
	path := d.Path()
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		return 0, firmware, false, st, nil, fmt.Errorf("reading fido status over hid: %w", err)
	}
	defer f.Close()
	deadline, has := ctx.Deadline()
	if !has {
		deadline = time.Now().Add(infoTimeout)
	}
	f.SetDeadline(deadline)
	stop := context.AfterFunc(ctx, func() { f.SetDeadline(time.Now()) })
	defer stop()
	h := &hidConn{rw: f}
	cid, caps, hidVersion, err := hidInitChannel(h)
	if err != nil {
		return 0, firmware, false, st, nil, fmt.Errorf("reading fido status over hid: %w", err)
	}
	firmware = hidVersion
	if err := h.send(cid, hidReadConfig, []byte{0}); err != nil {
		return 0, firmware, false, st, nil, err
	}
	cmd, data, err := h.recv(cid)
	if err != nil {
		return 0, firmware, false, st, nil, err
	}
	// As Info: a key that does not know READ_CONFIG has no serial to give;
	// any other answer but the config is a failure.
	switch {
	case cmd == hidError && len(data) > 0 && data[0] == hidInvalidCmd:
	case cmd == hidError:
		return 0, firmware, false, st, nil, fmt.Errorf("ctaphid error 0x%02x", data)
	case cmd != hidReadConfig:
		return 0, firmware, false, st, nil, fmt.Errorf("read config answered with command 0x%02x", cmd)
	default:
		if serial, ok, err = parseReadConfig(data, &firmware); err != nil {
			return 0, firmware, false, st, nil, err
		}
	}
	if caps&hidCapCBOR == 0 {
		return serial, firmware, ok, st, fmt.Errorf("key speaks only u2f: %w", device.ErrNotSupported), nil
	}
	st, statusErr = hidStatus(h, cid, hidVersion)
	return serial, firmware, ok, st, statusErr, nil
}

// hidInitChannel allocates a channel (CTAPHID_INIT, CTAP 2.1
// §11.2.9.1.3) and returns it with the capability flags and the device
// version.
func hidInitChannel(h *hidConn) (cid uint32, caps byte, version device.Version, err error) {
	nonce := make([]byte, 8)
	if _, err := rand.Read(nonce); err != nil {
		return 0, 0, version, err
	}
	if err := h.send(hidBroadcast, hidInit, nonce); err != nil {
		return 0, 0, version, err
	}
	for {
		cmd, data, err := h.recv(hidBroadcast)
		if err != nil {
			return 0, 0, version, err
		}
		if cmd == hidInit && len(data) >= 17 && string(data[:8]) == string(nonce) {
			return binary.BigEndian.Uint32(data[8:12]), data[16], device.Version{Major: data[13], Minor: data[14], Patch: data[15]}, nil
		}
	}
}

// ctap sends one CTAP2 command over CTAPHID_CBOR and returns the reply's
// CBOR after a zero status byte (CTAP 2.1 §8.2).
func ctap(h *hidConn, cid uint32, req []byte) ([]byte, error) {
	if err := h.send(cid, hidCBOR, req); err != nil {
		return nil, err
	}
	cmd, data, err := h.recv(cid)
	if err != nil {
		return nil, err
	}
	if cmd != hidCBOR || len(data) == 0 {
		return nil, fmt.Errorf("ctap command 0x%02x answered with ctaphid command 0x%02x", req[0], cmd)
	}
	if data[0] != 0 {
		return nil, fmt.Errorf("ctap command 0x%02x answered with status 0x%02x", req[0], data[0])
	}
	return data[1:], nil
}

// hidStatus reads the status Status reads, over h.
func hidStatus(h *hidConn, cid uint32, hidVersion device.Version) (device.FIDOStatus, error) {
	var st device.FIDOStatus
	raw, err := ctap(h, cid, []byte{ctapGetInfo})
	if err != nil {
		return st, err
	}
	var in getInfoReply
	if err := cbor.Unmarshal(raw, &in); err != nil {
		return st, fmt.Errorf("authenticatorGetInfo: %w", err)
	}
	if len(in.AAGUID) != len(st.AAGUID) {
		return st, errors.New("authenticatorGetInfo: no 16-byte aaguid")
	}
	copy(st.AAGUID[:], in.AAGUID)
	st.Versions, st.Extensions, st.Options = in.Versions, in.Extensions, in.Options
	if st.Options == nil {
		st.Options = map[string]bool{}
	}
	st.PINSet = in.Options["clientPin"]
	st.MinPINLength = int(in.MinPINLength)
	if st.MinPINLength == 0 {
		st.MinPINLength = 4 // CTAP 2.1 §6.4: absent means 4
	}
	st.ForcePINChange = in.ForcePINChange
	st.LibraryLacks = libfidoLacks()
	st.RemainingResident = -1
	if in.RemainingRK != nil {
		st.RemainingResident = int(*in.RemainingRK)
	}
	_, st.EnterpriseAttestation = in.Options["ep"]
	st.EnterpriseAttestationEnabled = in.Options["ep"]
	if fw := in.Firmware; fw != 0 {
		st.Firmware = device.Version{Major: uint8(fw >> 16), Minor: uint8(fw >> 8), Patch: uint8(fw)}
	} else {
		st.Firmware = hidVersion
	}
	if st.PINSet {
		proto := uint64(1)
		for _, p := range in.PINProtocols {
			proto = max(proto, p)
		}
		req, _ := cbor.Marshal(map[int]uint64{1: proto, 2: pinGetPINRetries})
		raw, err := ctap(h, cid, append([]byte{ctapClientPIN}, req...))
		if err != nil {
			return st, err
		}
		var r struct {
			Retries *int `cbor:"3,keyasint"`
		}
		if err := cbor.Unmarshal(raw, &r); err != nil || r.Retries == nil {
			return st, fmt.Errorf("getPINRetries: no retries in the reply (%v)", err)
		}
		st.PINRetries = *r.Retries
	}
	return st, nil
}
