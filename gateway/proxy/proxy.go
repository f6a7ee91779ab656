package proxy

import (
	"bytes"
	"context"
	"errors"
	"io"
	"math/rand/v2"
	"net"
	"net/netip"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/valyala/fasthttp"

	"github.com/meshgate/meshgate/gateway/accesslog"
	"github.com/meshgate/meshgate/gateway/filter"
	"github.com/meshgate/meshgate/gateway/route"
	"github.com/meshgate/meshgate/mesh/lb"
	"github.com/meshgate/meshgate/mesh/tracing"
	"github.com/meshgate/meshgate/mesh/upstream"
)

// HashOn says which request value feeds a ring_hash cluster. At most one field is set.
type HashOn struct {
	Header   string
	Cookie   string
	SourceIP bool
}

// Upstream is what the engine needs of a route's destination: send this request there. The
// gateway passes an *upstream.Cluster (balancing, retries and resilience live behind Do);
// the package's tests pass a fake, so every request-path rule is tested without a network.
type Upstream interface {
	// Name is the service name, for the access log.
	Name() string
	// Do sends out and fills resp, as upstream.Cluster.Do: it reports on call and returns one
	// of upstream's sentinel errors (upstream.ErrClientBody when call.Body broke the try). On
	// success a response holds its body either whole (a short one, or none: HEAD, 204, 304)
	// or as a stream (resp.SetBodyStream), which the engine copies or hands to fasthttp to
	// close.
	Do(out *fasthttp.Request, resp *fasthttp.Response, call *upstream.Call) error
	// MaxResponseBytes bounds the response body (<= 0: no bound). It is read after Do, so a
	// reload that changes it applies from the next response.
	MaxResponseBytes() int64
}

var _ Upstream = (*upstream.Cluster)(nil)

// Backend is one weighted target of a route, resolved to its cluster.
type Backend struct {
	Cluster Upstream
	Hash    HashOn
}

// RouteBackends lists, for the route whose Key is the index, its backends in target order.
type RouteBackends struct {
	Name     string
	Backends []Backend
	Retry    *upstream.RetryPolicy // route override; nil = each cluster's own
	Filters  filter.Chain          // run in order before forwarding
	// ResponseFilters run in order on the upstream's response headers before they are sent.
	ResponseFilters []filter.ResponseFilter
	// DisableWebSocket refuses WebSocket handshakes on this route (403); the zero value
	// forwards them (websocket.go).
	DisableWebSocket bool
}

// Generation is one immutable config generation as the request path sees it. A reload builds
// a new one and swaps it in with one atomic store; requests in flight finish on the old one.
type Generation struct {
	table   *route.Table
	routes  []routeState
	noRoute *routeMetrics
}

type routeState struct {
	RouteBackends
	metrics *routeMetrics
	spans   *tracing.SpanNames // "METHOD route", the server span's name
}

// NewGeneration binds a compiled table to its backends and metrics. routes[i] belongs to the
// route whose Spec.Key is i.
func NewGeneration(table *route.Table, routes []RouteBackends, m *Metrics) (*Generation, error) {
	if table == nil || m == nil {
		return nil, errors.New("proxy: generation needs a route table and metrics")
	}
	g := &Generation{table: table, routes: make([]routeState, len(routes)), noRoute: m.bind("")}
	for i, r := range routes {
		if len(r.Backends) == 0 {
			return nil, errors.New("proxy: route " + r.Name + " has no backends")
		}
		g.routes[i] = routeState{RouteBackends: r, metrics: m.bind(r.Name), spans: tracing.NewSpanNames(r.Name)}
	}
	for _, r := range table.Routes() {
		if r.Key < 0 || r.Key >= len(routes) || len(routes[r.Key].Backends) != len(r.Spec.Targets) {
			return nil, errors.New("proxy: route " + r.Name + " does not line up with its backends")
		}
	}
	return g, nil
}

// Table is the generation's route table (for the admin API).
func (g *Generation) Table() *route.Table { return g.table }

