package registry

import "errors"

// ErrEscrowMissing: a key with PIV slots would become active while the
// registry holds no escrow blob for it, so the helpdesk could never unblock
// its PIV PIN. The desk stores the sealed escrow first (app/enrol).
var ErrEscrowMissing = errors.New("the key has PIV slots and no escrow: store its escrow before activating it")
