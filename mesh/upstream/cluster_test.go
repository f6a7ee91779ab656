package upstream

import (
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/valyala/fasthttp"

	"github.com/meshgate/meshgate/mesh/lb"
)

func TestDoHappyPath(t *testing.T) {
	t.Parallel()
	m, _ := newManager(t)
	up := startServer(t, nil)
	c := newCluster(t, m, Options{}, up.addr)

	call := &Call{Idempotent: true, Replayable: true}
	code, body, err := do(t, c, fasthttp.MethodPost, call)
	if err != nil {
		t.Fatalf("Do: %v", err)
	}
	if code != http.StatusOK || body != "ok from "+up.addr {
		t.Fatalf("got %d %q", code, body)
	}
	if call.Address != up.addr || call.Attempts != 1 || call.Elapsed <= 0 {
		t.Fatalf("call outputs = %q attempts %d elapsed %v", call.Address, call.Attempts, call.Elapsed)
	}
	if got := up.lastBody(t); got != "payload" {
		t.Fatalf("upstream body = %q", got)
	}
	h := hostsOf(c)[up.addr]
	if h.Requests.Load() != 1 || h.Errors.Load() != 0 || h.InFlight() != 0 || h.EWMA() <= 0 {
		t.Fatalf("host stats: requests %d errors %d inflight %d ewma %v",
			h.Requests.Load(), h.Errors.Load(), h.InFlight(), h.EWMA())
	}
}

func TestRetryConnectFailure(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name       string
		method     string
		replayable bool
		idempotent bool
		on         uint32
		wantErr    error
	}{
		{"get", fasthttp.MethodGet, true, true, RetryConnectFailure, nil},
		{"post", fasthttp.MethodPost, true, false, RetryConnectFailure, nil},
		{"post streamed body", fasthttp.MethodPost, false, false, RetryConnectFailure, nil},
		{"get streamed body", fasthttp.MethodGet, false, true, RetryConnectFailure, nil},
		{"not enabled", fasthttp.MethodGet, true, true, RetryReset, ErrConnect},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			m, _ := newManager(t)
			dead := closedAddr(t)
			up := startServer(t, nil)
			c := newCluster(t, m, Options{Policy: preferFirst{dead}}, dead, up.addr)

			req := fasthttp.AcquireRequest()
			defer fasthttp.ReleaseRequest(req)
			resp := fasthttp.AcquireResponse()
			defer fasthttp.ReleaseResponse(resp)
			prepare(req, tt.method, "")
			if tt.replayable {
				req.SetBodyString("payload")
			} else {
				// A stream can be read once: the retry proves the failed try never read it.
				req.SetBodyStream(strings.NewReader("payload"), -1)
			}
			call := &Call{Idempotent: tt.idempotent, Replayable: tt.replayable,
				Retry: &RetryPolicy{Attempts: 2, On: tt.on}}
			err := c.Do(req, resp, call)
			if tt.wantErr != nil {
				if !errors.Is(err, tt.wantErr) || call.Attempts != 1 || up.count() != 0 {
					t.Fatalf("err %v attempts %d hits %d; want %v after 1 try", err, call.Attempts, up.count(), tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("Do: %v", err)
			}
			if resp.StatusCode() != http.StatusOK || call.Attempts != 2 || call.Address != up.addr {
				t.Fatalf("status %d attempts %d address %s", resp.StatusCode(), call.Attempts, call.Address)
			}
			if up.count() != 1 || up.lastBody(t) != "payload" {
				t.Fatalf("upstream hits %d body %q", up.count(), up.lastBody(t))
			}
			if got := seriesValue(t, m, "errors", "svc", "connect"); got != 1 {
				t.Fatalf("connect errors = %v, want 1", got)
			}
			if got := seriesValue(t, m, "retries", "svc"); got != 1 {
				t.Fatalf("retries = %v, want 1", got)
			}
			if h := hostsOf(c)[dead]; h.Errors.Load() != 1 {
				t.Fatalf("dead host errors = %d, want 1", h.Errors.Load())
			}
		})
	}
}

