package admin

import (
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/rs/zerolog"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

const waitLimit = 5 * time.Second

type clusterView struct {
	Name      string `json:"name"`
	Endpoints int    `json:"endpoints"`
}

// testOptions is a fully populated Options with a registry holding meshgate_test_total = 3.
func testOptions(t *testing.T) Options {
	t.Helper()
	reg := prometheus.NewRegistry()
	c := prometheus.NewCounter(prometheus.CounterOpts{Name: "meshgate_test_total", Help: "Test counter."})
	reg.MustRegister(c)
	c.Add(3)
	return Options{
		Address:  "127.0.0.1:0",
		Gatherer: reg,
		Ready:    func() (bool, string) { return true, "" },
		Config:   func() ([]byte, error) { return []byte("admin:\n  address: 127.0.0.1:9901\n"), nil },
		Clusters: func() any { return []clusterView{{Name: "origin", Endpoints: 2}} },
		Routes:   func() any { return map[string]string{"all": "/"} },
		Logger:   zerolog.Nop(),
	}
}

type running struct {
	srv  *Server
	base string
	stop func() error // cancels Serve and returns its result
}

// start builds, binds and serves; the server is stopped at cleanup if the test did not stop it.
func start(t *testing.T, opts Options) *running {
	t.Helper()
	srv, err := New(opts)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	addr, err := srv.Listen()
	if err != nil {
		t.Fatalf("Listen: %v", err)
	}
	ctx, cancel := context.WithCancel(context.WithoutCancel(t.Context()))
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ctx) }()
	var result error
	stopped := false
	stop := func() error {
		if stopped {
			return result
		}
		stopped = true
		cancel()
		select {
		case result = <-done:
		case <-time.After(2 * shutdownTimeout):
			result = errors.New("Serve did not return after cancel")
		}
		return result
	}
	t.Cleanup(func() {
		if err := stop(); err != nil {
			t.Errorf("Serve: %v", err)
		}
	})
	return &running{srv: srv, base: "http://" + addr.String(), stop: stop}
}

type response struct {
	status int
	header http.Header
	body   string
}

func do(t *testing.T, method, url string) response {
	t.Helper()
	// No keep-alive, so no client goroutines outlive the request (goleak).
	client := &http.Client{Timeout: waitLimit, Transport: &http.Transport{DisableKeepAlives: true}}
	req, err := http.NewRequestWithContext(t.Context(), method, url, nil)
	if err != nil {
		t.Fatalf("new request: %v", err)
	}
	resp, err := client.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, url, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("read body: %v", err)
	}
	return response{status: resp.StatusCode, header: resp.Header, body: string(body)}
}

func TestEndpoints(t *testing.T) {
	t.Parallel()
	r := start(t, testOptions(t))
	tests := []struct {
		method, path string
		wantStatus   int
		wantType     string // prefix; "" = don't care
		wantBody     string // substring; exact when wantExact
		wantExact    bool
	}{
		{http.MethodGet, "/live", 200, "text/plain", "ok\n", true},
		{http.MethodHead, "/live", 200, "text/plain", "", true},
		{http.MethodGet, "/ready", 200, "text/plain", "ready\n", true},
		{http.MethodGet, "/metrics", 200, "text/plain", "\nmeshgate_test_total 3\n", false},
		{http.MethodHead, "/metrics", 200, "text/plain", "", true},
		{http.MethodGet, "/config", 200, "text/yaml", "admin:\n  address: 127.0.0.1:9901\n", true},
		{http.MethodGet, "/clusters", 200, "application/json", "[\n  {\n    \"name\": \"origin\",\n    \"endpoints\": 2\n  }\n]\n", true},
		{http.MethodGet, "/routes", 200, "application/json", "{\n  \"all\": \"/\"\n}\n", true},
		{http.MethodPost, "/live", 405, "", "", false},
		{http.MethodPut, "/ready", 405, "", "", false},
		{http.MethodDelete, "/config", 405, "", "", false},
		{http.MethodPost, "/metrics", 405, "", "", false},
		{http.MethodGet, "/", 404, "", "", false},
		{http.MethodGet, "/nope", 404, "", "", false},
		{http.MethodGet, "/live/extra", 404, "", "", false},
	}
	for _, tt := range tests {
		t.Run(tt.method+" "+tt.path, func(t *testing.T) {
			t.Parallel()
			got := do(t, tt.method, r.base+tt.path)
			if got.status != tt.wantStatus {
				t.Fatalf("status = %d, want %d (body %q)", got.status, tt.wantStatus, got.body)
			}
			if ct := got.header.Get("Content-Type"); !strings.HasPrefix(ct, tt.wantType) {
				t.Errorf("Content-Type = %q, want prefix %q", ct, tt.wantType)
			}
			if tt.wantExact && got.body != tt.wantBody || !strings.Contains(got.body, tt.wantBody) {
				t.Errorf("body = %q, want %q (exact %v)", got.body, tt.wantBody, tt.wantExact)
			}
			if tt.wantStatus == 405 && !strings.Contains(got.header.Get("Allow"), http.MethodGet) {
				t.Errorf("405 without GET in Allow: %q", got.header.Get("Allow"))
			}
			if tt.wantStatus == 200 && got.header.Get("X-Content-Type-Options") != "nosniff" {
				t.Errorf("missing nosniff header")
			}
		})
	}
}

