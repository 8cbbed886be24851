package idp

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/keydesk/keydesk/internal/crashpoint"
	"github.com/keydesk/keydesk/registry"
	"github.com/keydesk/keydesk/registry/client"
)

// Ledger is what the orchestration needs of the registry: the key registry
// is the ledger of which provider holds which credential.
// *registry/client.Client implements it.
type Ledger interface {
	RecordIDPLink(ctx context.Context, in client.IDPLinkIn, idemKey string) (registry.IDPLink, error)
	DeleteIDPLink(ctx context.Context, id, idemKey string) (registry.IDPLink, error)
	IDPLinks(ctx context.Context, q client.LinkQuery) ([]registry.IDPLink, error)
	ObserveIDP(ctx context.Context, o registry.IDPObservation) error
}

// Maker makes a new credential on the key in hand with a provider's
// creation options (the enrolment supplies one that talks to the key with
// the PIN it holds). nil when the key is not at hand.
type Maker func(ctx context.Context, opts *CreationOptions) (Credential, error)

// Orchestrator registers keys with the configured providers and keeps the
// registry's links, through the provider outbox.
type Orchestrator struct {
	providers []Connector
	ledger    Ledger
	box       *Outbox
}

// NewOrchestrator works with providers, the registry and the provider
// outbox box (which the caller opens and closes).
func NewOrchestrator(providers []Connector, ledger Ledger, box *Outbox) *Orchestrator {
	return &Orchestrator{providers: providers, ledger: ledger, box: box}
}

// Providers lists the providers' names, in configuration order.
func (o *Orchestrator) Providers() []string {
	out := make([]string, len(o.providers))
	for i, p := range o.providers {
		out[i] = p.Name()
	}
	return out
}

func (o *Orchestrator) provider(name string) Connector {
	for _, p := range o.providers {
		if p.Name() == name {
			return p
		}
	}
	return nil
}

// Outcome is what became of one provider write.
type Outcome struct {
	Provider string      `json:"provider"`
	Op       Op          `json:"op"`
	Serial   uint32      `json:"serial"`
	State    IntentState `json:"state"`
	MethodID string      `json:"method_id,omitempty"`
	LinkID   string      `json:"link_id,omitempty"`
	// Queued: the provider or the registry was unreachable; the write is
	// in the provider outbox and Flush replays it.
	Queued bool   `json:"queued,omitempty"`
	Error  string `json:"error,omitempty"`
	Hint   string `json:"hint,omitempty"`
}

// KeyRef names the key being registered.
type KeyRef struct {
	ID     string
	Serial uint32
	Model  string
}

// nonceTag is how an intent's nonce appears in a method's display name.
func nonceTag(nonce string) string { return "[kd-" + nonce + "]" }

// displayName is the name the provider shows for the key's method: the
// key's model and serial, and the intent's nonce.
func displayName(k KeyRef, nonce string) string {
	m := k.Model
	if m == "" {
		m = "YubiKey"
	}
	return fmt.Sprintf("%s %d %s", m, k.Serial, nonceTag(nonce))
}

