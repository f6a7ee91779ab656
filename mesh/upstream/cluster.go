package upstream

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/valyala/fasthttp"

	"github.com/meshgate/meshgate/mesh/lb"
	"github.com/meshgate/meshgate/mesh/tracing"
)

// Sentinel errors returned by Cluster.Do; the gateway's error renderer maps them to statuses.
var (
	ErrNoHosts          = errors.New("no hosts available")             // 503
	ErrConnect          = errors.New("upstream connect failed")        // 502
	ErrReset            = errors.New("upstream reset before response") // 502
	ErrTimeout          = errors.New("upstream timed out")             // 504
	ErrOverflow         = errors.New("upstream connection limit")      // 503
	ErrResponseTooLarge = errors.New("upstream response too large")    // 502
	ErrProtocol         = errors.New("upstream protocol error")        // 502
	ErrCircuitOpen      = errors.New("upstream circuit breakers open") // 503
)

// errMaxInFlight is what a request over the cluster's max_in_flight gets; built once so the
// rejection path does not allocate.
var errMaxInFlight = fmt.Errorf("%w: cluster max_in_flight reached", ErrOverflow)

// Retry conditions, combined as a bit set.
const (
	RetryConnectFailure uint32 = 1 << iota // could not connect: safe for every method
	RetryReset                             // closed/reset before the first response byte
	RetryTimeout                           // per-try timeout expired (idempotent only)
	Retry5xx                               // any 5xx response
	RetryGatewayError                      // 502, 503, 504
)

// RetryPolicy says when and how often a request is tried again.
type RetryPolicy struct {
	Attempts      int           // total tries including the first; <= 1 disables retries
	PerTryTimeout time.Duration // 0: only the overall deadline applies
	On            uint32        // Retry* bits
	Statuses      []int         // extra retryable statuses, e.g. 503
	// GRPC is a bit set of gRPC status codes (1<<code) that are retried, read from the
	// grpc-status of a Trailers-Only answer (the only kind that arrives before any response
	// byte has gone to the client). They also count as host failures.
	GRPC uint32
}

// DefaultRetry is one retry on connect failure or reset-before-response: a dying instance loses
// no idempotent request, and nothing that may have reached an upstream is duplicated.
func DefaultRetry() RetryPolicy {
	return RetryPolicy{Attempts: 2, On: RetryConnectFailure | RetryReset}
}

// retryResponse says whether an answer may be retried: by its HTTP status, or for gRPC by
// the grpc-status of a Trailers-Only answer. gRPC methods are not marked idempotent by their
// HTTP method (always POST); a code the policy names is the operator saying the call may be
// repeated, as in Envoy's retry_on for gRPC.
func (p *RetryPolicy) retryResponse(code int, resp *fasthttp.Response, call *Call) bool {
	if call.GRPC && code == fasthttp.StatusOK {
		g, ok := GRPCStatus(&resp.Header)
		return ok && g >= 0 && g < 32 && p.GRPC&(1<<g) != 0
	}
	return p.retryStatus(code)
}

func (p *RetryPolicy) retryStatus(code int) bool {
	if p.On&Retry5xx != 0 && code >= 500 && code <= 599 {
		return true
	}
	if p.On&RetryGatewayError != 0 && (code == 502 || code == 503 || code == 504) {
		return true
	}
	for _, s := range p.Statuses {
		if s == code {
			return true
		}
	}
	return false
}

// Options configures one cluster.
type Options struct {
	Name             string
	Policy           lb.Policy
	ConnectTimeout   time.Duration
	IdleTimeout      time.Duration // keep-alive idle; keep it below the upstream's own
	MaxConnsPerHost  int
	MaxResponseBytes int64
	Retry            RetryPolicy

	// Resilience; zero fields take the Default* values, so every cluster is protected.
	Outlier     OutlierOptions
	Breaker     BreakerOptions
	RetryBudget RetryBudgetOptions
	// MaxInFlight caps the cluster's concurrent requests (all tries of one request count once);
	// beyond it Do fails at once with ErrOverflow.
	MaxInFlight int
	// Now is the clock of ejections and the retry budget (nil: time.Now). Tests inject one so
	// that ejection timing is checked without waiting. Breakers use the real clock (each try's
	// start and end).
	Now func() time.Time
	// TLS, when set, makes every host speak TLS (nil: plaintext). Each host gets its own clone
	// with ServerName set to the host part of its address, unless the config already names a
	// server or sets InsecureSkipVerify (custom verification, e.g. SPIFFE IDs, checks the peer
	// itself). The config is never modified. The handshake is part of connecting, so a peer
	// that fails it is a connect failure (ErrConnect): nothing was sent, and the try may go
	// to another host for any method.
	TLS *tls.Config
	// Protocol is what the hosts speak (HTTP1 over fasthttp, HTTP2 and GRPC over x/net/http2).
	Protocol Protocol
	// ProtocolFromRegistry: the config named no protocol, so the registry's (a Consul
	// service-defaults entry, delivered in discovery.Set.Protocol) decides, HTTP1 when it says
	// nothing.
	ProtocolFromRegistry bool
}

