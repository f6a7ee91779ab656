package upstream

import (
	"bufio"
	"net"
	"sync"
	"time"

	"github.com/valyala/fasthttp"
)

// Defaults of a host's HTTP/1.1 pool, fasthttp's own: what a fasthttp HostClient used before
// the pool was ours, so a cluster that sets none of them behaves as it did.
const (
	defaultMaxConnsPerHost = fasthttp.DefaultMaxConnsPerHost
	defaultIdleTimeout     = fasthttp.DefaultMaxIdleConnDuration
	// bufferSize is each direction's buffer. A response head must fit in the read buffer
	// (a longer one is a malformed head), as with fasthttp's default.
	bufferSize = 4096
)

// http1Shared is what every HTTP/1.1 host of a Manager shares.
//
// fasthttp's HostClient kept per host what a host never needs for itself: a goroutine that
// closed its idle connections (it slept until the oldest one expired), and pools of read and
// write buffers. With 1000 services × 2 instances probed once, those were 2000 goroutines
// and 2000 × 8 KiB of pooled buffers held by an idle proxy, a third of its memory. Here a
// host's idle connections are closed by a runtime timer, which is no goroutine until it
// fires, and the buffers are pooled once per Manager, so an idle host holds its connections
// and nothing else.
type http1Shared struct {
	// dialer keeps a DNS cache with its own cleaner goroutine: one per host cost a
	// goroutine per endpoint.
	dialer  fasthttp.TCPDialer
	readers sync.Pool // *bufio.Reader, bufferSize
	writers sync.Pool // *bufio.Writer, bufferSize
}

func (s *http1Shared) reader(c net.Conn) *bufio.Reader {
	if br, ok := s.readers.Get().(*bufio.Reader); ok {
		br.Reset(c)
		return br
	}
	return bufio.NewReaderSize(c, bufferSize)
}

func (s *http1Shared) putReader(br *bufio.Reader) {
	br.Reset(nil) // the pool must not keep a closed connection reachable
	s.readers.Put(br)
}

func (s *http1Shared) writer(c net.Conn) *bufio.Writer {
	if bw, ok := s.writers.Get().(*bufio.Writer); ok {
		bw.Reset(c)
		return bw
	}
	return bufio.NewWriterSize(c, bufferSize)
}

func (s *http1Shared) putWriter(bw *bufio.Writer) {
	bw.Reset(nil)
	s.writers.Put(bw)
}

// poolConn is one connection of a host's pool. One exchange at a time owns it, so its fields
// need no synchronisation.
type poolConn struct {
	c net.Conn
	// lastUse is when the connection went back to the pool, or a moment before: it is closed
	// once idle for the pool's idleTimeout, before an upstream that keeps connections a little
	// longer closes it under a request. Earlier is the safe side: closed a little sooner.
	lastUse time.Time
	// readArmed and writeArmed are the deadlines the socket holds, in Unix nanoseconds
	// (noDeadline: none).
	readArmed, writeArmed int64
}

// noDeadline is an armed value of "no deadline", later than any real one.
const noDeadline = int64(^uint64(0) >> 1)

// maxDeadlineSlack bounds how late an upstream try's deadline may fire.
const maxDeadlineSlack = 10 * time.Millisecond

// setReadDeadline and setWriteDeadline arm the socket for deadline unless what it holds
// already serves: the same, or later by at most slack. Setting a deadline updates a timer in
// the runtime's netpoller and reads the clock twice; on a busy connection each request's
// deadline is a little later than the last one's, so arming slack ahead lets the following
// requests share one arming, and a deadline fires at most slack late, never early. An earlier
// deadline, or none, is armed exactly.
func (pc *poolConn) setReadDeadline(deadline time.Time, slack time.Duration) error {
	return armDeadline(&pc.readArmed, deadline, slack, pc.c.SetReadDeadline)
}

func (pc *poolConn) setWriteDeadline(deadline time.Time, slack time.Duration) error {
	return armDeadline(&pc.writeArmed, deadline, slack, pc.c.SetWriteDeadline)
}

func armDeadline(armed *int64, deadline time.Time, slack time.Duration, set func(time.Time) error) error {
	want := noDeadline
	if !deadline.IsZero() {
		want = deadline.UnixNano()
	}
	a := *armed
	if a == want || (want != noDeadline && a != noDeadline && a > want && a-want <= int64(slack)) {
		return nil
	}
	next, t := want, deadline
	if want != noDeadline && a != noDeadline && want > a && slack > 0 {
		next = want + int64(slack)
		t = time.Unix(0, next)
	}
	if err := set(t); err != nil {
		return err
	}
	*armed = next
	return nil
}

