package upstream

import (
	"errors"
	"fmt"
	"net"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/rs/zerolog"
	"github.com/valyala/fasthttp"

	"github.com/meshgate/meshgate/discovery"
	"github.com/meshgate/meshgate/mesh/lb"
)

// The tests in this file run the cluster (balancer, retries, outlier detection, breakers,
// failure attribution, host lifecycle) over a second Transport: one that answers from a script
// instead of a network. They prove the seam: nothing above Transport knows the wire protocol.

// answer is one scripted result of a try: an error, or a response with status.
type answer struct {
	status int
	err    error
}

// sentTry is what a scripted transport was asked to send.
type sentTry struct {
	method, uri, budget string
	deadline            time.Time
}

// scriptedTransport answers tries from its script in order, repeating the last answer, and
// records each try.
type scriptedTransport struct {
	addr string

	mu     sync.Mutex
	script []answer
	tries  []sentTry
	closed int // CloseIdleConnections calls
}

var _ Transport = (*scriptedTransport)(nil)

func (s *scriptedTransport) Do(req *fasthttp.Request, resp *fasthttp.Response, deadline, _ time.Time) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.tries = append(s.tries, sentTry{
		method: string(req.Header.Method()), uri: string(req.RequestURI()),
		budget: string(req.Header.Peek(BudgetHeader)), deadline: deadline,
	})
	a := answer{status: fasthttp.StatusOK}
	if len(s.script) > 0 {
		a = s.script[min(len(s.tries), len(s.script))-1]
	}
	if a.err != nil {
		return a.err
	}
	resp.Reset()
	resp.SetStatusCode(a.status)
	resp.SetBodyStream(strings.NewReader("from "+s.addr), -1) // as Transport.Do delivers a body
	return nil
}

// ConnsCount reports the number of tries, so a test can see that Status asks the transport.
func (s *scriptedTransport) ConnsCount() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.tries)
}

func (s *scriptedTransport) CloseIdleConnections() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.closed++
}

func (s *scriptedTransport) sent() []sentTry {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]sentTry(nil), s.tries...)
}

func (s *scriptedTransport) closes() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.closed
}

// scriptedNet is a Manager's NewTransport: it builds a scriptedTransport per host with the
// script set for its address, and remembers every transport it built.
type scriptedNet struct {
	mu      sync.Mutex
	scripts map[string][]answer
	built   []*scriptedTransport
	opts    []Options // the options each transport was built with
}

func (n *scriptedNet) newTransport(addr string, opts *Options) Transport {
	n.mu.Lock()
	defer n.mu.Unlock()
	t := &scriptedTransport{addr: addr, script: n.scripts[addr]}
	n.built = append(n.built, t)
	n.opts = append(n.opts, *opts)
	return t
}

// transportsFor lists the transports built for addr, oldest first.
func (n *scriptedNet) transportsFor(addr string) []*scriptedTransport {
	n.mu.Lock()
	defer n.mu.Unlock()
	var out []*scriptedTransport
	for _, t := range n.built {
		if t.addr == addr {
			out = append(out, t)
		}
	}
	return out
}

// scriptedManager is a Manager whose hosts all use scripted transports.
func scriptedManager(t *testing.T, scripts map[string][]answer) (*Manager, *scriptedNet) {
	t.Helper()
	n := &scriptedNet{scripts: scripts}
	m, err := NewManager(ManagerOptions{Registerer: prometheus.NewRegistry(), Logger: zerolog.Nop(), NewTransport: n.newTransport})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(m.Close)
	return m, n
}

// transportOf is the scripted transport of addr's current host in c.
func transportOf(t *testing.T, c *Cluster, addr string) *scriptedTransport {
	t.Helper()
	h := hostsOf(c)[addr]
	if h == nil {
		t.Fatalf("%s is not a host of %s", addr, c.Name())
	}
	return h.transport.(*scriptedTransport)
}

