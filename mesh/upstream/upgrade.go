package upstream

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"time"

	"github.com/valyala/fasthttp"
)

// An HTTP/1.1 protocol upgrade (WebSocket) cannot go through a Transport: the connection stops
// being HTTP after the 101 and belongs to the caller, so it is never pooled. Upgrade therefore
// dials a connection of its own, but everything around the try is the cluster's, exactly as
// for Do: the balancer picks the host, its breaker must let the try through, the outcome feeds
// the breaker and outlier detection, and a connect failure (nothing was sent) may go to another
// host. The TLS config is the cluster's (Options.TLS), so a Connect cluster's upgrade is mTLS
// with the same SPIFFE verification as its requests.

// upgradeBodyLimit bounds a refusal's body when the cluster sets no max_response_bytes: the
// refusal is read whole (the connection is not kept), so it needs a bound of its own.
const upgradeBodyLimit = 1 << 20

// upgradeHandshakeTimeout bounds the handshake of a call without a deadline: a host that
// accepts the connection and never answers must not hold the client forever.
const upgradeHandshakeTimeout = 30 * time.Second

// Upgrade sends req, an HTTP/1.1 upgrade request (Connection: upgrade, Upgrade: ...), to a host
// chosen by the balancer and reads the response head, all within call.Deadline. On a 101 it
// returns the connection, which now belongs to the caller (close it when done): resp holds the
// 101's head, and bytes the host sent right behind it are read from the connection first. Any
// other answer is read whole (bounded by MaxResponseBytes), the connection is closed, and resp
// holds it with its body as a stream (as Do delivers bodies); the returned conn is nil.
//
// Only a connect failure is retried (per the retry policy, on another host when there is one):
// once the request was written the host may have acted on it, and an upgrade is not a request
// that can be replayed. The error is one of the package's sentinels, as Do's.
func (c *Cluster) Upgrade(req *fasthttp.Request, resp *fasthttp.Response, call *Call) (net.Conn, error) {
	opts := c.opts.Load()
	if n := c.inFlight.Add(1); n > int64(opts.MaxInFlight) {
		c.inFlight.Add(-1)
		c.metrics.overflow.Inc()
		return nil, errMaxInFlight
	}
	// In flight for the handshake only: a session may last hours and must not hold the slot.
	defer c.inFlight.Add(-1)
	pol := call.Retry
	if pol == nil {
		pol = &opts.Retry
	}
	attempts := max(pol.Attempts, 1)
	now := opts.now()
	c.sweep(now)
	c.budget.deposit(now)
	deadline := call.Deadline
	if deadline.IsZero() {
		deadline = time.Now().Add(upgradeHandshakeTimeout)
	}
	exclude := -1
	var err error
	for try := 0; try < attempts; try++ {
		call.Attempts = try + 1
		if try > 0 {
			c.metrics.retries.Inc()
		}
		idx, conn, terr := c.upgradeOnce(req, resp, call, exclude, deadline, opts)
		if idx < 0 {
			if err != nil {
				return nil, err
			}
			return nil, terr
		}
		exclude, err = idx, terr
		if err == nil {
			return conn, nil
		}
		c.metrics.count(err)
		if !errors.Is(err, ErrConnect) || pol.On&RetryConnectFailure == 0 || try+1 >= attempts ||
			expired(deadline) || !c.mayRetry(opts, try+1, deadline) {
			return nil, err
		}
	}
	return nil, err
}

// upgradeOnce picks a host as tryOnce does (the balancer's choice if its breaker lets the try
// through, else a scan preferring hosts that are neither Down nor the one just tried) and makes
// the upgrade try there.
func (c *Cluster) upgradeOnce(req *fasthttp.Request, resp *fasthttp.Response, call *Call, exclude int, deadline time.Time, opts *Options) (int, net.Conn, error) {
	st := c.state.Load()
	idx := st.picker.Pick(call.Hash, exclude)
	if idx < 0 {
		c.metrics.noHosts.Inc()
		return -1, nil, ErrNoHosts
	}
	if ok, conn, err := c.upgradeAttempt(st.hosts[idx], req, resp, call, deadline, opts); ok {
		return idx, conn, err
	}
	c.metrics.breakerRejections.Inc()
	n := len(st.hosts)
	off := rand.IntN(n)
	for pass := range 3 {
		for k := range n {
			i := (off + k) % n
			h := st.hosts[i]
			if !candidate(pass, i, idx, exclude, h) {
				continue
			}
			if ok, conn, err := c.upgradeAttempt(h, req, resp, call, deadline, opts); ok {
				return i, conn, err
			}
			c.metrics.breakerRejections.Inc()
		}
	}
	c.metrics.circuitOpen.Inc()
	return -1, nil, ErrCircuitOpen
}

