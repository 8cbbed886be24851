package enrol

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"strconv"

	"github.com/keydesk/keydesk/internal/crashpoint"
	"github.com/keydesk/keydesk/registry"
	"github.com/keydesk/keydesk/registry/client"
)

// advance moves rec to stage and writes it to the journal, durably, before
// the step the stage announces; when the write fails rec keeps its stage.
// It is one of an enrolment's crash points (internal/crashpoint).
func (e *Enroller) advance(ctx context.Context, rec *Record, stage Stage) error {
	prev := rec.Stage
	rec.Stage = stage
	if err := crashpoint.Around("journal-"+string(stage), func() error { return e.j.put(ctx, rec) }); err != nil {
		rec.Stage = prev
		return err
	}
	return nil
}

// registrationKey is the idempotency key of a key's registration, derived
// from the journalled request: the same enrolment always queues under the
// same key, and another enrolment of the same key (after a reset) under
// another one, since its public keys and credential differ.
func registrationKey(rec *Record) string {
	sum := sha256.Sum256(rec.Request)
	return "enrol-" + strconv.FormatUint(uint64(rec.Serial), 10) + "-" + hex.EncodeToString(sum[:16])
}

// registered finds what became of rec's queued registration and returns
// the registry's key id. An entry the registry answered is read back. One
// it refused as a conflict may be this desk's own earlier write (a copy
// queued under another key by an older desk, or an answer lost after the
// registry's record of the idempotency key expired): when the registry's
// key has the journalled serial, owner, FIDO2 credential and PIV public
// keys, the registration is done and its key id is taken.
func (e *Enroller) registered(ctx context.Context, rec *Record, er client.Enrolment) (string, error) {
	ents, err := e.cfg.Registry.Entries(ctx, "")
	if err != nil {
		return "", err
	}
	for _, en := range ents {
		if en.Seq != rec.OutboxSeq {
			continue
		}
		switch en.State {
		case client.Done:
			var enrolled client.Enrolled
			if err := json.Unmarshal(en.Response, &enrolled); err != nil {
				return "", fmt.Errorf("reading the registry's answer: %w", err)
			}
			if enrolled.Key.ID == "" {
				return "", fmt.Errorf("the registry's answer to outbox entry %d names no key", en.Seq)
			}
			return enrolled.Key.ID, nil
		case client.Pending:
			return "", client.ErrUnreachable
		case client.Conflict:
			if id, ok, err := e.ownEarlierWrite(ctx, er); err != nil || ok {
				return id, err
			}
		}
		return "", &RefusedError{Serial: rec.Serial, State: en.State, Detail: en.Error}
	}
	return "", fmt.Errorf("outbox entry %d of key %d is gone", rec.OutboxSeq, rec.Serial)
}

// ownEarlierWrite reports whether the registry holds the key of er exactly
// as er registers it: the same serial, owner (external id), FIDO2
// credential ids and public keys, and PIV slots with the same public keys.
// Then it is this enrolment's own registration, and ok is true.
func (e *Enroller) ownEarlierWrite(ctx context.Context, er client.Enrolment) (keyID string, ok bool, err error) {
	kd, err := e.cfg.Registry.KeyBySerial(ctx, er.Key.Serial)
	if errors.Is(err, registry.ErrNotFound) {
		return "", false, nil
	}
	if err != nil {
		return "", false, err
	}
	u, err := e.cfg.Registry.User(ctx, kd.OwnerID)
	if err != nil {
		return "", false, err
	}
	if u.ExternalID != er.User.ExternalID || len(kd.FIDO2) != len(er.FIDO2) || len(kd.PIV) != len(er.PIV) {
		return "", false, nil
	}
	for i, c := range er.FIDO2 {
		if !bytes.Equal(kd.FIDO2[i].CredentialID, c.CredentialID) || !bytes.Equal(kd.FIDO2[i].PublicKey, c.PublicKey) {
			return "", false, nil
		}
	}
	for i, p := range er.PIV {
		if kd.PIV[i].Slot != p.Slot || !bytes.Equal(kd.PIV[i].PublicKey, p.PublicKey) {
			return "", false, nil
		}
	}
	return kd.ID, true, nil
}

