package listener

import (
	"crypto/tls"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/meshgate/meshgate/internal/deadline"
)

// Lingering close bounds: after an early rejection the connection's write side is shut down
// (the client sees our answer, then end of stream) and its input is read and discarded until
// the client closes, for at most lingerTime in all, lingerIdle between reads and lingerBytes.
// nginx's lingering_time/lingering_timeout are 30s/5s; ours are shorter because a gateway
// holds many more connections per worker.
const (
	lingerTime  = 5 * time.Second
	lingerIdle  = time.Second
	lingerBytes = 32 << 20
)

// conn is every accepted connection: it can close gently when asked (Linger) and gives back
// its per-address slot when closed.
type conn struct {
	net.Conn
	linger atomic.Bool
	once   sync.Once
	limits *ipLimits // nil: not counted
	key    netip.Addr
	// pre holds bytes already read to tell HTTP/2 from HTTP/1.1 (protoMux); Read returns them
	// first. Set before the connection is handed on, never after.
	pre   []byte
	table *connTable          // the listener's open and upgraded connections (upgraded.go)
	state atomic.Uint32       // st* bits of upgraded.go
	value atomic.Pointer[any] // see Value
	// dl holds the deadlines fasthttp, HTTP/2 and WebSocket sessions set, and arms them only
	// when a read or write waits (package deadline): a keep-alive request that arrives in one
	// read would otherwise update the runtime's timers four times (idle, head, body, write),
	// 3% of the edge's CPU at saturation.
	dl deadline.State
}

func (c *conn) Read(b []byte) (int, error) {
	if len(c.pre) > 0 {
		n := copy(b, c.pre)
		c.pre = c.pre[n:]
		return n, nil
	}
	return c.dl.Read(c.Conn, b)
}

func (c *conn) Write(b []byte) (int, error) { return c.dl.Write(c.Conn, b) }

// SetReadDeadline implements net.Conn: see dl.
func (c *conn) SetReadDeadline(t time.Time) error { return c.dl.SetReadDeadline(c.Conn, t) }

// SetWriteDeadline implements net.Conn: see dl.
func (c *conn) SetWriteDeadline(t time.Time) error { return c.dl.SetWriteDeadline(c.Conn, t) }

// SetDeadline implements net.Conn: see dl.
func (c *conn) SetDeadline(t time.Time) error { return c.dl.SetDeadline(c.Conn, t) }

// Linger asks that c, a connection this package accepted (plain or TLS), be closed gently:
// closing it with unread input would make the kernel send a reset, and a client still sending
// its body (Python's http.client, most SDKs) would get ECONNRESET instead of the 413 or 400
// it was sent. Other connections are left alone.
func Linger(c net.Conn) {
	if t, ok := c.(*tls.Conn); ok {
		c = t.NetConn()
	}
	if lc, ok := c.(*conn); ok {
		lc.linger.Store(true)
	}
}

// Value is a slot on c, a connection this package accepted (plain or TLS), for one value the
// layers above derive from what never changes on a connection: the mesh keeps the caller's
// verified identity there, read once from the TLS handshake instead of from the connection
// state on every request (2% of a sidecar's CPU at 1000 req/s). It is nil for any other
// connection, and whoever stores in it owns the type it stores.
func Value(c net.Conn) *atomic.Pointer[any] {
	if t, ok := c.(*tls.Conn); ok {
		c = t.NetConn()
	}
	if lc, ok := c.(*conn); ok {
		return &lc.value
	}
	return nil
}

func (c *conn) Close() error {
	if c.linger.Load() {
		c.drain()
	}
	err := c.Conn.Close()
	c.once.Do(func() {
		if c.limits != nil {
			c.limits.release(c.key)
		}
		if c.table != nil {
			c.table.closed(c)
		}
	})
	return err
}

// drain shuts the write side (the answer is already written: fasthttp flushes before it
// closes) and reads what the client still sends, within the bounds above.
func (c *conn) drain() {
	type closeWriter interface{ CloseWrite() error }
	cw, ok := c.Conn.(closeWriter)
	if !ok || cw.CloseWrite() != nil {
		return
	}
	var buf [16 << 10]byte
	end := time.Now().Add(lingerTime)
	for total := 0; total < lingerBytes; {
		d := time.Now().Add(lingerIdle)
		if d.After(end) {
			d = end
		}
		if c.Conn.SetReadDeadline(d) != nil {
			return
		}
		n, err := c.Conn.Read(buf[:])
		total += n
		if err != nil {
			return // EOF (the client read our answer and closed), timeout or reset
		}
	}
}

// ipLimits counts open connections per client address (IPv6 per /64: one host can hold a
// whole /64). It is touched on accept and close only, never per request.
type ipLimits struct {
	max     int
	exempt  []netip.Prefix
	refused prometheus.Counter // optional
	mu      sync.Mutex
	open    map[netip.Addr]int
}

func newIPLimits(limit int, exempt []netip.Prefix, refused prometheus.Counter) *ipLimits {
	if limit <= 0 {
		return nil
	}
	return &ipLimits{max: limit, exempt: exempt, refused: refused, open: make(map[netip.Addr]int)}
}

func ipKey(a netip.Addr) netip.Addr {
	a = a.Unmap()
	if a.Is6() {
		p, _ := a.Prefix(64)
		return p.Addr()
	}
	return a
}

// admit wraps an accepted connection, or reports false (and the caller closes it) when its
// address already holds max connections.
func (l *ipLimits) admit(nc net.Conn, slack time.Duration) (*conn, bool) {
	c := &conn{Conn: nc}
	c.dl.Init(slack)
	if l == nil {
		return c, true
	}
	ap, err := netip.ParseAddrPort(nc.RemoteAddr().String())
	if err != nil {
		return c, true
	}
	a := ap.Addr().Unmap()
	for _, p := range l.exempt {
		if p.Contains(a) {
			return c, true
		}
	}
	key := ipKey(a)
	l.mu.Lock()
	n := l.open[key]
	if n >= l.max {
		l.mu.Unlock()
		if l.refused != nil {
			l.refused.Inc()
		}
		return nil, false
	}
	l.open[key] = n + 1
	l.mu.Unlock()
	c.limits, c.key = l, key
	return c, true
}

func (l *ipLimits) release(key netip.Addr) {
	l.mu.Lock()
	if n := l.open[key] - 1; n > 0 {
		l.open[key] = n
	} else {
		delete(l.open, key)
	}
	l.mu.Unlock()
}
