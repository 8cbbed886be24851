package server

import (
	"context"
	"crypto/sha256"
	"sync"
	"time"

	"github.com/keydesk/keydesk/registry/store/sqlstore"
)

// tokenCache remembers tokens that authenticated recently, so that a busy
// client does not cost a database round trip per request. Only known,
// unrevoked tokens are cached, for at most ttl: a token revoked through
// this server's API is forgotten at once, one revoked by another process
// (the CLI, another registry on the same database) within ttl.
type tokenCache struct {
	mu  sync.Mutex
	ttl time.Duration
	m   map[[sha256.Size]byte]cachedToken
}

type cachedToken struct {
	tok sqlstore.Token
	at  time.Time
}

func newTokenCache(ttl time.Duration) *tokenCache {
	return &tokenCache{ttl: ttl, m: map[[sha256.Size]byte]cachedToken{}}
}

// lookup returns the token whose secret hashes to h, from the cache when it
// was read within ttl, else from the store.
func (c *tokenCache) lookup(ctx context.Context, st *sqlstore.Store, h [sha256.Size]byte, now time.Time) (sqlstore.Token, error) {
	if c.ttl > 0 {
		c.mu.Lock()
		e, ok := c.m[h]
		c.mu.Unlock()
		if ok && now.Sub(e.at) < c.ttl {
			return e.tok, nil
		}
	}
	t, err := st.LookupToken(ctx, h[:])
	if err != nil {
		return t, err
	}
	if c.ttl > 0 {
		c.mu.Lock()
		c.m[h] = cachedToken{tok: t, at: now}
		c.mu.Unlock()
	}
	return t, nil
}

// forgetName drops every cached token with this name.
func (c *tokenCache) forgetName(name string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for h, e := range c.m {
		if e.tok.Name == name {
			delete(c.m, h)
		}
	}
}

// forgetUser drops every cached token of user id (a self token), so that a
// change of the user's status applies to it at once.
func (c *tokenCache) forgetUser(id string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for h, e := range c.m {
		if e.tok.UserID == id {
			delete(c.m, h)
		}
	}
}

// sweep drops entries older than ttl.
func (c *tokenCache) sweep(now time.Time) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	n := 0
	for h, e := range c.m {
		if now.Sub(e.at) >= c.ttl {
			delete(c.m, h)
			n++
		}
	}
	return n
}
