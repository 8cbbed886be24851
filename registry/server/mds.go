package server

import (
	"context"
	"encoding/json"
	"fmt"
	"sync"
	"time"

	"github.com/google/uuid"

	"github.com/keydesk/keydesk/registry"
	"github.com/keydesk/keydesk/registry/attest"
	"github.com/keydesk/keydesk/registry/mds"
	"github.com/keydesk/keydesk/registry/store/sqlstore"
)

// mdsCache holds the FIDO Metadata Service entries the store holds, read
// again when `keydesk-registry mds update` loads a newer BLOB (one small
// query tells), with the attestation roots they add.
type mdsCache struct {
	mu       sync.Mutex
	loadedAt time.Time
	set      *mds.Set
	roots    *attest.Roots
}

// mdsSet returns the held MDS entries (nil when none were loaded) and the
// attestation roots to check FIDO2 attestation with: the server's own
// plus the entries' attestation roots.
func (s *Server) mdsSet(ctx context.Context) (*mds.Set, *attest.Roots, error) {
	c := &s.mdsc
	at, err := s.st.MDSLoadedAt(ctx)
	if err != nil {
		return nil, s.roots, err
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if at.IsZero() {
		return nil, s.roots, nil
	}
	if c.set != nil && at.Equal(c.loadedAt) {
		return c.set, c.roots, nil
	}
	b, ok, err := s.st.MDS(ctx)
	if err != nil || !ok {
		return nil, s.roots, err
	}
	var set mds.Set
	if err := json.Unmarshal(b.Entries, &set); err != nil {
		return nil, s.roots, fmt.Errorf("decoding the held mds entries: %w", err)
	}
	c.loadedAt, c.set, c.roots = b.LoadedAt, &set, s.roots.WithFIDO(set.AttestationRoots())
	return c.set, c.roots, nil
}

// fidoModel names one credential's model from set.
func fidoModel(set *mds.Set, c sqlstore.CredentialAAGUID) registry.FIDOModel {
	m := registry.FIDOModel{CredentialID: c.CredentialID, KeyID: c.KeyID}
	if u, err := uuid.FromBytes(c.AAGUID); err == nil {
		m.AAGUID = u.String()
	}
	if e, ok := set.Lookup(c.AAGUID); ok {
		m.Model, m.Status, m.Certification = e.Description, e.Status, e.Certification
	}
	return m
}