func TestRetryReset(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name       string
		method     string
		replayable bool
		idempotent bool
		on         uint32
		retried    bool
	}{
		{"idempotent replayable", fasthttp.MethodGet, true, true, RetryReset, true},
		{"put replayable", fasthttp.MethodPut, true, true, RetryReset | RetryConnectFailure, true},
		{"post", fasthttp.MethodPost, true, false, RetryReset | RetryConnectFailure, false},
		{"not replayable", fasthttp.MethodGet, false, true, RetryReset, false},
		{"not enabled", fasthttp.MethodGet, true, true, RetryConnectFailure, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			m, _ := newManager(t)
			rst := resetServer(t)
			up := startServer(t, nil)
			c := newCluster(t, m, Options{Policy: preferFirst{rst.addr}}, rst.addr, up.addr)

			call := &Call{Idempotent: tt.idempotent, Replayable: tt.replayable,
				Retry: &RetryPolicy{Attempts: 3, On: tt.on}}
			code, _, err := do(t, c, tt.method, call)
			waitFor(t, "the reset server to read the request", func() bool { return rst.count() == 1 })
			if tt.retried {
				if err != nil || code != http.StatusOK || call.Attempts != 2 || up.count() != 1 {
					t.Fatalf("err %v code %d attempts %d hits %d; want a retry to %s", err, code, call.Attempts, up.count(), up.addr)
				}
				return
			}
			if !errors.Is(err, ErrReset) {
				t.Fatalf("err = %v, want ErrReset", err)
			}
			if call.Attempts != 1 || up.count() != 0 || call.Address != rst.addr {
				t.Fatalf("attempts %d hits %d address %s; want no retry", call.Attempts, up.count(), call.Address)
			}
			if got := seriesValue(t, m, "errors", "svc", "reset"); got != 1 {
				t.Fatalf("reset errors = %v, want 1", got)
			}
		})
	}
}

func TestRetryTimeout(t *testing.T) {
	t.Parallel()
	const perTry = 100 * time.Millisecond
	tests := []struct {
		name       string
		method     string
		idempotent bool
		on         uint32
		retried    bool
	}{
		{"enabled idempotent", fasthttp.MethodGet, true, RetryTimeout, true},
		{"not enabled", fasthttp.MethodGet, true, RetryConnectFailure | RetryReset, false},
		{"enabled post", fasthttp.MethodPost, false, RetryTimeout | RetryConnectFailure, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			m, _ := newManager(t)
			slow := slowServer(t)
			up := startServer(t, nil)
			c := newCluster(t, m, Options{Policy: preferFirst{slow.addr}}, slow.addr, up.addr)
			// Pooled connections: the per-try timeout must hit the response wait, not a dial.
			warm(t, c, slow.addr, up.addr)

			call := &Call{Idempotent: tt.idempotent, Replayable: true,
				Retry: &RetryPolicy{Attempts: 2, PerTryTimeout: perTry, On: tt.on}}
			code, _, err := do(t, c, tt.method, call)
			if call.Elapsed < perTry {
				t.Fatalf("elapsed %v is shorter than the per-try timeout", call.Elapsed)
			}
			if tt.retried {
				if err != nil || code != http.StatusOK || call.Attempts != 2 || up.count() != 1 {
					t.Fatalf("err %v code %d attempts %d hits %d; want a retry", err, code, call.Attempts, up.count())
				}
				return
			}
			if !errors.Is(err, ErrTimeout) || call.Attempts != 1 || up.count() != 0 {
				t.Fatalf("err %v attempts %d hits %d; want ErrTimeout after 1 try", err, call.Attempts, up.count())
			}
			if got := seriesValue(t, m, "errors", "svc", "timeout"); got != 1 {
				t.Fatalf("timeout errors = %v, want 1", got)
			}
		})
	}
}

// A request whose per-try timeout expired must not leave that timeout on the request for a
// later Do without one (fasthttp keeps it in the Request).
func TestNoStaleTimeoutOnReusedRequest(t *testing.T) {
	t.Parallel()
	m, _ := newManager(t)
	release := make(chan struct{})
	up := startServer(t, func(_ http.ResponseWriter, r *http.Request) {
		if r.URL.Query().Get("q") == "wait" {
			select {
			case <-release:
			case <-r.Context().Done():
			}
		}
	})
	c := newCluster(t, m, Options{}, up.addr)

	const perTry = 300 * time.Millisecond
	req := fasthttp.AcquireRequest()
	defer fasthttp.ReleaseRequest(req)
	resp := fasthttp.AcquireResponse()
	defer fasthttp.ReleaseResponse(resp)
	prepare(req, fasthttp.MethodGet, "")
	if err := c.Do(req, resp, &Call{Retry: &RetryPolicy{Attempts: 1, PerTryTimeout: perTry}}); err != nil {
		t.Fatal(err)
	}
	// Now without any deadline: it must wait for the upstream however long it takes.
	req.SetRequestURI("/path?q=wait")
	done := make(chan error, 1)
	go func() { done <- c.Do(req, resp, &Call{Retry: &RetryPolicy{Attempts: 1}}) }()
	select {
	case err := <-done:
		t.Fatalf("Do without a deadline returned before the upstream answered: %v", err)
	case <-time.After(3 * perTry):
	}
	close(release)
	if err := <-done; err != nil {
		t.Fatalf("Do without a deadline: %v", err)
	}
}