const (
	hostA = "10.0.0.1:80"
	hostB = "10.0.0.2:80"
	hostC = "10.0.0.3:80"
)

func scripted(status int) []answer { return []answer{{status: status}} }

func failing(err error) []answer { return []answer{{err: err}} }

// The retry rules, over a transport that is not fasthttp: what may be re-sent, to which host,
// and which answer or error the caller gets.
func TestTransportSeamRetries(t *testing.T) {
	t.Parallel()
	refused := &net.OpError{Op: "dial", Net: "h2", Err: syscall.ECONNREFUSED}
	tests := []struct {
		name       string
		a          []answer // hostA is always tried first
		method     string
		replayable bool
		retry      *RetryPolicy
		wantStatus int   // 0: an error is expected
		wantErr    error // with wantStatus 0
		wantA      int   // tries hostA saw
		wantB      int
	}{
		{"a transport's own connect sentinel is retried for POST", failing(fmt.Errorf("%w: stream refused", ErrConnect)),
			fasthttp.MethodPost, true, nil, 200, nil, 1, 1},
		{"a network error is classified and retried for POST", failing(refused),
			fasthttp.MethodPost, true, nil, 200, nil, 1, 1},
		{"a streamed body is still retried after a connect failure", failing(fmt.Errorf("%w: refused", ErrConnect)),
			fasthttp.MethodPost, false, nil, 200, nil, 1, 1},
		{"a reset is not retried for POST", failing(fmt.Errorf("%w: rst_stream", ErrReset)),
			fasthttp.MethodPost, true, nil, 0, ErrReset, 1, 0},
		{"a reset is retried for GET", failing(fmt.Errorf("%w: rst_stream", ErrReset)),
			fasthttp.MethodGet, true, nil, 200, nil, 1, 1},
		{"a reset with a streamed body is not retried", failing(fmt.Errorf("%w: rst_stream", ErrReset)),
			fasthttp.MethodGet, false, nil, 0, ErrReset, 1, 0},
		{"a timeout is retried only when the policy says so", failing(fmt.Errorf("%w: scripted", ErrTimeout)),
			fasthttp.MethodGet, true, nil, 0, ErrTimeout, 1, 0},
		{"a timeout under a timeout policy goes to another host", failing(fmt.Errorf("%w: scripted", ErrTimeout)),
			fasthttp.MethodGet, true, &RetryPolicy{Attempts: 2, On: RetryTimeout}, 200, nil, 1, 1},
		{"a retryable status is retried", scripted(503),
			fasthttp.MethodGet, true, &RetryPolicy{Attempts: 2, On: RetryGatewayError}, 200, nil, 1, 1},
		{"a status outside the policy is the answer", scripted(500),
			fasthttp.MethodGet, true, &RetryPolicy{Attempts: 2, On: RetryGatewayError}, 500, nil, 1, 0},
		{"an unknown transport error is a protocol error, not retried", failing(errors.New("h2: bad frame")),
			fasthttp.MethodGet, true, nil, 0, ErrProtocol, 1, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			m, _ := scriptedManager(t, map[string][]answer{hostA: tt.a, hostB: scripted(200)})
			c := newCluster(t, m, plain(Options{Policy: preferFirst{hostA}}), hostA, hostB)
			idempotent := tt.method == fasthttp.MethodGet
			call := &Call{Replayable: tt.replayable, Idempotent: idempotent, Retry: tt.retry}
			code, body, err := do(t, c, tt.method, call)
			if tt.wantStatus == 0 {
				if !errors.Is(err, tt.wantErr) {
					t.Fatalf("err = %v (status %d), want %v", err, code, tt.wantErr)
				}
				// A transport's own sentinel is its verdict: classify must not add another.
				if tt.wantErr != ErrProtocol && errors.Is(err, ErrProtocol) {
					t.Fatalf("err = %v: a %v from the transport was also made a protocol error", err, tt.wantErr)
				}
			} else if err != nil || code != tt.wantStatus {
				t.Fatalf("status %d err %v, want %d", code, err, tt.wantStatus)
			}
			a, b := transportOf(t, c, hostA).sent(), transportOf(t, c, hostB).sent()
			if len(a) != tt.wantA || len(b) != tt.wantB {
				t.Fatalf("tries: %s %d, %s %d; want %d, %d", hostA, len(a), hostB, len(b), tt.wantA, tt.wantB)
			}
			if call.Attempts != tt.wantA+tt.wantB {
				t.Fatalf("call.Attempts = %d, want %d", call.Attempts, tt.wantA+tt.wantB)
			}
			if tt.wantB > 0 && (call.Address != hostB || body != "from "+hostB) {
				t.Fatalf("answered by %s (%q), want %s", call.Address, body, hostB)
			}
			for _, s := range append(a, b...) {
				if s.method != tt.method || s.uri != "/path?q=1" {
					t.Fatalf("transport was sent %s %s, want %s /path?q=1", s.method, s.uri, tt.method)
				}
			}
		})
	}
}