// Register registers key k of user u with every provider: a provider whose
// Options are nil gets the desk's own credential desk (made for the
// organisation's relying party); any other gets a new credential made on
// the key with exactly its options (mk; nil when the key is not at hand,
// which leaves the provider's intent needs-key). Each write is an intent
// in the provider outbox first; a provider or registry that cannot be
// reached leaves it queued (Outcome.Queued) for Flush. The error is for
// the outbox itself; a provider's refusal is in its Outcome.
//
// Registering a key again is safe: a provider whose write for the key is
// still queued gets that write replayed (once), and one that holds the
// key already (an active link in the registry) is left as it is.
func (o *Orchestrator) Register(ctx context.Context, u User, k KeyRef, desk Credential, mk Maker) ([]Outcome, error) {
	queued, err := o.box.Intents(ctx, IntentPending, IntentWritten)
	if err != nil {
		return nil, err
	}
	links, err := o.ledger.IDPLinks(ctx, client.LinkQuery{KeyID: k.ID})
	if err != nil {
		return nil, err
	}
	var out []Outcome
	for _, p := range o.providers {
		if in := queuedRegister(queued, p.Name(), k.ID); in != nil {
			oc, err := o.attempt(ctx, p, in, true)
			if err != nil {
				return append(out, oc), err
			}
			// A replay the provider refused (its options expired) is made
			// afresh when the key is at hand.
			if oc.State != IntentRefused || mk == nil || in.Options == nil {
				out = append(out, oc)
				continue
			}
		}
		if l := activeLink(links, p.Name()); l != nil {
			out = append(out, Outcome{Provider: p.Name(), Op: OpRegister, Serial: k.Serial, State: IntentDone, MethodID: l.MethodID, LinkID: l.ID})
			continue
		}
		in := Intent{Nonce: newNonce(), Provider: p.Name(), Op: OpRegister, User: u, KeyID: k.ID, Serial: k.Serial, State: IntentPending}
		opts, err := p.Options(ctx, u)
		switch {
		case err != nil && isTemporary(err):
			// Queued with the desk's credential: the replay asks again.
			c := desk
			in.Credential, in.AskOptions = &c, true
		case err != nil:
			in.State = IntentRefused
			setErr(&in, err)
		case opts == nil:
			c := desk
			in.Credential = &c
		case mk == nil:
			in.State, in.Error = IntentNeedsKey, "the provider makes its own credential and the key is not at hand"
			in.Hint = fmt.Sprintf("Register key %d with %s again with the key inserted (keydesk idp register %d --with-key).", k.Serial, p.Name(), k.Serial)
		default:
			c, err := mk(ctx, opts)
			if err != nil {
				return out, fmt.Errorf("making the credential for %s on key %d: %w", p.Name(), k.Serial, err)
			}
			in.Credential, in.Options = &c, opts
		}
		if in.Credential != nil {
			in.Credential.Serial = k.Serial
			in.Credential.DisplayName = displayName(k, in.Nonce)
		}
		if err := crashpoint.Around(crashpoint.IDPIntent, func() error { return o.box.add(ctx, &in) }); err != nil {
			return out, err
		}
		if in.State != IntentPending {
			out = append(out, outcome(in, false))
			continue
		}
		if in.AskOptions {
			setErr(&in, err)
			if werr := o.box.update(ctx, &in); werr != nil {
				return out, werr
			}
			out = append(out, outcome(in, true))
			continue
		}
		oc, err := o.attempt(ctx, p, &in, false)
		if err == nil && oc.State == IntentDone {
			err = o.box.supersede(ctx, &in)
		}
		if err != nil {
			return append(out, oc), err
		}
		out = append(out, oc)
	}
	return out, nil
}

func queuedRegister(ins []Intent, provider, keyID string) *Intent {
	for i := range ins {
		if ins[i].Op == OpRegister && ins[i].Provider == provider && ins[i].KeyID == keyID {
			return &ins[i]
		}
	}
	return nil
}

func activeLink(ls []registry.IDPLink, provider string) *registry.IDPLink {
	for i := range ls {
		if ls[i].Provider == provider && ls[i].State == registry.LinkActive {
			return &ls[i]
		}
	}
	return nil
}

var errNeedsKey = errors.New("the provider makes its own credential")

func isTemporary(err error) bool {
	var te *TemporaryError
	return errors.As(err, &te) || errors.Is(err, client.ErrUnreachable)
}

func setErr(in *Intent, err error) {
	in.Error = err.Error()
	var re *RefusedError
	if errors.As(err, &re) {
		in.Hint = re.Hint
	}
}

func outcome(in Intent, queued bool) Outcome {
	return Outcome{Provider: in.Provider, Op: in.Op, Serial: in.Serial, State: in.State, MethodID: in.MethodID, LinkID: in.LinkID,
		Queued: queued, Error: in.Error, Hint: in.Hint}
}

