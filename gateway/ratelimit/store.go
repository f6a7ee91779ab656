package ratelimit

import (
	"hash/maphash"
	"sync"
	"sync/atomic"
	"time"
)

// shardCount splits the key table so that concurrent lookups of different keys rarely touch
// the same lock; a power of two so the shard is a mask of the hash.
const shardCount = 64

// store maps keys to GCRA buckets. A bucket is one atomic TAT in nanoseconds since epoch; the
// shard lock guards only the map, never the bucket arithmetic.
type store struct {
	epoch       time.Time
	maxPerShard int
	seed        maphash.Seed
	shards      [shardCount]shard
}

type shard struct {
	mu sync.RWMutex
	m  map[string]*atomic.Int64
	// Padding keeps neighbouring shards' locks on separate cache lines.
	_ [32]byte
}

func newStore(maxKeys int, epoch time.Time) *store {
	s := &store{epoch: epoch, maxPerShard: max(1, (maxKeys+shardCount-1)/shardCount), seed: maphash.MakeSeed()}
	for i := range s.shards {
		s.shards[i].m = make(map[string]*atomic.Int64)
	}
	return s
}

// bucket returns key's bucket, creating it when absent. now is used only to pick eviction
// victims. Existing keys are found without allocating: m[string(b)] does not copy b.
func (s *store) bucket(key []byte, now int64) *atomic.Int64 {
	sh := &s.shards[maphash.Bytes(s.seed, key)&(shardCount-1)]
	sh.mu.RLock()
	b := sh.m[string(key)]
	sh.mu.RUnlock()
	if b != nil {
		return b
	}
	sh.mu.Lock()
	defer sh.mu.Unlock()
	if b = sh.m[string(key)]; b != nil {
		return b
	}
	if len(sh.m) >= s.maxPerShard {
		sh.evict(now)
	}
	b = new(atomic.Int64)
	sh.m[string(key)] = b
	return b
}

// evict makes room in a full shard; the caller holds the write lock. Idle buckets (TAT not in
// the future) are full, so dropping them is invisible to clients. Only when every bucket is
// active does the one closest to idle go, trading a little leniency for a hard memory bound.
func (sh *shard) evict(now int64) {
	var (
		oldestKey string
		oldestTAT int64
		found     bool
		dropped   bool
	)
	for k, b := range sh.m {
		tat := b.Load()
		if tat <= now {
			delete(sh.m, k)
			dropped = true
			continue
		}
		if !found || tat < oldestTAT {
			oldestKey, oldestTAT, found = k, tat, true
		}
	}
	if !dropped && found {
		delete(sh.m, oldestKey)
	}
}

// len counts keys (tests and the admin view); it takes every shard lock in turn.
func (s *store) len() int {
	n := 0
	for i := range s.shards {
		sh := &s.shards[i]
		sh.mu.RLock()
		n += len(sh.m)
		sh.mu.RUnlock()
	}
	return n
}

// gcra is the rate arithmetic of one policy, in nanoseconds.
type gcra struct {
	interval int64 // emission interval: per / requests
	tau      int64 // burst tolerance: burst × interval (a full bucket)
}

// decision is what one admission check found; durations are nanoseconds.
type decision struct {
	allowed    bool
	remaining  int64 // requests still allowed right now (after this one)
	retryAfter int64 // limited: time until one request would be allowed
	reset      int64 // time until the bucket is full again
}

// take admits one request against b at time now, lock-free.
func (g gcra) take(b *atomic.Int64, now int64) decision {
	for {
		tat := b.Load()
		base := max(tat, now)
		next := base + g.interval
		if next-now > g.tau {
			return decision{retryAfter: next - g.tau - now, reset: base - now}
		}
		if b.CompareAndSwap(tat, next) {
			return decision{allowed: true, remaining: (g.tau - (next - now)) / g.interval, reset: next - now}
		}
	}
}