// transportKey compares TLS by pointer: a reload that builds a new *tls.Config (even an
// identical one) rebuilds the hosts' transports, and one that keeps the pointer keeps their
// connection pools. Callers must therefore not mutate a config they have handed over.
func (o *Options) transportKey() transportKey {
	return transportKey{o.ConnectTimeout, o.IdleTimeout, o.MaxConnsPerHost, o.TLS, o.Protocol == HTTP1}
}

type transportKey struct {
	connect, idle time.Duration
	maxConns      int
	tls           *tls.Config
	http1         bool // HTTP2 and GRPC share a transport
}

// Host is one endpoint with its transport.
type Host struct {
	lb.Host
	transport Transport
	key       transportKey // the settings transport was built with
	health    *health
}

// state is one immutable generation of a cluster's hosts and picker.
type state struct {
	hosts  []*Host
	picker lb.Picker
	source string
}

// Cluster is one upstream service. It is safe for concurrent use; Do takes no locks.
type Cluster struct {
	name      string
	spanNames *tracing.SpanNames // "METHOD name", the client spans' names
	rebuildMu sync.Mutex
	opts      atomic.Pointer[Options]
	state     atomic.Pointer[state]
	metrics   clusterMetrics
	mm        *Manager // metric vectors for per-host series
	sink      *eventSink

	inFlight atomic.Int64
	budget   retryBudget
	// registry is the protocol the last discovery.Set named (a Protocol value), used when
	// Options.ProtocolFromRegistry.
	registry atomic.Uint32

	// ejectMu serialises ejection changes and Down-flag updates. Rebuilds Lock it; the
	// request path only TryLocks it and never waits.
	ejectMu     sync.Mutex
	nextReturn  atomic.Int64 // earliest ejectedUntil of any host (unix ns); MaxInt64: none
	panicking   atomic.Bool
	limitLogged atomic.Bool // max_ejection_percent already reported since the last change
}

// Name is the service name.
func (c *Cluster) Name() string { return c.name }

// Options returns the cluster's current options.
func (c *Cluster) Options() *Options { return c.opts.Load() }

// MaxResponseBytes is the current bound on a response body (<= 0: none), which the gateway
// enforces while it copies or streams the body.
func (c *Cluster) MaxResponseBytes() int64 { return c.opts.Load().MaxResponseBytes }

