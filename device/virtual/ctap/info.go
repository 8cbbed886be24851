package ctap

import (
	"bytes"
	"crypto/rand"
	"crypto/sha256"
	"sort"
	"time"

	"github.com/fxamacker/cbor/v2"
)

type algorithm struct {
	Alg  int    `cbor:"alg"`
	Type string `cbor:"type"`
}

type infoResp struct {
	Versions          []string        `cbor:"1,keyasint"`
	Extensions        []string        `cbor:"2,keyasint"`
	AAGUID            []byte          `cbor:"3,keyasint"`
	Options           map[string]bool `cbor:"4,keyasint"`
	MaxMsgSize        int             `cbor:"5,keyasint"`
	PinUvAuthProtos   []int           `cbor:"6,keyasint"`
	MaxCredCount      int             `cbor:"7,keyasint"`
	MaxCredIDLength   int             `cbor:"8,keyasint"`
	Transports        []string        `cbor:"9,keyasint"`
	Algorithms        []algorithm     `cbor:"10,keyasint"`
	ForcePINChange    bool            `cbor:"12,keyasint"`
	MinPINLength      int             `cbor:"13,keyasint"`
	FirmwareVersion   int             `cbor:"14,keyasint"`
	RemainingDiscover int             `cbor:"20,keyasint"`
}

// getInfo is authenticatorGetInfo (CTAP 2.1 §6.4), shaped as a YubiKey 5
// on firmware 5.7 answers it, less the features the virtual key lacks
// (largeBlobs, credBlob, enterprise attestation, alwaysUv).
func (a *Authenticator) getInfo() infoResp {
	fw := a.key.Identity().Firmware
	return infoResp{
		Versions:   []string{"U2F_V2", "FIDO_2_0", "FIDO_2_1_PRE", "FIDO_2_1"},
		Extensions: []string{"credProtect", "hmac-secret"},
		AAGUID:     AAGUID[:],
		Options: map[string]bool{
			"rk":                    true,
			"up":                    true,
			"plat":                  false,
			"alwaysUv":              false,
			"clientPin":             a.st.PINHash != nil,
			"credMgmt":              true,
			"credentialMgmtPreview": true,
			"pinUvAuthToken":        true,
			"makeCredUvNotRqd":      true,
			"authnrCfg":             true,
			"setMinPINLength":       true,
		},
		MaxMsgSize:        maxMsgSize,
		PinUvAuthProtos:   []int{2, 1},
		MaxCredCount:      maxCredentialCountInList,
		MaxCredIDLength:   maxCredentialIDLength,
		Transports:        []string{"nfc", "usb"},
		Algorithms:        []algorithm{{coseAlgES256, "public-key"}, {coseAlgEdDSA, "public-key"}},
		ForcePINChange:    a.st.ForcePINChange,
		MinPINLength:      a.st.MinPINLength,
		FirmwareVersion:   int(fw.Major)<<16 | int(fw.Minor)<<8 | int(fw.Patch),
		RemainingDiscover: maxDiscoverable - len(a.st.Resident),
	}
}

// resetWindow is how long after power-up authenticatorReset is allowed:
// 10 s from firmware 5.5.4, 5 s before.
func (a *Authenticator) resetWindow() time.Duration {
	if a.key.Identity().Firmware.AtLeast(5, 5, 4) {
		return 10 * time.Second
	}
	return 5 * time.Second
}

// reset is authenticatorReset (CTAP 2.1 §6.6): only within the window after
// power-up and with a touch. It keeps the factory attestation key.
func (r *request) reset() error {
	a := r.a
	if a.key.SincePowerUp() > a.resetWindow() {
		return ErrNotAllowed
	}
	if err := r.userPresence(); err != nil {
		return err
	}
	wrap := make([]byte, 32)
	if _, err := rand.Read(wrap); err != nil {
		return err
	}
	a.st = state{Version: stateVersion, WrapKey: wrap, PINRetries: defaultPINRetries, MinPINLength: 4,
		SignCount: a.st.SignCount, AttestKey: a.st.AttestKey, AttestCert: a.st.AttestCert, SerialNumber: a.st.SerialNumber}
	a.dirty = true
	return a.powerUp()
}

