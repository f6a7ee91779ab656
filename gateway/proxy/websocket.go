package proxy

import (
	"bytes"
	"errors"
	"net"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/valyala/fasthttp"

	"github.com/meshgate/meshgate/gateway/accesslog"
	"github.com/meshgate/meshgate/mesh/upstream"
)

// WebSocket on HTTP/1.1 (docs/protocols.md). A handshake (GET, HTTP/1.1, Connection: upgrade,
// Upgrade: websocket) takes the same path as every request up to the backend pick: hygiene,
// the connect listener's intentions, the owned headers, routing and the route's filters, so a
// policy that would refuse the request refuses the upgrade before any upstream byte. Only then
// does it leave the request path: the cluster dials a host of its own (Upgrader), and on a 101
// the client connection is hijacked from fasthttp and bytes are relayed both ways until either
// side ends, neither sends for the idle timeout, or the listener's drain deadline passes. Any
// other Upgrade (h2c above all) is stripped as a hop-by-hop field, as before.

// defaultWebSocketIdle is listeners[].websocket_idle_timeout's default.
const defaultWebSocketIdle = time.Hour

// wsHeadTimeout bounds writing the 101 to the client: a client that does not read its own
// handshake answer must not hold the session's goroutine.
const wsHeadTimeout = 10 * time.Second

// wsBufferSize is each relay direction's copy buffer.
const wsBufferSize = 32 << 10

// Upgrader is an Upstream that can carry an HTTP/1.1 upgrade; *upstream.Cluster is one. The
// engine asks for it only for a WebSocket handshake, so a plain Upstream still serves every
// other request.
type Upgrader interface {
	// Upgrade sends out and reads the response head, as upstream.Cluster.Upgrade: on a 101 it
	// returns the connection (the caller's to close) with resp holding the head; otherwise
	// conn is nil and resp holds the whole answer, its body as a stream. Errors are
	// upstream's sentinels.
	Upgrade(out *fasthttp.Request, resp *fasthttp.Response, call *upstream.Call) (net.Conn, error)
}

var _ Upgrader = (*upstream.Cluster)(nil)

var (
	strWebSocket = []byte("websocket")
	strUpgrade   = []byte("upgrade")
)

// isWebSocketUpgrade reports whether the request is a WebSocket opening handshake (RFC 6455
// §4.1): GET on HTTP/1.1 with Upgrade naming websocket (alone) and Connection naming upgrade.
// Anything else that carries Upgrade is not forwarded as an upgrade. Repeated fields were
// joined before this runs.
func isWebSocketUpgrade(hd *fasthttp.RequestHeader) bool {
	if !hd.IsGet() || !hd.IsHTTP11() {
		return false
	}
	if !bytes.EqualFold(bytes.TrimSpace(hd.Peek(fasthttp.HeaderUpgrade)), strWebSocket) {
		return false
	}
	found := false
	forEachToken(hd.Peek(hdrConnection), func(tok []byte) {
		found = found || bytes.EqualFold(tok, strUpgrade)
	})
	return found
}

// upgrade forwards a WebSocket handshake whose route, filters and backend are decided. It
// returns a status and reason only when it produced no response itself; on a 101 it arranges
// the hijack, and the session (wsSession.run) takes over once Serve returns.
func (h *Handler) upgrade(ctx *fasthttp.RequestCtx, rs *routeState, be *Backend, out *fasthttp.Request, resp *fasthttp.Response, s *scratch) (int, string) {
	req := &ctx.Request
	e := &s.entry
	// A handshake has no body (RFC 6455 §4.1); -2 is fasthttp's "none announced", -1 chunked.
	if cl := req.Header.ContentLength(); cl > 0 || cl == -1 {
		return fasthttp.StatusBadRequest, ReasonBadRequest
	}
	up, ok := be.Cluster.(Upgrader)
	if !ok { // not reachable with the gateway's clusters; an Upstream of tests or embedders
		return fasthttp.StatusNotImplemented, ReasonProtocol
	}
	// The hop-by-hop fields were removed with the others; the upgrade's own two are the only
	// ones that go upstream, in their canonical spelling.
	out.Header.Set(fasthttp.HeaderUpgrade, "websocket")
	out.Header.Set(hdrConnection, "Upgrade")
	conn, err := up.Upgrade(out, resp, &s.call)
	e.Upstream = s.call.Address
	e.Attempts = s.call.Attempts
	e.UpstreamDuration = s.call.Elapsed
	if err != nil {
		return upstreamStatus(err)
	}
	if conn == nil {
		return h.relayRefusal(ctx, rs, be, resp, s)
	}
	if !bytes.EqualFold(bytes.TrimSpace(resp.Header.Peek(fasthttp.HeaderUpgrade)), strWebSocket) {
		// A 101 to something we did not ask for: nothing sane can be relayed.
		_ = conn.Close()
		return fasthttp.StatusBadGateway, ReasonProtocol
	}
	for _, rf := range rs.ResponseFilters {
		rf.Response(&s.filter, resp)
	}
	ss := &wsSession{
		h: h, upstream: conn, idle: h.opts.WebSocketIdleTimeout,
		head:    appendSwitchingHead(make([]byte, 0, 512), &resp.Header, s.reqID),
		metrics: h.opts.Metrics.ws.bind(rs.Name),
	}
	ss.done = func() {}
	if h.opts.Upgraded != nil {
		// Told now, while fasthttp still counts the connection, so a shutdown cannot fall
		// between fasthttp letting go of it and the listener learning about it.
		ss.done = h.opts.Upgraded(ctx.Conn())
	}
	s.ws = ss
	ctx.SetStatusCode(fasthttp.StatusSwitchingProtocols) // for Serve's metrics and log entry
	// The session writes the 101 itself: fasthttp would add its own framing (Connection:
	// close while draining, a Content-Type) to a head that must be exactly the upstream's.
	ctx.HijackSetNoResponse(true)
	ctx.Hijack(ss.run)
	return 0, ""
}

