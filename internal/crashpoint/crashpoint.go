// Package crashpoint stops the process at a named durable write, so that a
// test can kill it there with a real SIGKILL and check that the documented
// recovery finishes what was started (docs/reliability.md, "Crash points").
//
// It is compiled into keydesk and inert unless KEYDESK_CRASHPOINT is set
// when the process starts:
//
//	KEYDESK_CRASHPOINT=NAME:before   stop just before the write NAME
//	KEYDESK_CRASHPOINT=NAME:after    stop just after it (it is durable then)
//	KEYDESK_CRASHPOINT=trace         go on, naming every point passed
//
// Reaching the chosen point writes one line, "keydesk crashpoint: NAME:WHEN
// reached", to stderr and stops the process (SIGSTOP on Unix), leaving it for
// the test to kill. trace writes "keydesk crashpoint: NAME:WHEN" for every
// point passed. Nothing else is ever written: a point's name is one of the
// constants declared in Points, never data, so the hook cannot carry a PIN,
// PUK, key or token out of the process.
package crashpoint

import (
	"fmt"
	"os"
	"slices"
	"strings"
)

// EnvVar names the environment variable that arms a crash point.
const EnvVar = "KEYDESK_CRASHPOINT"

// The durable writes of an enrolment, in the order one enrolment makes
// them. Journal points are the enrolment journal's stage writes
// (app/enrol/journal.go); key points the writes to the YubiKey; outbox
// points the client's outbox (registry/client/outbox.go); registry points
// the calls that change the registry.
const (
	JournalDevice     = "journal-device"
	KeyPIVGenerate    = "key-piv-generate"
	KeyFIDOPIN        = "key-fido-pin"
	KeyFIDOCredential = "key-fido-credential"
	JournalSealed     = "journal-sealed"
	KeyPIVMgmtKey     = "key-piv-management-key"
	KeyPIVPUK         = "key-piv-puk"
	KeyPIVPIN         = "key-piv-pin"
	KeyPIVCert        = "key-piv-certificate"
	JournalPrepared   = "journal-prepared"
	OutboxQueue       = "outbox-queue"
	JournalQueued     = "journal-queued"
	RegistrySend      = "registry-send"
	OutboxRecord      = "outbox-record"
	JournalRegistered = "journal-registered"
	RegistryEscrow    = "registry-escrow"
	JournalEscrowed   = "journal-escrowed"
	RegistryVerify    = "registry-verify"
	KeyFIDOForcePIN   = "key-fido-force-pin-change"
	JournalActive     = "journal-active"
)

// The durable writes of a helpdesk's FIDO2 reset (app/recover ResetFIDO2,
// keydesk recover fido2-reset), in order: the key's FIDO2 application
// reset, its new PIN and credential, the registry's change set that
// revokes the old credentials and registers the new one, and the
// verification of the new one.
const (
	RecoverKeyFIDOReset      = "recover-key-fido-reset"
	RecoverKeyFIDOPIN        = "recover-key-fido-pin"
	RecoverKeyFIDOCredential = "recover-key-fido-credential"
	RecoverRegistryFIDO2     = "recover-registry-fido2"
	RecoverRegistryVerify    = "recover-registry-verify"
)

// RecoveryPoints lists every crash point of a FIDO2 reset, in order.
func RecoveryPoints() []string {
	return []string{RecoverKeyFIDOReset, RecoverKeyFIDOPIN, RecoverKeyFIDOCredential, RecoverRegistryFIDO2, RecoverRegistryVerify}
}

// The durable writes of a helpdesk's PIV PIN unblock (app/recover
// UnblockPIVPIN, keydesk recover piv-pin), in order: the audit event that
// the escrow was opened, the key's PIN reset with the escrowed PUK, and
// the audit event that the PIN was unblocked.
const (
	RecoverRegistryEscrowOpened = "recover-registry-escrow-opened"
	RecoverKeyPIVUnblock        = "recover-key-piv-unblock"
	RecoverRegistryPIVUnblocked = "recover-registry-piv-unblocked"
)

