package server

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/keydesk/keydesk/registry"
)

// Challenges are stateless until used: the challenge id carries the key,
// the credential, the expiry and the nonce, authenticated with an HMAC-SHA256
// key the registry keeps in its database (shared by every registry on that
// database). Issuing one writes nothing; the verification that uses it
// records it as used in the same transaction, and a primary key on its id
// makes a second use fail. So a challenge is single use, valid for
// ChallengeTTL, and issuance costs no transaction.

const challengePrefix = "ch1_"

// challengeKeys loads the HMAC key once.
type challengeKeys struct {
	mu  sync.Mutex
	key []byte
}

func (s *Server) challengeKey(ctx context.Context) ([]byte, error) {
	s.chk.mu.Lock()
	defer s.chk.mu.Unlock()
	if s.chk.key == nil {
		k, err := s.st.Secret(ctx, "challenge-hmac")
		if err != nil {
			return nil, err
		}
		s.chk.key = k
	}
	return s.chk.key, nil
}

func appendField(b []byte, f []byte) []byte {
	b = binary.BigEndian.AppendUint16(b, uint16(len(f)))
	return append(b, f...)
}

// sealChallenge builds c's id.
func sealChallenge(key []byte, c registry.Challenge) string {
	var b []byte
	b = appendField(b, []byte(c.KeyID))
	b = appendField(b, []byte(c.Kind))
	b = appendField(b, []byte(c.CredentialID))
	b = binary.BigEndian.AppendUint64(b, uint64(c.ExpiresAt.UnixNano()))
	b = appendField(b, c.Nonce)
	m := hmac.New(sha256.New, key)
	m.Write([]byte("keydesk-challenge-v1\x00"))
	m.Write(b)
	return challengePrefix + base64.RawURLEncoding.EncodeToString(m.Sum(b))
}

var errBadChallenge = fmt.Errorf("%w: unknown", registry.ErrChallenge)

// openChallenge checks id's HMAC and expiry at now and returns the challenge.
func openChallenge(key []byte, id string, now time.Time) (registry.Challenge, error) {
	raw, ok := strings.CutPrefix(id, challengePrefix)
	if !ok {
		return registry.Challenge{}, errBadChallenge
	}
	b, err := base64.RawURLEncoding.DecodeString(raw)
	if err != nil || len(b) < sha256.Size {
		return registry.Challenge{}, errBadChallenge
	}
	body, mac := b[:len(b)-sha256.Size], b[len(b)-sha256.Size:]
	m := hmac.New(sha256.New, key)
	m.Write([]byte("keydesk-challenge-v1\x00"))
	m.Write(body)
	if !hmac.Equal(mac, m.Sum(nil)) {
		return registry.Challenge{}, errBadChallenge
	}
	c := registry.Challenge{ID: id}
	var fields [3][]byte
	for i := range fields {
		if fields[i], body, err = readField(body); err != nil {
			return registry.Challenge{}, errBadChallenge
		}
	}
	c.KeyID, c.Kind, c.CredentialID = string(fields[0]), string(fields[1]), string(fields[2])
	if len(body) < 8 {
		return registry.Challenge{}, errBadChallenge
	}
	c.ExpiresAt = time.Unix(0, int64(binary.BigEndian.Uint64(body))).UTC()
	if c.Nonce, body, err = readField(body[8:]); err != nil || len(body) != 0 {
		return registry.Challenge{}, errBadChallenge
	}
	if !now.Before(c.ExpiresAt) {
		return c, fmt.Errorf("%w: expired", registry.ErrChallenge)
	}
	return c, nil
}

func readField(b []byte) (f, rest []byte, err error) {
	if len(b) < 2 {
		return nil, nil, errors.New("short")
	}
	n := int(binary.BigEndian.Uint16(b))
	if len(b) < 2+n {
		return nil, nil, errors.New("short")
	}
	return b[2 : 2+n], b[2+n:], nil
}
