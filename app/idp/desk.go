package idp

import (
	"context"
	"errors"
	"fmt"
	"strconv"

	"github.com/keydesk/keydesk/registry"
	"github.com/keydesk/keydesk/registry/client"
)

// SecretAccount is the OS keyring account of a provider's secret name
// ("client-secret", "admin-token"): "idp/PROVIDER/NAME".
func SecretAccount(provider, name string) string { return "idp/" + provider + "/" + name }

// Keyring is the OS keyring as app/secrets gives it.
type Keyring interface {
	Get(account string) (string, error)
}

// keyringSecrets gives one provider its secrets from the keyring.
type keyringSecrets struct {
	kr       Keyring
	provider string
}

func (k keyringSecrets) Secret(name string) (string, error) {
	return k.kr.Get(SecretAccount(k.provider, name))
}

// OpenAll opens every configured provider, each reading its secrets from
// kr under SecretAccount(its name, ...). kr may be nil for providers that
// need none.
func OpenAll(cfgs []Config, kr Keyring) ([]Connector, error) {
	out := make([]Connector, 0, len(cfgs))
	for _, c := range cfgs {
		var s Secrets
		if kr != nil {
			s = keyringSecrets{kr: kr, provider: c.Name}
		}
		conn, err := Open(c, s)
		if err != nil {
			return nil, err
		}
		out = append(out, conn)
	}
	return out, nil
}

// UserOf is the provider's view of a registry user.
func UserOf(u registry.User) User {
	return User{ExternalID: u.ExternalID, Email: u.Email, DisplayName: u.DisplayName}
}

// DeskCredential is the desk's own credential of key kd (its first FIDO2
// credential, made for the organisation's relying party), as providers
// that import credentials receive it.
func DeskCredential(kd client.KeyDetail) (Credential, error) {
	if len(kd.FIDO2) == 0 {
		return Credential{}, fmt.Errorf("key %s has no FIDO2 credential in the registry", kd.Serial)
	}
	c := kd.FIDO2[0]
	out := Credential{ID: c.CredentialID, PublicKey: c.PublicKey, SignCount: c.SignCount, ClientDataJSON: c.AttestationClientDataJSON, AttestationObject: c.AttestationObject}
	copy(out.AAGUID[:], c.AAGUID)
	return out, nil
}

// RegisterKey registers registered key kd of user u with every provider
// (Orchestrator.Register), the desk's credential read from the registry.
func (o *Orchestrator) RegisterKey(ctx context.Context, kd client.KeyDetail, u registry.User, mk Maker) ([]Outcome, error) {
	desk, err := DeskCredential(kd)
	if err != nil {
		return nil, err
	}
	serial, _ := strconv.ParseUint(kd.Serial, 10, 32)
	return o.Register(ctx, UserOf(u), KeyRef{ID: kd.ID, Serial: uint32(serial), Model: kd.Model}, desk, mk)
}

// Reconcile replays the provider outbox, deletes at the providers the
// methods of keys the registry no longer has in service (lost, revoked,
// retired: a change made at another desk or by the registry's own admin),
// and reports every linked user's methods at each provider, so the
// registry's drift is current. users maps registry user ids to users.
func (o *Orchestrator) Reconcile(ctx context.Context, reg *client.Client) ([]Outcome, error) {
	out, err := o.Flush(ctx)
	if err != nil {
		return out, err
	}
	links, err := reg.IDPLinks(ctx, client.LinkQuery{})
	if err != nil {
		return out, err
	}
	users := map[string]registry.User{}
	user := func(id string) (registry.User, error) {
		if u, ok := users[id]; ok {
			return u, nil
		}
		u, err := reg.User(ctx, id)
		users[id] = u
		return u, err
	}
	done := map[string]bool{}
	for _, l := range links {
		if l.State != registry.LinkActive || l.KeyStatus.InService() || done[l.KeyID] {
			continue
		}
		done[l.KeyID] = true
		u, err := user(l.UserID)
		if err != nil {
			return out, err
		}
		oc, err := o.Unregister(ctx, l.KeyID, UserOf(u))
		out = append(out, oc...)
		if err != nil {
			return out, err
		}
	}
	observed := map[string]bool{}
	var refused []error
	for _, l := range links {
		if observed[l.UserID] {
			continue
		}
		observed[l.UserID] = true
		u, err := user(l.UserID)
		if err != nil {
			return out, err
		}
		if err := o.Observe(ctx, l.UserID, UserOf(u)); err != nil {
			// A provider refusing one user (no such user there any more)
			// must not stop the drift check of everyone after them.
			var re *RefusedError
			if !errors.As(err, &re) && !errors.Is(err, ErrUserNotFound) {
				return out, err
			}
			refused = append(refused, fmt.Errorf("user %s: %w", u.ExternalID, err))
		}
	}
	return out, errors.Join(refused...)
}

// OpenDesk opens the providers cfgs names (secrets from kr) and the
// provider outbox at outboxPath, as one orchestrator that owns the outbox
// (Close closes it). With no provider configured it returns nil, nil.
func OpenDesk(cfgs []Config, kr Keyring, ledger Ledger, outboxPath string) (*Orchestrator, error) {
	if len(cfgs) == 0 {
		return nil, nil
	}
	conns, err := OpenAll(cfgs, kr)
	if err != nil {
		return nil, err
	}
	box, err := OpenOutbox(outboxPath)
	if err != nil {
		return nil, err
	}
	return NewOrchestrator(conns, ledger, box), nil
}

// Outbox is the orchestrator's provider outbox.
func (o *Orchestrator) Outbox() *Outbox { return o.box }

// Close closes the provider outbox; a nil orchestrator has none.
func (o *Orchestrator) Close() error {
	if o == nil {
		return nil
	}
	return o.box.Close()
}