func TestRetryStatus(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name       string
		pol        RetryPolicy
		first      int // status of the first host; the second answers 200
		idempotent bool
		retried    bool
	}{
		{"statuses 503", RetryPolicy{Attempts: 2, Statuses: []int{503}}, 503, true, true},
		{"5xx", RetryPolicy{Attempts: 2, On: Retry5xx}, 500, true, true},
		{"gateway error 502", RetryPolicy{Attempts: 2, On: RetryGatewayError}, 502, true, true},
		{"gateway error skips 500", RetryPolicy{Attempts: 2, On: RetryGatewayError}, 500, true, false},
		{"statuses other code", RetryPolicy{Attempts: 2, Statuses: []int{429}}, 503, true, false},
		{"post", RetryPolicy{Attempts: 2, On: Retry5xx}, 503, false, false},
		{"single attempt", RetryPolicy{Attempts: 1, On: Retry5xx}, 503, true, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			m, _ := newManager(t)
			bad := statusServer(t, tt.first)
			good := startServer(t, nil)
			c := newCluster(t, m, Options{Policy: preferFirst{bad.addr}}, bad.addr, good.addr)

			call := &Call{Idempotent: tt.idempotent, Replayable: true, Retry: &tt.pol}
			code, _, err := do(t, c, fasthttp.MethodGet, call)
			if err != nil {
				t.Fatalf("Do: %v", err)
			}
			want, attempts, goodHits := tt.first, 1, 0
			if tt.retried {
				want, attempts, goodHits = http.StatusOK, 2, 1
			}
			if code != want || call.Attempts != attempts || good.count() != goodHits || bad.count() != 1 {
				t.Fatalf("code %d attempts %d hits bad %d good %d; want %d after %d tries",
					code, call.Attempts, bad.count(), good.count(), want, attempts)
			}
			if h := hostsOf(c)[bad.addr]; h.Errors.Load() != 1 {
				t.Fatalf("a %d counts as a host error; got %d", tt.first, h.Errors.Load())
			}
		})
	}
}

// When every host fails with a retryable status, the last answer goes back to the client.
func TestRetryStatusAllFail(t *testing.T) {
	t.Parallel()
	m, _ := newManager(t)
	a, b := statusServer(t, 503), statusServer(t, 503)
	c := newCluster(t, m, Options{}, a.addr, b.addr)
	call := &Call{Idempotent: true, Replayable: true, Retry: &RetryPolicy{Attempts: 2, Statuses: []int{503}}}
	code, _, err := do(t, c, fasthttp.MethodGet, call)
	if err != nil || code != http.StatusServiceUnavailable {
		t.Fatalf("got %d %v, want the final 503", code, err)
	}
	if call.Attempts != 2 || a.count() != 1 || b.count() != 1 {
		t.Fatalf("attempts %d hits %d/%d; want one try on each host", call.Attempts, a.count(), b.count())
	}
	if got := seriesValue(t, m, "retries", "svc"); got != 1 {
		t.Fatalf("retries = %v", got)
	}
}