// Options configures a Handler (one per listener).
type Options struct {
	Listener string
	// TLS says the listener serves TLS (listener.Options.TLSConfig set); it picks the
	// X-Forwarded-Proto this hop adds ("https" or "http") unless a trusted proxy already set
	// one. It is a setting rather than read from the connection so the hot path stays a
	// field load.
	TLS bool
	// TrustedProxies are the proxy hops (by socket address) whose X-Forwarded-*, request id
	// and budget header are believed on a plain listener; everyone else's are dropped.
	TrustedProxies []netip.Prefix
	// Connect says the listener serves Connect mTLS (every caller authenticated, Authorize set).
	// Its callers' request ids are kept; trusted_proxies do not apply to it.
	Connect bool
	// TrustedPeers are the Connect services (e.g. the edge) that may tell a connect listener the
	// client's address, scheme and host and pass a budget. Any other peer is the client.
	TrustedPeers []string
	// Linger, when set, is told the connection of a request rejected early (400, 413, 505):
	// the listener then closes it gently, so a client still sending its body reads the answer
	// instead of a reset.
	Linger          func(c net.Conn)
	MaxBodyBytes    int64 // requests larger than this get 413
	StreamThreshold int64 // bodies larger than this are streamed instead of buffered
	// RetryBufferBytes bounds the recording of a streamed HTTP/2 request body that lets the
	// request be retried on a retryable answer (a gRPC status retry.on names, a retryable HTTP
	// status): a body that ends within it is sent again on the retry, a longer one or one still
	// open (a bidirectional stream) is not replayable. 0: upstream.DefaultRetryBufferBytes
	// (64 KiB); < 0: no recording. HTTP/1.1 bodies are buffered up to StreamThreshold instead.
	RetryBufferBytes int64
	AccessLog        *accesslog.Logger
	Metrics          *Metrics
	// IdentityHeader carries the authenticated caller (filter.Request.Identity: a mesh peer's
	// service, a JWT subject, an API-key consumer) to the upstream. Whatever the client sent
	// under this name is always removed first, so it cannot be forged. Empty: not sent.
	IdentityHeader string
	// Authorize runs before routing on every request of this listener (a connect listener's
	// intentions check). Before routing so an unauthorised caller learns nothing about the
	// routes; the Identity it sets stays on the request for route filters and the access log.
	Authorize filter.Filter
	// ConnOf returns the connection an HTTP/2 request arrived on (listener.ConnFromContext):
	// the engine reads the peer's address and, on a connect listener, its certificate from it.
	ConnOf func(context.Context) net.Conn
	// Upgraded, when set, is told the connection of a WebSocket session about to be hijacked
	// (the listener keeps it counted and closes it when a drain deadline passes); the
	// returned function is called when the session ends.
	Upgraded func(c net.Conn) (done func())
	// WebSocketIdleTimeout closes a WebSocket session when neither side sent a byte for this
	// long (0: one hour).
	WebSocketIdleTimeout time.Duration
	// Tracer, when set, gives every request a server span (tracing.go) and makes the trace
	// context an owned header: the upstream gets the gateway's, once. Nil: tracing is off and
	// trace headers pass through as any end-to-end header.
	Tracer *tracing.Tracer
}

// Handler is the request engine for one listener: route, forward, render, log.
type Handler struct {
	opts         Options
	identityName []byte // IdentityHeader in fasthttp's canonical form
	gen          atomic.Pointer[Generation]
	draining     atomic.Bool

	// Pools are per handler, not package globals, so handlers (and tests) share nothing.
	scratch sync.Pool
	limits  sync.Pool
	streams sync.Pool
	ctxs    sync.Pool // fasthttp views of HTTP/2 requests (ServeHTTP)
	// copyBufs hold the buffer an HTTP/2 response body is copied through. Pooled, not on the
	// stack: x/net/http2 runs every stream's handler on a new goroutine, and a 16 KiB array in
	// its frame made each one grow its stack (copystack was 6% of an h2 load's profile).
	copyBufs sync.Pool
}

// New returns a Handler serving gen.
func New(opts Options, gen *Generation) (*Handler, error) {
	if gen == nil || opts.Metrics == nil {
		return nil, errors.New("proxy: handler needs a generation and metrics")
	}
	if opts.StreamThreshold <= 0 {
		opts.StreamThreshold = 64 << 10
	}
	if opts.RetryBufferBytes == 0 {
		opts.RetryBufferBytes = upstream.DefaultRetryBufferBytes
	}
	if opts.WebSocketIdleTimeout <= 0 {
		opts.WebSocketIdleTimeout = defaultWebSocketIdle
	}
	h := &Handler{opts: opts}
	if opts.IdentityHeader != "" {
		h.identityName = canonicalName(opts.IdentityHeader)
	}
	h.scratch.New = func() any {
		return &scratch{reqID: make([]byte, 0, 64), buf: make([]byte, 0, 256), ident: make([]byte, 0, 128)}
	}
	h.limits.New = func() any { return new(limitReader) }
	h.streams.New = func() any { return new(respStream) }
	h.ctxs.New = func() any { return new(fasthttp.RequestCtx) }
	h.gen.Store(gen)
	return h, nil
}

// Swap installs a new generation; requests already routed keep the old one.
func (h *Handler) Swap(gen *Generation) { h.gen.Store(gen) }

// Generation is the current generation.
func (h *Handler) Generation() *Generation { return h.gen.Load() }

// SetDraining makes every later response carry Connection: close, so keep-alive clients move
// to other instances while in-flight requests finish.
func (h *Handler) SetDraining(v bool) { h.draining.Store(v) }

func idempotent(m []byte) bool {
	switch string(m) {
	case fasthttp.MethodGet, fasthttp.MethodHead, fasthttp.MethodOptions, fasthttp.MethodTrace,
		fasthttp.MethodPut, fasthttp.MethodDelete:
		return true
	}
	return false
}