// Every try hands the transport its own deadline (the per-try timeout when earlier than the
// request's) and carries the matching budget header; without a deadline neither is set.
func TestTransportSeamDeadlines(t *testing.T) {
	t.Parallel()
	m, _ := scriptedManager(t, map[string][]answer{hostA: failing(fmt.Errorf("%w: scripted", ErrTimeout))})
	c := newCluster(t, m, plain(Options{Policy: preferFirst{hostA}}), hostA, hostB)

	start := time.Now()
	overall := start.Add(10 * time.Second)
	call := &Call{Replayable: true, Idempotent: true, Deadline: overall,
		Retry: &RetryPolicy{Attempts: 2, PerTryTimeout: 2 * time.Second, On: RetryTimeout}}
	if code, _, err := do(t, c, fasthttp.MethodGet, call); err != nil || code != 200 {
		t.Fatalf("status %d err %v", code, err)
	}
	for _, addr := range []string{hostA, hostB} {
		s := transportOf(t, c, addr).sent()
		if len(s) != 1 {
			t.Fatalf("%s saw %d tries, want 1", addr, len(s))
		}
		d := s[0].deadline
		if d.Before(start.Add(2*time.Second)) || !d.Before(start.Add(3*time.Second)) {
			t.Fatalf("%s: try deadline %v after start, want the 2s per-try timeout", addr, d.Sub(start))
		}
		ms, err := strconv.Atoi(s[0].budget)
		if err != nil || ms < 1000 || ms > 2000 {
			t.Fatalf("%s: budget header %q, want about 2000 ms", addr, s[0].budget)
		}
	}

	if code, _, err := do(t, c, fasthttp.MethodGet, &Call{Retry: &RetryPolicy{Attempts: 1}, Idempotent: true}); err == nil || code != 0 {
		t.Fatalf("status %d err %v, want hostA's timeout", code, err)
	}
	s := transportOf(t, c, hostA).sent()
	if last := s[len(s)-1]; !last.deadline.IsZero() || last.budget != "" {
		t.Fatalf("without a deadline the try had deadline %v and budget %q", last.deadline, last.budget)
	}
}

// clientBroke is a streamed request body whose client failed.
type clientBroke struct{}

func (clientBroke) ClientFailed() bool { return true }