// connPool is one host's HTTP/1.1 connections: at most max open (idle, in use or being
// dialled), idle ones reused last-in first-out and closed after idleTimeout.
//
// The mutex is held for a slice operation per acquire and per release, as in fasthttp's pool;
// the dial and every close happen outside it.
type connPool struct {
	dial        func(timeout time.Duration) (net.Conn, error)
	max         int
	idleTimeout time.Duration

	mu   sync.Mutex
	idle []*poolConn // oldest first
	open int
	// sweeper closes expired idle connections. It is armed while idle is not empty, and
	// created on the first release, so a host never used holds no timer.
	sweeper *time.Timer
	armed   bool
	// retired is set by closeIdle: the cluster no longer uses the host, so a connection whose
	// exchange ends afterwards is closed rather than kept.
	retired bool
}

func newConnPool(dial func(time.Duration) (net.Conn, error), maxConns int, idleTimeout time.Duration) *connPool {
	if maxConns <= 0 {
		maxConns = defaultMaxConnsPerHost
	}
	if idleTimeout <= 0 {
		idleTimeout = defaultIdleTimeout
	}
	return &connPool{dial: dial, max: maxConns, idleTimeout: idleTimeout}
}

// acquire takes the most recently used idle connection, or dials one within timeout (zero:
// the dial's own bound) when fewer than max are open. At max it fails at once with
// fasthttp.ErrNoFreeConns, which the cluster counts as an overflow: a request never queues
// behind a host's connection limit.
func (p *connPool) acquire(timeout time.Duration) (*poolConn, error) {
	p.mu.Lock()
	if n := len(p.idle); n > 0 {
		pc := p.idle[n-1]
		p.idle[n-1] = nil
		p.idle = p.idle[:n-1]
		p.mu.Unlock()
		return pc, nil
	}
	if p.open >= p.max {
		p.mu.Unlock()
		return nil, fasthttp.ErrNoFreeConns
	}
	p.open++
	p.mu.Unlock()
	c, err := p.dial(timeout)
	if err != nil {
		p.mu.Lock()
		p.open--
		p.mu.Unlock()
		return nil, err
	}
	// A new connection has no deadline: net.Conn starts without one.
	return &poolConn{c: c, readArmed: noDeadline, writeArmed: noDeadline}, nil
}

// release gives a connection whose exchange ended cleanly back for reuse. now is the current
// time or a moment before: a short exchange passes the clock reading it began with rather
// than read the clock again, and the connection is closed that much sooner.
func (p *connPool) release(pc *poolConn, now time.Time) {
	pc.lastUse = now
	p.mu.Lock()
	if p.retired {
		p.open--
		p.mu.Unlock()
		_ = pc.c.Close()
		return
	}
	p.idle = append(p.idle, pc)
	if !p.armed {
		p.armed = true
		if p.sweeper == nil {
			p.sweeper = time.AfterFunc(p.idleTimeout, p.sweep)
		} else {
			p.sweeper.Reset(p.idleTimeout)
		}
	}
	p.mu.Unlock()
}

// discard closes a connection that must not be reused (an error, a close asked for, a body
// not read to its end).
func (p *connPool) discard(pc *poolConn) {
	_ = pc.c.Close()
	p.mu.Lock()
	p.open--
	p.mu.Unlock()
}

// sweep runs on the sweeper's own goroutine: it closes the idle connections that expired and
// re-arms for the oldest one left.
func (p *connPool) sweep() {
	now := time.Now()
	p.mu.Lock()
	n := 0
	for n < len(p.idle) && now.Sub(p.idle[n].lastUse) >= p.idleTimeout {
		n++
	}
	expired := append([]*poolConn(nil), p.idle[:n]...)
	left := copy(p.idle, p.idle[n:])
	clear(p.idle[left:])
	p.idle = p.idle[:left]
	p.open -= n
	if left > 0 {
		p.sweeper.Reset(p.idleTimeout - now.Sub(p.idle[0].lastUse))
	} else {
		p.armed = false
	}
	p.mu.Unlock()
	for _, pc := range expired {
		_ = pc.c.Close()
	}
}

// closeIdle closes every idle connection and retires the pool: the connections in use close
// when their exchanges end (the cluster dropped the host, or rebuilt its transport).
func (p *connPool) closeIdle() {
	p.mu.Lock()
	p.retired = true
	idle := p.idle
	p.idle = nil
	p.open -= len(idle)
	if p.armed {
		p.sweeper.Stop()
		p.armed = false
	}
	p.mu.Unlock()
	for _, pc := range idle {
		_ = pc.c.Close()
	}
}

// count is the number of open connections (idle, in use, or being dialled).
func (p *connPool) count() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.open
}

// idleCount is the number of idle connections (tests).
func (p *connPool) idleCount() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return len(p.idle)
}
