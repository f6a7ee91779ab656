package upstream

import (
	"sync"
	"testing"
	"time"
)

func testBreaker(o BreakerOptions) *breaker {
	return newBreaker("svc", "10.0.0.1:80", o, &eventSink{ch: make(chan event, 16)})
}

// try runs one try at now with outcome o, or reports that the breaker refused it.
func (b *breaker) try(now time.Time, o outcome) bool {
	w, ok := b.allow(now)
	if ok {
		b.report(w, o, now)
	}
	return ok
}

// The state machine, with explicit times: the failure ratio over completed tries opens it;
// open rejects until open_timeout; half-open lets half_open_requests probes through, an
// excluded probe frees its slot, a failed one reopens, enough good ones close.
func TestBreakerStateMachine(t *testing.T) {
	b := testBreaker(BreakerOptions{MinRequests: 4, FailureRatio: 0.5, Interval: time.Minute,
		OpenTimeout: time.Second, HalfOpenRequests: 2})
	t0 := time.Now()
	at := func(d time.Duration) time.Time { return t0.Add(d) }
	b.try(at(0), trySucceeded)
	b.try(at(0), trySucceeded)
	b.try(at(0), tryFailed)
	b.try(at(0), tryExcluded) // not counted: 3 completed, 1 failed
	if s := b.refresh(at(0)); s != breakerClosed {
		t.Fatalf("after 1 failure of 3: %s", s)
	}
	b.try(at(0), tryFailed) // 2 of 4 failed: ratio 0.5 reached
	if s := b.refresh(at(0)); s != breakerOpen || b.state.Load() != int64(breakerOpen) {
		t.Fatalf("after 2 failures of 4: %s (gauge %d), want open", s, b.state.Load())
	}
	if b.try(at(999*time.Millisecond), trySucceeded) {
		t.Fatal("an open breaker let a try through before open_timeout")
	}

	// Half-open: two probe slots.
	w1, ok1 := b.allow(at(1001 * time.Millisecond))
	w2, ok2 := b.allow(at(1001 * time.Millisecond))
	if !ok1 || !ok2 || b.refresh(at(1001*time.Millisecond)) != breakerHalfOpen {
		t.Fatalf("half-open: probes let through %v %v, state %s", ok1, ok2, b.refresh(at(1001*time.Millisecond)))
	}
	if _, ok := b.allow(at(1001 * time.Millisecond)); ok {
		t.Fatal("a third probe was let through, want 2")
	}
	b.report(w1, tryExcluded, at(1002*time.Millisecond)) // frees its slot
	w3, ok3 := b.allow(at(1003 * time.Millisecond))
	if !ok3 {
		t.Fatal("an excluded probe did not free its slot")
	}
	b.report(w2, trySucceeded, at(1004*time.Millisecond))
	if s := b.refresh(at(1004 * time.Millisecond)); s != breakerHalfOpen {
		t.Fatalf("one good probe of 2 closed it: %s", s)
	}
	b.report(w3, tryFailed, at(1005*time.Millisecond))
	if s := b.refresh(at(1005 * time.Millisecond)); s != breakerOpen {
		t.Fatalf("a failed probe left it %s, want open", s)
	}

	// Open again from 1005 ms: half-open after 2005 ms; two good probes close it.
	if b.try(at(2000*time.Millisecond), trySucceeded) {
		t.Fatal("the reopened breaker let a try through early")
	}
	b.try(at(2006*time.Millisecond), trySucceeded)
	b.try(at(2006*time.Millisecond), trySucceeded)
	if s := b.refresh(at(2006 * time.Millisecond)); s != breakerClosed || b.state.Load() != int64(breakerClosed) {
		t.Fatalf("after 2 good probes: %s, want closed", s)
	}
	var got []string
	for len(b.sink.ch) > 0 {
		ev := <-b.sink.ch
		got = append(got, ev.from.String()+">"+ev.to.String())
	}
	want := []string{"closed>open", "open>half-open", "half-open>open", "open>half-open", "half-open>closed"}
	if len(got) != len(want) {
		t.Fatalf("state changes %v, want %v", got, want)
	}
	for i := range want {
		if got[i] != want[i] {
			t.Fatalf("state changes %v, want %v", got, want)
		}
	}
}

// Counts are per interval, and a try reports to the generation that let it through: an
// outcome arriving after a state change is dropped.
func TestBreakerGenerations(t *testing.T) {
	b := testBreaker(BreakerOptions{MinRequests: 2, FailureRatio: 1, Interval: time.Second, OpenTimeout: time.Minute})
	t0 := time.Now()
	b.try(t0, tryFailed)
	b.try(t0.Add(1100*time.Millisecond), tryFailed) // a new interval: 1 of 1, under min_requests
	if s := b.refresh(t0.Add(1100 * time.Millisecond)); s != breakerClosed {
		t.Fatalf("failures in two intervals opened it: %s", s)
	}
	slow, _ := b.allow(t0.Add(1200 * time.Millisecond))
	b.try(t0.Add(1300*time.Millisecond), tryFailed) // 2 of 2 in this interval: open
	if s := b.refresh(t0.Add(1300 * time.Millisecond)); s != breakerOpen {
		t.Fatalf("2 failures of 2: %s, want open", s)
	}
	b.report(slow, trySucceeded, t0.Add(1400*time.Millisecond))
	if s := b.refresh(t0.Add(1400 * time.Millisecond)); s != breakerOpen {
		t.Fatalf("a late success from the closed generation changed the open breaker: %s", s)
	}
}

// Tries from many goroutines at once leave the breaker consistent (run with -race).
func TestBreakerConcurrentTries(t *testing.T) {
	b := testBreaker(BreakerOptions{MinRequests: 100, FailureRatio: 0.5, Interval: time.Minute, OpenTimeout: time.Hour})
	now := time.Now()
	var wg sync.WaitGroup
	for g := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 1000 {
				o := trySucceeded
				if (g+i)%2 == 0 {
					o = tryFailed
				}
				b.try(now, o)
			}
		}()
	}
	wg.Wait()
	if s := b.refresh(now); s != breakerOpen {
		t.Fatalf("half of 8000 tries failed and the breaker is %s, want open", s)
	}
	if b.try(now, trySucceeded) {
		t.Fatal("the open breaker let a try through")
	}
}