// Outlier detection over the scripted transport: a host answering 5xx is ejected after
// consecutive_errors tries and gets no traffic until its ejection ends; tries whose failure is
// the client's or the caller's never count against a host.
func TestTransportSeamOutlier(t *testing.T) {
	t.Parallel()
	t.Run("ejects and returns", func(t *testing.T) {
		t.Parallel()
		clock := newFakeClock()
		m, _ := scriptedManager(t, map[string][]answer{hostA: scripted(503)})
		c := newCluster(t, m, Options{Now: clock.Now, Policy: lb.NewRoundRobin()}, hostA, hostB, hostC)
		a := transportOf(t, c, hostA)
		once := func() (int, error) {
			code, _, err := do(t, c, fasthttp.MethodGet, &Call{Idempotent: true, Replayable: true, Retry: &RetryPolicy{Attempts: 1}})
			return code, err
		}
		for i := 0; len(a.sent()) < DefaultConsecutiveErrors; i++ {
			if i > 10*DefaultConsecutiveErrors {
				t.Fatalf("round robin sent %s only %d of %d requests", hostA, len(a.sent()), i)
			}
			if _, err := once(); err != nil {
				t.Fatal(err)
			}
		}
		hs := hostStatus(t, c, hostA)
		if !hs.Ejected || hs.Healthy || hs.ConsecutiveErrors != DefaultConsecutiveErrors {
			t.Fatalf("after %d 503s: %+v; want ejected", DefaultConsecutiveErrors, hs)
		}
		if hs.Conns != DefaultConsecutiveErrors {
			t.Fatalf("status open_conns = %d, want the transport's ConnsCount %d", hs.Conns, DefaultConsecutiveErrors)
		}
		for range 30 {
			if code, err := once(); err != nil || code != 200 {
				t.Fatalf("with %s ejected: status %d err %v", hostA, code, err)
			}
		}
		if n := len(a.sent()); n != DefaultConsecutiveErrors {
			t.Fatalf("ejected host got %d more tries", n-DefaultConsecutiveErrors)
		}
		clock.Advance(DefaultBaseEjectionTime + time.Second)
		for i := 0; len(a.sent()) == DefaultConsecutiveErrors; i++ {
			if i > 10 {
				t.Fatalf("%s got no try after its ejection ended", hostA)
			}
			_, _ = once()
		}
		if hs := hostStatus(t, c, hostA); hs.Ejected || hs.Ejections != 1 {
			t.Fatalf("after the ejection time: %+v; want returned", hs)
		}
	})

	t.Run("failure attribution", func(t *testing.T) {
		t.Parallel()
		timeout := fmt.Errorf("%w: scripted", ErrTimeout)
		reset := fmt.Errorf("%w: scripted", ErrReset)
		deadline := time.Now().Add(time.Minute)
		tests := []struct {
			name    string
			err     error
			call    Call
			wantErr error
			counted bool // the try counts against the host
		}{
			{"our own timeout counts", timeout, Call{Deadline: deadline}, ErrTimeout, true},
			{"the caller's deadline does not", timeout, Call{Deadline: deadline, CallerDeadline: deadline}, ErrTimeout, false},
			{"a reset counts", reset, Call{}, ErrReset, true},
			{"a reset while the client's body broke does not", reset, Call{Body: clientBroke{}}, ErrClientBody, false},
			{"our own connection limit does not", fmt.Errorf("%w: scripted", ErrOverflow), Call{}, ErrOverflow, false},
		}
		for _, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				t.Parallel()
				m, _ := scriptedManager(t, map[string][]answer{hostA: failing(tt.err)})
				c := newCluster(t, m, Options{}, hostA)
				call := tt.call
				call.Retry = &RetryPolicy{Attempts: 1}
				if _, _, err := do(t, c, fasthttp.MethodPost, &call); !errors.Is(err, tt.wantErr) {
					t.Fatalf("err = %v, want %v", err, tt.wantErr)
				}
				want := 0
				if tt.counted {
					want = 1
				}
				if hs := hostStatus(t, c, hostA); hs.ConsecutiveErrors != want {
					t.Fatalf("error streak %d, want %d", hs.ConsecutiveErrors, want)
				}
			})
		}
	})
}