// Call carries one request's routing inputs and reports what happened.
type Call struct {
	Hash       uint64       // ring_hash key
	Deadline   time.Time    // the whole request must finish by then (zero: none)
	Retry      *RetryPolicy // nil: the cluster's policy
	Replayable bool         // the body is fully buffered, so the request may be sent again
	Idempotent bool         // the method is safe to repeat (GET, HEAD, OPTIONS, PUT, DELETE, TRACE)
	// CallerDeadline is the part of Deadline the caller imposed (a trusted hop's budget header),
	// zero when Deadline is only our own route timeout. A try cut short by the caller's clock
	// says nothing about the host: it never counts as a host failure, so no caller can eject a
	// healthy host by asking for 1 ms.
	CallerDeadline time.Time
	// Body, when set, is the client's streamed request body. If it failed (the client aborted,
	// mis-framed or overran the body limit), the try's failure is the client's and never
	// counts against the host.
	Body ClientBody
	// Recorder, when set, is the streamed request body's recording (req's body stream reads
	// through it): a body it holds whole (io.EOF within its bound) is replayable although
	// Replayable is false, and a retry sends the recorded bytes (see BodyRecorder).
	Recorder *BodyRecorder
	// Context, when set, is the client's request: a transport that supports it
	// (ContextTransport) abandons the try when it ends. Nil on the HTTP/1.1 path, where the
	// client's connection is not watched during a try.
	Context context.Context
	// GRPC marks a gRPC call: a try's outcome also reads grpc-status (UNAVAILABLE and the
	// policy's GRPC codes are host failures and retryable).
	GRPC bool
	// Trace, when set and recording, is the request's server span: every try gets a client
	// span under it, and the try's request carries that span as the trace parent (so the
	// upstream's spans hang under the try that reached it, and retries are visible). An
	// unrecorded span costs nothing here: the request already carries the trace context.
	Trace *tracing.Span

	// try is the current try's client span (when Trace is recording): here rather than
	// allocated per try, since Call lives in the engine's pooled per-request memory.
	try tracing.Span
	// tbuf is where the try's trace headers are formatted (the header copies them): a
	// traceparent is 55 bytes, a b3 header at most 68. A local array would escape through the
	// header's interface.
	tbuf [72]byte

	// Outputs.
	Address  string        // last host tried
	Attempts int           // tries made
	Elapsed  time.Duration // time spent waiting on upstreams
	// RetryReason is why the last retry was made (a Retry* reason), empty when there was
	// none; RetryStatus is the HTTP status (or, for gRPC, the grpc-status) of the answer that
	// was retried, 0 when a transport error was. They label the retry's client span.
	RetryReason string
	RetryStatus int
}

// Reset makes c a zero Call for the next request. An engine that keeps its Call in pooled
// memory resets it with this rather than assigning a new one, so the try span keeps the
// attribute slice a recorded try grew.
func (c *Call) Reset() {
	c.try.Reset()
	*c = Call{try: c.try}
}

// Why a try was made again (Call.RetryReason; the names of Envoy's retry_on conditions).
const (
	RetryReasonConnect = "connect-failure"
	RetryReasonReset   = "reset"
	RetryReasonTimeout = "timeout"
	RetryReasonStatus  = "retriable-status-code" // an HTTP status the policy retries
	RetryReasonGRPC    = "retriable-grpc-status" // a grpc-status the policy retries
)

// ClientBody is a streamed request body that knows whether the client broke it.
type ClientBody interface {
	ClientFailed() bool
}

// ErrClientBody is returned when a try failed because the client's body did (see Call.Body).
var ErrClientBody = errors.New("client request body failed")

// Do sends req to a host chosen by the balancer and fills resp, retrying per policy. On success
// resp may hold an open body stream: the caller must consume or close it (CloseBodyStream).
// Do never keeps req or resp after it returns.
//
// Around each try: hosts whose ejection ended are returned (lazily, one atomic load when none
// is due); the host's breaker must let the try through, else another host is used; the try's
// outcome feeds the breaker and outlier detection; a retry needs the retry budget and waits a
// jittered backoff that must end before the deadline.
func (c *Cluster) Do(req *fasthttp.Request, resp *fasthttp.Response, call *Call) error {
	opts := c.opts.Load()
	if n := c.inFlight.Add(1); n > int64(opts.MaxInFlight) {
		c.inFlight.Add(-1)
		c.metrics.overflow.Inc()
		return errMaxInFlight
	}
	defer c.inFlight.Add(-1)
	pol := call.Retry
	if pol == nil {
		pol = &opts.Retry
	}
	attempts := max(pol.Attempts, 1)
	now := opts.now()
	c.sweep(now)
	c.budget.deposit(now)
	// The first try starts now: with the real clock, its reading is the try's start too.
	var start time.Time
	if opts.Now == nil {
		start = now
	}
	exclude := -1
	var err error
	for try := 0; try < attempts; try++ {
		call.Attempts = try + 1
		if try > 0 {
			c.metrics.retries.Inc()
			start = time.Time{} // after a backoff: the next attempt reads the clock
		}
		deadline := call.Deadline
		if pol.PerTryTimeout > 0 {
			if start.IsZero() {
				start = time.Now()
			}
			if d := start.Add(pol.PerTryTimeout); deadline.IsZero() || d.Before(deadline) {
				deadline = d
			}
		}
		idx, terr := c.tryOnce(req, resp, call, exclude, deadline, start, opts)
		if idx < 0 {
			if err != nil {
				return err // a retry found no usable host: the client learns why the last try failed
			}
			return terr
		}
		exclude, err = idx, terr

		if err == nil {
			code := resp.StatusCode()
			// Replayability is asked last of the answer's conditions: a recorded body is
			// asked now that the head arrived, and may wait a moment for its end (replayGrace).
			if try+1 < attempts && (call.Idempotent || call.GRPC) && pol.retryResponse(code, resp, call) &&
				!expired(call.Deadline) && call.replayable() && c.mayRetry(opts, try+1, call.Deadline) {
				// Discard this answer: its connection is closed rather than drained, which is
				// cheaper than reading a body nobody will see.
				_ = resp.CloseBodyStream()
				call.RetryReason, call.RetryStatus = RetryReasonStatus, code
				if g, ok := GRPCStatus(&resp.Header); call.GRPC && ok && g != 0 {
					call.RetryReason, call.RetryStatus = RetryReasonGRPC, g
				}
				call.rewind(req)
				continue
			}
			return nil
		}
		if errors.Is(err, ErrClientBody) {
			return err // the client's fault: nothing to count, nothing to retry
		}
		c.metrics.count(err)
		if try+1 >= attempts || expired(call.Deadline) || !retryable(err, pol, call) || !c.mayRetry(opts, try+1, call.Deadline) {
			return err
		}
		call.RetryReason, call.RetryStatus = retryReason(err), 0
		call.rewind(req)
	}
	return err
}

