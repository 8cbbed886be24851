// Package enroltest enrols practice keys into a registry for tests of the
// workflows that start from an enrolled key (verify, recover, back up): a
// PIV key in slot 9a with its attestation, a random escrowed PUK, a
// discoverable FIDO2 credential, registration, and a verified PIV challenge
// that activates the key, all through the real device and registry stacks.
// It is test support: no production code imports it.
package enroltest

import (
	"context"
	"crypto/rand"
	"crypto/x509"
	"fmt"
	"math/big"
	"strconv"

	"github.com/keydesk/keydesk/app/escrow"
	"github.com/keydesk/keydesk/app/keys"
	"github.com/keydesk/keydesk/device"
	"github.com/keydesk/keydesk/device/fidokey"
	"github.com/keydesk/keydesk/device/pivkey"
	"github.com/keydesk/keydesk/registry"
	"github.com/keydesk/keydesk/registry/client"
)

// RPID is the relying party the practice credentials are made for.
const RPID = "keydesk.example"

// EscrowKind is the escrow blob kind the PIV secrets are stored under.
const EscrowKind = "piv"

// Options say how to enrol.
type Options struct {
	RPID       string // RPID when empty
	User       string // external id
	Role       registry.KeyRole
	PIVPIN     string // the new PIV PIN
	FIDOPIN    string // the FIDO2 PIN to set
	Recipients []string
	KeySets    []string
}

// Enrolled is what Enrol registered, with the secrets a test needs.
type Enrolled struct {
	client.Enrolled
	PUK string
}

// Enrol enrols key k for opt.User and activates it with a verified PIV
// challenge.
func Enrol(ctx context.Context, svc *keys.Service, reg *client.Client, k device.Key, opt Options) (Enrolled, error) {
	card, err := svc.PIV(k)
	if err != nil {
		return Enrolled{}, err
	}
	cb := device.Callbacks{PIN: func(context.Context, string) (string, error) { return "123456", nil }}
	pub, err := card.Generate(ctx, cb, 0x9a, pivkey.KeySpec{Algorithm: "ECCP256", PINPolicy: "once", TouchPolicy: "never"})
	if err != nil {
		return Enrolled{}, fmt.Errorf("generating 9a: %w", err)
	}
	att, err := card.Attest(ctx, 0x9a)
	if err != nil {
		return Enrolled{}, err
	}
	n, err := rand.Int(rand.Reader, big.NewInt(100000000))
	if err != nil {
		return Enrolled{}, err
	}
	puk := fmt.Sprintf("%08d", n.Int64())
	if err := card.ChangePUK(ctx, "12345678", puk); err != nil {
		return Enrolled{}, err
	}
	if err := card.ChangePIN(ctx, "123456", opt.PIVPIN); err != nil {
		return Enrolled{}, err
	}
	blob, err := escrow.Seal(escrow.PIVSecrets{Serial: k.Serial, PUK: puk, ManagementKey: pivkey.DefaultManagementKey, Algorithm: "aes192"}, opt.Recipients)
	if err != nil {
		return Enrolled{}, err
	}
	rpID := opt.RPID
	if rpID == "" {
		rpID = RPID
	}
	fido := fidokey.Open(k.FIDOPath)
	if err := fido.SetPIN(ctx, opt.FIDOPIN); err != nil {
		return Enrolled{}, err
	}
	chal := make([]byte, 32)
	rand.Read(chal)
	fcb := device.Callbacks{PIN: func(context.Context, string) (string, error) { return opt.FIDOPIN, nil }}
	reg2, err := fido.MakeCredential(ctx, fidokey.MakeOptions{RPID: rpID, RPName: "keydesk practice", UserID: []byte(opt.User), UserName: opt.User,
		Challenge: chal, Discoverable: true, CredProtect: 2}, fcb)
	if err != nil {
		return Enrolled{}, err
	}
	pkix, err := x509.MarshalPKIXPublicKey(pub)
	if err != nil {
		return Enrolled{}, err
	}
	role := opt.Role
	if role == "" {
		role = registry.RolePrimary
	}
	e, err := reg.Enrol(ctx, client.Enrolment{
		User:  client.EnrolUser{ExternalID: opt.User, DisplayName: opt.User},
		Key:   client.EnrolKey{Serial: strconv.FormatUint(uint64(k.Serial), 10), Model: k.Model, Firmware: k.Firmware.String(), Role: string(role), KeySets: opt.KeySets},
		FIDO2: []client.FIDO2Credential{FIDO2(reg2, rpID)},
		PIV:   []client.PIVSlot{{Slot: "9a", PublicKey: pkix, AttestationCert: att.Certificate.Raw, AttestationIntermediate: att.Intermediate.Raw}},
	})
	if err != nil {
		return Enrolled{}, err
	}
	if _, err := reg.PutEscrow(ctx, e.Key.ID, EscrowKind, blob, 0); err != nil {
		return Enrolled{}, err
	}
	ch, err := reg.Challenge(ctx, e.Key.ID, "piv", e.PIV[0].ID)
	if err != nil {
		return Enrolled{}, err
	}
	sig, err := card.Sign(ctx, device.Callbacks{PIN: func(context.Context, string) (string, error) { return opt.PIVPIN, nil }}, 0x9a, pub, ch.Challenge.Nonce)
	if err != nil {
		return Enrolled{}, err
	}
	v, err := reg.VerifyPIV(ctx, ch.Challenge.ID, sig)
	if err != nil {
		return Enrolled{}, err
	}
	if !v.OK || v.KeyStatus != registry.KeyActive {
		return Enrolled{}, fmt.Errorf("activating key %d: verification %v, key %s: %s", k.Serial, v.OK, v.KeyStatus, v.Reason)
	}
	kd, err := reg.Key(ctx, e.Key.ID)
	if err != nil {
		return Enrolled{}, err
	}
	e.Key = kd.Key
	return Enrolled{Enrolled: e, PUK: puk}, nil
}

// FIDO2 is a registration as the registry takes it.
func FIDO2(r *fidokey.Registration, rpID string) client.FIDO2Credential {
	return client.FIDO2Credential{CredentialID: r.CredentialID, PublicKey: r.PublicKey, AAGUID: r.AAGUID[:], RPID: rpID,
		SignCount: r.SignCount, CredProtect: r.CredProtect, AttestationObject: r.AttestationObject, AttestationClientDataJSON: r.ClientDataJSON}
}
