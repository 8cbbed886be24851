package device

import "context"

// Callbacks is how an operation asks the person at the desk for something.
// Any field may be nil when the operation will not need it; an operation that
// needs a nil callback fails instead of guessing.
type Callbacks struct {
	// PIN asks for a PIN; what is "PIV PIN", "PIV PUK" or "FIDO2 PIN".
	PIN func(ctx context.Context, what string) (string, error)
	// Touch says the key is waiting for a touch.
	Touch func(ctx context.Context)
	// Reinsert asks the person to remove and reinsert the key; it returns
	// when they say they have.
	Reinsert func(ctx context.Context) error
}