// A host's transport is built once and kept while its transport settings are unchanged; a new
// setting builds a new one and closes the old one's idle connections, as does a host leaving
// the cluster or the cluster leaving the Manager.
func TestTransportSeamLifecycle(t *testing.T) {
	t.Parallel()
	m, n := scriptedManager(t, nil)
	opts := Options{Name: "svc", Policy: lb.NewRoundRobin(), ConnectTimeout: time.Second}
	c := newCluster(t, m, opts, hostA, hostB)
	if got := len(n.transportsFor(hostA)); got != 1 {
		t.Fatalf("%d transports built for %s, want 1", got, hostA)
	}
	first := transportOf(t, c, hostA)

	// New weight, same settings: the same transport.
	c.Apply(discovery.Set{Endpoints: []discovery.Endpoint{{Address: hostA, Weight: 3}, {Address: hostB, Weight: 1}}})
	if transportOf(t, c, hostA) != first || len(n.transportsFor(hostA)) != 1 || first.closes() != 0 {
		t.Fatal("a weight change replaced or closed the transport")
	}

	// A transport setting: a new transport, built with it; the old one is closed.
	opts.MaxConnsPerHost = 7
	if _, err := m.Ensure(opts); err != nil {
		t.Fatal(err)
	}
	built := n.transportsFor(hostA)
	if len(built) != 2 || transportOf(t, c, hostA) != built[1] || first.closes() != 1 {
		t.Fatalf("after a transport change: %d built, old closed %d times", len(built), first.closes())
	}
	n.mu.Lock()
	lastOpts := n.opts[len(n.opts)-1]
	n.mu.Unlock()
	if lastOpts.MaxConnsPerHost != 7 {
		t.Fatalf("transport built with max conns %d, want 7", lastOpts.MaxConnsPerHost)
	}

	// A host leaving closes its transport; the one staying keeps it.
	b := transportOf(t, c, hostB)
	c.Apply(set(hostB))
	if built[1].closes() != 1 || b.closes() != 0 || transportOf(t, c, hostB) != b {
		t.Fatalf("after %s left: its transport closed %d times, %s's %d", hostA, built[1].closes(), hostB, b.closes())
	}

	// The cluster leaving the Manager closes the rest.
	m.Retain(nil)
	if b.closes() != 1 {
		t.Fatalf("after Retain(nil) %s's transport closed %d times, want 1", hostB, b.closes())
	}
}

// okTransport answers every try with 200 and records nothing, so it adds no allocation.
type okTransport struct{}

func (okTransport) Do(_ *fasthttp.Request, resp *fasthttp.Response, _, _ time.Time) error {
	resp.SetStatusCode(fasthttp.StatusOK)
	return nil
}
func (okTransport) ConnsCount() int       { return 0 }
func (okTransport) CloseIdleConnections() {}

// Cluster.Do itself (balancer, breaker, outlier accounting, the retry budget and the budget
// header) allocates nothing per request; a transport's own allocations are its business (the
// fasthttp one's are bounded in gateway/proxy's TestServeAllocations).
func TestClusterDoDoesNotAllocate(t *testing.T) {
	if raceEnabled {
		t.Skip("the race detector changes allocation counts")
	}
	m, err := NewManager(ManagerOptions{Registerer: prometheus.NewRegistry(), Logger: zerolog.Nop(),
		NewTransport: func(string, *Options) Transport { return okTransport{} }})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(m.Close)
	c := newCluster(t, m, Options{}, hostA, hostB)
	req := fasthttp.AcquireRequest()
	defer fasthttp.ReleaseRequest(req)
	resp := fasthttp.AcquireResponse()
	defer fasthttp.ReleaseResponse(resp)
	call := &Call{}
	f := func() {
		prepare(req, fasthttp.MethodGet, "")
		*call = Call{Deadline: time.Now().Add(time.Second), Idempotent: true, Replayable: true}
		if err := c.Do(req, resp, call); err != nil || resp.StatusCode() != 200 {
			t.Fatalf("status %d err %v", resp.StatusCode(), err)
		}
	}
	for range 10 {
		f()
	}
	if n := testing.AllocsPerRun(200, f); n != 0 {
		t.Fatalf("Cluster.Do allocates %.1f times per request", n)
	}
}