// attempt takes one intent as far as it goes: the provider's write (on a
// replay, only when listing the user's methods shows the first attempt's
// write did not land), the method id kept, the registry's link, done. An
// unreachable provider or registry leaves it where it stopped, queued.
func (o *Orchestrator) attempt(ctx context.Context, p Connector, in *Intent, replay bool) (Outcome, error) {
	temporary := func(err error) (Outcome, error) {
		if !isTemporary(err) {
			in.State = IntentRefused
		}
		setErr(in, err)
		if werr := o.box.update(ctx, in); werr != nil {
			return outcome(*in, false), werr
		}
		return outcome(*in, in.State != IntentRefused), nil
	}
	if in.State == IntentPending {
		var err error
		switch in.Op {
		case OpRegister:
			err = o.providerRegister(ctx, p, in, replay)
		case OpDelete:
			err = crashpoint.Around(crashpoint.IDPDelete, func() error { return p.Delete(ctx, in.User, in.MethodID) })
		}
		if errors.Is(err, errNeedsKey) {
			if werr := o.box.update(ctx, in); werr != nil {
				return outcome(*in, false), werr
			}
			return outcome(*in, false), nil
		}
		if err != nil {
			return temporary(err)
		}
		in.State, in.Error, in.Hint = IntentWritten, "", ""
		if in.Op == OpRegister {
			if err := crashpoint.Around(crashpoint.IDPRegistered, func() error { return o.box.update(ctx, in) }); err != nil {
				return outcome(*in, false), err
			}
		} else if err := o.box.update(ctx, in); err != nil {
			return outcome(*in, false), err
		}
	}
	if in.State == IntentWritten {
		var err error
		switch in.Op {
		case OpRegister:
			err = crashpoint.Around(crashpoint.IDPLink, func() error {
				l, err := o.ledger.RecordIDPLink(ctx, client.IDPLinkIn{Provider: in.Provider, MethodID: in.MethodID, KeyID: in.KeyID,
					CredentialID: in.Credential.ID, Nonce: in.Nonce}, "idp-link-"+in.Nonce)
				in.LinkID = l.ID
				return err
			})
		case OpDelete:
			err = crashpoint.Around(crashpoint.IDPUnlink, func() error {
				_, err := o.ledger.DeleteIDPLink(ctx, in.LinkID, "idp-unlink-"+in.Nonce)
				return err
			})
		}
		if err != nil {
			if isTemporary(err) {
				setErr(in, err)
				o.box.update(ctx, in)
				return outcome(*in, true), nil
			}
			return temporary(err)
		}
		in.State, in.Error, in.Hint = IntentDone, "", ""
		if err := crashpoint.Around(crashpoint.IDPDone, func() error { return o.box.update(ctx, in) }); err != nil {
			return outcome(*in, false), err
		}
	}
	return outcome(*in, false), nil
}

// providerRegister hands the intent's credential to the provider. On a
// replay it first lists the user's methods there: a method carrying the
// intent's nonce in its display name (or, where the provider lists it,
// the credential's id) is the first attempt's write, and is taken instead
// of writing again. That is what makes a replay write once and only once.
func (o *Orchestrator) providerRegister(ctx context.Context, p Connector, in *Intent, replay bool) error {
	if in.Credential == nil {
		return fmt.Errorf("intent %s has no credential", in.Nonce)
	}
	if in.AskOptions {
		opts, err := p.Options(ctx, in.User)
		if err != nil {
			return err
		}
		if opts != nil {
			in.State, in.AskOptions, in.Error = IntentNeedsKey, false, "the provider makes its own credential and the key is not at hand"
			in.Hint = fmt.Sprintf("Register key %d with %s again with the key inserted (keydesk idp register %d --with-key).", in.Serial, p.Name(), in.Serial)
			return errNeedsKey
		}
		in.AskOptions = false
	}
	if replay {
		ms, err := p.List(ctx, in.User)
		if err != nil {
			return err
		}
		for _, m := range ms {
			if strings.Contains(m.DisplayName, nonceTag(in.Nonce)) || (len(m.CredentialID) > 0 && bytes.Equal(m.CredentialID, in.Credential.ID)) {
				in.MethodID = m.ID
				return nil
			}
		}
	}
	return crashpoint.Around(crashpoint.IDPRegister, func() error {
		id, err := p.Register(ctx, in.User, in.Options, *in.Credential)
		in.MethodID = id
		return err
	})
}

