package upstream

import (
	"errors"
	"io"
	"net"
	"runtime"
	"sync/atomic"
	"testing"
	"time"

	"github.com/valyala/fasthttp"
)

// pipePool is a pool whose dial makes an in-memory connection, counting dials; dialErr, when
// set, fails the dial instead.
func pipePool(maxConns int, idle time.Duration) (p *connPool, dials *atomic.Int64, dialErr *atomic.Pointer[error]) {
	dials, dialErr = new(atomic.Int64), new(atomic.Pointer[error])
	p = newConnPool(func(time.Duration) (net.Conn, error) {
		if e := dialErr.Load(); e != nil {
			return nil, *e
		}
		dials.Add(1)
		c, peer := net.Pipe()
		_ = peer // the far end is never read: these tests only move connections around
		return c, nil
	}, maxConns, idle)
	return p, dials, dialErr
}

// closedPipe reports whether c was closed: a write to a closed net.Pipe fails with
// io.ErrClosedPipe, and to an open one (nobody reads) at its past deadline.
func closedPipe(c net.Conn) bool {
	_ = c.SetWriteDeadline(time.Now())
	_, err := c.Write([]byte("x"))
	return errors.Is(err, io.ErrClosedPipe)
}

// The connection limit counts idle, busy and dialling connections, fails at once with
// ErrNoFreeConns when reached, and a failed dial gives its slot back.
func TestPoolLimitAndReuse(t *testing.T) {
	p, dials, dialErr := pipePool(2, time.Minute)
	a, err := p.acquire(0)
	if err != nil {
		t.Fatal(err)
	}
	b, err := p.acquire(0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := p.acquire(0); !errors.Is(err, fasthttp.ErrNoFreeConns) {
		t.Fatalf("third acquire at max 2: err = %v, want ErrNoFreeConns", err)
	}
	p.release(a, time.Now())
	c, err := p.acquire(0)
	if err != nil || c != a {
		t.Fatalf("acquire after a release: got %p (err %v), want the released connection %p", c, err, a)
	}
	p.release(c, time.Now())
	p.release(b, time.Now())
	if got, err := p.acquire(0); err != nil || got != b {
		t.Fatalf("idle connections are reused last in, first out: got %p, want %p (err %v)", got, b, err)
	}
	p.discard(b)
	if n := p.count(); n != 1 {
		t.Fatalf("after a discard: %d open, want 1", n)
	}
	if n := dials.Load(); n != 2 {
		t.Fatalf("%d dials, want 2", n)
	}

	if got, err := p.acquire(0); err != nil || got != a {
		t.Fatalf("got %p (err %v), want the idle %p", got, err, a)
	}
	refused := errors.New("refused")
	dialErr.Store(&refused)
	if _, err := p.acquire(0); !errors.Is(err, refused) {
		t.Fatalf("acquire with a failing dial: err = %v", err)
	}
	if n := p.count(); n != 1 {
		t.Fatalf("a failed dial kept its slot: %d open, want 1", n)
	}
	p.release(a, time.Now())
	p.closeIdle()
	if n := p.count(); n != 0 || !closedPipe(a.c) {
		t.Fatalf("closeIdle: %d open, idle connection closed: %v", n, closedPipe(a.c))
	}
}

// A sweep closes exactly the connections idle for the timeout, oldest first, and re-arms for
// the oldest one left; with none left it disarms.
func TestPoolSweepClosesOnlyExpired(t *testing.T) {
	const idle = time.Hour // the timer never fires by itself here: the test calls sweep
	p, _, _ := pipePool(10, idle)
	var conns []*poolConn
	for range 3 {
		pc, err := p.acquire(0)
		if err != nil {
			t.Fatal(err)
		}
		conns = append(conns, pc)
	}
	for _, pc := range conns {
		p.release(pc, time.Now())
	}
	now := time.Now()
	conns[0].lastUse = now.Add(-2 * idle)
	conns[1].lastUse = now.Add(-idle - time.Second)
	conns[2].lastUse = now.Add(-idle / 2)
	p.sweep()
	if !closedPipe(conns[0].c) || !closedPipe(conns[1].c) || closedPipe(conns[2].c) {
		t.Fatalf("closed: %v %v %v, want the two expired ones only",
			closedPipe(conns[0].c), closedPipe(conns[1].c), closedPipe(conns[2].c))
	}
	if n, idleN := p.count(), p.idleCount(); n != 1 || idleN != 1 {
		t.Fatalf("after the sweep: %d open, %d idle; want 1 and 1", n, idleN)
	}
	p.mu.Lock()
	armed := p.armed
	p.mu.Unlock()
	if !armed {
		t.Fatal("the sweep left a connection idle but did not re-arm")
	}
	conns[2].lastUse = now.Add(-idle)
	p.sweep()
	p.mu.Lock()
	armed = p.armed
	p.mu.Unlock()
	if armed || p.count() != 0 || !closedPipe(conns[2].c) {
		t.Fatalf("last sweep: armed %v, %d open", armed, p.count())
	}
	// Released again, the pool arms its timer again.
	pc, err := p.acquire(0)
	if err != nil {
		t.Fatal(err)
	}
	p.release(pc, time.Now())
	p.mu.Lock()
	armed = p.armed
	p.mu.Unlock()
	if !armed {
		t.Fatal("a release after a full sweep did not arm the timer")
	}
	p.closeIdle()
}

// Idle connections are closed by the pool's timer once idle for IdleTimeout, and an idle host
// holds no goroutine: 50 hosts with an idle connection each add the wire server's 50
// connection goroutines and nothing on the client side (fasthttp's HostClient ran a cleaner
// goroutine per host).
func TestIdleHostsHoldNoGoroutines(t *testing.T) {
	s := startWireServer(t)
	const hosts = 50
	shared := &http1Shared{}
	before := runtime.NumGoroutine()
	var trs []*http1Transport
	for range hosts {
		tr := newHTTP1Transport(s.addr, &Options{IdleTimeout: 200 * time.Millisecond}, shared)
		trs = append(trs, tr)
		resp := fasthttp.AcquireResponse()
		if err := wireDo(t, tr, "GET", "/short", resp); err != nil {
			t.Fatal(err)
		}
		fasthttp.ReleaseResponse(resp)
	}
	if n := s.open.Load(); n != hosts {
		t.Fatalf("%d connections open, want %d", n, hosts)
	}
	// The wire server runs one goroutine per connection; anything more is the client's.
	if extra := runtime.NumGoroutine() - before - hosts; extra > hosts/10 {
		t.Fatalf("%d goroutines beyond the server's %d for %d idle hosts", extra, hosts, hosts)
	}
	waitFor(t, "idle connections closed by the pools' timers", func() bool { return s.open.Load() == 0 })
	for i, tr := range trs {
		if n := tr.ConnsCount(); n != 0 {
			t.Fatalf("host %d: %d connections counted after expiry", i, n)
		}
	}
}

// A connection's deadline is armed only when what the socket holds does not serve the try:
// later deadlines within the slack share one arming, and a deadline never fires early.
func TestUpstreamDeadlinesShareOneArming(t *testing.T) {
	var sets []time.Time
	set := func(d time.Time) error { sets = append(sets, d); return nil }
	armed := noDeadline
	base := time.Unix(1000, 0)
	const slack = 10 * time.Millisecond

	// 100 tries a millisecond apart, each with a deadline one second on.
	for i := range 100 {
		want := base.Add(time.Duration(i)*time.Millisecond + time.Second)
		if err := armDeadline(&armed, want, slack, set); err != nil {
			t.Fatal(err)
		}
		if got := time.Unix(0, armed); got.Before(want) || got.Sub(want) > slack {
			t.Fatalf("try %d: socket holds %v for a deadline of %v (slack %v)", i, got, want, slack)
		}
	}
	if n := len(sets); n > 100/10+1 {
		t.Fatalf("100 tries armed the socket %d times, want at most %d", n, 100/10+1)
	}
	// An earlier deadline beyond the slack is armed exactly, and so is none.
	early := base.Add(100 * time.Millisecond)
	before := len(sets)
	if err := armDeadline(&armed, early, slack, set); err != nil || len(sets) != before+1 || !sets[len(sets)-1].Equal(early) {
		t.Fatalf("earlier deadline: armed %v (err %v), want exactly %v", sets[len(sets)-1], err, early)
	}
	for range 2 {
		if err := armDeadline(&armed, time.Time{}, slack, set); err != nil {
			t.Fatal(err)
		}
	}
	if len(sets) != before+2 || !sets[len(sets)-1].IsZero() || armed != noDeadline {
		t.Fatalf("no deadline: %d sets, last %v; want one clearing set", len(sets)-before, sets[len(sets)-1])
	}
	// Without slack every later deadline is armed as asked.
	before = len(sets)
	for i := range 5 {
		if err := armDeadline(&armed, base.Add(time.Duration(i)*time.Millisecond), 0, set); err != nil {
			t.Fatal(err)
		}
	}
	if len(sets)-before != 5 {
		t.Fatalf("slack 0: %d sets for 5 deadlines, want 5", len(sets)-before)
	}
}

// Once the cluster has let the host go (closeIdle), a connection whose exchange was still in
// flight is closed when it comes back, not kept for the idle timeout.
func TestRetiredPoolClosesReturningConnections(t *testing.T) {
	p, _, _ := pipePool(4, time.Hour)
	busy, err := p.acquire(0)
	if err != nil {
		t.Fatal(err)
	}
	idle, err := p.acquire(0)
	if err != nil {
		t.Fatal(err)
	}
	p.release(idle, time.Now())
	p.closeIdle()
	if !closedPipe(idle.c) || closedPipe(busy.c) {
		t.Fatalf("closeIdle: idle closed %v, busy closed %v; want only the idle one", closedPipe(idle.c), closedPipe(busy.c))
	}
	p.release(busy, time.Now())
	if !closedPipe(busy.c) || p.count() != 0 || p.idleCount() != 0 {
		t.Fatalf("after the busy one's release: closed %v, %d open, %d idle", closedPipe(busy.c), p.count(), p.idleCount())
	}
}