// scratch is per-request working memory, pooled so the request path does not allocate.
type scratch struct {
	reqID  []byte
	buf    []byte
	entry  accesslog.Entry
	call   upstream.Call
	key    int // matched route's key; valid when entry.Route != ""
	filter filter.Request
	ident  []byte     // backing store for filter.Request.Identity
	body   bodyBuffer // the whole body, when a filter asked for it
	fwd    forwarded  // what a trusted sender told us (trust.go)
	chunk  [4096]byte // chunked request bodies are read through this

	// Set by ServeHTTP for an HTTP/2 request, false on HTTP/1.1.
	h2     bool
	grpc   bool            // content-type application/grpc: errors are gRPC statuses
	reqCtx context.Context // the stream's context: a client reset cancels the upstream try
	ws     *wsSession      // set when the request was upgraded: the session logs it (websocket.go)
	// rec records a streamed HTTP/2 body for a retry; ServeHTTP releases it once the response
	// is written (the transport may read the body until then).
	rec *upstream.BodyRecorder
	// span is the request's server span, started only when Options.Tracer is set; tbuf holds
	// the trace header values written upstream (tracing.go).
	span tracing.Span
	tbuf []byte
	// notes are the filters' reports for the span (filter.Notes), kept past forward.
	notes filter.Notes
	// traceIn: the client's request carries trace context fields, which the upstream request
	// must lose (Tracer.Propagate); false spares the removals.
	traceIn bool
	// scan is what serve's one pass over the request's fields found (trust.go).
	scan headerScan
}

// Serve is the fasthttp.RequestHandler. Nothing derived from ctx outlives this call except the
// response body stream, which fasthttp closes (returning its upstream connection) when written.
func (h *Handler) Serve(ctx *fasthttp.RequestCtx) {
	s := h.scratch.Get().(*scratch)
	h.serve(ctx, s)
	h.scratch.Put(s)
}

// serve is one request on either protocol (Serve for HTTP/1.x, ServeHTTP for HTTP/2).
func (h *Handler) serve(ctx *fasthttp.RequestCtx, s *scratch) {
	// The listener's server reads the clock lazily (LazyRequestTime): this is the request's
	// one reading of it before the upstream is called, shared with the deadline in forward.
	start := ctx.Time()
	if start.IsZero() { // a RequestCtx no server initialised (an embedding program's)
		start = time.Now()
	}
	gen := h.gen.Load()
	req := &ctx.Request
	remote := remoteAddr(ctx)
	e := &s.entry
	*e = accesslog.Entry{
		Time: start, Method: req.Header.Method(), Path: req.URI().Path(),
		UserAgent: req.Header.UserAgent(), ClientIP: remote, Listener: h.opts.Listener,
		Protocol: protoHTTP11,
	}
	switch {
	case s.h2:
		e.Protocol = protoHTTP2
	case !req.Header.IsHTTP11():
		e.Protocol = protoHTTP10
	}
	s.reqID = s.reqID[:0]
	s.notes = filter.Notes{}
	// One pass over the fields serves hygiene, trust and tracing (forward reads the flags).
	s.scan = h.scanHeaders(&req.Header)
	if h.opts.Tracer != nil {
		var carrier tracing.Carrier = &req.Header
		if s.scan&(scanTrace|scanBadName) == 0 {
			carrier = nil // no trace field: no parent to look for (a bad name stops the scan early)
		}
		h.opts.Tracer.StartServer(&s.span, carrier, start)
	}

	status, reason := h.forward(ctx, gen, s, remote)
	if len(s.reqID) == 0 { // rejected before the id was decided
		s.reqID = appendRequestID(s.reqID)
	}
	e.RequestID = s.reqID
	if reason != "" && s.grpc {
		RenderGRPCError(ctx, status, reason, s.reqID)
	} else if reason != "" {
		RenderError(ctx, status, reason, s.reqID)
		if !s.h2 && (status == fasthttp.StatusBadRequest || status == fasthttp.StatusRequestEntityTooLarge ||
			status == fasthttp.StatusHTTPVersionNotSupported) {
			// The rest of the request may still be on the wire; do not parse it as a new one,
			// and close gently so the client reads this answer before it sees the close.
			ctx.SetConnectionClose()
			h.linger(ctx)
		}
	} else {
		ctx.Response.Header.SetCanonical(keyXRequestID, s.reqID)
		if s.grpc && e.Error != "" && ctx.Response.StatusCode() != fasthttp.StatusOK {
			// A filter wrote its own answer (a plugin's 401 page): a gRPC client still gets a status.
			RenderGRPCError(ctx, ctx.Response.StatusCode(), e.Error, s.reqID)
		}
	}
	if h.draining.Load() && !s.h2 {
		ctx.SetConnectionClose()
	}
	status = ctx.Response.StatusCode()
	took := time.Since(start)

	rm := gen.noRoute
	if e.Route != "" {
		rm = gen.routes[s.key].metrics
	}
	rm.observe(status, took.Seconds())
	e.Status = status
	e.Duration = took
	if reason != "" { // a filter that wrote its own answer set e.Error itself
		e.Error = reason
	}
	e.BytesIn = int64(max(req.Header.ContentLength(), 0))
	e.BytesOut = int64(ctx.Response.Header.ContentLength())
	if s.span.Started() {
		h.endSpan(ctx, gen, s, status, start.Add(took))
	}
	if s.ws != nil { // upgraded: its one access-log line is written when the session ends
		s.ws.hold(e)
		s.ws = nil
		return
	}
	h.opts.AccessLog.Log(e)
}