// Flush replays every queued intent (pending or written) once, in order.
// An intent for a provider no longer configured is left as it is.
func (o *Orchestrator) Flush(ctx context.Context) ([]Outcome, error) {
	ins, err := o.box.Intents(ctx, IntentPending, IntentWritten)
	if err != nil {
		return nil, err
	}
	var out []Outcome
	for i := range ins {
		p := o.provider(ins[i].Provider)
		if p == nil {
			continue
		}
		oc, err := o.attempt(ctx, p, &ins[i], true)
		out = append(out, oc)
		if err != nil {
			return out, err
		}
	}
	return out, nil
}

// Unregister deletes key keyID's methods at every configured provider that
// holds them (the registry's active links) and marks the links deleted.
// Call it after the registry's own transition (lost, revoked, retired)
// succeeded, so the registry's last-key guard has had its say. A provider
// that cannot be reached leaves its delete queued.
func (o *Orchestrator) Unregister(ctx context.Context, keyID string, u User) ([]Outcome, error) {
	links, err := o.ledger.IDPLinks(ctx, client.LinkQuery{KeyID: keyID})
	if err != nil {
		return nil, err
	}
	queued, err := o.box.Intents(ctx, IntentPending, IntentWritten)
	if err != nil {
		return nil, err
	}
	var out []Outcome
	for _, l := range links {
		p := o.provider(l.Provider)
		if l.State != registry.LinkActive || p == nil || queuedDelete(queued, l.ID) {
			continue
		}
		serial := uint32(0)
		fmt.Sscan(l.Serial, &serial)
		in := Intent{Nonce: newNonce(), Provider: l.Provider, Op: OpDelete, User: u, KeyID: keyID, Serial: serial, LinkID: l.ID, MethodID: l.MethodID, State: IntentPending}
		if err := crashpoint.Around(crashpoint.IDPIntent, func() error { return o.box.add(ctx, &in) }); err != nil {
			return out, err
		}
		oc, err := o.attempt(ctx, p, &in, false)
		out = append(out, oc)
		if err != nil {
			return out, err
		}
	}
	return out, nil
}

func queuedDelete(ins []Intent, linkID string) bool {
	for _, in := range ins {
		if in.Op == OpDelete && in.LinkID == linkID {
			return true
		}
	}
	return false
}

// Observe lists user u's methods at every provider and reports each
// listing to the registry, which computes drift from it (GET
// /v1/idp-drift). userID is the registry's id of u.
func (o *Orchestrator) Observe(ctx context.Context, userID string, u User) error {
	var errs []error
	for _, p := range o.providers {
		ms, err := p.List(ctx, u)
		if err != nil {
			errs = append(errs, fmt.Errorf("listing %s's methods at %s: %w", u.ExternalID, p.Name(), err))
			continue
		}
		ob := registry.IDPObservation{Provider: p.Name(), UserID: userID, ObservedAt: time.Now().UTC(), Methods: make([]registry.IDPMethod, len(ms))}
		for i, m := range ms {
			ob.Methods[i] = registry.IDPMethod{ID: m.ID, CredentialID: m.CredentialID, DisplayName: m.DisplayName, AAGUID: m.AAGUID, Created: m.Created}
		}
		if err := o.ledger.ObserveIDP(ctx, ob); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}