// relayRefusal sends the upstream's non-101 answer to a handshake as a normal response, with
// the same rules as forward's.
func (h *Handler) relayRefusal(ctx *fasthttp.RequestCtx, rs *routeState, be *Backend, resp *fasthttp.Response, s *scratch) (int, string) {
	maxResp := be.Cluster.MaxResponseBytes()
	cl := resp.Header.ContentLength()
	if maxResp > 0 && int64(cl) > maxResp {
		return fasthttp.StatusBadGateway, ReasonTooLarge
	}
	for _, rf := range rs.ResponseFilters {
		rf.Response(&s.filter, resp)
	}
	resp.Header.CopyTo(&ctx.Response.Header)
	stripResponseHopByHop(&ctx.Response.Header)
	ctx.Response.Header.Del(hdrXRequestID)
	ctx.Response.Header.ResetConnectionClose()
	if !resp.IsBodyStream() {
		setWholeBody(&ctx.Response, resp)
		return 0, ""
	}
	if err := resp.BodyWriteTo(ctx.Response.BodyWriter()); err != nil {
		ctx.Response.Reset()
		return fasthttp.StatusBadGateway, classifyBodyErr(err)
	}
	return 0, ""
}

// appendSwitchingHead is the 101 the client gets: the upstream's fields (Sec-WebSocket-Accept,
// -Protocol, -Extensions, cookies, what response filters added) less the hop-by-hop ones, those
// its Connection names and its X-Request-Id; then the upgrade's own two fields and the
// gateway's request id, once.
func appendSwitchingHead(dst []byte, rh *fasthttp.ResponseHeader, reqID []byte) []byte {
	rh.SetNoDefaultContentType(true) // no invented Content-Type on a head without a body
	conn := rh.Peek(hdrConnection)
	dst = append(dst, "HTTP/1.1 101 Switching Protocols\r\n"...)
	for k, v := range rh.All() {
		if skipSwitchingField(k, conn) {
			continue
		}
		dst = append(dst, k...)
		dst = append(dst, ": "...)
		dst = append(dst, v...)
		dst = append(dst, "\r\n"...)
	}
	dst = append(dst, "Upgrade: websocket\r\nConnection: Upgrade\r\n"...)
	dst = append(dst, hdrXRequestID+": "...)
	dst = append(dst, reqID...)
	return append(dst, "\r\n\r\n"...)
}

func skipSwitchingField(k, conn []byte) bool {
	for _, hk := range hopByHop {
		if bytes.EqualFold(k, []byte(hk)) {
			return true
		}
	}
	if bytes.EqualFold(k, []byte(hdrXRequestID)) || bytes.EqualFold(k, []byte(fasthttp.HeaderContentLength)) {
		return true
	}
	named := false
	forEachToken(conn, func(tok []byte) { named = named || bytes.EqualFold(tok, k) })
	return named
}

// wsSession is one upgraded connection pair, from the 101 to the close.
type wsSession struct {
	h        *Handler
	upstream net.Conn
	head     []byte
	idle     time.Duration
	metrics  wsRouteMetrics
	entry    accesslog.Entry // the handshake's, copied out of the pooled scratch by hold
	done     func()          // tells the listener the session ended (Options.Upgraded)

	last    atomic.Int64 // unix ns of the last byte read from either side
	stop    atomic.Bool  // the session is ending: pipes return at their next wake-up
	idled   atomic.Bool  // it ended because neither side sent for the idle timeout
	in, out atomic.Int64 // bytes relayed client → upstream, upstream → client
}