// linger asks the listener to close this connection gently (see Options.Linger).
func (h *Handler) linger(ctx *fasthttp.RequestCtx) {
	if h.opts.Linger != nil {
		h.opts.Linger(ctx.Conn())
	}
}

// forward does the proxying. It returns a status and reason only when it did not produce a
// response itself.
func (h *Handler) forward(ctx *fasthttp.RequestCtx, gen *Generation, s *scratch, remote netip.Addr) (int, string) {
	req := &ctx.Request
	e := &s.entry

	// Request hygiene, before anything reads a header: what fasthttp accepts but an edge
	// should not, and one view of every field for policies, routing and the upstream.
	if !supportedVersion(req.Header.Protocol()) {
		return fasthttp.StatusHTTPVersionNotSupported, ReasonHTTPVersion
	}
	if !methodOK(req.Header.Method(), gen.table) {
		return fasthttp.StatusBadRequest, ReasonBadMethod
	}
	scan := s.scan
	s.traceIn = scan&scanTrace != 0
	if scan&scanBadName != 0 {
		return fasthttp.StatusBadRequest, ReasonUnderscoreHeader
	}
	if scan&scanRepeated != 0 && hasRepeated(&req.Header) {
		joinRepeated(&req.Header)
	}
	// Decided before the hop-by-hop fields go; only a WebSocket handshake gets them back.
	ws := scan&scanUpgrade != 0 && isWebSocketUpgrade(&req.Header)
	if scan&scanHopByHop != 0 {
		s.buf = h.stripHopByHop(&req.Header, s.buf)
	}
	host := canonicalHost(req.URI().Host())
	e.Host = host
	if len(host) == 0 && req.Header.IsHTTP11() {
		return fasthttp.StatusBadRequest, ReasonMissingHost
	}
	if !hostOK(host) {
		return fasthttp.StatusBadRequest, ReasonBadRequest
	}
	if bad, reason := badFraming(&req.Header); bad {
		return fasthttp.StatusBadRequest, reason
	}
	if cl := req.Header.ContentLength(); h.opts.MaxBodyBytes > 0 && int64(cl) > h.opts.MaxBodyBytes {
		return fasthttp.StatusRequestEntityTooLarge, ReasonBodyTooLarge
	}

	// The request id: kept from a trusted hop and from any authenticated mesh peer (ids only
	// correlate logs, and a denied peer's request should still be findable); everyone else
	// gets a fresh one.
	// One look at the trusted hops per request: a connect listener names its peers by identity.
	hop := !h.opts.Connect && trusted(remote, h.opts.TrustedProxies)
	if h.opts.Connect || hop {
		if id := req.Header.Peek(hdrXRequestID); validRequestID(id) {
			s.reqID = append(s.reqID, id...)
		}
	}
	if len(s.reqID) == 0 {
		s.reqID = appendRequestID(s.reqID)
	}

	fr := &s.filter
	*fr = filter.Request{Ctx: ctx, ClientIP: remote, Identity: s.ident[:0]}
	s.body.reset(req, h.opts.MaxBodyBytes)
	fr.SetBody(&s.body)
	defer func() { // drop the ctx references before the scratch goes back to the pool
		s.notes = fr.Notes // endSpan runs after this
		*fr = filter.Request{}
		s.body.release()
	}()
	if h.opts.Authorize != nil {
		v := h.opts.Authorize.Request(fr)
		e.Identity = fr.Identity
		if v.Status != 0 {
			return v.Status, v.Reason
		}
	}

	// The owned fields: decide who may set them (a connect listener's peers are known only
	// now), keep what they may, drop every line the sender wrote.
	level := h.trustLevel(hop, fr.Identity)
	client := remote
	if scan&scanOwned != 0 {
		client = h.takeOwned(&req.Header, level, remote, &s.fwd)
	} else {
		s.fwd.reset()
	}
	fr.ClientIP, fr.RequestID = client, s.reqID
	e.ClientIP = client

	rt := gen.table.Match(req, host, req.URI().Path())
	if rt == nil {
		return fasthttp.StatusNotFound, ReasonNoRoute
	}
	e.Route = rt.Name
	s.key = rt.Key
	rs := &gen.routes[rt.Key]
	var deadline, callerDeadline time.Time
	now := e.Time // the request's start: its timeout counts from when it arrived
	if rt.Timeout > 0 {
		deadline = now.Add(rt.Timeout)
	}
	// A trusted meshgate calling us sends what is left of its own deadline. Honouring it lets a
	// chain of services fail fast instead of working on answers nobody waits for; it can only
	// shorten our deadline, never extend it, and a try it cuts short is never held against the
	// host. The backend (upstream.Cluster.Do) sets our own remaining budget on every try, so
	// the caller's value never travels further. From anyone else it was dropped above.
	if ms, ok := parseBudget(s.fwd.budget); ok {
		if ms <= 0 {
			return fasthttp.StatusGatewayTimeout, ReasonDeadline
		}
		if d := now.Add(time.Duration(ms) * time.Millisecond); deadline.IsZero() || d.Before(deadline) {
			deadline, callerDeadline = d, d
		}
	}
	if s.grpc {
		// gRPC's own deadline, as the client set it: it can only shorten ours, and like a
		// budget it is the caller's, so running out of it says nothing about the host. The
		// transport sends what is left of the final deadline upstream as grpc-timeout.
		if d, ok := parseGRPCTimeout(req.Header.Peek(grpcTimeoutHeader)); ok {
			if dl := now.Add(d); deadline.IsZero() || dl.Before(deadline) {
				deadline, callerDeadline = dl, dl
			}
		}
	}
	if len(rs.Filters) > 0 {
		fr.Route, fr.Deadline = rt.Name, deadline
		v := rs.Filters.Request(fr)
		e.Identity = fr.Identity
		if v.Written {
			e.Error = v.Reason // the filter's own answer is sent as is (Serve renders nothing)
			return 0, ""
		}
		if v.Status != 0 {
			return v.Status, v.Reason
		}
	}
	if ws && rs.DisableWebSocket {
		return fasthttp.StatusForbidden, ReasonWebSocketOff
	}
	bi := 0
	if len(rs.Backends) > 1 {
		bi = rt.PickTarget(rand.Uint64())
	}
	be := &rs.Backends[bi]
	e.Service = be.Cluster.Name()

	out := fasthttp.AcquireRequest()
	defer fasthttp.ReleaseRequest(out)
	resp := fasthttp.AcquireResponse()
	respOwned := true
	defer func() {
		if respOwned {
			fasthttp.ReleaseResponse(resp)
		}
	}()

	if !h.buildRequest(ctx, out, rt, s, remote) {
		return fasthttp.StatusBadRequest, ReasonBadPath
	}
	call := &s.call
	call.Reset()
	call.Hash = h.hashKey(req, be.Hash, client)
	call.Retry = rs.Retry
	call.Idempotent = idempotent(req.Header.Method())
	call.Replayable = true
	call.GRPC, call.Context = s.grpc, s.reqCtx
	if s.span.Started() {
		call.Trace = &s.span
	}
	call.Deadline, call.CallerDeadline = deadline, callerDeadline
	if ws {
		return h.upgrade(ctx, rs, be, out, resp, s)
	}
	var limited *limitReader
	if s.body.done {
		// A filter read the body (a signature check): forward exactly those bytes, which are
		// now in memory and so replayable.
		out.SetBodyRaw(s.body.buf)
	} else if req.IsBodyStream() {
		cl := req.Header.ContentLength()
		switch {
		case cl >= 0 && int64(cl) <= h.opts.StreamThreshold:
			// fasthttp already holds the whole body (it streams only past the threshold).
			if err := req.BodyWriteTo(out.BodyWriter()); err != nil {
				return fasthttp.StatusBadRequest, ReasonBadRequest
			}
		case cl < 0 && s.h2:
			// An HTTP/2 body of unknown length may be one side of a conversation (a
			// bidirectional gRPC stream): nothing may wait for its end before the upstream
			// has the request. It is streamed as it comes, and recorded as the upstream reads
			// it: a unary call or a short client stream that ended within the retry buffer
			// before a retryable answer came is replayable (Call.Recorder), any other is not.
			limited = &limitReader{r: req.BodyStream(), left: h.opts.MaxBodyBytes,
				unlimited: h.opts.MaxBodyBytes <= 0, want: -1}
			call.Body = limited
			out.SetBodyStream(h.record(s, limited, -1), -1)
			call.Replayable = false
		case cl < 0:
			// fasthttp streams every chunked body. Buffer up to the threshold first: small
			// chunked bodies become replayable, and malformed or oversized ones are answered
			// before any upstream sees a byte.
			done, status, reason := h.bufferChunked(req, out, s)
			if reason != "" {
				return status, reason
			}
			if !done {
				limited = h.acquireLimitReader(req.BodyStream(), h.opts.MaxBodyBytes, int64(len(out.Body())), -1)
				defer h.releaseLimitReader(limited)
				call.Body = limited
				prefix := append([]byte(nil), out.Body()...) // large bodies only: one copy of the head
				out.SetBodyStream(io.MultiReader(bytes.NewReader(prefix), limited), -1)
				call.Replayable = false
			}
		case s.h2:
			// Not pooled: an HTTP/2 upstream may still be reading the body after forward
			// returns (the exchange is full duplex), so the reader must outlive this frame.
			limited = &limitReader{r: req.BodyStream(), left: h.opts.MaxBodyBytes,
				unlimited: h.opts.MaxBodyBytes <= 0, want: int64(cl)}
			call.Body = limited
			out.SetBodyStream(h.record(s, limited, int64(cl)), cl)
			call.Replayable = false
		default:
			limited = h.acquireLimitReader(req.BodyStream(), h.opts.MaxBodyBytes, 0, int64(cl))
			defer h.releaseLimitReader(limited)
			call.Body = limited
			out.SetBodyStream(limited, cl)
			call.Replayable = false
		}
	}

	err := be.Cluster.Do(out, resp, call)
	if s.rec != nil && call.Attempts <= 1 {
		// No try reads the recording (a replay is only sent by a retry) and none will be made
		// any more: let it go now rather than when a long response ends. The body still
		// streams through the recorder, which no longer keeps it.
		s.rec.Release()
	}
	e.Upstream = call.Address
	e.Attempts = call.Attempts
	e.UpstreamDuration = call.Elapsed
	if err != nil {
		if limited != nil && limited.exceeded {
			return fasthttp.StatusRequestEntityTooLarge, ReasonBodyTooLarge
		}
		if limited != nil && limited.readErr {
			// The client's body broke mid-stream (bad chunk, reset): its fault, not the upstream's.
			return fasthttp.StatusBadRequest, ReasonBadRequest
		}
		return upstreamStatus(err)
	}

	maxResp := be.Cluster.MaxResponseBytes()
	cl := resp.Header.ContentLength()
	if maxResp > 0 && int64(cl) > maxResp {
		return fasthttp.StatusBadGateway, ReasonTooLarge
	}
	for _, rf := range rs.ResponseFilters {
		rf.Response(&s.filter, resp)
	}
	// From here on an error must not leave upstream headers behind in our error response.
	resp.Header.CopyTo(&ctx.Response.Header)
	stripResponseHopByHop(&ctx.Response.Header)
	// The response carries the gateway's request id once (Serve sets it), whatever the upstream sent.
	ctx.Response.Header.Del(hdrXRequestID)
	// The upstream connection's fate must not decide the client's.
	ctx.Response.Header.ResetConnectionClose()

	switch {
	case !resp.IsBodyStream():
		setWholeBody(&ctx.Response, resp)
	case cl >= 0 && int64(cl) <= h.opts.StreamThreshold:
		if err := resp.BodyWriteTo(ctx.Response.BodyWriter()); err != nil {
			ctx.Response.Reset()
			return fasthttp.StatusBadGateway, classifyBodyErr(err)
		}
	default:
		// Hand the upstream response to fasthttp: it closes the stream after writing, which
		// returns the upstream connection to its pool.
		respOwned = false
		ctx.Response.SetBodyStream(h.acquireRespStream(resp, maxResp), cl)
	}
	if req.Header.IsHead() {
		ctx.Response.SkipBody = true
		ctx.Response.Header.SetContentLength(max(cl, 0))
	}
	return 0, ""
}

