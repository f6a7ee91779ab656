package upstream

import (
	"math"
	"sync/atomic"
	"time"
)

// health is the resilience state of one address in a cluster. It is carried across reloads
// and weight changes (a new *Host for the same address gets the same *health), so a reload
// neither forgives an ejected host nor closes an open breaker.
type health struct {
	consecutive  atomic.Int64            // failed tries in a row
	ejectedUntil atomic.Int64            // unix nanoseconds; 0 while in service
	ejections    atomic.Int64            // the multiplier of the last ejection; decays while in service
	returnedAt   atomic.Int64            // unix nanoseconds of the last return; 0 before any
	breaker      atomic.Pointer[breaker] // nil when breakers are disabled
}

func (h *health) ejected() bool { return h.ejectedUntil.Load() != 0 }

// outcome is how one try reflects on the host it went to.
type outcome uint8

const (
	trySucceeded outcome = iota
	tryFailed            // 5xx, connect failure, reset, timeout, protocol error
	tryExcluded          // our own limit or the response's size: says nothing about the host
)

// observe feeds one try's outcome to outlier detection.
func (c *Cluster) observe(h *Host, o outcome, opts *Options) {
	if opts.Outlier.Disabled {
		return
	}
	hs := h.health
	switch o {
	case trySucceeded:
		// Load first: a store on every success would bounce the cache line between cores.
		if hs.consecutive.Load() != 0 {
			hs.consecutive.Store(0)
		}
	case tryFailed:
		if n := hs.consecutive.Add(1); n >= int64(opts.Outlier.ConsecutiveErrors) && !hs.ejected() {
			c.tryEject(hs, &opts.Outlier, opts.now())
		}
	}
}

// tryEject ejects the host unless that would pass max_ejection_percent. Ejection changes are
// serialised by ejectMu, which the request path only ever TryLocks: if another request is
// already changing ejections, this one goes on without waiting, and the host's error streak
// (still over the threshold) makes its next failure try again.
func (c *Cluster) tryEject(hs *health, o *OutlierOptions, now time.Time) {
	if !c.ejectMu.TryLock() {
		return
	}
	defer c.ejectMu.Unlock()
	// Fresh state under the lock: a rebuild may have replaced the one the request used.
	st := c.state.Load()
	var h *Host
	ejected := 0
	for _, x := range st.hosts {
		if x.health == hs {
			h = x
		}
		if x.health.ejected() {
			ejected++
		}
	}
	if h == nil || hs.ejected() || hs.consecutive.Load() < int64(o.ConsecutiveErrors) {
		return
	}
	if ejected+1 > maxEjectable(len(st.hosts), o.MaxEjectionPercent) {
		if !c.limitLogged.Swap(true) {
			c.sink.emit(event{kind: evEjectionLimited, service: c.name, host: h.Address,
				healthy: len(st.hosts) - ejected, total: len(st.hosts)})
		}
		return
	}
	mult := decayedEjections(hs, o, now) + 1
	// The multiplier stops growing once it reaches the cap; a larger one would only take
	// longer to decay.
	capMult := int64((o.MaxEjectionTime + o.BaseEjectionTime - 1) / o.BaseEjectionTime)
	mult = min(mult, capMult)
	d := min(time.Duration(mult)*o.BaseEjectionTime, o.MaxEjectionTime)
	until := now.Add(d)
	hs.ejections.Store(mult)
	hs.ejectedUntil.Store(until.UnixNano())
	c.metrics.ejections.Inc()
	c.sink.emit(event{kind: evEjected, service: c.name, host: h.Address, until: until, ejections: int(mult),
		consecutive: int(hs.consecutive.Load()), healthy: len(st.hosts) - ejected - 1, total: len(st.hosts)})
	c.syncDownLocked(st, o)
}

// decayedEjections is the host's ejection count minus one for every base_ejection_time it has
// spent in service since its last return (as Envoy's multiplier decays per interval), so a
// host that flaps is ejected for longer each time, and one that recovered is forgiven.
func decayedEjections(hs *health, o *OutlierOptions, now time.Time) int64 {
	n := hs.ejections.Load()
	if r := hs.returnedAt.Load(); r != 0 && n > 0 {
		n -= int64(now.Sub(time.Unix(0, r)) / o.BaseEjectionTime)
	}
	return max(n, 0)
}

// maxEjectable is how many of n hosts may be ejected at once: pct of them rounded down, but at
// least one when n >= 2, and none of a single host (ejecting it changes nothing: the balancer
// would use it anyway).
func maxEjectable(n, pct int) int {
	if n < 2 {
		return 0
	}
	return max(n*pct/100, 1)
}

// sweep returns hosts whose ejection time has passed. It is called at the start of every Do
// (one atomic load when nothing is due) and by the Manager's ticker, so hosts return on time
// even without traffic.
func (c *Cluster) sweep(now time.Time) {
	if now.UnixNano() < c.nextReturn.Load() || !c.ejectMu.TryLock() {
		return
	}
	defer c.ejectMu.Unlock()
	c.sweepLocked(now)
}

func (c *Cluster) sweepLocked(now time.Time) {
	st := c.state.Load()
	opts := c.opts.Load()
	ns := now.UnixNano()
	for _, h := range st.hosts {
		hs := h.health
		if u := hs.ejectedUntil.Load(); u != 0 && u <= ns {
			hs.consecutive.Store(0)
			hs.returnedAt.Store(ns)
			hs.ejectedUntil.Store(0)
			c.sink.emit(event{kind: evReturned, service: c.name, host: h.Address, ejections: int(hs.ejections.Load())})
		}
	}
	c.syncDownLocked(st, &opts.Outlier)
}

// clearEjectionsLocked returns every host at once (outlier detection was switched off).
func (c *Cluster) clearEjectionsLocked(st *state, now time.Time) {
	for _, h := range st.hosts {
		if h.health.ejectedUntil.Swap(0) != 0 {
			h.health.returnedAt.Store(now.UnixNano())
			c.sink.emit(event{kind: evReturned, service: c.name, host: h.Address, ejections: int(h.health.ejections.Load())})
		}
		h.health.consecutive.Store(0)
	}
}

// syncDownLocked derives every host's Down flag (what the balancers skip) from the ejections:
// Down = ejected and the cluster not in panic. In panic (fewer than panic_threshold percent of
// hosts not ejected) no host is Down, so the balancer spreads load over all of them instead of
// crushing the few survivors; the ejections themselves still run their course and show in
// /clusters. Callers hold ejectMu.
func (c *Cluster) syncDownLocked(st *state, o *OutlierOptions) {
	n, ejected := len(st.hosts), 0
	next := int64(math.MaxInt64)
	for _, h := range st.hosts {
		if u := h.health.ejectedUntil.Load(); u != 0 {
			ejected++
			next = min(next, u)
		}
	}
	panicking := ejected > 0 && (n-ejected)*100 < o.PanicThreshold*n
	for _, h := range st.hosts {
		h.SetDown(h.health.ejected() && !panicking)
	}
	c.nextReturn.Store(next)
	c.metrics.hostsEjected.Set(float64(ejected))
	if ejected < maxEjectable(n, o.MaxEjectionPercent) {
		c.limitLogged.Store(false)
	}
	if c.panicking.Swap(panicking) != panicking {
		kind := evPanicEnd
		if panicking {
			kind = evPanicStart
		}
		c.sink.emit(event{kind: kind, service: c.name, healthy: n - ejected, total: n})
	}
}
