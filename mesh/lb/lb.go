package lb

import (
	"sync/atomic"
	"time"
)

// Host is one endpoint as a balancer sees it. Its counters are updated by the upstream cluster
// around every request and read lock-free by pickers. A Host outlives config reloads: the
// upstream manager keys it by (cluster, address) and hands the same pointer to every new picker.
type Host struct {
	Address string // host:port, also the ring_hash identity
	Weight  int    // >= 1

	inflight atomic.Int64
	// ewma is the smoothed latency in nanoseconds; 0 means "no sample yet".
	ewma atomic.Int64
	// down is set by outlier detection (mesh/upstream): pickers skip down hosts while any is up.
	down atomic.Bool

	Requests atomic.Uint64
	Errors   atomic.Uint64
}

// Begin marks a request as started on h.
func (h *Host) Begin() { h.inflight.Add(1) }

// End marks a request as finished after d; failed requests count as errors.
func (h *Host) End(d time.Duration, failed bool) {
	h.inflight.Add(-1)
	h.Requests.Add(1)
	if failed {
		h.Errors.Add(1)
	}
	h.observe(d)
}

// InFlight is the number of requests currently outstanding on h.
func (h *Host) InFlight() int64 { return h.inflight.Load() }

// EWMA is the smoothed latency; 0 until the first sample.
func (h *Host) EWMA() time.Duration { return time.Duration(h.ewma.Load()) }

// SetDown marks h unavailable (true) or available (false).
func (h *Host) SetDown(down bool) { h.down.Store(down) }

// Down reports whether h is marked unavailable.
func (h *Host) Down() bool { return h.down.Load() }

// ewmaWeight is the share of a new sample: 1/8, so a host that turns slow is noticed within a
// few requests while one outlier does not swing the estimate.
const ewmaShift = 3

func (h *Host) observe(d time.Duration) {
	n := int64(d)
	for {
		old := h.ewma.Load()
		next := n
		if old != 0 {
			next = old + (n-old)>>ewmaShift
		}
		if h.ewma.CompareAndSwap(old, next) {
			return
		}
	}
}

// Policy builds a Picker for one immutable host set. It is called on every endpoint change,
// never per request.
type Policy interface {
	NewPicker(hosts []*Host) Picker
}

// Picker chooses a host for one request. It must be safe for concurrent use, allocation-free,
// and lock-free. Pick returns an index into the hosts slice given to NewPicker, or -1 when
// the set is empty. Hosts that are Down are skipped unless every host is Down.
// hash is the request's consistent-hash key (ring_hash only; others ignore it). exclude is the
// index of a host already tried for this request (-1 for none); pickers avoid it when another
// host is available.
type Picker interface {
	Pick(hash uint64, exclude int) int
}