// setWholeBody gives dst the body the upstream's resp holds whole (a short one, or none for
// HEAD, 204 and 304), with the length the upstream announced.
func setWholeBody(dst, resp *fasthttp.Response) {
	cl := resp.Header.ContentLength()
	if b := resp.Body(); len(b) > 0 {
		dst.SetBody(b)
		cl = len(b)
	} else {
		dst.SetBodyRaw(nil)
	}
	dst.Header.SetContentLength(max(cl, 0))
}

// record puts a recorder for a retry (Options.RetryBufferBytes) in front of an HTTP/2
// request's streamed body of length cl (-1: unknown) and hands it to the call, unless
// recording is off or the announced length already passes the bound.
func (h *Handler) record(s *scratch, body io.Reader, cl int64) io.Reader {
	limit := h.opts.RetryBufferBytes
	if limit < 0 || cl > limit {
		return body
	}
	s.rec = upstream.NewBodyRecorder(body, int(limit))
	s.call.Recorder = s.rec
	return s.rec
}

// parseBudget reads an X-Meshgate-Budget-Ms value: an optionally negative decimal integer of
// at most 12 digits (about 30 years, so the Duration cannot overflow). Anything else is
// ignored rather than rejected: a malformed budget must not fail a request.
func parseBudget(v []byte) (int64, bool) {
	neg := len(v) > 0 && v[0] == '-'
	if neg {
		v = v[1:]
	}
	if len(v) == 0 || len(v) > 12 {
		return 0, false
	}
	var n int64
	for _, c := range v {
		if c < '0' || c > '9' {
			return 0, false
		}
		n = n*10 + int64(c-'0')
	}
	if neg {
		n = -n
	}
	return n, true
}

