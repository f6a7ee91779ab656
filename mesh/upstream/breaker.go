package upstream

import (
	"math"
	"sync"
	"sync/atomic"
	"time"
)

// breakerState is a breaker's state. The numbers are what meshgate_upstream_breaker_state
// exports (closed 0, half-open 1, open 2, as gobreaker numbered them before this package
// kept its own breaker).
type breakerState int64

const (
	breakerClosed breakerState = iota
	breakerHalfOpen
	breakerOpen
)

func (s breakerState) String() string {
	switch s {
	case breakerClosed:
		return "closed"
	case breakerHalfOpen:
		return "half-open"
	default:
		return "open"
	}
}

// breaker is one host's circuit breaker: gobreaker's state machine (closed, open for
// open_timeout, half-open for half_open_requests probes) with counts per interval, kept in
// atomics. A try asks allow before sending and reports after, with times the caller already
// read: a closed breaker costs two atomic loads and one add per try, where gobreaker took its
// mutex (shared by every request to the host) twice and read the clock twice; the edge spent
// 2-3% less CPU per request without them.
//
// Each generation of counts is a window; a state change or a new interval replaces the
// window under mu, so a try reports to the window it was allowed by and a report to a
// replaced one is dropped, as gobreaker drops results of an earlier generation.
type breaker struct {
	opts          BreakerOptions
	minReq        uint32
	ratio         float64
	probes        uint32 // half-open tries let through, and successes that close it
	interval      int64  // ns; 0: counts never reset while closed
	timeout       int64  // ns an open breaker rejects
	service, addr string
	sink          *eventSink

	cur atomic.Pointer[window]
	mu  sync.Mutex // replaces cur

	// state is what meshgate_upstream_breaker_state exports (the Manager's collector reads it).
	state atomic.Int64
}

// window is one generation of a breaker's counts.
type window struct {
	state  breakerState
	expiry int64 // unix ns; closed: counts reset after it (0: never); open: half-open after it
	succ   atomic.Uint32
	fail   atomic.Uint32
	taken  atomic.Uint32 // half-open: probes let through and not excluded
}

// newBreaker builds a closed breaker whose state changes are recorded for the collector and
// queued on sink (a non-blocking send; the Manager's goroutine does the logging).
func newBreaker(service, addr string, o BreakerOptions, sink *eventSink) *breaker {
	b := &breaker{opts: o, minReq: saturateUint32(o.MinRequests), ratio: o.FailureRatio,
		probes: max(saturateUint32(o.HalfOpenRequests), 1), interval: int64(max(o.Interval, 0)),
		timeout: int64(max(o.OpenTimeout, 0)), service: service, addr: addr, sink: sink}
	b.cur.Store(b.newWindow(breakerClosed, time.Now().UnixNano()))
	return b
}

func (b *breaker) newWindow(s breakerState, now int64) *window {
	w := &window{state: s}
	switch {
	case s == breakerClosed && b.interval > 0:
		w.expiry = now + b.interval
	case s == breakerOpen:
		w.expiry = now + b.timeout
	}
	return w
}

// allow says whether a try starting at now may be sent, and the window to report it to.
func (b *breaker) allow(now time.Time) (*window, bool) {
	n := now.UnixNano()
	for {
		w := b.cur.Load()
		switch w.state {
		case breakerClosed:
			if w.expiry != 0 && n > w.expiry {
				b.replace(w, breakerClosed, n) // a new interval: fresh counts
				continue
			}
			return w, true
		case breakerOpen:
			if n <= w.expiry {
				return nil, false
			}
			b.replace(w, breakerHalfOpen, n)
			continue
		default:
			if w.taken.Add(1) > b.probes {
				w.taken.Add(^uint32(0))
				return nil, false
			}
			return w, true
		}
	}
}

// report records the outcome of a try allow let through on w, ending at now.
func (b *breaker) report(w *window, o outcome, now time.Time) {
	if b.cur.Load() != w {
		return // its generation is over
	}
	switch o {
	case tryExcluded: // not the host's doing: neither count, and a probe slot is free again
		if w.state == breakerHalfOpen {
			w.taken.Add(^uint32(0))
		}
	case trySucceeded:
		if s := w.succ.Add(1); w.state == breakerHalfOpen && s >= b.probes {
			b.replace(w, breakerClosed, now.UnixNano())
		}
	default:
		if w.state == breakerHalfOpen {
			b.replace(w, breakerOpen, now.UnixNano())
			return
		}
		// Completed tries only: tries still in flight would dilute the failure ratio exactly
		// when a host turns slow.
		f := w.fail.Add(1)
		done := w.succ.Load() + f
		if done >= b.minReq && float64(f) >= b.ratio*float64(done) {
			b.replace(w, breakerOpen, now.UnixNano())
		}
	}
}

// refresh moves an open breaker whose timeout passed to half-open, so the gauge, the log and
// /clusters show it before the next try does (the Manager calls it every tick).
func (b *breaker) refresh(now time.Time) breakerState {
	w := b.cur.Load()
	if w.state == breakerOpen && now.UnixNano() > w.expiry {
		b.replace(w, breakerHalfOpen, now.UnixNano())
		w = b.cur.Load()
	}
	return w.state
}

// replace starts a new window in state s, unless w was already replaced.
func (b *breaker) replace(w *window, s breakerState, now int64) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.cur.Load() != w {
		return
	}
	b.cur.Store(b.newWindow(s, now))
	if s != w.state {
		b.state.Store(int64(s))
		b.sink.emit(event{kind: evBreaker, service: b.service, host: b.addr, from: w.state, to: s})
	}
}

// saturateUint32 converts a count for the breaker, which keeps uint32 counters. The counts are
// validated positive; one past the uint32 range becomes the largest uint32 instead of wrapping.
func saturateUint32(n int) uint32 {
	switch {
	case n <= 0:
		return 0
	case n > math.MaxUint32:
		return math.MaxUint32
	default:
		return uint32(n)
	}
}

// stateName is the breaker state as /clusters shows it.
func stateName(b *breaker) string {
	if b == nil {
		return "disabled"
	}
	return b.refresh(time.Now()).String()
}
