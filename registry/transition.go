package registry

import "fmt"

// Authority is who asks for a key status change, as far as the transition
// table tells them apart: staff (admin and helpdesk tokens, the registry's
// own commands) or the key's owner through a self token.
type Authority string

const (
	ByStaff Authority = "staff"
	BySelf  Authority = "self"
)

// keyTransitions is the table of key status changes each authority may ask
// for (docs/registry.md, "Key status changes"). Moving a key to the state
// it is in already is listed where it is allowed. The table says only which
// moves exist; SetKeyStatus adds the conditions on them: a move that takes
// the owner's last credential out of the validity view needs a break-glass
// reason, and a move to active needs a verification (one made since the key
// was lost or revoked, for such a key).
var keyTransitions = map[Authority]map[KeyStatus][]KeyStatus{
	ByStaff: {
		KeyPending:   {KeyPending, KeyActive, KeySuspended, KeyLost, KeyRevoked, KeyRetired},
		KeyActive:    {KeyPending, KeyActive, KeySuspended, KeyLost, KeyRevoked, KeyRetired},
		KeySuspended: {KeyPending, KeyActive, KeySuspended, KeyLost, KeyRevoked, KeyRetired},
		// A lost or revoked key comes back only to active, with a fresh
		// verification, or goes on to its end: a detour through pending
		// or suspended would lose the record that it was out of its
		// owner's hands.
		KeyLost:    {KeyActive, KeyLost, KeyRevoked, KeyRetired},
		KeyRevoked: {KeyActive, KeyRevoked, KeyRetired},
		// Retired is the end: a key put back into use is enrolled anew.
		KeyRetired: {KeyRetired},
	},
	BySelf: {
		// The owner may take their own key out of service (report it
		// lost, or suspend it), never bring one back.
		KeyPending:   {KeySuspended, KeyLost},
		KeyActive:    {KeySuspended, KeyLost},
		KeySuspended: {KeySuspended, KeyLost},
		KeyLost:      {KeyLost},
	},
}

// KeyTransitionError reports a key status change that By may not make.
type KeyTransitionError struct {
	By       Authority
	From, To KeyStatus
}

func (e *KeyTransitionError) Error() string {
	if e.By == BySelf {
		return fmt.Sprintf("a self token may not move its key from %s to %s (only its own pending, active or suspended key to suspended or lost)", e.From, e.To)
	}
	return fmt.Sprintf("a key cannot move from %s to %s", e.From, e.To)
}

// KeyTransition reports whether by may move a key from one status to
// another: nil when the table allows it, else a *KeyTransitionError.
func KeyTransition(by Authority, from, to KeyStatus) error {
	for _, s := range keyTransitions[by][from] {
		if s == to {
			return nil
		}
	}
	return &KeyTransitionError{By: by, From: from, To: to}
}