// tryOnce makes one try and returns the index of the host it went to, or -1 with ErrNoHosts
// or ErrCircuitOpen when no host could take it. The balancer's choice is used if its breaker
// lets the try through; otherwise hosts are scanned from a random start, preferring those
// that are neither Down nor the one just tried (the balancers' own order of preference), and
// the first whose breaker allows it gets the try.
// start is when the try began (zero: not read yet).
func (c *Cluster) tryOnce(req *fasthttp.Request, resp *fasthttp.Response, call *Call, exclude int, deadline, start time.Time, opts *Options) (int, error) {
	st := c.state.Load()
	idx := st.picker.Pick(call.Hash, exclude)
	if idx < 0 {
		c.metrics.noHosts.Inc()
		return -1, ErrNoHosts
	}
	if ok, err := c.attempt(st.hosts[idx], req, resp, call, deadline, start, opts); ok {
		return idx, err
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
			if ok, err := c.attempt(h, req, resp, call, deadline, time.Time{}, opts); ok {
				return i, err
			}
			c.metrics.breakerRejections.Inc()
		}
	}
	c.metrics.circuitOpen.Inc()
	return -1, ErrCircuitOpen
}

// candidate says whether host i (h) may take a try in scan pass pass, after the balancer's
// choice idx was turned away by its breaker: first hosts neither Down nor the one just tried
// (exclude), then the one just tried, then Down ones, as the balancers prefer them.
func candidate(pass, i, idx, exclude int, h *Host) bool {
	switch pass {
	case 0:
		return i != idx && i != exclude && !h.Down()
	case 1:
		return i != idx && i == exclude && !h.Down()
	}
	return i != idx && h.Down()
}

// attempt sends one try to h through h's breaker; ok is false when the breaker turned it away
// (open, or half-open with its probes taken) and nothing was sent.
//
// The breaker is asked before sending and told the outcome after, with the clock readings the
// try takes anyway (its start and its duration). start is the caller's reading of the clock
// just before (zero: none).
func (c *Cluster) attempt(h *Host, req *fasthttp.Request, resp *fasthttp.Response, call *Call, deadline, start time.Time, opts *Options) (ok bool, err error) {
	if start.IsZero() {
		start = time.Now()
	}
	b := h.health.breaker.Load()
	var w *window
	if b != nil {
		if w, ok = b.allow(start); !ok {
			return false, nil
		}
	}
	o, took, err := c.send(h, req, resp, call, deadline, start)
	c.observe(h, o, opts)
	if b != nil {
		b.report(w, o, start.Add(took))
	}
	return true, err
}

