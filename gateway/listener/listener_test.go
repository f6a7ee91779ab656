package listener

import (
	"bufio"
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"os"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/rs/zerolog"
	"github.com/valyala/fasthttp"

	"github.com/meshgate/meshgate/internal/await"
)

// get sends one GET over c and reads the answer.
func get(t *testing.T, c net.Conn, br *bufio.Reader, path string) (*reply, string) {
	t.Helper()
	_ = c.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := io.WriteString(c, "GET "+path+" HTTP/1.1\r\nHost: test\r\n\r\n"); err != nil {
		t.Fatalf("write: %v", err)
	}
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		t.Fatalf("read response: %v", err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("read body: %v", err)
	}
	return &reply{StatusCode: resp.StatusCode, Header: resp.Header}, string(b)
}

// reply is what get returns instead of the *http.Response: it has read and closed the body,
// so callers get only what they assert on and have nothing to close.
type reply struct {
	StatusCode int
	Header     http.Header
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	await.Until(t, 5*time.Second, what, cond)
}

type served struct {
	l    *Listener
	done chan error
}

// serve starts l in the background; wait returns Serve's result.
func serve(l *Listener) *served {
	s := &served{l: l, done: make(chan error, 1)}
	go func() { s.done <- l.Serve() }()
	return s
}

func (s *served) wait(t *testing.T) error {
	t.Helper()
	select {
	case err := <-s.done:
		return err
	case <-time.After(10 * time.Second):
		t.Fatal("Serve did not return")
		return nil
	}
}

func testOptions(h fasthttp.RequestHandler) Options {
	return Options{
		Name:              "public",
		Address:           "127.0.0.1:0",
		ReadHeaderTimeout: 10 * time.Second,
		ReadTimeout:       10 * time.Second,
		WriteTimeout:      10 * time.Second,
		IdleTimeout:       time.Minute,
		MaxHeaderBytes:    16 << 10,
		StreamThreshold:   64 << 10,
		Handler:           h,
		Logger:            zerolog.Nop(),
	}
}