func TestReadyFlips(t *testing.T) {
	t.Parallel()
	var ready atomic.Bool
	ready.Store(true)
	opts := testOptions(t)
	opts.Ready = func() (bool, string) {
		if ready.Load() {
			return true, ""
		}
		return false, "discovery: no snapshot yet"
	}
	r := start(t, opts)
	steps := []struct {
		ready      bool
		wantStatus int
		wantBody   string
	}{
		{true, 200, "ready\n"},
		{false, 503, "discovery: no snapshot yet\n"},
		{true, 200, "ready\n"},
	}
	for _, s := range steps {
		ready.Store(s.ready)
		got := do(t, http.MethodGet, r.base+PathReady)
		if got.status != s.wantStatus || got.body != s.wantBody {
			t.Fatalf("ready=%v: got %d %q, want %d %q", s.ready, got.status, got.body, s.wantStatus, s.wantBody)
		}
	}
}

func TestOptionalViews(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name       string
		mutate     func(*Options)
		path       string
		wantStatus int
		wantBody   string
	}{
		{"config unset", func(o *Options) { o.Config = nil }, PathConfig, 404, ""},
		{"clusters unset", func(o *Options) { o.Clusters = nil }, PathClusters, 404, ""},
		{"routes unset", func(o *Options) { o.Routes = nil }, PathRoutes, 404, ""},
		{
			"config error is not leaked",
			func(o *Options) { o.Config = func() ([]byte, error) { return nil, errors.New("secret /etc/token") } },
			PathConfig, 500, "internal error\n",
		},
		{
			"unmarshalable view",
			func(o *Options) { o.Clusters = func() any { return make(chan int) } },
			PathClusters, 500, "internal error\n",
		},
		{"empty not-ready detail", func(o *Options) { o.Ready = func() (bool, string) { return false, "" } }, PathReady, 503, "not ready\n"},
		{"ready but degraded", func(o *Options) { o.Ready = func() (bool, string) { return true, "degraded: api: snapshot\n" } }, PathReady, 200, "ready\ndegraded: api: snapshot\n"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			opts := testOptions(t)
			tt.mutate(&opts)
			got := do(t, http.MethodGet, start(t, opts).base+tt.path)
			if got.status != tt.wantStatus {
				t.Fatalf("status = %d, want %d", got.status, tt.wantStatus)
			}
			if tt.wantBody != "" && got.body != tt.wantBody {
				t.Fatalf("body = %q, want %q", got.body, tt.wantBody)
			}
		})
	}
}

func TestHandle(t *testing.T) {
	t.Parallel()
	opts := testOptions(t)
	srv, err := New(opts)
	if err != nil {
		t.Fatal(err)
	}
	hello := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { _, _ = io.WriteString(w, r.Method) })
	errCases := []struct {
		name, pattern string
		h             http.Handler
		wantErr       string
	}{
		{"nil handler", "/x", nil, "nil handler"},
		{"builtin conflict", PathLive, hello, `admin: handle "GET /live"`},
		{"malformed", "GET", hello, "admin: handle"},
	}
	for _, tt := range errCases {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			if err := srv.Handle(tt.pattern, tt.h); err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("Handle = %v, want error containing %q", err, tt.wantErr)
			}
		})
	}

	r := start(t, opts)
	// Registered after Serve started: later features may plug in at any time.
	if err := r.srv.Handle("/plugins", hello); err != nil {
		t.Fatalf("Handle: %v", err)
	}
	if err := r.srv.Handle("POST /plugins/restart", hello); err != nil {
		t.Fatalf("Handle: %v", err)
	}
	if err := r.srv.Handle("/plugins", hello); err == nil {
		t.Fatal("duplicate Handle succeeded")
	}
	calls := []struct {
		method, path string
		wantStatus   int
	}{
		{http.MethodGet, "/plugins", 200},
		{http.MethodPost, "/plugins", 405},
		{http.MethodPost, "/plugins/restart", 200},
	}
	for _, c := range calls {
		if got := do(t, c.method, r.base+c.path); got.status != c.wantStatus {
			t.Errorf("%s %s = %d, want %d", c.method, c.path, got.status, c.wantStatus)
		}
	}
}