// PIVPINPoints lists every crash point of a PIV PIN unblock, in order.
func PIVPINPoints() []string {
	return []string{RecoverRegistryEscrowOpened, RecoverKeyPIVUnblock, RecoverRegistryPIVUnblocked}
}

// The durable writes of marking a key lost (app/recover MarkLost, keydesk
// recover lost), in order: the key's move to lost and the temporary
// access pass. A replacement (--replace) is an enrolment, with the
// enrolment's points.
const (
	RecoverRegistryLost = "recover-registry-lost"
	RecoverRegistryPass = "recover-registry-pass"
)

// LostPoints lists every crash point of marking a key lost, in order.
func LostPoints() []string {
	return []string{RecoverRegistryLost, RecoverRegistryPass}
}

// The durable write of a restore (app/backup Restore, keydesk restore):
// the bundle imported into the registry, in one transaction.
const RestoreRegistryImport = "restore-registry-import"

// RestorePoints lists every crash point of a restore.
func RestorePoints() []string { return []string{RestoreRegistryImport} }

// The durable writes of registering a key with an identity provider
// (app/idp), in order: the intent with its nonce in the provider outbox,
// the provider's write, the method id it returned kept with the intent,
// the link recorded in the registry, and the intent settled. Deleting a
// key's methods: the intent, the provider's delete, the link marked
// deleted in the registry, the intent settled (IDPDone).
const (
	IDPIntent     = "idp-intent"
	IDPRegister   = "idp-register"
	IDPRegistered = "idp-registered"
	IDPLink       = "idp-link"
	IDPDone       = "idp-done"
	IDPDelete     = "idp-delete"
	IDPUnlink     = "idp-unlink"
)

// IDPPoints lists every crash point of registering a key with an identity
// provider, in order.
func IDPPoints() []string {
	return []string{IDPIntent, IDPRegister, IDPRegistered, IDPLink, IDPDone}
}

// IDPDeletePoints lists every crash point of deleting a key's method at an
// identity provider, in order.
func IDPDeletePoints() []string {
	return []string{IDPIntent, IDPDelete, IDPUnlink, IDPDone}
}

// Points lists every crash point of an enrolment, in order.
func Points() []string {
	return []string{JournalDevice, KeyPIVGenerate, KeyFIDOPIN, KeyFIDOCredential, JournalSealed, KeyPIVMgmtKey, KeyPIVPUK,
		KeyPIVPIN, KeyPIVCert, JournalPrepared, OutboxQueue, JournalQueued, RegistrySend, OutboxRecord, JournalRegistered,
		RegistryEscrow, JournalEscrowed, RegistryVerify, KeyFIDOForcePIN, JournalActive}
}

// armed is the point chosen at start-up ("NAME:before" or "NAME:after"),
// "trace", or "".
var armed = parse(os.Getenv(EnvVar))

func parse(v string) string {
	if v == "" || v == "trace" {
		return v
	}
	name, when, ok := strings.Cut(v, ":")
	if !ok || (when != "before" && when != "after") || !known(name) {
		fmt.Fprintf(os.Stderr, "keydesk crashpoint: %s is not NAME:before or NAME:after with a known NAME; ignored\n", EnvVar)
		return ""
	}
	return v
}

// known reports whether name is a declared point.
func known(name string) bool {
	for _, ps := range [][]string{Points(), RecoveryPoints(), PIVPINPoints(), LostPoints(), RestorePoints(), IDPPoints(), IDPDeletePoints()} {
		if slices.Contains(ps, name) {
			return true
		}
	}
	return false
}

// Before marks that durable write name is about to be made.
func Before(name string) { hit(name, "before") }

// After marks that durable write name has been made.
func After(name string) { hit(name, "after") }

// Around runs write between Before(name) and After(name); After is not
// reached when write fails.
func Around(name string, write func() error) error {
	Before(name)
	if err := write(); err != nil {
		return err
	}
	After(name)
	return nil
}

func hit(name, when string) {
	switch armed {
	case "":
		return
	case "trace":
		fmt.Fprintf(os.Stderr, "keydesk crashpoint: %s:%s\n", name, when)
	case name + ":" + when:
		fmt.Fprintf(os.Stderr, "keydesk crashpoint: %s:%s reached\n", name, when)
		stop()
	}
}