// send is one exchange with h over its transport, starting at start, with the error mapped
// onto the package's sentinels, what the try says about the host and how long it took.
func (c *Cluster) send(h *Host, req *fasthttp.Request, resp *fasthttp.Response, call *Call, deadline, start time.Time) (outcome, time.Duration, error) {
	call.Address = h.Address
	setBudgetHeader(req, deadline, start)
	var span *tracing.Span
	if call.Trace != nil && call.Trace.Recording() {
		span = c.startTrySpan(h, req, call, start) // sampled: may allocate
	}
	h.Begin()
	var err error
	if ct, ok := h.transport.(ContextTransport); ok && call.Context != nil {
		err = ct.DoContext(call.Context, req, resp, deadline)
	} else {
		err = h.transport.Do(req, resp, deadline, start)
	}
	took := time.Since(start)
	call.Elapsed += took
	if raw := err; raw != nil {
		err = classify(raw)
		if errors.Is(err, ErrConnect) && isTimeout(raw) && expired(call.Deadline) {
			// The connect was cut short by the request's own deadline, not refused: the
			// request timed out (504); nobody found the upstream down (502).
			err = fmt.Errorf("%w: %w", ErrTimeout, raw)
		}
	}
	o := outcomeOf(err, resp, call, deadline)
	if o == trySucceeded && call.GRPC {
		pol := call.Retry
		if pol == nil {
			pol = &c.opts.Load().Retry
		}
		if grpcHostFailure(resp, pol) {
			o = tryFailed
		}
	}
	if o == tryExcluded && err != nil && call.Body != nil && call.Body.ClientFailed() {
		err = fmt.Errorf("%w: %w", ErrClientBody, err)
	}
	h.End(took, o == tryFailed)
	if span != nil {
		endTrySpan(span, resp, err, call.GRPC, start.Add(took))
	}
	return o, took, err
}

// startTrySpan starts the client span of one try and makes it the trace parent the upstream
// sees, replacing the server span's context the engine wrote.
func (c *Cluster) startTrySpan(h *Host, req *fasthttp.Request, call *Call, start time.Time) *tracing.Span {
	sp := &call.try
	call.Trace.StartChild(sp, c.spanNames.For(req.Header.Method()), tracing.Client, start)
	sp.SetString("meshgate.service", c.name)
	sp.SetString("meshgate.upstream.address", h.Address)
	sp.SetInt("meshgate.attempt", int64(call.Attempts))
	if call.Attempts > 1 && call.RetryReason != "" {
		sp.SetString("meshgate.retry.reason", call.RetryReason)
		if call.RetryStatus != 0 {
			sp.SetInt("meshgate.retry.status", int64(call.RetryStatus))
		}
	}
	call.Trace.Tracer().Inject(&req.Header, sp.Context(), call.tbuf[:0])
	return sp
}

// endTrySpan records a try's outcome: the status it answered (and a gRPC Trailers-Only
// status), or the error that ended it.
func endTrySpan(sp *tracing.Span, resp *fasthttp.Response, err error, grpc bool, end time.Time) {
	switch {
	case err != nil:
		sp.SetString("error.type", err.Error())
		sp.SetStatus(tracing.Error, err.Error())
	default:
		code := resp.StatusCode()
		sp.SetInt("http.response.status_code", int64(code))
		if g, ok := GRPCStatus(&resp.Header); grpc && ok {
			sp.SetInt("rpc.grpc.status_code", int64(g))
			if g != 0 {
				sp.SetStatus(tracing.Error, "grpc-status "+strconv.Itoa(g))
			}
		}
		if code >= 500 {
			sp.SetStatus(tracing.Error, strconv.Itoa(code))
		}
	}
	sp.End(end)
}

// outcomeOf says how a try reflects on its host. Only what the host did counts: our own
// connection limit, an oversized response, a client whose body broke and a caller's deadline
// are not the host failing. deadline is the try's own (the request's, or the per-try timeout
// when earlier).
func outcomeOf(err error, resp *fasthttp.Response, call *Call, deadline time.Time) outcome {
	switch {
	case err == nil && resp.StatusCode() >= 500:
		return tryFailed
	case err == nil:
		return trySucceeded
	case errors.Is(err, ErrOverflow), errors.Is(err, ErrResponseTooLarge):
		return tryExcluded
	case call.Body != nil && call.Body.ClientFailed():
		return tryExcluded
	case errors.Is(err, ErrTimeout) && !call.CallerDeadline.IsZero() && deadline.Equal(call.CallerDeadline):
		// The caller's budget was the binding deadline (ours and the per-try timeout were
		// later): the host may be perfectly healthy and merely slower than the caller allows.
		return tryExcluded
	}
	return tryFailed
}

// grpcUnavailable is gRPC's UNAVAILABLE: the host could not serve the call.
const grpcUnavailable = 14

