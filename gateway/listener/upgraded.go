package listener

import (
	"context"
	"crypto/tls"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// A connection the request engine upgraded (WebSocket) is hijacked from fasthttp: fasthttp
// stops counting it (its Concurrency, which is max_connections, and its shutdown wait), but it
// is still this listener's connection, holding a descriptor and a client. connTable keeps
// counting it: the connections gauge, max_connections at accept, and a drain that closes it
// when the drain deadline passes. One table per listener, reached from each conn (no globals).
type connTable struct {
	max   int              // max_connections; 0: no cap
	gauge prometheus.Gauge // the connections gauge; optional
	open  atomic.Int64     // accepted and not yet closed, upgraded ones included

	mu       sync.Mutex
	upgraded map[*conn]struct{}
	nUp      atomic.Int64  // len(upgraded), read at accept without the lock
	changed  chan struct{} // closed (and replaced) whenever an upgraded conn leaves
}

func newConnTable(maxConns int, gauge prometheus.Gauge) *connTable {
	return &connTable{max: maxConns, gauge: gauge, upgraded: make(map[*conn]struct{}), changed: make(chan struct{})}
}

// full reports whether a new connection would pass max_connections. While no connection is
// upgraded fasthttp's own limit is exact (and answers 503), so this only decides when some
// are: then the hijacked ones are counted too, and the new connection is closed at once.
func (t *connTable) full() bool {
	return t != nil && t.max > 0 && t.nUp.Load() > 0 && t.open.Load() >= int64(t.max)
}

// connection state bits (conn.state): which of close and hijack came first decides who gives
// the gauge back, and exactly one of them sees the other's bit.
const (
	stClosed uint32 = 1 << iota
	stHijacked
	stUpgraded
)

// closed is conn.Close's bookkeeping (once per conn).
func (t *connTable) closed(c *conn) {
	t.open.Add(-1)
	old := c.state.Or(stClosed)
	if old&stHijacked != 0 && t.gauge != nil {
		t.gauge.Dec()
	}
	if old&stUpgraded != 0 {
		t.remove(c)
	}
}

// hijacked is ConnState(StateHijacked): fasthttp no longer serves c, but it is open until the
// hijack handler's connection is closed, so the gauge is given back then (or now, if it
// already was).
func (t *connTable) hijacked(c *conn) {
	old := c.state.Or(stHijacked)
	if old&stClosed != 0 && t.gauge != nil {
		t.gauge.Dec()
	}
}

func (t *connTable) add(c *conn) bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	if c.state.Load()&stClosed != 0 {
		return false
	}
	c.state.Or(stUpgraded)
	t.upgraded[c] = struct{}{}
	t.nUp.Store(int64(len(t.upgraded)))
	return true
}

func (t *connTable) remove(c *conn) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if _, ok := t.upgraded[c]; !ok {
		return
	}
	delete(t.upgraded, c)
	t.nUp.Store(int64(len(t.upgraded)))
	close(t.changed)
	t.changed = make(chan struct{})
}

// drainGrace is how long drain waits for sessions it closed to finish (their access-log lines
// and metrics), after the deadline.
const drainGrace = time.Second

// drain waits until no upgraded connection is open or ctx ends; then it closes the remaining
// ones and reports ctx's error. Closing the socket ends both relay directions of the session.
func (t *connTable) drain(ctx context.Context) error {
	if t == nil {
		return nil
	}
	for {
		t.mu.Lock()
		n, ch := len(t.upgraded), t.changed
		t.mu.Unlock()
		if n == 0 {
			return nil
		}
		select {
		case <-ch:
			continue
		case <-ctx.Done():
		}
		break
	}
	t.mu.Lock()
	left := make([]*conn, 0, len(t.upgraded))
	for c := range t.upgraded {
		left = append(left, c)
	}
	t.mu.Unlock()
	for _, c := range left {
		_ = c.Conn.Close() // the socket; the session's own close does the bookkeeping
	}
	grace := time.NewTimer(drainGrace)
	defer grace.Stop()
	for {
		t.mu.Lock()
		n, ch := len(t.upgraded), t.changed
		t.mu.Unlock()
		if n == 0 {
			break
		}
		select {
		case <-ch:
			continue
		case <-grace.C:
		}
		break
	}
	return ctx.Err()
}

// Upgraded tells the listener that c, a connection it accepted (plain or TLS, as a RequestCtx
// or fasthttp's hijack handler has it), now carries an upgraded session: it stays counted against
// max_connections and is closed when a drain deadline passes. The returned function is called
// when the session ends. Other connections are not tracked (the function does nothing).
func Upgraded(c net.Conn) (done func()) {
	lc := ownConn(c)
	if lc == nil || lc.table == nil || !lc.table.add(lc) {
		return func() {}
	}
	return func() { lc.table.remove(lc) }
}

// ownConn finds this package's conn under what fasthttp hands out: its hijacked connection
// (which names the real one by UnsafeConn) and TLS.
func ownConn(c net.Conn) *conn {
	if u, ok := c.(interface{ UnsafeConn() net.Conn }); ok {
		c = u.UnsafeConn()
	}
	if t, ok := c.(*tls.Conn); ok {
		c = t.NetConn()
	}
	lc, _ := c.(*conn)
	return lc
}
