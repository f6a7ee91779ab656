package hmac

import (
	"errors"
	"sync"
	"time"
)

const (
	replayShards  = 16
	replayBuckets = 16
)

var (
	errReplayed = errors.New("hmac: replayed signature")
	errFull     = errors.New("hmac: replay cache full")
)

// ReplayCache remembers accepted signatures until their timestamp leaves the window. Entries are
// bucketed by expiry slot; the buckets form a ring spanning more than the window, so a bucket
// being reused always holds only expired entries and is cleared in one go.
//
// It is its own type, apart from Filter, so that it can outlive filters: the gateway keeps one
// per policy name across reloads (a reload that emptied it would let every request accepted in
// the last window be replayed once). Safe for concurrent use.
type ReplayCache struct {
	// prev is the cache this one replaced with another window (Resized), consulted until
	// prevUntil (unix ns), when its last entry has expired.
	prev      *ReplayCache
	prevUntil int64
	skew      time.Duration
	width     int64 // slot width in ns
	max       int   // per shard
	shards    [replayShards]replayShard
}

type replayShard struct {
	mu      sync.Mutex
	n       int
	slot    [replayBuckets]int64
	buckets [replayBuckets]map[[32]byte]struct{}
}

// NewReplayCache returns a cache for a replay window of skew (DefaultSkew when ≤ 0) holding
// at most maxEntries signatures (DefaultMaxNonces when ≤ 0).
func NewReplayCache(skew time.Duration, maxEntries int) *ReplayCache {
	if skew <= 0 {
		skew = DefaultSkew
	}
	if maxEntries <= 0 {
		maxEntries = DefaultMaxNonces
	}
	// An entry expires within (now, now+2·skew]; the ring covers replayBuckets−2 slots of that
	// span plus slack so the live range never wraps onto itself.
	w := int64(2*skew) / (replayBuckets - 2)
	return &ReplayCache{skew: skew, width: max(w, 1), max: max(maxEntries/replayShards, 1)}
}

// Resized returns a cache for skew and maxEntries (defaults as NewReplayCache) that still
// refuses every signature c holds: c itself when they are unchanged (the usual reload), else a
// new cache that also consults c until c's last entry has expired. Entries are filed by
// their expiry, which depends on the window, so they cannot simply be moved. A nil c gives an
// empty cache.
func (c *ReplayCache) Resized(skew time.Duration, maxEntries int, now time.Time) *ReplayCache {
	n := NewReplayCache(skew, maxEntries)
	if c == nil {
		return n
	}
	if c.skew == n.skew && c.max == n.max {
		return c
	}
	// c's newest entry expires within 2·skew (a timestamp up to skew ahead, kept skew past it).
	until := now.Add(2 * c.skew).UnixNano()
	if c.prev != nil && c.prevUntil > now.UnixNano() {
		until = max(until, c.prevUntil)
	}
	n.prev, n.prevUntil = c, until
	return n
}

// seen reports whether sig expiring at exp is recorded, without recording it: the cheap
// refusal of a replay before its body is read.
func (c *ReplayCache) seen(sig [32]byte, exp, now time.Time) bool {
	s := &c.shards[sig[0]%replayShards]
	slot := exp.UnixNano() / c.width
	b := int(slot % replayBuckets)
	s.mu.Lock()
	dup := false
	if s.slot[b] == slot {
		_, dup = s.buckets[b][sig]
	}
	s.mu.Unlock()
	return dup || c.seenBefore(sig, now)
}

// seenBefore checks the caches this one replaced (Resized), in any bucket still live: their
// slots are of another width, so the expiry slot cannot be recomputed.
func (c *ReplayCache) seenBefore(sig [32]byte, now time.Time) bool {
	ns := now.UnixNano()
	for p, until := c.prev, c.prevUntil; p != nil && ns < until; p, until = p.prev, p.prevUntil {
		s := &p.shards[sig[0]%replayShards]
		nowSlot := ns / p.width
		s.mu.Lock()
		for b := range s.buckets {
			if s.slot[b] >= nowSlot {
				if _, dup := s.buckets[b][sig]; dup {
					s.mu.Unlock()
					return true
				}
			}
		}
		s.mu.Unlock()
	}
	return false
}

// add records sig expiring at exp; errReplayed when it is already recorded.
func (c *ReplayCache) add(sig [32]byte, exp, now time.Time) error {
	if c.seenBefore(sig, now) {
		return errReplayed
	}
	s := &c.shards[sig[0]%replayShards]
	slot := exp.UnixNano() / c.width
	b := int(slot % replayBuckets)
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.slot[b] != slot {
		// The bucket held an older slot: everything in it has expired.
		s.n -= len(s.buckets[b])
		clear(s.buckets[b])
		s.slot[b] = slot
	} else if _, dup := s.buckets[b][sig]; dup {
		return errReplayed
	}
	if s.n >= c.max {
		s.expire(now.UnixNano() / c.width)
		if s.n >= c.max {
			return errFull
		}
	}
	if s.buckets[b] == nil {
		s.buckets[b] = make(map[[32]byte]struct{})
	}
	s.buckets[b][sig] = struct{}{}
	s.n++
	return nil
}

// expire clears every bucket whose slot ended before now.
func (s *replayShard) expire(nowSlot int64) {
	for i := range s.buckets {
		if s.slot[i] < nowSlot && len(s.buckets[i]) > 0 {
			s.n -= len(s.buckets[i])
			clear(s.buckets[i])
		}
	}
}