// grpcHostFailure reads a gRPC answer's head: UNAVAILABLE, or a code the retry policy names,
// is the host failing even though the HTTP status is 200.
func grpcHostFailure(resp *fasthttp.Response, pol *RetryPolicy) bool {
	g, ok := GRPCStatus(&resp.Header)
	if !ok || g <= 0 || g >= 32 {
		return false
	}
	if g == grpcUnavailable {
		return true
	}
	return pol.GRPC&(1<<g) != 0
}

// mayRetry decides whether retry number n (1 for the first retry) may go ahead, and waits its
// backoff. A backoff that would end at or after the deadline means no retry: it could only
// time out. Otherwise the retry budget must allow it.
func (c *Cluster) mayRetry(opts *Options, n int, deadline time.Time) bool {
	rb := &opts.RetryBudget
	wait := backoff(n, rb.BackoffBase, rb.BackoffMax)
	if !deadline.IsZero() && !time.Now().Add(wait).Before(deadline) {
		return false
	}
	if !c.budget.withdraw(opts.now(), rb.Ratio, rb.MinRetriesPerSecond) {
		c.metrics.budgetExhausted.Inc()
		return false
	}
	if wait > 0 {
		time.Sleep(wait)
	}
	return true
}

// budgetKey is BudgetHeader for SetCanonical (it is canonical: no normalising per request).
var budgetKey = []byte(BudgetHeader)

// setBudgetHeader tells the upstream how many milliseconds this try has left at now (at least
// 1), so a meshgate there can fail fast and cap its own timeouts; without a deadline it
// removes any value a caller left in req.
func setBudgetHeader(req *fasthttp.Request, deadline, now time.Time) {
	if deadline.IsZero() {
		req.Header.Del(BudgetHeader)
		return
	}
	ms := max(deadline.Sub(now).Milliseconds(), 1)
	var buf [20]byte
	req.Header.SetCanonical(budgetKey, strconv.AppendInt(buf[:0], ms, 10))
}

func expired(d time.Time) bool { return !d.IsZero() && !time.Now().Before(d) }

// retryReason names the condition under which retryable let err be retried.
func retryReason(err error) string {
	switch {
	case errors.Is(err, ErrConnect):
		return RetryReasonConnect
	case errors.Is(err, ErrReset):
		return RetryReasonReset
	}
	return RetryReasonTimeout
}

func retryable(err error, pol *RetryPolicy, call *Call) bool {
	switch {
	case errors.Is(err, ErrConnect):
		// Nothing reached the upstream, so even a streamed body was not consumed; but a
		// refused HTTP/2 stream may have had some of a recorded body read, which only a
		// complete recording can give back.
		return pol.On&RetryConnectFailure != 0 && (!call.Recorder.touched() || call.replayable())
	case !call.Idempotent || !call.replayable():
		return false
	case errors.Is(err, ErrReset):
		return pol.On&RetryReset != 0
	case errors.Is(err, ErrTimeout):
		return pol.On&RetryTimeout != 0
	}
	return false
}

// classify maps transport errors onto the package's sentinels. It keeps the original error in
// the chain for logs. An error that already carries a sentinel is the transport's own verdict
// (see Transport.Do) and is kept as it is.
func classify(err error) error {
	if err == nil {
		return nil
	}
	if errors.Is(err, ErrConnect) || errors.Is(err, ErrReset) || errors.Is(err, ErrTimeout) ||
		errors.Is(err, ErrOverflow) || errors.Is(err, ErrResponseTooLarge) || errors.Is(err, ErrProtocol) {
		return err
	}
	var (
		opErr   *net.OpError
		dialErr *fasthttp.ErrDialWithUpstream
		dnsErr  *net.DNSError
		addrErr *net.AddrError
		hsErr   *handshakeError
	)
	switch {
	case errors.Is(err, fasthttp.ErrNoFreeConns):
		return fmt.Errorf("%w: %w", ErrOverflow, err)
	case errors.Is(err, fasthttp.ErrDialTimeout),
		errors.As(err, &opErr) && opErr.Op == "dial",
		// Everything the dialer returns, and name resolution (hostname endpoints), fails
		// before a byte is sent, so it is a connect failure whatever the cause.
		errors.As(err, &dialErr), errors.As(err, &dnsErr), errors.As(err, &addrErr), errors.As(err, &hsErr),
		errors.Is(err, syscall.ECONNREFUSED):
		return fmt.Errorf("%w: %w", ErrConnect, err)
	case errors.Is(err, fasthttp.ErrTimeout), isTimeout(err):
		return fmt.Errorf("%w: %w", ErrTimeout, err)
	case errors.Is(err, fasthttp.ErrConnectionClosed), errors.Is(err, io.EOF),
		errors.Is(err, io.ErrUnexpectedEOF), errors.Is(err, syscall.ECONNRESET), errors.Is(err, syscall.EPIPE):
		return fmt.Errorf("%w: %w", ErrReset, err)
	case errors.Is(err, fasthttp.ErrBodyTooLarge):
		return fmt.Errorf("%w: %w", ErrResponseTooLarge, err)
	}
	return fmt.Errorf("%w: %w", ErrProtocol, err)
}