func classifyBodyErr(err error) string {
	if errors.Is(err, fasthttp.ErrBodyTooLarge) {
		return ReasonTooLarge
	}
	return ReasonReset
}

// hashKey computes the consistent-hash input for ring_hash clusters; 0 when unused. A request
// without the key gets a random position, so keyless traffic spreads instead of piling onto
// the one host that owns hash("").
func (h *Handler) hashKey(req *fasthttp.Request, on HashOn, client netip.Addr) uint64 {
	var key []byte
	switch {
	case on.Header != "":
		key = req.Header.Peek(on.Header)
	case on.Cookie != "":
		key = req.Header.Cookie(on.Cookie)
	case on.SourceIP:
		b := client.As16()
		return lb.HashKey(b[:])
	default:
		return 0
	}
	if len(key) == 0 {
		return rand.Uint64()
	}
	return lb.HashKey(key)
}

// buildRequest turns the downstream request into the upstream one: same method, headers and
// authority; origin-form target; the owned fields set to the gateway's values, once. Hop-by-hop
// fields and every owned line the sender wrote were removed from the request before filters
// ran. It reports false when a rewrite would produce a path the upstream could read as
// another one.
func (h *Handler) buildRequest(ctx *fasthttp.RequestCtx, out *fasthttp.Request, rt *route.Route, s *scratch, remote netip.Addr) bool {
	req := &ctx.Request
	req.Header.CopyTo(&out.Header)
	out.UseHostHeader = true
	// The client's Connection: close is about its own connection, not the pooled upstream one.
	out.Header.ResetConnectionClose()
	if h.opts.IdentityHeader != "" {
		// A filter may have set it: the gateway's value (the authenticated caller) is the one.
		out.Header.DelBytes(h.identityName)
		if id := s.filter.Identity; len(id) > 0 {
			out.Header.SetCanonical(h.identityName, id)
		}
	}

	// The request-target is re-encoded from the normalized path, so what the upstream parses is
	// exactly what we routed on (no "/public/../admin" or %2e%2e games).
	s.buf = s.buf[:0]
	path := req.URI().Path()
	if rt.Rewrites() {
		s.buf = rt.RewritePath(s.buf, path)
		path = s.buf
		if hasDotSegment(path) {
			return false
		}
	}
	n := len(s.buf)
	s.buf = appendQuotedPath(s.buf, path)
	if q := req.URI().QueryString(); len(q) > 0 {
		s.buf = append(s.buf, '?')
		s.buf = append(s.buf, q...)
	}
	out.SetRequestURIBytes(s.buf[n:])
	if host := req.URI().Host(); len(host) > 0 {
		out.Header.SetHostBytes(host)
	} else {
		// HTTP/1.0 without Host: name the address the client reached, as HTTP/1.1 requires one.
		out.Header.Set(fasthttp.HeaderHost, ctx.LocalAddr().String())
	}

	f := &s.fwd
	s.buf = s.buf[:0]
	if len(f.chain) > 0 {
		s.buf = append(s.buf, f.chain...)
		s.buf = append(s.buf, ", "...)
	}
	s.buf = remote.AppendTo(s.buf)
	out.Header.SetCanonical(keyXForwardedFor, s.buf)
	switch {
	case len(f.proto) > 0:
		out.Header.SetCanonical(keyXForwardedProto, f.proto)
	case h.opts.TLS:
		out.Header.SetCanonical(keyXForwardedProto, valHTTPS)
	default:
		out.Header.SetCanonical(keyXForwardedProto, valHTTP)
	}
	if len(f.host) > 0 {
		out.Header.SetCanonical(keyXForwardedHost, f.host)
	} else {
		out.Header.SetCanonical(keyXForwardedHost, req.Header.Host())
	}
	out.Header.SetCanonical(keyXRequestID, s.reqID)
	if s.span.Started() {
		// The trace context is owned like the request id: whatever the client sent is gone and
		// the gateway's span is the upstream's parent (a recorded request's tries replace it
		// with their own client spans in upstream.Cluster.Do).
		s.tbuf = h.opts.Tracer.Propagate(&out.Header, &s.span, s.tbuf, !s.traceIn)
	}
	return true
}

