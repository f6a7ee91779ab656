package jwt

import (
	"crypto/sha256"
	"sync"
	"time"
)

// Verified-token cache. An RS256 verification costs ~30 µs of CPU; clients (and upstream
// services calling each other) send the same token for its whole lifetime, so the outcome of a
// successful verification is remembered, keyed by the token's SHA-256 (~1 µs), until the
// earlier of the token's exp and CacheTTL. Only successes are cached: a bad token is always
// re-verified, so the cache cannot be used to pin a rejection. The price is that a key removed
// from the JWKS keeps accepting tokens it signed for at most CacheTTL (default 1m); set
// CacheTTL < 0 to verify every request.

const (
	// DefaultCacheTTL bounds how long a verified token is trusted without re-verification.
	DefaultCacheTTL = time.Minute
	// DefaultCacheSize bounds the number of remembered tokens.
	DefaultCacheSize = 10000
	cacheShards      = 16
)

type verifiedToken struct {
	identity  string
	forward   []headerValue // the forwarded claim headers as set on the first request
	notBefore time.Time     // nbf minus leeway; zero = none
	until     time.Time     // min(exp, cached + TTL)
}

type headerValue struct{ name, value string }

// tokenCache is sharded so concurrent requests rarely meet on one lock; a read takes one
// shard's read lock.
type tokenCache struct {
	ttl      time.Duration
	perShard int
	shards   [cacheShards]struct {
		mu sync.RWMutex
		m  map[[32]byte]*verifiedToken
	}
}

func newTokenCache(ttl time.Duration, size int) *tokenCache {
	if ttl < 0 {
		return nil
	}
	if ttl == 0 {
		ttl = DefaultCacheTTL
	}
	if size <= 0 {
		size = DefaultCacheSize
	}
	c := &tokenCache{ttl: ttl, perShard: max(size/cacheShards, 1)}
	for i := range c.shards {
		c.shards[i].m = make(map[[32]byte]*verifiedToken)
	}
	return c
}

func (c *tokenCache) get(key *[32]byte, now time.Time) *verifiedToken {
	s := &c.shards[key[0]%cacheShards]
	s.mu.RLock()
	v := s.m[*key]
	s.mu.RUnlock()
	if v == nil || !now.Before(v.until) || (!v.notBefore.IsZero() && now.Before(v.notBefore)) {
		return nil
	}
	return v
}

func (c *tokenCache) put(key *[32]byte, v *verifiedToken, now time.Time) {
	if limit := now.Add(c.ttl); v.until.IsZero() || limit.Before(v.until) {
		v.until = limit
	}
	s := &c.shards[key[0]%cacheShards]
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.m) >= c.perShard {
		for k, e := range s.m { // drop the expired first; if none, make room by dropping all
			if !now.Before(e.until) {
				delete(s.m, k)
			}
		}
		if len(s.m) >= c.perShard {
			clear(s.m)
		}
	}
	s.m[*key] = v
}

func tokenKey(raw []byte) [32]byte { return sha256.Sum256(raw) }