// credential management subcommands (CTAP 2.1 §6.8).
const (
	cmGetCredsMetadata      = 0x01
	cmEnumerateRPsBegin     = 0x02
	cmEnumerateRPsGetNext   = 0x03
	cmEnumerateCredsBegin   = 0x04
	cmEnumerateCredsGetNext = 0x05
	cmDeleteCredential      = 0x06
	cmUpdateUserInformation = 0x07
)

type credMgmtReq struct {
	SubCommand *int            `cbor:"1,keyasint"`
	Params     cbor.RawMessage `cbor:"2,keyasint"`
	Protocol   *int            `cbor:"3,keyasint"`
	PinUvAuth  []byte          `cbor:"4,keyasint"`
}

type credMgmtParams struct {
	RPIDHash     []byte          `cbor:"1,keyasint"`
	CredentialID *credDescriptor `cbor:"2,keyasint"`
	User         *userEntity     `cbor:"3,keyasint"`
}

type credMgmtResp struct {
	Existing     *int            `cbor:"1,keyasint,omitempty"`
	Remaining    *int            `cbor:"2,keyasint,omitempty"`
	RP           *rpOut          `cbor:"3,keyasint,omitempty"`
	RPIDHash     []byte          `cbor:"4,keyasint,omitempty"`
	TotalRPs     *int            `cbor:"5,keyasint,omitempty"`
	User         *publicUser     `cbor:"6,keyasint,omitempty"`
	CredentialID *credDescriptor `cbor:"7,keyasint,omitempty"`
	PublicKey    *coseKey        `cbor:"8,keyasint,omitempty"`
	TotalCreds   *int            `cbor:"9,keyasint,omitempty"`
	CredProtect  *int            `cbor:"10,keyasint,omitempty"`
}

type rpOut struct {
	ID   string `cbor:"id"`
	Name string `cbor:"name,omitempty"`
}

// enumeration is the iterator state of enumerateRPs / enumerateCredentials.
type enumeration struct {
	rps   []rpOut
	creds []*credential
}

func intp(n int) *int { return &n }