func isTimeout(err error) bool {
	if errors.Is(err, fasthttp.ErrDialTimeout) {
		return true
	}
	var t interface{ Timeout() bool }
	return errors.As(err, &t) && t.Timeout()
}

// HostStatus is one host as shown by the admin /clusters endpoint. Healthy is false while the
// host is ejected, its breaker is open or it is marked Down; in panic mode an ejected host is
// still used (Down false) but shown unhealthy.
type HostStatus struct {
	Address  string  `json:"address"`
	Weight   int     `json:"weight"`
	Healthy  bool    `json:"healthy"`
	InFlight int64   `json:"in_flight"`
	EWMAms   float64 `json:"ewma_ms"`
	Requests uint64  `json:"requests"`
	Errors   uint64  `json:"errors"`
	Conns    int     `json:"open_conns"`

	Ejected           bool       `json:"ejected"`
	EjectedUntil      *time.Time `json:"ejected_until,omitempty"`
	Ejections         int        `json:"ejections"` // multiplier of the last ejection (decays while in service)
	ConsecutiveErrors int        `json:"consecutive_errors"`
	Breaker           string     `json:"breaker"` // closed, half-open, open, disabled
}

// Status is a cluster as shown by the admin /clusters endpoint.
type Status struct {
	Name     string       `json:"name"`
	Source   string       `json:"source"`
	Policy   string       `json:"policy"`
	Protocol string       `json:"protocol"` // what the hosts are spoken to in: http1, http2, grpc
	InFlight int64        `json:"in_flight"`
	Ejected  int          `json:"hosts_ejected"`
	Panic    bool         `json:"panic"` // too few healthy hosts: balancing across all
	Hosts    []HostStatus `json:"hosts"`
}

// Status reports the cluster's hosts with their live statistics. It first returns hosts whose
// ejection has ended, so the page never shows an ejection in the past.
func (c *Cluster) Status() Status {
	opts := c.opts.Load()
	c.sweep(opts.now())
	st := c.state.Load()
	proto := opts.Protocol
	if opts.ProtocolFromRegistry {
		proto = Protocol(c.registry.Load())
	}
	out := Status{Name: c.name, Source: st.source, Policy: fmt.Sprintf("%T", opts.Policy), Protocol: proto.String(),
		InFlight: c.inFlight.Load(), Panic: c.panicking.Load(), Hosts: make([]HostStatus, 0, len(st.hosts))}
	if n, ok := opts.Policy.(interface{ Name() string }); ok {
		out.Policy = n.Name()
	}
	for _, h := range st.hosts {
		hs := h.health
		b := hs.breaker.Load()
		s := HostStatus{
			Address:           h.Address,
			Weight:            h.Weight,
			InFlight:          h.InFlight(),
			EWMAms:            float64(h.EWMA()) / float64(time.Millisecond),
			Requests:          h.Requests.Load(),
			Errors:            h.Errors.Load(),
			Conns:             h.transport.ConnsCount(),
			Ejections:         int(hs.ejections.Load()),
			ConsecutiveErrors: int(hs.consecutive.Load()),
			Breaker:           stateName(b),
		}
		if u := hs.ejectedUntil.Load(); u != 0 {
			t := time.Unix(0, u).UTC()
			s.Ejected, s.EjectedUntil = true, &t
			out.Ejected++
		}
		s.Healthy = !h.Down() && !s.Ejected && s.Breaker != "open"
		out.Hosts = append(out.Hosts, s)
	}
	return out
}
