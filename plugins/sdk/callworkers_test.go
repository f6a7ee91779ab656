package sdk

import (
	"bytes"
	"context"
	"errors"
	"runtime"
	"sync"
	"testing"
	"time"
)

// goroutineID is the running goroutine's number, from the first line of its stack
// ("goroutine 42 [running]:").
func goroutineID() string {
	buf := make([]byte, 64)
	buf = buf[:runtime.Stack(buf, false)]
	return string(bytes.Fields(buf)[1])
}

// where records the goroutine each call ran on.
type where struct {
	echo
	mu  sync.Mutex
	ids map[string]int
}

func (p *where) OnRequest(ctx context.Context, r *Request) (Decision, error) {
	p.mu.Lock()
	p.ids[goroutineID()]++
	p.mu.Unlock()
	return p.echo.OnRequest(ctx, r)
}

// TestCallGoroutinesAreReused: calls one after another run on the goroutine the first one
// started, which keeps its grown stack, instead of a new goroutine each.
func TestCallGoroutinesAreReused(t *testing.T) {
	p := &where{ids: map[string]int{}}
	c, _ := socketConnect(t, p)
	const calls = 50
	for range calls {
		d, err := onRequest(c, 5*time.Second, "/a", "")
		if err != nil || echoed(d) != "/a" {
			t.Fatalf("call: %v, %v", echoed(d), err)
		}
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	// A call's reply is written before its goroutine goes idle, so the next call can come
	// a moment too early and start one more: a few goroutines, not one per call.
	if len(p.ids) > 5 {
		t.Fatalf("%d calls ran on %d goroutines, want at most 5", calls, len(p.ids))
	}
}

// TestCallContext: a socket call's context has the host's deadline; Err says when it passed
// without a timer, and Done, once asked for, closes at the deadline or with the parent.
func TestCallContext(t *testing.T) {
	parent, cancel := context.WithCancel(context.Background())
	defer cancel()

	start := time.Now()
	c := newCallCtx(parent, uint64(50*time.Millisecond))
	if d, ok := c.Deadline(); !ok || d.Before(start.Add(50*time.Millisecond)) || d.After(time.Now().Add(50*time.Millisecond)) {
		t.Fatalf("deadline %v, %v; want 50ms from %v", d, ok, start)
	}
	if err := c.Err(); err != nil {
		t.Fatalf("err before the deadline: %v", err)
	}
	select {
	case <-c.Done():
	case <-time.After(5 * time.Second):
		t.Fatal("Done did not close at the deadline")
	}
	if err := c.Err(); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("err after the deadline: %v", err)
	}
	c.release()

	// Err without Done: no timer, the clock.
	late := newCallCtx(parent, 1)
	if err := late.Err(); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("err past a 1ns deadline: %v", err)
	}
	late.release()

	// The parent ending (the host gone) ends the call, with Done asked for or not.
	a, b := newCallCtx(parent, uint64(time.Hour)), newCallCtx(parent, uint64(time.Hour))
	done := a.Done()
	cancel()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("Done did not close with the parent")
	}
	for _, c := range []*callCtx{a, b} {
		if err := c.Err(); !errors.Is(err, context.Canceled) {
			t.Fatalf("err after the parent ended: %v", err)
		}
		c.release()
	}

	// No deadline from the host: the parent's.
	if _, ok := newCallCtx(context.Background(), 0).Deadline(); ok {
		t.Fatal("a call without timeout_nanos has a deadline")
	}
}
