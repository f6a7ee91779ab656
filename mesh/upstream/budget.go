package upstream

import (
	"math/rand/v2"
	"sync/atomic"
	"time"
)

// budgetWindow is how many one-second slots the retry budget remembers. Ten seconds (Finagle's
// default TTL) is long enough that a burst of failures right after a quiet period still finds
// the tokens earlier requests deposited, and short enough that an hour of healthy traffic
// cannot fund a retry storm.
const budgetWindow = 10

// Slot words pack the slot's second (low 24 bits of the unix second: wraps every 194 days,
// far beyond the window) above a 40-bit count, so resetting a stale slot and counting into it
// is one compare-and-swap: no lost updates and no lock.
const (
	slotCountBits = 40
	slotCountMask = 1<<slotCountBits - 1
	slotSecMask   = 1<<24 - 1
)

// retryBudget counts first tries (deposits) and retries (withdrawals) per second over the last
// budgetWindow seconds. A retry is allowed when, counting it,
//
//	retries(window) <= ratio × requests(window)   or   retries(this second) <= minPerSecond
//
// so in an outage where every try fails, retries add at most ratio of the request rate plus
// minPerSecond per second, instead of multiplying load by the number of attempts. Concurrent
// retries may pass the check together and overshoot by at most the number of them.
type retryBudget struct {
	deposits    [budgetWindow]atomic.Uint64
	withdrawals [budgetWindow]atomic.Uint64
}

func (b *retryBudget) deposit(now time.Time) {
	sec := uint64(now.Unix())
	bump(&b.deposits[sec%budgetWindow], sec)
}

// withdraw takes one retry from the budget, or reports that it is exhausted.
func (b *retryBudget) withdraw(now time.Time, ratio float64, minPerSecond int) bool {
	sec := uint64(now.Unix())
	deps, _ := windowSum(&b.deposits, sec)
	wds, wdNow := windowSum(&b.withdrawals, sec)
	if float64(wds+1) > ratio*float64(deps) && wdNow+1 > uint64(minPerSecond) {
		return false
	}
	bump(&b.withdrawals[sec%budgetWindow], sec)
	return true
}

// bump adds one to slot for second sec, first resetting it if it still holds an older second.
func bump(slot *atomic.Uint64, sec uint64) {
	tag := sec & slotSecMask
	for {
		old := slot.Load()
		next := tag<<slotCountBits | 1
		if old>>slotCountBits == tag {
			next = old + 1
		}
		if slot.CompareAndSwap(old, next) {
			return
		}
	}
}

// windowSum adds the counts of the slots written within the window ending at sec, and returns
// the count of sec's own slot separately.
func windowSum(slots *[budgetWindow]atomic.Uint64, sec uint64) (total, current uint64) {
	tag := sec & slotSecMask
	for i := range slots {
		v := slots[i].Load()
		age := (tag - v>>slotCountBits) & slotSecMask
		if age >= budgetWindow {
			continue
		}
		total += v & slotCountMask
		if age == 0 {
			current += v & slotCountMask
		}
	}
	return total, current
}

// backoff is "full jitter" (AWS architecture blog, 2015): uniformly random in
// [0, min(max, base × 2^(retry-1))). Randomising the whole interval spreads the retries of
// requests that failed together, which a fixed delay would send back in one wave.
func backoff(retry int, base, limit time.Duration) time.Duration {
	if base <= 0 {
		return 0
	}
	ceiling := base
	for i := 1; i < retry && ceiling < limit; i++ {
		ceiling *= 2 // stops at the first value >= limit, so it cannot overflow
	}
	ceiling = min(ceiling, limit)
	return time.Duration(rand.Int64N(int64(ceiling)))
}