func remoteAddr(ctx *fasthttp.RequestCtx) netip.Addr {
	a, _ := netip.AddrFromSlice(ctx.RemoteIP())
	return a.Unmap()
}

// bufferChunked reads a chunked request body into out up to the stream threshold. done is true
// when the whole body fit; otherwise out holds the head and the rest is still on the wire.
func (h *Handler) bufferChunked(req, out *fasthttp.Request, s *scratch) (done bool, status int, reason string) {
	stream := req.BodyStream()
	var total int64
	for {
		n, err := stream.Read(s.chunk[:])
		total += int64(n)
		out.AppendBody(s.chunk[:n])
		if h.opts.MaxBodyBytes > 0 && total > h.opts.MaxBodyBytes {
			return false, fasthttp.StatusRequestEntityTooLarge, ReasonBodyTooLarge
		}
		switch {
		case errors.Is(err, io.EOF):
			return true, 0, ""
		case err != nil:
			return false, fasthttp.StatusBadRequest, ReasonBadRequest
		case total > h.opts.StreamThreshold:
			return false, 0, ""
		}
	}
}

// bodyMaxBuffered caps the body a filter may make the engine hold when the listener sets no
// max_body_bytes: buffering needs a bound even where streaming does not.
const bodyMaxBuffered = 10 << 20

// bodyBuffer is the engine's filter.BodySource: it reads the request body once, through the
// listener's limit, and keeps it for forwarding.
type bodyBuffer struct {
	req  *fasthttp.Request
	max  int64
	buf  []byte
	done bool
	v    filter.Verdict
}