func TestNewErrors(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		mutate  func(*Options)
		wantErr string
	}{
		{"no gatherer", func(o *Options) { o.Gatherer = nil }, "gatherer is required"},
		{"no ready", func(o *Options) { o.Ready = nil }, "ready func is required"},
		{"bad address", func(o *Options) { o.Address = "localhost" }, `admin: address "localhost"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			opts := testOptions(t)
			tt.mutate(&opts)
			if _, err := New(opts); err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("New = %v, want error containing %q", err, tt.wantErr)
			}
		})
	}
}

func TestDefaultAddressIsLoopback(t *testing.T) {
	t.Parallel()
	opts := testOptions(t)
	opts.Address = ""
	srv, err := New(opts)
	if err != nil {
		t.Fatal(err)
	}
	if srv.address != DefaultAddress || !strings.HasPrefix(DefaultAddress, "127.0.0.1:") {
		t.Fatalf("default address %q", srv.address)
	}
	if srv.Addr() != nil {
		t.Fatalf("Addr before Listen = %v, want nil", srv.Addr())
	}
}

func TestLifecycleErrors(t *testing.T) {
	t.Parallel()
	srv, err := New(testOptions(t))
	if err != nil {
		t.Fatal(err)
	}
	if err := srv.Serve(t.Context()); !errors.Is(err, ErrNotListening) {
		t.Fatalf("Serve before Listen = %v, want ErrNotListening", err)
	}
	addr, err := srv.Listen()
	if err != nil {
		t.Fatal(err)
	}
	if got := srv.Addr(); got.String() != addr.String() {
		t.Fatalf("Addr = %v, want %v", got, addr)
	}
	if _, err := srv.Listen(); !errors.Is(err, ErrAlreadyListening) {
		t.Fatalf("second Listen = %v, want ErrAlreadyListening", err)
	}

	// The bound port is taken: a second server must fail at Listen, synchronously.
	opts := testOptions(t)
	opts.Address = addr.String()
	other, err := New(opts)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := other.Listen(); err == nil || !strings.Contains(err.Error(), "admin: listen") {
		t.Fatalf("Listen on a used port = %v, want listen error", err)
	}

	// Close before Serve releases the port (startup aborted by a later component).
	if err := srv.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	if _, err := other.Listen(); err != nil {
		t.Fatalf("port not released by Close: %v", err)
	}
	if err := other.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
}

func TestServeTwice(t *testing.T) {
	t.Parallel()
	r := start(t, testOptions(t))
	// A served request proves start's Serve goroutine owns the server, so the call below is
	// the second one.
	if got := do(t, http.MethodGet, r.base+PathLive); got.status != 200 {
		t.Fatalf("live status %d", got.status)
	}
	ctx, cancel := context.WithTimeout(t.Context(), waitLimit)
	defer cancel()
	if err := r.srv.Serve(ctx); !errors.Is(err, ErrAlreadyServing) {
		t.Fatalf("second Serve = %v, want ErrAlreadyServing", err)
	}
}

func TestShutdownWaitsForInFlight(t *testing.T) {
	t.Parallel()
	r := start(t, testOptions(t))
	entered, release := make(chan struct{}), make(chan struct{})
	slow := http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		close(entered)
		<-release
		_, _ = io.WriteString(w, "done")
	})
	if err := r.srv.Handle("/slow", slow); err != nil {
		t.Fatal(err)
	}
	got := make(chan response, 1)
	go func() { got <- do(t, http.MethodGet, r.base+"/slow") }()
	select {
	case <-entered:
	case <-time.After(waitLimit):
		t.Fatal("slow handler not reached")
	}
	stopped := make(chan error, 1)
	go func() { stopped <- r.stop() }()
	select {
	case err := <-stopped:
		t.Fatalf("Serve returned (%v) while a request was in flight", err)
	case <-time.After(50 * time.Millisecond): // negative check: a short window is all we can give
	}
	close(release)
	select {
	case resp := <-got:
		if resp.status != 200 || resp.body != "done" {
			t.Fatalf("in-flight request got %d %q", resp.status, resp.body)
		}
	case <-time.After(waitLimit):
		t.Fatal("in-flight request never completed")
	}
	if err := <-stopped; err != nil {
		t.Fatalf("Serve = %v, want nil after graceful shutdown", err)
	}
}

// Not parallel: goleak compares against the goroutines alive when the test starts.
func TestServeLeavesNothingBehind(t *testing.T) {
	defer goleak.VerifyNone(t, goleak.IgnoreCurrent())
	srv, err := New(testOptions(t))
	if err != nil {
		t.Fatal(err)
	}
	addr, err := srv.Listen()
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ctx) }()
	// A keep-alive client leaves an idle connection behind: shutdown must close it, not wait.
	tr := &http.Transport{}
	defer tr.CloseIdleConnections()
	client := &http.Client{Transport: tr, Timeout: waitLimit}
	req, err := http.NewRequestWithContext(t.Context(), http.MethodGet, "http://"+addr.String()+PathMetrics, nil)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	_ = resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("metrics status %d", resp.StatusCode)
	}
	began := time.Now()
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("Serve = %v, want nil", err)
		}
		if d := time.Since(began); d > shutdownTimeout/2 {
			t.Fatalf("shutdown took %s: the idle connection held it open", d)
		}
	case <-time.After(2 * shutdownTimeout):
		t.Fatal("Serve did not return after cancel")
	}
	ln, err := (&net.ListenConfig{}).Listen(t.Context(), "tcp", addr.String())
	if err != nil {
		t.Fatalf("port still bound after Serve returned: %v", err)
	}
	_ = ln.Close()
}
