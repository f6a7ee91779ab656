package upstream

import (
	"errors"
	"fmt"
	"io"
	"net"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/valyala/fasthttp"

	"github.com/meshgate/meshgate/mesh/lb"
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
)

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
}

// DefaultRetry is one retry on connect failure or reset-before-response: a dying instance loses
// no idempotent request, and nothing that may have reached an upstream is duplicated.
func DefaultRetry() RetryPolicy {
	return RetryPolicy{Attempts: 2, On: RetryConnectFailure | RetryReset}
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
}

func (o *Options) transportKey() transportKey {
	return transportKey{o.ConnectTimeout, o.IdleTimeout, o.MaxConnsPerHost}
}

type transportKey struct {
	connect, idle time.Duration
	maxConns      int
}

// Host is one endpoint with its transport.
type Host struct {
	lb.Host
	client *fasthttp.HostClient
	key    transportKey
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
	rebuildMu sync.Mutex
	opts      atomic.Pointer[Options]
	state     atomic.Pointer[state]
	metrics   clusterMetrics
}

// Name is the service name.
func (c *Cluster) Name() string { return c.name }

// Options returns the cluster's current options.
func (c *Cluster) Options() *Options { return c.opts.Load() }

// Call carries one request's routing inputs and reports what happened.
type Call struct {
	Hash       uint64       // ring_hash key
	Deadline   time.Time    // the whole request must finish by then (zero: none)
	Retry      *RetryPolicy // nil: the cluster's policy
	Replayable bool         // the body is fully buffered, so the request may be sent again
	Idempotent bool         // the method is safe to repeat (GET, HEAD, OPTIONS, PUT, DELETE, TRACE)

	// Outputs.
	Address  string        // last host tried
	Attempts int           // tries made
	Elapsed  time.Duration // time spent waiting on upstreams
}

// Do sends req to a host chosen by the balancer and fills resp, retrying per policy. On success
// resp may hold an open body stream: the caller must consume or close it (CloseBodyStream).
// Do never keeps req or resp after it returns.
func (c *Cluster) Do(req *fasthttp.Request, resp *fasthttp.Response, call *Call) error {
	opts := c.opts.Load()
	pol := call.Retry
	if pol == nil {
		pol = &opts.Retry
	}
	attempts := max(pol.Attempts, 1)
	exclude := -1
	var err error
	for try := 0; try < attempts; try++ {
		st := c.state.Load()
		idx := st.picker.Pick(call.Hash, exclude)
		if idx < 0 {
			c.metrics.noHosts.Inc()
			return ErrNoHosts
		}
		h := st.hosts[idx]
		exclude = idx
		call.Address = h.Address
		call.Attempts = try + 1
		if try > 0 {
			c.metrics.retries.Inc()
		}

		deadline := call.Deadline
		if pol.PerTryTimeout > 0 {
			if d := time.Now().Add(pol.PerTryTimeout); deadline.IsZero() || d.Before(deadline) {
				deadline = d
			}
		}
		start := time.Now()
		h.Begin()
		if deadline.IsZero() {
			err = h.client.Do(req, resp)
		} else {
			err = h.client.DoDeadline(req, resp, deadline)
			// fasthttp leaves the timeout it derived from the deadline in req, where a later
			// Do without one would silently apply it again.
			req.SetTimeout(0)
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
		h.End(took, err != nil || resp.StatusCode() >= 500)

		if err == nil {
			code := resp.StatusCode()
			if try+1 < attempts && call.Replayable && call.Idempotent && pol.retryStatus(code) && !expired(call.Deadline) {
				// Discard this answer: its connection is closed rather than drained, which is
				// cheaper than reading a body nobody will see.
				_ = resp.CloseBodyStream()
				continue
			}
			return nil
		}
		c.metrics.count(err)
		if try+1 >= attempts || expired(call.Deadline) || !retryable(err, pol, call) {
			return err
		}
	}
	return err
}

func expired(d time.Time) bool { return !d.IsZero() && !time.Now().Before(d) }

func retryable(err error, pol *RetryPolicy, call *Call) bool {
	switch {
	case errors.Is(err, ErrConnect):
		// Nothing reached the upstream, so even a streamed body was not consumed.
		return pol.On&RetryConnectFailure != 0
	case !call.Replayable || !call.Idempotent:
		return false
	case errors.Is(err, ErrReset):
		return pol.On&RetryReset != 0
	case errors.Is(err, ErrTimeout):
		return pol.On&RetryTimeout != 0
	}
	return false
}

// classify maps transport errors onto the package's sentinels. It keeps the original error in
// the chain for logs.
func classify(err error) error {
	if err == nil {
		return nil
	}
	var (
		opErr   *net.OpError
		dialErr *fasthttp.ErrDialWithUpstream
		dnsErr  *net.DNSError
		addrErr *net.AddrError
	)
	switch {
	case errors.Is(err, fasthttp.ErrNoFreeConns):
		return fmt.Errorf("%w: %w", ErrOverflow, err)
	case errors.Is(err, fasthttp.ErrDialTimeout),
		errors.As(err, &opErr) && opErr.Op == "dial",
		// Everything the dialer returns, and name resolution (hostname endpoints), fails
		// before a byte is sent, so it is a connect failure whatever the cause.
		errors.As(err, &dialErr), errors.As(err, &dnsErr), errors.As(err, &addrErr),
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

// HostStatus is one host as shown by the admin /clusters endpoint.
type HostStatus struct {
	Address  string  `json:"address"`
	Weight   int     `json:"weight"`
	Healthy  bool    `json:"healthy"`
	InFlight int64   `json:"in_flight"`
	EWMAms   float64 `json:"ewma_ms"`
	Requests uint64  `json:"requests"`
	Errors   uint64  `json:"errors"`
	Conns    int     `json:"open_conns"`
}

// Status is a cluster as shown by the admin /clusters endpoint.
type Status struct {
	Name   string       `json:"name"`
	Source string       `json:"source"`
	Policy string       `json:"policy"`
	Hosts  []HostStatus `json:"hosts"`
}

// Status reports the cluster's hosts with their live statistics.
func (c *Cluster) Status() Status {
	st := c.state.Load()
	out := Status{Name: c.name, Source: st.source, Policy: fmt.Sprintf("%T", c.opts.Load().Policy), Hosts: make([]HostStatus, 0, len(st.hosts))}
	if n, ok := c.opts.Load().Policy.(interface{ Name() string }); ok {
		out.Policy = n.Name()
	}
	for _, h := range st.hosts {
		out.Hosts = append(out.Hosts, HostStatus{
			Address:  h.Address,
			Weight:   h.Weight,
			Healthy:  !h.Down(),
			InFlight: h.InFlight(),
			EWMAms:   float64(h.EWMA()) / float64(time.Millisecond),
			Requests: h.Requests.Load(),
			Errors:   h.Errors.Load(),
			Conns:    h.client.ConnsCount(),
		})
	}
	return out
}