func TestAttemptsBound(t *testing.T) {
	t.Parallel()
	tests := []struct {
		attempts, want int
	}{{0, 1}, {1, 1}, {2, 2}, {3, 3}, {5, 5}}
	for _, tt := range tests {
		t.Run(fmt.Sprint(tt.attempts), func(t *testing.T) {
			t.Parallel()
			m, _ := newManager(t)
			ups := []*upstreamServer{statusServer(t, 503), statusServer(t, 503), statusServer(t, 503)}
			c := newCluster(t, m, Options{}, ups[0].addr, ups[1].addr, ups[2].addr)
			call := &Call{Idempotent: true, Replayable: true, Retry: &RetryPolicy{Attempts: tt.attempts, On: Retry5xx}}
			code, _, err := do(t, c, fasthttp.MethodGet, call)
			if err != nil || code != 503 {
				t.Fatalf("got %d %v", code, err)
			}
			total := 0
			for _, u := range ups {
				total += u.count()
			}
			if total != tt.want || call.Attempts != tt.want {
				t.Fatalf("requests sent %d, call.Attempts %d; want %d", total, call.Attempts, tt.want)
			}
		})
	}
}

func TestDeadlineStopsRetries(t *testing.T) {
	t.Parallel()
	m, _ := newManager(t)
	a, b := slowServer(t), slowServer(t)
	c := newCluster(t, m, Options{}, a.addr, b.addr)

	start := time.Now()
	call := &Call{Idempotent: true, Replayable: true, Deadline: start.Add(350 * time.Millisecond),
		Retry: &RetryPolicy{Attempts: 20, PerTryTimeout: 100 * time.Millisecond, On: RetryTimeout | RetryConnectFailure}}
	_, _, err := do(t, c, fasthttp.MethodGet, call)
	took := time.Since(start)
	// Whether the deadline caught the last try waiting for a response or still connecting,
	// the request timed out.
	if !errors.Is(err, ErrTimeout) || errors.Is(err, ErrConnect) {
		t.Fatalf("err = %v, want ErrTimeout", err)
	}
	// Tries of 100, 100, 100 and the 50 left: the deadline, not the 20 attempts, ends the loop.
	if call.Attempts > 5 || took > 2*time.Second {
		t.Fatalf("attempts %d in %v; the deadline should have stopped retrying", call.Attempts, took)
	}
	if call.Attempts < 2 {
		t.Fatalf("attempts %d; the deadline left room for a retry", call.Attempts)
	}

	// A deadline already gone: one try that fails at once, nothing retried.
	call = &Call{Idempotent: true, Replayable: true, Deadline: time.Now().Add(-time.Second),
		Retry: &RetryPolicy{Attempts: 5, On: RetryTimeout}}
	hits := a.count() + b.count()
	if _, _, err := do(t, c, fasthttp.MethodGet, call); !errors.Is(err, ErrTimeout) || call.Attempts != 1 {
		t.Fatalf("expired deadline: err %v attempts %d", err, call.Attempts)
	}
	if a.count()+b.count() != hits {
		t.Fatal("a request past its deadline reached an upstream")
	}
}

// Connects that hang (a black-holed host) are bounded by connect_timeout, by the per-try
// timeout and by the request's deadline. A connect cut short never sent anything, so it is a
// retryable connect failure for every method, unless the request itself ran out of time: then
// it timed out.
func TestConnectCutShort(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name     string
		connect  time.Duration
		perTry   time.Duration
		deadline time.Duration
		want     error
		attempts int
	}{
		{"connect timeout", 100 * time.Millisecond, 0, 0, ErrConnect, 2},
		{"per-try timeout", 5 * time.Second, 100 * time.Millisecond, 5 * time.Second, ErrConnect, 2},
		{"request deadline", 5 * time.Second, 0, 150 * time.Millisecond, ErrTimeout, 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			m, _ := newManager(t)
			c := newCluster(t, m, Options{ConnectTimeout: tt.connect}, blackholeAddr(t))
			call := &Call{Retry: &RetryPolicy{Attempts: 2, PerTryTimeout: tt.perTry, On: RetryConnectFailure}}
			if tt.deadline > 0 {
				call.Deadline = time.Now().Add(tt.deadline)
			}
			start := time.Now()
			_, _, err := do(t, c, fasthttp.MethodPost, call)
			took := time.Since(start)
			if !errors.Is(err, tt.want) || call.Attempts != tt.attempts {
				t.Fatalf("err %v after %d tries; want %v after %d", err, call.Attempts, tt.want, tt.attempts)
			}
			if tt.want == ErrTimeout && errors.Is(err, ErrConnect) {
				t.Fatalf("err %v matches both ErrTimeout and ErrConnect", err)
			}
			if took > 3*time.Second {
				t.Fatalf("took %v; the connect was not bounded", took)
			}
			kind := map[error]string{ErrConnect: "connect", ErrTimeout: "timeout"}[tt.want]
			if got := seriesValue(t, m, "errors", "svc", kind); got != float64(tt.attempts) {
				t.Fatalf("errors{kind=%q} = %v, want %d", kind, got, tt.attempts)
			}
		})
	}
}