// upgradeAttempt is attempt for an upgrade: one try through h's breaker; ok is false when the
// breaker turned it away and nothing was sent.
func (c *Cluster) upgradeAttempt(h *Host, req *fasthttp.Request, resp *fasthttp.Response, call *Call, deadline time.Time, opts *Options) (ok bool, conn net.Conn, err error) {
	b := h.health.breaker.Load()
	var w *window
	if b != nil {
		if w, ok = b.allow(time.Now()); !ok {
			return false, nil, nil
		}
	}
	var o outcome
	conn, o, err = c.upgradeSend(h, req, resp, call, deadline, opts)
	c.observe(h, o, opts)
	if b != nil {
		b.report(w, o, time.Now())
	}
	return true, conn, err
}

// upgradeSend is one upgrade exchange with h: dial (and handshake TLS), write the request, read
// the response head. A 101 is a success and hands over the connection; an answer >= 500, a
// failed connect, a reset and a timeout count against the host, as for Do.
func (c *Cluster) upgradeSend(h *Host, req *fasthttp.Request, resp *fasthttp.Response, call *Call, deadline time.Time, opts *Options) (net.Conn, outcome, error) {
	call.Address = h.Address
	start := time.Now()
	setBudgetHeader(req, deadline, start)
	h.Begin()
	conn, err := c.upgradeExchange(h.Address, req, resp, deadline, opts)
	took := time.Since(start)
	call.Elapsed += took
	if raw := err; raw != nil {
		err = classify(raw)
		if errors.Is(err, ErrConnect) && isTimeout(raw) && expired(deadline) {
			// Cut short by the request's own deadline, not refused (as in send).
			err = fmt.Errorf("%w: %w", ErrTimeout, raw)
		}
	}
	o := outcomeOf(err, resp, call, deadline)
	h.End(took, o == tryFailed)
	return conn, o, err
}

// upgradeExchange does the wire part of upgradeSend; errors are the network stack's (or a
// sentinel), classified by the caller.
func (c *Cluster) upgradeExchange(addr string, req *fasthttp.Request, resp *fasthttp.Response, deadline time.Time, opts *Options) (net.Conn, error) {
	connectTimeout := opts.ConnectTimeout
	if connectTimeout <= 0 {
		connectTimeout = 2 * time.Second
	}
	if left := time.Until(deadline); left < connectTimeout {
		connectTimeout = max(left, time.Millisecond)
	}
	dialer := &fasthttp.TCPDialer{}
	if c.mm != nil {
		dialer = &c.mm.http1.dialer
	}
	var conn net.Conn
	var err error
	if opts.TLS == nil {
		conn, err = dialer.DialTimeout(addr, connectTimeout)
	} else {
		conn, err = dialTLS(dialer, addr, connectTimeout, hostTLSConfig(opts.TLS, addr))
	}
	if err != nil {
		// Whatever went wrong, nothing was sent (see classify): a connect failure.
		if !errors.Is(err, ErrConnect) {
			err = fmt.Errorf("%w: %w", ErrConnect, err)
		}
		return nil, err
	}
	ok := false
	defer func() {
		if !ok {
			_ = conn.Close()
		}
	}()
	if err := conn.SetDeadline(deadline); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrReset, err)
	}
	// The request is written by fasthttp (it frames the head exactly as for Do); the gateway
	// built it in origin form, so the scheme only has to agree with the connection.
	if opts.TLS != nil {
		req.URI().SetScheme("https")
	} else {
		req.URI().SetScheme("http")
	}
	bw := bufio.NewWriterSize(conn, 4096)
	if err := req.Write(bw); err != nil {
		return nil, err
	}
	if err := bw.Flush(); err != nil {
		return nil, err
	}
	br := bufio.NewReaderSize(conn, 4096)
	if err := resp.Header.Read(br); err != nil {
		if errors.Is(err, io.EOF) {
			err = fmt.Errorf("%w: %w", ErrReset, err)
		}
		return nil, err
	}
	if resp.StatusCode() != fasthttp.StatusSwitchingProtocols {
		limit := opts.MaxResponseBytes
		if limit <= 0 || limit > upgradeBodyLimit {
			limit = upgradeBodyLimit
		}
		if err := resp.ReadBody(br, int(limit)); err != nil {
			return nil, err
		}
		// Delivered as Do delivers bodies (a stream, or none), so the caller relays it as it
		// relays any response.
		if body := resp.Body(); len(body) > 0 {
			b := bytes.Clone(body)
			resp.SetBodyStream(bytes.NewReader(b), len(b))
		} else {
			resp.ResetBody()
		}
		return nil, nil
	}
	if err := conn.SetDeadline(time.Time{}); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrReset, err)
	}
	ok = true
	if n := br.Buffered(); n > 0 {
		b, _ := br.Peek(n)
		return &bufferedConn{Conn: conn, buf: bytes.Clone(b)}, nil
	}
	return conn, nil
}

// bufferedConn is an upgraded connection whose first bytes were already read with the 101's
// head: Read returns them before reading the connection again.
type bufferedConn struct {
	net.Conn
	buf []byte
}

func (b *bufferedConn) Read(p []byte) (int, error) {
	if len(b.buf) > 0 {
		n := copy(p, b.buf)
		b.buf = b.buf[n:]
		return n, nil
	}
	return b.Conn.Read(p)
}