// credentialManagement is authenticatorCredentialManagement (CTAP 2.1 §6.8),
// also served under the FIDO_2_1_PRE command byte 0x41.
func (r *request) credentialManagement(params []byte) (any, error) {
	a := r.a
	var q credMgmtReq
	if err := decode(params, &q); err != nil {
		return nil, err
	}
	if q.SubCommand == nil {
		return nil, ErrMissingParameter
	}
	sub := *q.SubCommand
	if sub < cmGetCredsMetadata || sub > cmUpdateUserInformation {
		return nil, ErrInvalidSubcommand
	}
	if sub == cmEnumerateRPsGetNext || sub == cmEnumerateCredsGetNext {
		return a.enumNext(sub)
	}
	a.enum = nil
	var p credMgmtParams
	if len(q.Params) > 0 {
		if err := decode(q.Params, &p); err != nil {
			return nil, err
		}
	}
	if q.PinUvAuth == nil || q.Protocol == nil {
		return nil, ErrPUATRequired
	}
	msg := append([]byte{byte(sub)}, q.Params...)
	if a.st.PINHash == nil {
		return nil, ErrPINNotSet
	}
	if err := r.checkToken(q.Protocol, q.PinUvAuth, msg, permCredentialMgmt, ""); err != nil {
		return nil, err
	}
	switch sub {
	case cmGetCredsMetadata:
		if a.pin.rpID != "" {
			return nil, ErrPINAuthInvalid
		}
		return credMgmtResp{Existing: intp(len(a.st.Resident)), Remaining: intp(maxDiscoverable - len(a.st.Resident))}, nil
	case cmEnumerateRPsBegin:
		if a.pin.rpID != "" {
			return nil, ErrPINAuthInvalid
		}
		seen := map[string]bool{}
		var rps []rpOut
		for _, c := range a.st.Resident {
			if !seen[c.RPID] {
				seen[c.RPID] = true
				rps = append(rps, rpOut{ID: c.RPID, Name: c.RPName})
			}
		}
		if len(rps) == 0 {
			return nil, ErrNoCredentials
		}
		sort.Slice(rps, func(i, j int) bool { return rps[i].ID < rps[j].ID })
		a.enum = &enumeration{rps: rps[1:]}
		return rpResp(rps[0], intp(len(rps))), nil
	case cmEnumerateCredsBegin:
		if p.RPIDHash == nil {
			return nil, ErrMissingParameter
		}
		var creds []*credential
		for _, c := range a.st.Resident {
			h := sha256.Sum256([]byte(c.RPID))
			if bytes.Equal(h[:], p.RPIDHash) {
				creds = append(creds, c)
			}
		}
		if len(creds) == 0 {
			return nil, ErrNoCredentials
		}
		if a.pin.rpID != "" && a.pin.rpID != creds[0].RPID {
			return nil, ErrPINAuthInvalid
		}
		sort.Slice(creds, func(i, j int) bool { return creds[i].Created < creds[j].Created })
		a.enum = &enumeration{creds: creds[1:]}
		return a.credResp(creds[0], intp(len(creds))), nil
	case cmDeleteCredential, cmUpdateUserInformation:
		if p.CredentialID == nil || (sub == cmUpdateUserInformation && p.User == nil) {
			return nil, ErrMissingParameter
		}
		for i, c := range a.st.Resident {
			if !bytes.Equal(c.ID, p.CredentialID.ID) {
				continue
			}
			if a.pin.rpID != "" && a.pin.rpID != c.RPID {
				return nil, ErrPINAuthInvalid
			}
			if sub == cmDeleteCredential {
				a.st.Resident = append(a.st.Resident[:i], a.st.Resident[i+1:]...)
			} else {
				if !bytes.Equal(p.User.ID, c.UserID) {
					return nil, ErrInvalidParameter
				}
				c.UserName, c.DisplayName = p.User.Name, p.User.DisplayName
			}
			a.dirty = true
			return nil, nil
		}
		return nil, ErrNoCredentials
	}
	return nil, ErrInvalidSubcommand
}

func rpResp(rp rpOut, total *int) credMgmtResp {
	h := sha256.Sum256([]byte(rp.ID))
	return credMgmtResp{RP: &rp, RPIDHash: h[:], TotalRPs: total}
}

func (a *Authenticator) credResp(c *credential, total *int) credMgmtResp {
	h := sha256.Sum256([]byte(c.RPID))
	k, _ := a.unwrap(h[:], c.ID)
	pub := k.cose()
	return credMgmtResp{
		User:         &publicUser{ID: c.UserID, Name: c.UserName, DisplayName: c.DisplayName},
		CredentialID: &credDescriptor{Type: "public-key", ID: c.ID},
		PublicKey:    &pub,
		TotalCreds:   total,
		CredProtect:  intp(int(k.credProtect)),
	}
}

func (a *Authenticator) enumNext(sub int) (any, error) {
	e := a.enum
	if e == nil {
		return nil, ErrNotAllowed
	}
	if sub == cmEnumerateRPsGetNext {
		if len(e.rps) == 0 {
			a.enum = nil
			return nil, ErrNotAllowed
		}
		rp := e.rps[0]
		e.rps = e.rps[1:]
		return rpResp(rp, nil), nil
	}
	if len(e.creds) == 0 {
		a.enum = nil
		return nil, ErrNotAllowed
	}
	c := e.creds[0]
	e.creds = e.creds[1:]
	return a.credResp(c, nil), nil
}