// Every policy avoids the host a request already tried when another is available.
func TestRetryGoesToAnotherHost(t *testing.T) {
	t.Parallel()
	for _, name := range lb.Names() {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			pol, err := lb.New(lb.Options{Policy: name})
			if err != nil {
				t.Fatal(err)
			}
			m, _ := newManager(t)
			a, b := statusServer(t, 503), statusServer(t, 503)
			// Resilience off: ejecting a host that answers 503 would leave one host up, and
			// the balancers rightly retry the only host up rather than a Down one.
			c := newCluster(t, m, plain(Options{Policy: pol}), a.addr, b.addr)
			for i := range 20 {
				call := &Call{Hash: uint64(i) * 0x9e3779b97f4a7c15, Idempotent: true, Replayable: true,
					Retry: &RetryPolicy{Attempts: 2, Statuses: []int{503}}}
				if _, _, err := do(t, c, fasthttp.MethodGet, call); err != nil {
					t.Fatal(err)
				}
				if a.count() != i+1 || b.count() != i+1 {
					t.Fatalf("request %d: hits %d/%d; the retry went to the same host", i, a.count(), b.count())
				}
			}
		})
	}
}

func TestNoHosts(t *testing.T) {
	t.Parallel()
	m, _ := newManager(t)
	c, err := m.Ensure(Options{Name: "svc", Policy: lb.NewRoundRobin()})
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := do(t, c, fasthttp.MethodGet, &Call{}); !errors.Is(err, ErrNoHosts) {
		t.Fatalf("before any set: err = %v", err)
	}
	up := startServer(t, nil)
	c.Apply(set(up.addr))
	if _, _, err := do(t, c, fasthttp.MethodGet, &Call{}); err != nil {
		t.Fatal(err)
	}
	c.Apply(set())
	if _, _, err := do(t, c, fasthttp.MethodGet, &Call{}); !errors.Is(err, ErrNoHosts) {
		t.Fatalf("after an empty set: err = %v", err)
	}
	if got := seriesValue(t, m, "errors", "svc", "no_hosts"); got != 2 {
		t.Fatalf("no_hosts = %v, want 2", got)
	}
}

// With MaxConnsPerHost reached fasthttp fails at once (MaxConnWaitTimeout is 0): the request
// is not queued behind the busy connection.
func TestOverflow(t *testing.T) {
	t.Parallel()
	m, _ := newManager(t)
	release := make(chan struct{})
	up := startServer(t, func(_ http.ResponseWriter, r *http.Request) {
		select {
		case <-release:
		case <-r.Context().Done():
		}
	})
	c := newCluster(t, m, Options{MaxConnsPerHost: 1}, up.addr)

	first := make(chan error, 1)
	go func() {
		_, _, err := do(t, c, fasthttp.MethodGet, &Call{})
		first <- err
	}()
	waitFor(t, "the first request to be in flight", func() bool { return up.count() == 1 })

	start := time.Now()
	call := &Call{Idempotent: true, Replayable: true,
		Retry: &RetryPolicy{Attempts: 3, On: RetryConnectFailure | RetryReset | RetryTimeout | Retry5xx}}
	_, _, err := do(t, c, fasthttp.MethodGet, call)
	if !errors.Is(err, ErrOverflow) || !errors.Is(err, fasthttp.ErrNoFreeConns) {
		t.Fatalf("err = %v, want ErrOverflow wrapping fasthttp.ErrNoFreeConns", err)
	}
	if took := time.Since(start); took > time.Second {
		t.Fatalf("overflow took %v; it should fail without waiting", took)
	}
	if call.Attempts != 1 {
		t.Fatalf("attempts = %d; an overflow is not retried", call.Attempts)
	}
	if got := seriesValue(t, m, "errors", "svc", "overflow"); got != 1 {
		t.Fatalf("overflow errors = %v", got)
	}
	close(release)
	if err := <-first; err != nil {
		t.Fatalf("in-flight request: %v", err)
	}
}

