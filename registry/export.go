package registry

import (
	"crypto/ed25519"
	"time"

	"github.com/keydesk/keydesk/registry/audit"
)

// ExportFormat names the bundle layout GET /v1/export writes.
const ExportFormat = "keydesk-registry-export/1"

// Export is a copy of registrations: one user's, or the whole
// organisation's with its audit chain and signed checkpoints. Escrow blobs
// stay sealed to the helpdesk recipients as they were. Verifications,
// access passes, migrations and tokens are not part of it.
type Export struct {
	Format     string           `json:"format"`
	Scope      string           `json:"scope"` // "organisation" or "user"
	ExportedAt time.Time        `json:"exported_at"`
	Users      []User           `json:"users"`
	Keys       []Key            `json:"keys"`
	FIDO2      []FIDOCredential `json:"fido2"`
	PIV        []PIVSlot        `json:"piv"`
	Escrow     []EscrowBlob     `json:"escrow"`
	KeySets    []KeySet         `json:"key_sets"`
	// IDPLinks are the identity-provider links of the keys exported
	// (which provider holds which credential under which method id).
	IDPLinks   []IDPLink          `json:"idp_links,omitempty"`
	Audit      []audit.Entry      `json:"audit,omitempty"`
	Checkpoint []audit.Checkpoint `json:"checkpoints,omitempty"`
	// AuditKey is the exporting registry's checkpoint key.
	AuditKey ed25519.PublicKey `json:"audit_key,omitempty"`
}

// Restored is what an import wrote.
type Restored struct {
	Scope        string `json:"scope"`
	Users        int    `json:"users"`
	Keys         int    `json:"keys"`
	Credentials  int    `json:"credentials"`
	IDPLinks     int    `json:"idp_links,omitempty"`
	AuditEntries int    `json:"audit_entries"` // source entries kept verbatim
	// Rechained counts the importing registry's own earlier entries (token
	// creation), chained again after the source's.
	Rechained int `json:"rechained"`
}