func TestListenerServesAndCountsConnections(t *testing.T) {
	t.Parallel()
	opts := testOptions(func(ctx *fasthttp.RequestCtx) { ctx.SetBodyString("hello " + string(ctx.Path())) })
	opts.Connections = prometheus.NewGauge(prometheus.GaugeOpts{Name: "conns"})
	opts.Accepted = prometheus.NewCounter(prometheus.CounterOpts{Name: "accepted"})
	l, err := New(opts)
	if err != nil {
		t.Fatal(err)
	}
	if l.Name() != "public" {
		t.Fatalf("Name = %q", l.Name())
	}
	if a, ok := l.Addr().(*net.TCPAddr); !ok || a.Port == 0 {
		t.Fatalf("Addr = %v", l.Addr())
	}
	s := serve(l)

	var conns []net.Conn
	for i := range 2 {
		c, err := net.Dial("tcp", l.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		conns = append(conns, c)
		br := bufio.NewReader(c)
		for range 2 { // keep-alive: one connection, two requests
			resp, body := get(t, c, br, "/x")
			if resp.StatusCode != 200 || body != "hello /x" {
				t.Fatalf("got %d %q", resp.StatusCode, body)
			}
		}
		if got := testutil.ToFloat64(opts.Connections); got != float64(i+1) {
			t.Fatalf("Connections = %v with %d open", got, i+1)
		}
	}
	for _, c := range conns {
		_ = c.Close()
	}
	waitFor(t, "the gauge to drop to 0", func() bool { return testutil.ToFloat64(opts.Connections) == 0 })
	if got := testutil.ToFloat64(opts.Accepted); got != 2 {
		t.Fatalf("Accepted = %v, want 2", got)
	}

	ctx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
	defer cancel()
	if err := l.Shutdown(ctx); err != nil {
		t.Fatalf("Shutdown: %v", err)
	}
	if err := s.wait(t); err != nil {
		t.Fatalf("Serve after Shutdown = %v, want nil", err)
	}
}

// Accepted is counted even without the Connections gauge: each metric is optional alone.
func TestListenerAcceptedWithoutGauge(t *testing.T) {
	t.Parallel()
	opts := testOptions(func(_ *fasthttp.RequestCtx) {})
	opts.Accepted = prometheus.NewCounter(prometheus.CounterOpts{Name: "accepted"})
	l, err := New(opts)
	if err != nil {
		t.Fatal(err)
	}
	s := serve(l)
	c, err := net.Dial("tcp", l.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	get(t, c, bufio.NewReader(c), "/")
	_ = c.Close()
	if got := testutil.ToFloat64(opts.Accepted); got != 1 {
		t.Fatalf("Accepted = %v, want 1", got)
	}
	if err := l.Shutdown(t.Context()); err != nil {
		t.Fatal(err)
	}
	if err := s.wait(t); err != nil {
		t.Fatal(err)
	}
}

func TestShutdownWaitsForInFlight(t *testing.T) {
	t.Parallel()
	entered := make(chan struct{})
	release := make(chan struct{})
	opts := testOptions(func(ctx *fasthttp.RequestCtx) {
		if string(ctx.Path()) == "/slow" {
			close(entered)
			<-release
		}
		ctx.SetBodyString("done")
	})
	opts.Connections = prometheus.NewGauge(prometheus.GaugeOpts{Name: "conns"})
	l, err := New(opts)
	if err != nil {
		t.Fatal(err)
	}
	s := serve(l)
	addr := l.Addr().String()

	// An idle keep-alive connection is closed by the shutdown, not waited for.
	idle, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer idle.Close()
	get(t, idle, bufio.NewReader(idle), "/")

	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	br := bufio.NewReader(c)
	type answer struct {
		code  int
		body  string
		close bool
	}
	got := make(chan answer, 1)
	go func() {
		_ = c.SetDeadline(time.Now().Add(10 * time.Second))
		_, _ = io.WriteString(c, "GET /slow HTTP/1.1\r\nHost: test\r\n\r\n")
		resp, err := http.ReadResponse(br, nil)
		if err != nil {
			got <- answer{}
			return
		}
		b, _ := io.ReadAll(resp.Body)
		_ = resp.Body.Close()
		got <- answer{resp.StatusCode, string(b), resp.Close}
	}()
	<-entered

	shut := make(chan error, 1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		shut <- l.Shutdown(ctx)
	}()
	// The listening socket goes first: new connections are refused while the request drains.
	waitFor(t, "the port to stop accepting", func() bool {
		nc, err := net.Dial("tcp", addr)
		if err != nil {
			return errors.Is(err, syscall.ECONNREFUSED)
		}
		_ = nc.Close()
		return false
	})
	waitFor(t, "the idle connection to be closed", func() bool { return testutil.ToFloat64(opts.Connections) == 1 })
	select {
	case err := <-shut:
		t.Fatalf("Shutdown returned (%v) while a request was in flight", err)
	case <-time.After(100 * time.Millisecond):
	}

	close(release)
	a := <-got
	if a.code != 200 || a.body != "done" || !a.close {
		t.Fatalf("in-flight answer = %+v; want 200 done with Connection: close", a)
	}
	select {
	case err := <-shut:
		if err != nil {
			t.Fatalf("Shutdown: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Shutdown did not return after the request finished")
	}
	if err := s.wait(t); err != nil {
		t.Fatalf("Serve = %v, want nil", err)
	}
	waitFor(t, "the gauge to drop to 0", func() bool { return testutil.ToFloat64(opts.Connections) == 0 })
}

// Shutdown gives up when its context ends, and says so.
func TestShutdownHonoursContext(t *testing.T) {
	t.Parallel()
	entered := make(chan struct{})
	release := make(chan struct{})
	l, err := New(testOptions(func(_ *fasthttp.RequestCtx) {
		close(entered)
		<-release
	}))
	if err != nil {
		t.Fatal(err)
	}
	s := serve(l)
	c, err := net.Dial("tcp", l.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if _, err := io.WriteString(c, "GET / HTTP/1.1\r\nHost: test\r\n\r\n"); err != nil {
		t.Fatal(err)
	}
	<-entered
	ctx, cancel := context.WithTimeout(t.Context(), 50*time.Millisecond)
	defer cancel()
	if err := l.Shutdown(ctx); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Shutdown = %v, want context.DeadlineExceeded", err)
	}
	close(release)
	if err := s.wait(t); err != nil {
		t.Fatalf("Serve = %v", err)
	}
	// Let the handler's connection finish so no server goroutine outlives the test.
	if err := l.Shutdown(t.Context()); err != nil {
		t.Fatalf("second Shutdown: %v", err)
	}
}

func TestShutdownBeforeServeFreesPort(t *testing.T) {
	t.Parallel()
	l, err := New(testOptions(func(_ *fasthttp.RequestCtx) {}))
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	if err := l.Shutdown(t.Context()); err != nil {
		t.Fatalf("Shutdown: %v", err)
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		t.Fatalf("port still bound after Shutdown: %v", err)
	}
	_ = ln.Close()
	// A Serve that starts after the Shutdown returns at once, without error.
	if err := serve(l).wait(t); err != nil {
		t.Fatalf("Serve after Shutdown = %v", err)
	}
}

func TestNewErrors(t *testing.T) {
	t.Parallel()
	taken, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer taken.Close()

	opts := testOptions(func(_ *fasthttp.RequestCtx) {})
	opts.Name = "internal"
	opts.Address = taken.Addr().String()
	_, err = New(opts)
	if err == nil || !strings.Contains(err.Error(), `listener "internal"`) || !errors.Is(err, syscall.EADDRINUSE) {
		t.Fatalf("bind error = %v; want it to name the listener and wrap EADDRINUSE", err)
	}

	opts = testOptions(nil)
	if _, err := New(opts); err == nil || !strings.Contains(err.Error(), "handler") {
		t.Fatalf("New without a handler: %v", err)
	}

	opts = testOptions(func(_ *fasthttp.RequestCtx) {})
	opts.Address = "127.0.0.1:notaport"
	if _, err := New(opts); err == nil || !strings.Contains(err.Error(), `listener "public"`) {
		t.Fatalf("bad address: %v", err)
	}
}

// The edge limits are wired: a head larger than MaxHeaderBytes reaches the ErrorHandler.
func TestHeaderLimitGoesToErrorHandler(t *testing.T) {
	t.Parallel()
	opts := testOptions(func(ctx *fasthttp.RequestCtx) { ctx.SetBodyString("ok") })
	opts.MaxHeaderBytes = 4 << 10
	opts.ErrorHandler = func(ctx *fasthttp.RequestCtx, _ error) {
		ctx.SetStatusCode(fasthttp.StatusRequestHeaderFieldsTooLarge)
	}
	l, err := New(opts)
	if err != nil {
		t.Fatal(err)
	}
	s := serve(l)
	c, err := net.Dial("tcp", l.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(10 * time.Second))
	big := "GET / HTTP/1.1\r\nHost: test\r\nX-Big: " + strings.Repeat("a", 8<<10) + "\r\n\r\n"
	if _, err := io.WriteString(c, big); err != nil {
		t.Fatal(err)
	}
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		t.Fatal(err)
	}
	_ = resp.Body.Close()
	if resp.StatusCode != fasthttp.StatusRequestHeaderFieldsTooLarge {
		t.Fatalf("status = %d, want 431", resp.StatusCode)
	}
	if err := l.Shutdown(t.Context()); err != nil {
		t.Fatal(err)
	}
	if err := s.wait(t); err != nil {
		t.Fatal(err)
	}
}

// The connection timeouts still hold with deadlines armed lazily (package deadline): a
// keep-alive connection idle past IdleTimeout is closed, and so is one whose next head stops
// halfway, after ReadHeaderTimeout. Each close comes no earlier than its timeout.
func TestTimeoutsHoldWithLazyDeadlines(t *testing.T) {
	t.Parallel()
	opts := testOptions(func(ctx *fasthttp.RequestCtx) { ctx.SetBodyString("ok") })
	opts.ReadHeaderTimeout = 300 * time.Millisecond
	opts.IdleTimeout = 600 * time.Millisecond
	l, err := New(opts)
	if err != nil {
		t.Fatal(err)
	}
	s := serve(l)
	defer func() {
		ctx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
		defer cancel()
		_ = l.Shutdown(ctx)
		_ = s.wait(t)
	}()
	// closedAfter reads until the server closes c: what it sent first, and when it closed.
	closedAfter := func(c net.Conn, br *bufio.Reader, since time.Time) (string, time.Duration) {
		t.Helper()
		_ = c.SetReadDeadline(time.Now().Add(10 * time.Second))
		got, err := io.ReadAll(br)
		if errors.Is(err, os.ErrDeadlineExceeded) {
			t.Fatal("the server did not close the connection within 10s")
		}
		return string(got), time.Since(since)
	}
	for _, tc := range []struct {
		name    string
		partial string // sent after full requests, then nothing more
		timeout time.Duration
		answer  string // how what the server sends before closing starts
	}{
		{"idle", "", opts.IdleTimeout, ""},
		{"half a head", "GET /x HTTP/1.1\r\nHost: a\r\n", opts.ReadHeaderTimeout, "HTTP/1.1 4"}, // the gateway renders 408
	} {
		c, err := net.Dial("tcp", l.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		br := bufio.NewReader(c)
		for range 3 {
			if resp, body := get(t, c, br, "/x"); resp.StatusCode != 200 || body != "ok" {
				t.Fatalf("%s: got %d %q", tc.name, resp.StatusCode, body)
			}
		}
		if _, err := c.Write([]byte(tc.partial)); err != nil {
			t.Fatal(err)
		}
		got, took := closedAfter(c, br, time.Now())
		if !strings.HasPrefix(got, tc.answer) || (tc.answer == "" && got != "") {
			t.Errorf("%s: the server sent %q before closing, want %q first", tc.name, got, tc.answer)
		}
		if took < tc.timeout-50*time.Millisecond {
			t.Errorf("%s: closed after %v, before the %v timeout", tc.name, took, tc.timeout)
		}
		_ = c.Close()
	}
}

func TestDeadlineSlack(t *testing.T) {
	for _, tc := range []struct {
		in   []time.Duration
		want time.Duration
	}{
		{[]time.Duration{10 * time.Second, time.Minute, 0}, time.Second},
		{[]time.Duration{300 * time.Millisecond, time.Minute}, 30 * time.Millisecond},
		{[]time.Duration{0, 0}, maxDeadlineSlack},
		{[]time.Duration{time.Hour}, maxDeadlineSlack},
	} {
		if got := deadlineSlack(tc.in...); got != tc.want {
			t.Errorf("deadlineSlack(%v) = %v, want %v", tc.in, got, tc.want)
		}
	}
}
