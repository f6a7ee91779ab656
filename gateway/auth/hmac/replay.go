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

// replayCache remembers accepted signatures until their timestamp leaves the window. Entries are
// bucketed by expiry slot; the buckets form a ring spanning more than the window, so a bucket
// being reused always holds only expired entries and is cleared in one go.
type replayCache struct {
	width  int64 // slot width in ns
	max    int   // per shard
	shards [replayShards]replayShard
}

type replayShard struct {
	mu      sync.Mutex
	n       int
	slot    [replayBuckets]int64
	buckets [replayBuckets]map[[32]byte]struct{}
}

func newReplayCache(skew time.Duration, maxEntries int) *replayCache {
	// An entry expires within (now, now+2·skew]; the ring covers replayBuckets−2 slots of that
	// span plus slack so the live range never wraps onto itself.
	w := int64(2*skew) / (replayBuckets - 2)
	return &replayCache{width: max(w, 1), max: max(maxEntries/replayShards, 1)}
}

// add records sig expiring at exp; errReplayed when it is already recorded.
func (c *replayCache) add(sig [32]byte, exp, now time.Time) error {
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