// RefusedError: the registry refused a key's registration, and what it
// holds is not this enrolment's own earlier write.
type RefusedError struct {
	Serial uint32
	State  client.EntryState
	Detail string
}

func (e *RefusedError) Error() string {
	return fmt.Sprintf("the registry refused the registration of key %d (%s): %s", e.Serial, e.State, e.Detail)
}

// DeskHint is Hint in the desktop app's words.
func (e *RefusedError) DeskHint() string {
	if e.State != client.Conflict {
		return fmt.Sprintf("The registry found the registration of key %d invalid (see the error). Reset the key's PIV and FIDO2 applications (Keys screen) and enrol it again.", e.Serial)
	}
	return fmt.Sprintf("The registry holds another registration for key %d: look it up on the Helpdesk screen (search its serial) before enrolling it again.", e.Serial)
}

// Hint says what to do.
func (e *RefusedError) Hint() string {
	if e.State != client.Conflict {
		return fmt.Sprintf("The registry found the registration of key %d invalid (see the error). Reset the key (keydesk piv reset --serial %d, keydesk fido reset --serial %d) and enrol it again.", e.Serial, e.Serial, e.Serial)
	}
	return fmt.Sprintf("The registry holds another registration for key %d: look it up (keydesk recover diagnose --serial %d) before enrolling it again.", e.Serial, e.Serial)
}

// putEscrow stores rec's journalled escrow with the registry; an escrow
// already there (stored by an earlier attempt whose answer was lost) is
// left as it is.
func (e *Enroller) putEscrow(ctx context.Context, rec *Record) error {
	return putEscrow(ctx, e.cfg.Registry, rec)
}

func putEscrow(ctx context.Context, reg *client.Client, rec *Record) error {
	crashpoint.Before(crashpoint.RegistryEscrow)
	if _, err := reg.PutEscrow(ctx, rec.KeyID, EscrowKind, rec.Escrow, 0); err != nil {
		var ae *client.APIError
		// Stored meanwhile: the registry's is the one that counts.
		if !(errors.As(err, &ae) && ae.Conflict()) {
			return err
		}
		if _, gerr := reg.Escrow(ctx, rec.KeyID, EscrowKind); gerr != nil {
			return err
		}
	}
	crashpoint.After(crashpoint.RegistryEscrow)
	return nil
}

// StoreJournalledEscrow stores the sealed escrow of key serial from the
// enrolment journal at journalPath with the registry, when the journal
// holds one for a key the registry has registered (keyID) and the registry
// has none yet: an enrolment cut off between registration and escrow. It
// reports whether it stored one. A desk with no journal has nothing to
// store. `keydesk verify` runs it first, so the registry can activate the
// key (it refuses to activate a key with PIV slots and no escrow).
func StoreJournalledEscrow(ctx context.Context, journalPath string, reg *client.Client, serial uint32, keyID string) (bool, error) {
	if _, err := os.Stat(journalPath); err != nil {
		return false, nil
	}
	j, err := openJournal(journalPath)
	if err != nil {
		return false, err
	}
	defer j.close()
	rec, err := j.get(ctx, serial)
	if err != nil || rec == nil || len(rec.Escrow) == 0 || halfSetUp(rec.Stage) {
		return false, err
	}
	if rec.KeyID != "" && rec.KeyID != keyID {
		return false, nil // the journal's enrolment is not the registered key
	}
	var er client.Enrolment
	if err := json.Unmarshal(rec.Request, &er); err != nil {
		return false, fmt.Errorf("journal record of key %d: %w", serial, err)
	}
	if rec.KeyID == "" {
		// Registered, but the journal did not hear of it: only its own
		// registration gets the escrow.
		e := &Enroller{cfg: Config{Registry: reg}}
		id, ok, err := e.ownEarlierWrite(ctx, er)
		if err != nil || !ok || id != keyID {
			return false, err
		}
	}
	if _, err := reg.Escrow(ctx, keyID, EscrowKind); err == nil {
		return false, nil
	} else if !errors.Is(err, registry.ErrNotFound) {
		return false, err
	}
	r := *rec
	r.KeyID = keyID
	if err := putEscrow(ctx, reg, &r); err != nil {
		return false, err
	}
	return true, nil
}
