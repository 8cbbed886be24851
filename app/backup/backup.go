// Package backup keeps the organisation's registrations safe: it checks
// that every user holds a backup key (coverage), exports one user's or the
// whole organisation's registrations as a bundle encrypted with age
// (https://age-encryption.org/v1) to the helpdesk's recipients, and
// restores such a bundle into an empty registry with its audit chain
// intact. Nothing here prints or prompts.
package backup

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"

	"filippo.io/age"
	"filippo.io/age/armor"

	"github.com/keydesk/keydesk/app/escrow"
	"github.com/keydesk/keydesk/internal/crashpoint"
	"github.com/keydesk/keydesk/registry"
	"github.com/keydesk/keydesk/registry/client"
)

// UserCoverage is one user's standing against the two-key policy.
type UserCoverage struct {
	UserID     string   `json:"user_id"`
	ExternalID string   `json:"external_id"`
	ActiveKeys int      `json:"active_keys"`
	Covered    bool     `json:"covered"`
	Missing    []string `json:"missing,omitempty"`
}

// CoverageReport is the two-key policy across the organisation.
type CoverageReport struct {
	Users     []UserCoverage `json:"users"`
	Covered   int            `json:"covered"`
	Uncovered int            `json:"uncovered"`
}

// Coverage asks the registry, user by user, whether each active user holds
// an active primary and an active backup key.
func Coverage(ctx context.Context, reg *client.Client) (*CoverageReport, error) {
	r := &CoverageReport{Users: []UserCoverage{}}
	var covErr error
	err := reg.EachUser(ctx, 500, func(u registry.User) (bool, error) {
		if u.Status != registry.UserActive {
			return true, nil
		}
		c, err := reg.Coverage(ctx, u.ID)
		if err != nil {
			covErr = fmt.Errorf("coverage of %s: %w", u.ExternalID, err)
			return false, covErr
		}
		r.Users = append(r.Users, UserCoverage{UserID: u.ID, ExternalID: u.ExternalID, ActiveKeys: c.ActiveKeys, Covered: c.Covered, Missing: c.Missing})
		if c.Covered {
			r.Covered++
		} else {
			r.Uncovered++
		}
		return true, nil
	})
	if covErr != nil {
		return nil, covErr
	}
	if err != nil {
		return nil, fmt.Errorf("listing users: %w", err)
	}
	return r, nil
}

// Summary says what a bundle holds.
type Summary struct {
	Scope        string `json:"scope"`
	Users        int    `json:"users"`
	Keys         int    `json:"keys"`
	Credentials  int    `json:"credentials"`
	AuditEntries int    `json:"audit_entries"`
}

func summarise(x *registry.Export) Summary {
	return Summary{Scope: x.Scope, Users: len(x.Users), Keys: len(x.Keys), Credentials: len(x.FIDO2) + len(x.PIV), AuditEntries: len(x.Audit)}
}

// Export writes the registrations of the user with registry id or external
// id user (the whole organisation when empty) to w, encrypted with age to
// every recipient and ASCII-armored.
func Export(ctx context.Context, reg *client.Client, user string, recipients []string, w io.Writer) (Summary, error) {
	rs, err := escrow.ParseRecipients(recipients)
	if err != nil {
		return Summary{}, fmt.Errorf("backup recipients: %w", err)
	}
	id := ""
	if user != "" {
		u, err := reg.FindUser(ctx, user)
		if err != nil {
			return Summary{}, err
		}
		id = u.ID
	}
	x, err := reg.Export(ctx, id)
	if err != nil {
		return Summary{}, fmt.Errorf("exporting: %w", err)
	}
	plain, err := json.Marshal(x)
	if err != nil {
		return Summary{}, err
	}
	aw := armor.NewWriter(w)
	ew, err := age.Encrypt(aw, rs...)
	if err != nil {
		return Summary{}, err
	}
	if _, err := ew.Write(plain); err != nil {
		return Summary{}, err
	}
	if err := ew.Close(); err != nil {
		return Summary{}, err
	}
	if err := aw.Close(); err != nil {
		return Summary{}, err
	}
	return summarise(&x), nil
}

// Open decrypts a bundle with the helpdesk's identity.
func Open(r io.Reader, identity string) (*registry.Export, error) {
	id, err := age.ParseX25519Identity(strings.TrimSpace(identity))
	if err != nil {
		return nil, fmt.Errorf("opening the backup: identity: %w", err)
	}
	dr, err := age.Decrypt(armor.NewReader(r), id)
	if err != nil {
		var nm *age.NoIdentityMatchError
		if errors.As(err, &nm) {
			return nil, fmt.Errorf("opening the backup: %w", escrow.ErrWrongIdentity)
		}
		return nil, fmt.Errorf("opening the backup: %w", err)
	}
	var x registry.Export
	dec := json.NewDecoder(dr)
	dec.DisallowUnknownFields()
	if err := dec.Decode(&x); err != nil {
		return nil, fmt.Errorf("opening the backup: %w", err)
	}
	if x.Format != registry.ExportFormat {
		return nil, fmt.Errorf("opening the backup: format %q is not %q", x.Format, registry.ExportFormat)
	}
	return &x, nil
}

// Restore decrypts the bundle in r with identity and restores it into the
// registry, which must hold no users and no keys. The same bundle restored
// again is a replay (client.Import), answered with the first restore's
// summary: a restore interrupted after the registry took it is finished by
// the same command.
func Restore(ctx context.Context, reg *client.Client, r io.Reader, identity string) (registry.Restored, error) {
	x, err := Open(r, identity)
	if err != nil {
		return registry.Restored{}, err
	}
	var out registry.Restored
	if err := crashpoint.Around(crashpoint.RestoreRegistryImport, func() (err error) { out, err = reg.Import(ctx, *x); return err }); err != nil {
		return out, fmt.Errorf("restoring: %w", err)
	}
	return out, nil
}