// realDialErr is what fasthttp's dialer returns for a refused connection.
func realDialErr(t *testing.T) error {
	t.Helper()
	_, err := (&fasthttp.TCPDialer{}).Dial(closedAddr(t))
	if err == nil {
		t.Fatal("dial to a closed port succeeded")
	}
	return err
}

type timeoutErr struct{}

func (timeoutErr) Error() string   { return "i/o timeout" }
func (timeoutErr) Timeout() bool   { return true }
func (timeoutErr) Temporary() bool { return true }

func TestClassify(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		in   error
		want error
	}{
		{"no free conns", fasthttp.ErrNoFreeConns, ErrOverflow},
		{"dial timeout", fasthttp.ErrDialTimeout, ErrConnect},
		{"dial refused", &net.OpError{Op: "dial", Net: "tcp", Err: os.NewSyscallError("connect", syscall.ECONNREFUSED)}, ErrConnect},
		{"dial timeout op error", &net.OpError{Op: "dial", Net: "tcp", Err: timeoutErr{}}, ErrConnect},
		{"dial no route", &net.OpError{Op: "dial", Net: "tcp", Err: syscall.EHOSTUNREACH}, ErrConnect},
		{"bare refused", fmt.Errorf("dialing: %w", syscall.ECONNREFUSED), ErrConnect},
		{"fasthttp timeout", fasthttp.ErrTimeout, ErrTimeout},
		{"deadline exceeded", os.ErrDeadlineExceeded, ErrTimeout},
		{"read timeout", &net.OpError{Op: "read", Net: "tcp", Err: os.ErrDeadlineExceeded}, ErrTimeout},
		{"timeout interface", timeoutErr{}, ErrTimeout},
		{"connection closed", fasthttp.ErrConnectionClosed, ErrReset},
		{"eof", io.EOF, ErrReset},
		{"unexpected eof", io.ErrUnexpectedEOF, ErrReset},
		{"read reset", &net.OpError{Op: "read", Net: "tcp", Err: os.NewSyscallError("read", syscall.ECONNRESET)}, ErrReset},
		{"write broken pipe", &net.OpError{Op: "write", Net: "tcp", Err: os.NewSyscallError("write", syscall.EPIPE)}, ErrReset},
		{"dialer error", realDialErr(t), ErrConnect},
		{"dns not found", &net.DNSError{Err: "no such host", Name: "api.invalid", IsNotFound: true}, ErrConnect},
		{"dns timeout", &net.DNSError{Err: "i/o timeout", Name: "api.internal", IsTimeout: true}, ErrConnect},
		{"bad address", &net.AddrError{Err: "missing port in address", Addr: "api"}, ErrConnect},
		{"body too large", fasthttp.ErrBodyTooLarge, ErrResponseTooLarge},
		{"garbage", errors.New("cannot parse response status line"), ErrProtocol},
	}
	sentinels := []error{ErrNoHosts, ErrConnect, ErrReset, ErrTimeout, ErrOverflow, ErrResponseTooLarge, ErrProtocol}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			got := classify(tt.in)
			if !errors.Is(got, tt.want) {
				t.Fatalf("classify(%v) = %v, want %v", tt.in, got, tt.want)
			}
			for _, s := range sentinels {
				if s != tt.want && errors.Is(got, s) {
					t.Fatalf("classify(%v) = %v also matches %v", tt.in, got, s)
				}
			}
			if !errors.Is(got, tt.in) {
				t.Fatalf("classify(%v) = %v lost the original error", tt.in, got)
			}
		})
	}
	if classify(nil) != nil {
		t.Fatal("classify(nil) != nil")
	}
}

// A real refused connection and a real reset go through fasthttp to the right sentinel, so
// the table above matches what the transport actually returns.
func TestClassifyRealTransport(t *testing.T) {
	t.Parallel()
	m, _ := newManager(t)
	tests := []struct {
		name string
		addr string
		want error
	}{
		{"refused", closedAddr(t), ErrConnect},
		{"reset", resetServer(t).addr, ErrReset},
	}
	for _, tt := range tests {
		c := newCluster(t, m, Options{Name: tt.name}, tt.addr)
		_, _, err := do(t, c, fasthttp.MethodGet, &Call{Retry: &RetryPolicy{Attempts: 1}})
		if !errors.Is(err, tt.want) {
			t.Errorf("%s: err = %v, want %v", tt.name, err, tt.want)
		}
	}
}
