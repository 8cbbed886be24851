package registry

import (
	"bytes"
	"sort"
	"time"
)

// IDPLinkState is where a provider link stands.
type IDPLinkState string

const (
	// LinkActive: the provider accepted the credential and holds it.
	LinkActive IDPLinkState = "active"
	// LinkDeleted: the desk deleted the method at the provider.
	LinkDeleted IDPLinkState = "deleted"
)

// IDPLink records that an identity provider holds one of a key's FIDO2
// credentials under its own method id. Providers such as Microsoft Entra
// ID never list the credential id again, so this link, written when the
// provider accepted the credential, is the only place that ties the
// provider's method to a key and its serial.
type IDPLink struct {
	ID           string       `json:"id"`
	Provider     string       `json:"provider"`
	MethodID     string       `json:"method_id"`
	CredentialID []byte       `json:"credential_id"` // the WebAuthn credential id
	KeyID        string       `json:"key_id"`
	Serial       string       `json:"serial,omitempty"`
	UserID       string       `json:"user_id"`
	Nonce        string       `json:"nonce,omitempty"`
	State        IDPLinkState `json:"state"`
	KeyStatus    KeyStatus    `json:"key_status,omitempty"`
	CreatedAt    time.Time    `json:"created_at"`
	DeletedAt    *time.Time   `json:"deleted_at,omitempty"`
}

// IDPMethod is one method as a provider listed it (app/idp.Method).
type IDPMethod struct {
	ID           string    `json:"id"`
	CredentialID []byte    `json:"credential_id,omitempty"`
	DisplayName  string    `json:"display_name,omitempty"`
	AAGUID       string    `json:"aaguid,omitempty"`
	Created      time.Time `json:"created,omitempty"`
}

// IDPObservation is the list of methods a provider held for a user when
// the desk looked.
type IDPObservation struct {
	Provider   string      `json:"provider"`
	UserID     string      `json:"user_id"`
	ObservedAt time.Time   `json:"observed_at"`
	Methods    []IDPMethod `json:"methods"`
}

// Drift kinds.
const (
	// DriftHeldInvalid: the provider holds a method for a credential the
	// registry calls invalid (its key lost, revoked or retired, or the
	// link deleted).
	DriftHeldInvalid = "held-invalid"
	// DriftUnknown: the provider holds a method the registry has no link
	// for.
	DriftUnknown = "unknown-method"
	// DriftMissing: a credential the registry calls valid (its key active)
	// is missing at a provider that holds the user: its method is gone, or
	// it was never registered there.
	DriftMissing = "missing"
)

// IDPDrift is one disagreement between the registry and a provider.
type IDPDrift struct {
	Kind       string       `json:"kind"`
	Provider   string       `json:"provider"`
	UserID     string       `json:"user_id"`
	ExternalID string       `json:"external_id,omitempty"`
	MethodID   string       `json:"method_id,omitempty"`
	KeyID      string       `json:"key_id,omitempty"`
	Serial     string       `json:"serial,omitempty"`
	KeyStatus  KeyStatus    `json:"key_status,omitempty"`
	ObservedAt time.Time    `json:"observed_at"`
	Detail     string       `json:"detail"`
	LinkID     string       `json:"link_id,omitempty"`
	LinkState  IDPLinkState `json:"link_state,omitempty"`
}

// DriftKey is what drift needs to know of a user's key.
type DriftKey struct {
	ID, Serial, UserID string
	Status             KeyStatus
	HasFIDO2           bool
}

// ComputeIDPDrift compares what providers were last seen to hold
// (observations) with the registry's links and keys, both ways:
//
//   - a provider holding a method whose link is deleted or whose key is
//     lost, revoked or retired (held-invalid), or a method with no link at
//     all (unknown-method);
//   - an active key with FIDO2 credentials whose method is missing at a
//     provider observed for its user (missing): its linked method is not
//     in the listing, or it has no live link to that provider. A link made
//     after the observation is not judged by it.
//
// Only users a provider was observed for are judged: the registry does not
// know which providers a desk is configured with until it reports one.
func ComputeIDPDrift(obs []IDPObservation, links []IDPLink, keys []DriftKey) []IDPDrift {
	byProvUser := map[[2]string][]*IDPLink{}
	for i := range links {
		l := &links[i]
		k := [2]string{l.Provider, l.UserID}
		byProvUser[k] = append(byProvUser[k], l)
	}
	keysOf := map[string][]DriftKey{}
	keyByID := map[string]DriftKey{}
	for _, k := range keys {
		keysOf[k.UserID] = append(keysOf[k.UserID], k)
		keyByID[k.ID] = k
	}
	var out []IDPDrift
	for _, o := range obs {
		ls := byProvUser[[2]string{o.Provider, o.UserID}]
		seen := map[string]bool{}
		for _, m := range o.Methods {
			seen[m.ID] = true
			var l *IDPLink
			for _, c := range ls {
				if c.MethodID == m.ID || (len(m.CredentialID) > 0 && bytes.Equal(c.CredentialID, m.CredentialID)) {
					if l == nil || (l.State != LinkActive && c.State == LinkActive) {
						l = c
					}
				}
			}
			d := IDPDrift{Provider: o.Provider, UserID: o.UserID, MethodID: m.ID, ObservedAt: o.ObservedAt}
			switch {
			case l == nil:
				d.Kind, d.Detail = DriftUnknown, "the provider holds a method the registry has no record of ("+m.DisplayName+")"
			case l.State != LinkActive:
				d.Kind, d.Detail = DriftHeldInvalid, "the provider still holds a method the desk deleted"
			case !keyByID[l.KeyID].Status.InService():
				d.Kind, d.Detail = DriftHeldInvalid, "the provider still holds a method of a key that is "+string(keyByID[l.KeyID].Status)
			default:
				continue
			}
			if l != nil {
				k := keyByID[l.KeyID]
				d.KeyID, d.Serial, d.KeyStatus, d.LinkID, d.LinkState = l.KeyID, k.Serial, k.Status, l.ID, l.State
			}
			out = append(out, d)
		}
		for _, k := range keysOf[o.UserID] {
			if k.Status != KeyActive || !k.HasFIDO2 {
				continue
			}
			var live []*IDPLink
			for _, l := range ls {
				if l.KeyID == k.ID && l.State == LinkActive {
					live = append(live, l)
				}
			}
			d := IDPDrift{Kind: DriftMissing, Provider: o.Provider, UserID: o.UserID, KeyID: k.ID, Serial: k.Serial, KeyStatus: k.Status, ObservedAt: o.ObservedAt}
			if len(live) == 0 {
				d.Detail = "the key is active but was never registered with the provider"
				out = append(out, d)
				continue
			}
			for _, l := range live {
				if seen[l.MethodID] || l.CreatedAt.After(o.ObservedAt) {
					continue
				}
				d.MethodID, d.LinkID, d.LinkState = l.MethodID, l.ID, l.State
				d.Detail = "the key is active but its method is gone from the provider"
				out = append(out, d)
			}
		}
	}
	sort.SliceStable(out, func(i, j int) bool {
		a, b := out[i], out[j]
		if a.UserID != b.UserID {
			return a.UserID < b.UserID
		}
		if a.Provider != b.Provider {
			return a.Provider < b.Provider
		}
		return a.Kind+a.MethodID+a.KeyID < b.Kind+b.MethodID+b.KeyID
	})
	return out
}