func (b *bodyBuffer) reset(req *fasthttp.Request, limit int64) {
	if limit <= 0 {
		limit = bodyMaxBuffered
	}
	*b = bodyBuffer{req: req, max: limit, buf: b.buf[:0]}
}

// release forgets the request; a large buffer is dropped so the pool does not pin it.
func (b *bodyBuffer) release() {
	buf := b.buf[:0]
	if cap(buf) > 1<<20 {
		buf = nil
	}
	*b = bodyBuffer{buf: buf}
}

// ReadBody implements filter.BodySource.
func (b *bodyBuffer) ReadBody() ([]byte, filter.Verdict) {
	if b.done || b.v.Status != 0 {
		return b.buf, b.v
	}
	req := b.req
	if !req.IsBodyStream() {
		b.buf, b.done = req.Body(), true // already in memory, bounded by fasthttp
		return b.buf, b.v
	}
	if cl := req.Header.ContentLength(); cl > 0 && int64(cl) > b.max {
		b.v = filter.Verdict{Status: fasthttp.StatusRequestEntityTooLarge, Reason: ReasonBodyTooLarge}
		return nil, b.v
	}
	stream := req.BodyStream()
	for {
		if len(b.buf) == cap(b.buf) {
			b.buf = slices.Grow(b.buf, 4096)
		}
		n, err := stream.Read(b.buf[len(b.buf):cap(b.buf)])
		b.buf = b.buf[:len(b.buf)+n]
		if int64(len(b.buf)) > b.max {
			b.v = filter.Verdict{Status: fasthttp.StatusRequestEntityTooLarge, Reason: ReasonBodyTooLarge}
			return nil, b.v
		}
		if errors.Is(err, io.EOF) {
			b.done = true
			return b.buf, b.v
		}
		if err != nil {
			b.v = filter.Verdict{Status: fasthttp.StatusBadRequest, Reason: ReasonBadRequest}
			return nil, b.v
		}
	}
}

// limitReader fails a streamed request body that grows past the configured maximum, and
// remembers whether the client's side failed so the error is rendered as the client's.
type limitReader struct {
	r         io.Reader
	left      int64
	read      int64
	want      int64 // the announced length; -1: chunked
	exceeded  bool
	readErr   bool
	unlimited bool
}

var errBodyTooLarge = errors.New("request body too large")

func (l *limitReader) Read(p []byte) (int, error) {
	if !l.unlimited && l.left <= 0 {
		// One byte of look-ahead tells "exactly at the limit" from "over it".
		var one [1]byte
		if n, _ := l.r.Read(one[:]); n > 0 {
			l.exceeded = true
			return 0, errBodyTooLarge
		}
		return 0, io.EOF
	}
	if !l.unlimited && int64(len(p)) > l.left {
		p = p[:l.left]
	}
	n, err := l.r.Read(p)
	l.left -= int64(n)
	l.read += int64(n)
	switch {
	case err == nil:
	case !errors.Is(err, io.EOF):
		l.readErr = true
	case l.want >= 0 && l.read < l.want:
		// The client hung up before the length it announced: an aborted upload.
		l.readErr = true
		err = io.ErrUnexpectedEOF
	}
	return n, err
}

// ClientFailed implements upstream.ClientBody: the client overran the limit or its body broke.
func (l *limitReader) ClientFailed() bool { return l.exceeded || l.readErr }

// acquireLimitReader reads r within limit body bytes (<= 0: no limit) of which used were
// already read (a buffered head); want is the length the client announced, -1 for chunked.
// Unlimited is decided from limit, not from what is left: a head that used all of it leaves 0,
// which must mean "no byte more", not "no limit".
func (h *Handler) acquireLimitReader(r io.Reader, limit, used, want int64) *limitReader {
	l := h.limits.Get().(*limitReader)
	*l = limitReader{r: r, left: limit - used, unlimited: limit <= 0, want: want}
	return l
}

func (h *Handler) releaseLimitReader(l *limitReader) {
	*l = limitReader{}
	h.limits.Put(l)
}

// respStream streams an upstream response body to the client and releases the upstream
// response when fasthttp closes it.
type respStream struct {
	resp      *fasthttp.Response
	left      int64
	unlimited bool
	pool      *sync.Pool
}

var errResponseTooLarge = errors.New("upstream response too large")

// Read fails once the body passes the limit; fasthttp then aborts the connection, which is the
// only honest signal left after the status line has gone out.
func (r *respStream) Read(p []byte) (int, error) {
	n, err := r.resp.BodyStream().Read(p)
	if !r.unlimited {
		r.left -= int64(n)
		if r.left < 0 {
			return 0, errResponseTooLarge
		}
	}
	return n, err
}

func (r *respStream) Close() error {
	err := r.resp.CloseBodyStream()
	fasthttp.ReleaseResponse(r.resp)
	pool := r.pool
	*r = respStream{}
	pool.Put(r)
	return err
}

func (h *Handler) acquireRespStream(resp *fasthttp.Response, limit int64) *respStream {
	r := h.streams.Get().(*respStream)
	*r = respStream{resp: resp, left: limit, unlimited: limit <= 0, pool: &h.streams}
	return r
}