// hold keeps the handshake's access-log entry for the end of the session. Its byte fields point
// into the request and the pooled scratch, which are reused, so they are copied.
func (ss *wsSession) hold(e *accesslog.Entry) {
	ss.entry = *e
	c := &ss.entry
	c.RequestID, c.Method, c.Host = bytes.Clone(e.RequestID), bytes.Clone(e.Method), bytes.Clone(e.Host)
	c.Path, c.UserAgent, c.Identity = bytes.Clone(e.Path), bytes.Clone(e.UserAgent), bytes.Clone(e.Identity)
}

// run is the hijack handler: fasthttp calls it after Serve returned, with the client
// connection (any bytes the client sent behind its handshake are still readable from it), and
// closes that connection when run returns.
func (ss *wsSession) run(c net.Conn) {
	defer func() { _ = ss.upstream.Close() }()
	defer ss.done()
	m := ss.metrics
	m.active.Inc()
	defer m.active.Dec()
	if err := c.SetWriteDeadline(time.Now().Add(wsHeadTimeout)); err == nil {
		if _, err = c.Write(ss.head); err == nil {
			ss.relay(c)
		}
	}
	e := &ss.entry
	e.Duration = time.Since(e.Time)
	e.BytesIn, e.BytesOut = ss.in.Load(), ss.out.Load()
	if ss.idled.Load() {
		e.Error = "websocket_idle_timeout"
	}
	ss.h.opts.AccessLog.Log(e)
}

// relay copies both ways until either direction ends, then stops the other.
func (ss *wsSession) relay(c net.Conn) {
	ss.last.Store(time.Now().UnixNano())
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		ss.pipe(ss.upstream, c, &ss.in, ss.metrics.toUpstream)
		ss.end(c)
	}()
	ss.pipe(c, ss.upstream, &ss.out, ss.metrics.toClient)
	ss.end(c)
	wg.Wait()
}

// pastDeadline wakes a blocked Read or Write at once.
var pastDeadline = time.Unix(1, 0)

// end stops both directions: a deadline in the past wakes the other pipe's Read or Write.
// (The client connection fasthttp gave us does not close; fasthttp closes it after run.)
func (ss *wsSession) end(c net.Conn) {
	ss.stop.Store(true)
	_ = c.SetDeadline(pastDeadline)
	_ = ss.upstream.SetDeadline(pastDeadline)
}

// pipe copies src to dst. Its read deadline is the session's last activity plus the idle
// timeout: a direction that is quiet while the other one talks wakes, sees the later activity
// and waits on; when both were quiet for the timeout it ends the session. Every deadline is set
// before stop is checked, so end's past deadline can never be overwritten unseen.
func (ss *wsSession) pipe(dst, src net.Conn, n *atomic.Int64, bytesTotal prometheus.Counter) {
	buf := make([]byte, wsBufferSize)
	for {
		_ = src.SetReadDeadline(time.Unix(0, ss.last.Load()).Add(ss.idle))
		if ss.stop.Load() {
			return
		}
		nr, err := src.Read(buf)
		if nr > 0 {
			now := time.Now()
			ss.last.Store(now.UnixNano())
			_ = dst.SetWriteDeadline(now.Add(ss.idle))
			if ss.stop.Load() {
				return
			}
			nw, werr := dst.Write(buf[:nr])
			n.Add(int64(nw))
			bytesTotal.Add(float64(nw))
			if werr != nil {
				return
			}
		}
		if err == nil {
			continue
		}
		if ss.stop.Load() || !errors.Is(err, os.ErrDeadlineExceeded) {
			return // EOF, reset, or the other direction ended the session
		}
		if time.Since(time.Unix(0, ss.last.Load())) >= ss.idle {
			ss.idled.Store(true)
			return
		}
	}
}

// wsMetrics are the WebSocket series, by route; a session binds its children once.
type wsMetrics struct {
	active *prometheus.GaugeVec
	bytes  *prometheus.CounterVec
}

type wsRouteMetrics struct {
	active               prometheus.Gauge
	toUpstream, toClient prometheus.Counter
}

func newWSMetrics(reg prometheus.Registerer) (wsMetrics, error) {
	m := wsMetrics{
		active: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "meshgate_websocket_connections_active",
			Help: "Open upgraded (WebSocket) downstream connections, by route.",
		}, []string{"route"}),
		bytes: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "meshgate_websocket_bytes_total",
			Help: "Bytes relayed on upgraded (WebSocket) connections after the 101, by route and direction (upstream: client to upstream; downstream: upstream to client).",
		}, []string{"route", "direction"}),
	}
	for _, c := range []prometheus.Collector{m.active, m.bytes} {
		if err := reg.Register(c); err != nil {
			return wsMetrics{}, err
		}
	}
	return m, nil
}

func (m *wsMetrics) bind(route string) wsRouteMetrics {
	return wsRouteMetrics{
		active:     m.active.WithLabelValues(route),
		toUpstream: m.bytes.WithLabelValues(route, "upstream"),
		toClient:   m.bytes.WithLabelValues(route, "downstream"),
	}
}
