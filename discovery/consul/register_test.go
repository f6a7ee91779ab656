package consul

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hashicorp/consul/api"
	"github.com/rs/zerolog"
)

// regBound is how long a registration change may take to show in the agent's answers: HTTP
// checks first run at a random point within their interval, and tests share CPUs.
const regBound = 15 * time.Second

func TestNewRegistrarOptions(t *testing.T) {
	t.Parallel()
	svc := Instance{Name: "edge", Port: 8080}
	tests := []struct {
		name    string
		opts    RegistrarOptions
		wantErr string
		check   func(t *testing.T, r *Registrar)
	}{
		{name: "no name", opts: RegistrarOptions{CheckURL: "http://x/ready"}, wantErr: "service name is required"},
		{name: "bad id", opts: RegistrarOptions{Service: Instance{Name: "edge", ID: "a/b"}, CheckURL: "http://x/ready"}, wantErr: `service id "a/b"`},
		{name: "bad port", opts: RegistrarOptions{Service: Instance{Name: "edge", Port: 70000}, CheckURL: "http://x/ready"}, wantErr: "port 70000"},
		{name: "http without url", opts: RegistrarOptions{Service: svc}, wantErr: "needs a check url"},
		{name: "unknown check", opts: RegistrarOptions{Service: svc, Check: "grpc"}, wantErr: `check "grpc"`},
		{name: "tcp without address", opts: RegistrarOptions{Service: svc, Check: CheckTCP}, wantErr: "a tcp check needs a host:port"},
		{name: "tcp check address without port", opts: RegistrarOptions{Service: svc, Check: CheckTCP, CheckAddress: "127.0.0.1"}, wantErr: `got "127.0.0.1"`},
		{name: "alias of itself", opts: RegistrarOptions{Service: svc, Check: CheckTTL, AliasServiceID: "edge"}, wantErr: "cannot alias itself"},
		{name: "proxy without destination", opts: RegistrarOptions{Service: Instance{Name: "p", Port: 21000, Proxy: &ProxyConfig{}}, Check: CheckTTL}, wantErr: "destination service name is required"},
		{name: "proxy without port", opts: RegistrarOptions{Service: Instance{Name: "p", Proxy: &ProxyConfig{DestinationServiceName: "web"}}, Check: CheckTTL}, wantErr: "port is required"},
		{name: "proxy local port", opts: RegistrarOptions{Service: Instance{Name: "p", Port: 21000, Proxy: &ProxyConfig{DestinationServiceName: "web", LocalServicePort: -1}}, Check: CheckTTL}, wantErr: "local service port -1"},
		{name: "upstream without name", opts: RegistrarOptions{Service: Instance{Name: "p", Port: 21000, Proxy: &ProxyConfig{DestinationServiceName: "web",
			Upstreams: []ProxyUpstream{{LocalBindPort: 10001}}}}, Check: CheckTTL}, wantErr: "upstream 0: destination name is required"},
		{name: "upstream without port", opts: RegistrarOptions{Service: Instance{Name: "p", Port: 21000, Proxy: &ProxyConfig{DestinationServiceName: "web",
			Upstreams: []ProxyUpstream{{DestinationName: "api"}}}}, Check: CheckTTL}, wantErr: "upstream api: local bind port 0"},
		{name: "upstream twice", opts: RegistrarOptions{Service: Instance{Name: "p", Port: 21000, Proxy: &ProxyConfig{DestinationServiceName: "web",
			Upstreams: []ProxyUpstream{{DestinationName: "api", LocalBindPort: 10001}, {DestinationName: "api", LocalBindPort: 10002}}}}, Check: CheckTTL}, wantErr: "upstream api: listed twice"},
		{name: "upstream bind twice", opts: RegistrarOptions{Service: Instance{Name: "p", Port: 21000, Proxy: &ProxyConfig{DestinationServiceName: "web",
			Upstreams: []ProxyUpstream{{DestinationName: "api", LocalBindPort: 10001}, {DestinationName: "db", LocalBindAddress: "127.0.0.1", LocalBindPort: 10001}}}}, Check: CheckTTL},
			wantErr: "upstream db: local bind 127.0.0.1:10001 is used twice"},
		{name: "bad scheme", opts: RegistrarOptions{Service: svc, Check: CheckTTL, Scheme: "ftp"}, wantErr: `scheme "ftp"`},
		{name: "empty token file", opts: RegistrarOptions{Service: svc, Check: CheckTTL, TokenFile: emptyFile(t)}, wantErr: "token file is empty"},
		{
			name: "http check",
			opts: RegistrarOptions{Service: Instance{Name: "edge", Port: 8080, Tags: []string{"a"}, Meta: map[string]string{"k": "v"}},
				CheckURL: "http://127.0.0.1:9901/ready", CheckInterval: 3 * time.Second},
			check: func(t *testing.T, r *Registrar) {
				t.Helper()
				c := r.reg.Check
				if r.reg.ID != "edge" || r.ID() != "edge" || c.CheckID != "service:edge" || c.HTTP != "http://127.0.0.1:9901/ready" ||
					c.Method != http.MethodGet || c.Interval != "3s" || c.Timeout != "3s" || c.TTL != "" ||
					c.DeregisterCriticalServiceAfter != "1m0s" || r.ttl != 0 {
					t.Fatalf("registration %+v check %+v", r.reg, c)
				}
			},
		},
		{
			name: "tcp check defaults to the service address",
			opts: RegistrarOptions{Service: Instance{Name: "web", ID: "web-1", Address: "::1", Port: 8080}, Check: CheckTCP, CheckInterval: 15 * time.Second},
			check: func(t *testing.T, r *Registrar) {
				t.Helper()
				c := r.reg.Check
				if c.CheckID != "service:web-1" || c.TCP != "[::1]:8080" || c.Interval != "15s" || c.Timeout != "10s" ||
					c.HTTP != "" || c.TTL != "" || r.ttl != 0 || r.kind != CheckTCP || r.reg.Kind != api.ServiceKindTypical || r.reg.Proxy != nil {
					t.Fatalf("registration %+v check %+v", r.reg, c)
				}
			},
		},
		{
			name: "tcp check address wins",
			opts: RegistrarOptions{Service: Instance{Name: "web", Port: 8080}, Check: CheckTCP, CheckAddress: "127.0.0.1:9090"},
			check: func(t *testing.T, r *Registrar) {
				t.Helper()
				if r.reg.Check.TCP != "127.0.0.1:9090" {
					t.Fatalf("check %+v", r.reg.Check)
				}
			},
		},
		{
			name: "connect proxy with alias check",
			opts: RegistrarOptions{
				Service: Instance{Name: "web-sidecar-proxy", ID: "web-1-sidecar-proxy", Address: "127.0.0.1", Port: 21000, Proxy: &ProxyConfig{
					DestinationServiceName: "web", DestinationServiceID: "web-1", LocalServiceAddress: "127.0.0.1", LocalServicePort: 8080,
					Upstreams: []ProxyUpstream{{DestinationName: "api", LocalBindAddress: "127.0.0.1", LocalBindPort: 10001}, {DestinationName: "db", LocalBindPort: 10002}},
				}},
				CheckURL:       "http://127.0.0.1:19001/ready",
				AliasServiceID: "web-1",
			},
			check: func(t *testing.T, r *Registrar) {
				t.Helper()
				p := r.reg.Proxy
				want := []api.Upstream{
					{DestinationName: "api", LocalBindAddress: "127.0.0.1", LocalBindPort: 10001},
					{DestinationName: "db", LocalBindPort: 10002},
				}
				if r.reg.Kind != api.ServiceKindConnectProxy || p == nil || p.DestinationServiceName != "web" || p.DestinationServiceID != "web-1" ||
					p.LocalServiceAddress != "127.0.0.1" || p.LocalServicePort != 8080 || !reflect.DeepEqual(p.Upstreams, want) {
					t.Fatalf("registration %+v proxy %+v", r.reg, p)
				}
				if r.reg.Check.HTTP == "" || len(r.reg.Checks) != 1 {
					t.Fatalf("checks: %+v %+v", r.reg.Check, r.reg.Checks)
				}
				a := r.reg.Checks[0]
				if a.CheckID != "service:web-1-sidecar-proxy:alias" || a.AliasService != "web-1" || a.DeregisterCriticalServiceAfter != "" {
					t.Fatalf("alias check %+v", a)
				}
			},
		},
		{
			name: "ttl check starts critical",
			opts: RegistrarOptions{Service: Instance{Name: "edge", ID: "e1"}, Check: CheckTTL, DeregisterAfter: 2 * time.Minute},
			check: func(t *testing.T, r *Registrar) {
				t.Helper()
				c := r.reg.Check
				if c.CheckID != "service:e1" || c.TTL != "2s" || c.HTTP != "" || c.Status != api.HealthCritical ||
					c.DeregisterCriticalServiceAfter != "2m0s" || r.ttl != 2*time.Second {
					t.Fatalf("check %+v", c)
				}
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			r, err := NewRegistrar(tt.opts)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("err = %v, want %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			defer r.Close()
			tt.check(t, r)
		})
	}
}

func emptyFile(t *testing.T) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "token")
	if err := os.WriteFile(p, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestIsGone(t *testing.T) {
	t.Parallel()
	tests := []struct {
		err  error
		want bool
	}{
		{api.StatusError{Code: 404, Body: `Unknown check ID "service:x"`}, true},
		{fmt.Errorf("wrapped: %w", api.StatusError{Code: 404, Body: "unknown service ID"}), true},
		{api.StatusError{Code: 500, Body: `CheckID "service:x" does not have associated TTL`}, true},
		{fmt.Errorf("%w: probe", errGone), true},
		{api.StatusError{Code: 500, Body: "rpc error"}, false},
		{errors.New("dial tcp: connection refused"), false},
	}
	for _, tt := range tests {
		if got := isGone(tt.err); got != tt.want {
			t.Errorf("isGone(%v) = %v, want %v", tt.err, got, tt.want)
		}
	}
}

// regTest is a Registrar against a real agent plus the agent's view of it.
type regTest struct {
	t      *testing.T
	client *api.Client
	r      *Registrar
	name   string
}

func newRegTest(t *testing.T, agentAddr string, client *api.Client, o RegistrarOptions) *regTest {
	t.Helper()
	o.Address = agentAddr
	r, err := NewRegistrar(o)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(r.Close)
	return &regTest{t: t, client: client, r: r, name: o.Service.Name}
}

// run starts Run and returns a stop func that waits for it to return.
func (rt *regTest) run() (stop func()) {
	ctx, cancel := context.WithCancel(rt.t.Context())
	done := make(chan error, 1)
	go func() { done <- rt.r.Run(ctx) }()
	var once sync.Once
	stop = func() {
		once.Do(func() {
			cancel()
			select {
			case err := <-done:
				if err != nil {
					rt.t.Errorf("Run = %v", err)
				}
			case <-time.After(regBound):
				rt.t.Error("Run did not return after its ctx ended")
			}
		})
	}
	rt.t.Cleanup(stop)
	return stop
}

// status is the instance's aggregated health in the catalog ("" when absent) and its checks'
// "status: output+notes" by check ID.
func (rt *regTest) status() (string, map[string]string, error) {
	entries, _, err := rt.client.Health().Service(rt.name, "", false, nil)
	if err != nil {
		return "", nil, err
	}
	for _, e := range entries {
		if e.Service.ID == rt.r.ID() {
			out := map[string]string{}
			for _, c := range e.Checks {
				out[c.CheckID] = c.Status + ": " + c.Output + c.Notes
			}
			return e.Checks.AggregatedStatus(), out, nil
		}
	}
	return "", nil, nil
}

func (rt *regTest) waitStatus(want string) {
	rt.t.Helper()
	eventually(rt.t, regBound, func() error {
		got, checks, err := rt.status()
		if err != nil {
			return err
		}
		if got != want {
			return fmt.Errorf("status %q (checks %v), want %q", got, checks, want)
		}
		return nil
	})
}

// passing reports whether the health endpoint lists the instance among the passing ones —
// what callers (and meshgate's own discovery) see.
func (rt *regTest) passing() (bool, error) {
	entries, _, err := rt.client.Health().Service(rt.name, "", true, nil)
	if err != nil {
		return false, err
	}
	for _, e := range entries {
		if e.Service.ID == rt.r.ID() {
			return true, nil
		}
	}
	return false, nil
}

func (rt *regTest) waitAgentHas(want bool) {
	rt.t.Helper()
	eventually(rt.t, regBound, func() error {
		_, _, err := rt.client.Agent().Service(rt.r.ID(), nil)
		switch {
		case err == nil && !want:
			return errors.New("agent still has the service")
		case err != nil && want:
			return fmt.Errorf("agent lacks the service: %w", err)
		case err != nil && !isNotFound(err):
			return err
		}
		return nil
	})
}

// readyServer is an admin /ready stand-in whose status the test flips.
func readyServer(t *testing.T) (url string, status *atomic.Int32) {
	t.Helper()
	status = &atomic.Int32{}
	status.Store(http.StatusOK)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/ready" {
			http.NotFound(w, r)
			return
		}
		w.WriteHeader(int(status.Load()))
	}))
	t.Cleanup(srv.Close)
	return srv.URL + "/ready", status
}

// TestRegistrarHTTPCheck: the registration carries ID, address, port, tags and meta; the
// agent's HTTP check follows /ready; Deregister removes it from the agent and the catalog and
// nothing registers it again.
func TestRegistrarHTTPCheck(t *testing.T) {
	t.Parallel()
	agent, client := startAgent(t)
	url, status := readyServer(t)
	rt := newRegTest(t, agent.HTTPAddr, client, RegistrarOptions{
		Service: Instance{Name: "edge-http", ID: "edge-http-1", Address: "127.0.0.2", Port: 8443,
			Tags: []string{"edge", "v1"}, Meta: map[string]string{"version": "1.2.3", "zone": "a"}},
		CheckURL:      url,
		CheckInterval: time.Second,
	})
	if err := rt.r.Register(t.Context()); err != nil {
		t.Fatal(err)
	}

	svc, _, err := client.Agent().Service("edge-http-1", nil)
	if err != nil {
		t.Fatal(err)
	}
	if svc.Service != "edge-http" || svc.Address != "127.0.0.2" || svc.Port != 8443 ||
		!slices.Equal(svc.Tags, []string{"edge", "v1"}) || !maps.Equal(svc.Meta, map[string]string{"version": "1.2.3", "zone": "a"}) {
		t.Fatalf("agent service = %+v", svc)
	}
	// The catalog (what other nodes see) gets it through the agent's sync.
	eventually(t, regBound, func() error {
		cs, _, err := client.Catalog().Service("edge-http", "v1", nil)
		if err != nil {
			return err
		}
		if len(cs) != 1 || cs[0].ServiceID != "edge-http-1" || cs[0].ServiceMeta["version"] != "1.2.3" {
			return fmt.Errorf("catalog = %+v", cs)
		}
		return nil
	})

	rt.waitStatus(api.HealthPassing)
	status.Store(http.StatusServiceUnavailable)
	rt.waitStatus(api.HealthCritical)
	status.Store(http.StatusOK)
	rt.waitStatus(api.HealthPassing)

	if err := rt.r.Deregister(t.Context()); err != nil {
		t.Fatal(err)
	}
	rt.waitAgentHas(false)
	rt.waitStatus("")
	if err := rt.r.Register(t.Context()); !errors.Is(err, ErrDeregistered) {
		t.Fatalf("Register after Deregister = %v, want ErrDeregistered", err)
	}
	// Deregistering what the agent does not know is fine (a second shutdown path, say).
	if err := rt.r.Deregister(t.Context()); err != nil {
		t.Fatalf("second Deregister = %v", err)
	}
}

// TestRegistrarTTL: Run passes the TTL only while Ready says so, and once Run stops the TTL
// runs out and the instance turns critical.
func TestRegistrarTTL(t *testing.T) {
	t.Parallel()
	agent, client := startAgent(t)
	var notReady atomic.Bool
	rt := newRegTest(t, agent.HTTPAddr, client, RegistrarOptions{
		Service:       Instance{Name: "edge-ttl", Port: 8080},
		Check:         CheckTTL,
		CheckInterval: time.Second,
		Ready: func() (bool, string) {
			if notReady.Load() {
				return false, "waiting for the first consul answers"
			}
			return true, ""
		},
	})
	stop := rt.run()
	rt.waitStatus(api.HealthPassing)

	notReady.Store(true)
	rt.waitStatus(api.HealthCritical)
	_, checks, err := rt.status()
	if err != nil {
		t.Fatal(err)
	}
	if got := checks["service:edge-ttl"]; !strings.Contains(got, "not ready: waiting for the first consul answers") {
		t.Fatalf("ttl check = %q, want the readiness detail", got)
	}
	notReady.Store(false)
	rt.waitStatus(api.HealthPassing)

	stop()
	stoppedAt := time.Now()
	rt.waitStatus(api.HealthCritical)
	// Critical because nobody passed it for a TTL, not sooner.
	if d := time.Since(stoppedAt); d < 500*time.Millisecond {
		t.Fatalf("critical %s after Run stopped; the TTL is 1s", d)
	}
	_, checks, _ = rt.status()
	if got := checks["service:edge-ttl"]; !strings.Contains(got, "TTL expired") {
		t.Fatalf("ttl check = %q, want TTL expired", got)
	}
}

// TestRegistrarMaintenanceAndWait: WaitNotPassing is bounded while the instance passes, and
// returns once maintenance takes it out of the passing set; maintenance off brings it back;
// Deregister ends Run by itself.
func TestRegistrarMaintenanceAndWait(t *testing.T) {
	t.Parallel()
	agent, client := startAgent(t)
	rt := newRegTest(t, agent.HTTPAddr, client, RegistrarOptions{
		Service:       Instance{Name: "edge-maint", Port: 8080},
		Check:         CheckTTL,
		CheckInterval: time.Second,
	})
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	runDone := make(chan error, 1)
	go func() { runDone <- rt.r.Run(ctx) }()
	rt.waitStatus(api.HealthPassing)

	start := time.Now()
	err := rt.r.WaitNotPassing(t.Context(), 300*time.Millisecond)
	if !errors.Is(err, ErrStillPassing) {
		t.Fatalf("WaitNotPassing while passing = %v, want ErrStillPassing", err)
	}
	if d := time.Since(start); d < 250*time.Millisecond || d > 5*time.Second {
		t.Fatalf("WaitNotPassing(300ms) took %s", d)
	}

	if err := rt.r.Maintenance(t.Context(), true, "test drain"); err != nil {
		t.Fatal(err)
	}
	start = time.Now()
	if err := rt.r.WaitNotPassing(t.Context(), 10*time.Second); err != nil {
		t.Fatalf("WaitNotPassing after maintenance = %v", err)
	}
	t.Logf("not passing %s after maintenance", time.Since(start).Round(time.Millisecond))
	if ok, err := rt.passing(); err != nil || ok {
		t.Fatalf("passing = %v, %v after WaitNotPassing returned", ok, err)
	}
	_, checks, err := rt.status()
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(checks["_service_maintenance:"+rt.r.ID()], "test drain") ||
		!strings.HasPrefix(checks["service:"+rt.r.ID()], api.HealthCritical+": maintenance: test drain") {
		t.Fatalf("checks in maintenance = %v", checks)
	}
	// Run keeps the TTL critical while in maintenance (a tick is 333ms).
	deadline := time.Now().Add(time.Second)
	for time.Now().Before(deadline) {
		if ok, err := rt.passing(); err != nil || ok {
			t.Fatalf("passing = %v, %v during maintenance", ok, err)
		}
		time.Sleep(100 * time.Millisecond)
	}

	if err := rt.r.Maintenance(t.Context(), false, ""); err != nil {
		t.Fatal(err)
	}
	rt.waitStatus(api.HealthPassing)

	if err := rt.r.Deregister(t.Context()); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-runDone:
		if err != nil {
			t.Fatalf("Run = %v", err)
		}
	case <-time.After(regBound):
		t.Fatal("Run did not end after Deregister")
	}
	rt.waitStatus("")
	// Never registered: nothing to wait for.
	never := newRegTest(t, agent.HTTPAddr, client, RegistrarOptions{Service: Instance{Name: "edge-maint", ID: "never"}, Check: CheckTTL})
	start = time.Now()
	if err := never.r.WaitNotPassing(t.Context(), 10*time.Second); err != nil || time.Since(start) > time.Second {
		t.Fatalf("WaitNotPassing unregistered = %v after %s", err, time.Since(start))
	}
}

// logSignal is a zerolog writer that signals every line containing match.
type logSignal struct {
	match string
	mu    sync.Mutex
	lines []string
	hit   chan struct{}
}

func newLogSignal(match string) *logSignal {
	return &logSignal{match: match, hit: make(chan struct{}, 1)}
}

func (l *logSignal) Write(p []byte) (int, error) {
	l.mu.Lock()
	l.lines = append(l.lines, string(p))
	l.mu.Unlock()
	if strings.Contains(string(p), l.match) {
		select {
		case l.hit <- struct{}{}:
		default:
		}
	}
	return len(p), nil
}

func (l *logSignal) wait(t *testing.T) {
	t.Helper()
	select {
	case <-l.hit:
	case <-time.After(regBound):
		l.mu.Lock()
		defer l.mu.Unlock()
		t.Fatalf("no log line with %q within %s; log:\n%s", l.match, regBound, strings.Join(l.lines, ""))
	}
}

// TestRegistrarAgentDownAtStart: Run does not give up while the agent is down and registers
// once it is back.
func TestRegistrarAgentDownAtStart(t *testing.T) {
	t.Parallel()
	agent, client := startAgent(t)
	agent.Kill()
	logs := newLogSignal("consul registration failed")
	rt := newRegTest(t, agent.HTTPAddr, client, RegistrarOptions{
		Service:       Instance{Name: "edge-late", Port: 8080},
		Check:         CheckTTL,
		CheckInterval: time.Second,
		Logger:        zerolog.New(logs).Level(zerolog.DebugLevel),
		BackoffMin:    20 * time.Millisecond,
		BackoffMax:    200 * time.Millisecond,
	})
	rt.run()
	logs.wait(t) // at least one attempt failed against the dead agent
	agent.Restart(t)
	rt.waitStatus(api.HealthPassing)
}

// TestRegistrarReregistersAfterAgentRestart: an agent that comes back without its state (data
// dir lost) no longer knows the instance; Run notices — through the periodic probe with an
// HTTP check, through the rejected TTL update with a TTL check (the probe is made too slow to
// matter there) — and registers again. An agent that keeps its data dir restores the
// registration itself, which is why the test wipes it.
func TestRegistrarReregistersAfterAgentRestart(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name   string
		check  string
		resync time.Duration
	}{
		{"http check, resync probe", CheckHTTP, 200 * time.Millisecond},
		{"ttl check, rejected update", CheckTTL, time.Hour},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			agent, client := startAgent(t)
			url, _ := readyServer(t)
			logs := newLogSignal("registering again")
			rt := newRegTest(t, agent.HTTPAddr, client, RegistrarOptions{
				Service:       Instance{Name: "edge-restart", Port: 8080, Tags: []string{"t"}},
				Check:         tt.check,
				CheckURL:      url,
				CheckInterval: time.Second,
				Resync:        tt.resync,
				Logger:        zerolog.New(logs),
				BackoffMin:    20 * time.Millisecond,
				BackoffMax:    200 * time.Millisecond,
			})
			rt.run()
			rt.waitStatus(api.HealthPassing)
			agent.Stop()
			if err := os.RemoveAll(agent.DataDir); err != nil {
				t.Fatal(err)
			}
			if err := os.Mkdir(agent.DataDir, 0o700); err != nil {
				t.Fatal(err)
			}
			agent.Restart(t)
			logs.wait(t)
			rt.waitAgentHas(true)
			rt.waitStatus(api.HealthPassing)
			svc, _, err := client.Agent().Service(rt.r.ID(), nil)
			if err != nil || !slices.Equal(svc.Tags, []string{"t"}) {
				t.Fatalf("re-registered service = %+v, %v", svc, err)
			}
		})
	}
}

// listenTCP is a local app: it accepts (and closes) connections until the listener is closed.
func listenTCP(t *testing.T, addr string) net.Listener {
	t.Helper()
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			_ = c.Close()
		}
	}()
	t.Cleanup(func() { _ = ln.Close() })
	return ln
}

func portOf(ln net.Listener) int { return ln.Addr().(*net.TCPAddr).Port }

// connectIDs lists the passing Connect endpoints of service as "id@address:port".
func connectIDs(c *api.Client, service string) ([]string, error) {
	entries, _, err := c.Health().Connect(service, "", true, nil)
	if err != nil {
		return nil, err
	}
	var out []string
	for _, e := range entries {
		out = append(out, fmt.Sprintf("%s@%s:%d", e.Service.ID, e.Service.Address, e.Service.Port))
	}
	slices.Sort(out)
	return out, nil
}

func waitConnectIDs(t *testing.T, c *api.Client, service string, want ...string) {
	t.Helper()
	eventually(t, regBound, func() error {
		got, err := connectIDs(c, service)
		if err != nil {
			return err
		}
		if !slices.Equal(got, want) {
			return fmt.Errorf("passing connect endpoints of %s = %v, want %v", service, got, want)
		}
		return nil
	})
}

// TestRegistrarSidecar registers what meshgate's sidecar registers — the app with a TCP check
// on its port and the sidecar as its connect-proxy with an HTTP check on /ready and an alias of
// the app — and takes both out in shutdown order (proxy first).
func TestRegistrarSidecar(t *testing.T) {
	t.Parallel()
	agent, client := startAgent(t)
	appLn := listenTCP(t, "127.0.0.1:0")
	appPort := portOf(appLn)
	inPort := portOf(listenTCP(t, "127.0.0.1:0")) // the sidecar's mTLS inbound listener
	upPort := portOf(listenTCP(t, "127.0.0.1:0")) // an upstream's local bind: never dialled by Consul
	readyURL, ready := readyServer(t)

	app := newRegTest(t, agent.HTTPAddr, client, RegistrarOptions{
		Service: Instance{Name: "web", ID: "web-1", Address: "127.0.0.1", Port: appPort,
			Tags: []string{"v1"}, Meta: map[string]string{"version": "1"}},
		Check:         CheckTCP,
		CheckInterval: time.Second,
	})
	proxy := newRegTest(t, agent.HTTPAddr, client, RegistrarOptions{
		Service: Instance{Name: "web-sidecar-proxy", ID: "web-1-sidecar-proxy", Address: "127.0.0.1", Port: inPort,
			Tags: []string{"v1"}, Meta: map[string]string{"version": "1"},
			Proxy: &ProxyConfig{
				DestinationServiceName: "web", DestinationServiceID: "web-1",
				LocalServiceAddress: "127.0.0.1", LocalServicePort: appPort,
				Upstreams: []ProxyUpstream{{DestinationName: "api", LocalBindAddress: "127.0.0.1", LocalBindPort: upPort}},
			}},
		CheckURL:       readyURL,
		CheckInterval:  time.Second,
		AliasServiceID: "web-1",
	})
	// What a caller of web sees: its plain instances and its Connect endpoints.
	src := newSource(t, Options{Address: agent.HTTPAddr})
	plain, conn := newRecorder(), newRecorder()
	if err := src.Watch(t.Context(), "web", plain.fn); err != nil {
		t.Fatal(err)
	}
	if err := src.WatchSubset(t.Context(), "web", Subset{Connect: true}, conn.fn); err != nil {
		t.Fatal(err)
	}

	stopApp, stopProxy := app.run(), proxy.run()
	proxyID := fmt.Sprintf("web-1-sidecar-proxy@127.0.0.1:%d", inPort)
	waitConnectIDs(t, client, "web", proxyID)
	conn.waitLast(t, regBound, "the proxy", hasAddrs(SourceConsul, ep(inPort)))
	plain.waitLast(t, regBound, "the app", hasAddrs(SourceConsul, ep(appPort)))

	if svc, _, err := client.Agent().Service("web-1-sidecar-proxy", nil); err != nil || svc.Kind != api.ServiceKindConnectProxy {
		t.Fatalf("agent's proxy registration = %+v, %v; want kind connect-proxy", svc, err)
	}
	// Consul records the proxy's destination and upstreams (what Consul's own proxies and
	// its UI read); the catalog gets them through the agent's sync.
	eventually(t, regBound, func() error {
		// Catalog().Connect lists what Consul takes for web's proxies (and native instances).
		cs, _, err := client.Catalog().Connect("web", "", nil)
		if err != nil {
			return err
		}
		if len(cs) != 1 || cs[0].ServiceProxy == nil {
			return fmt.Errorf("catalog = %+v", cs)
		}
		c, p := cs[0], cs[0].ServiceProxy
		if c.ServiceName != "web-sidecar-proxy" || c.ServiceID != "web-1-sidecar-proxy" || c.ServicePort != inPort ||
			p.DestinationServiceName != "web" || p.DestinationServiceID != "web-1" ||
			p.LocalServiceAddress != "127.0.0.1" || p.LocalServicePort != appPort || len(p.Upstreams) != 1 ||
			p.Upstreams[0].DestinationName != "api" || p.Upstreams[0].LocalBindAddress != "127.0.0.1" || p.Upstreams[0].LocalBindPort != upPort {
			return fmt.Errorf("catalog proxy = %+v / %+v", c, p)
		}
		return nil
	})

	// The proxy's own /ready gates it.
	ready.Store(http.StatusServiceUnavailable)
	conn.waitLast(t, regBound, "no proxy while /ready fails", hasAddrs(SourceConsul))
	ready.Store(http.StatusOK)
	conn.waitLast(t, regBound, "the proxy again", hasAddrs(SourceConsul, ep(inPort)))

	// The app stops listening: its TCP check goes critical, and through the alias check the
	// proxy leaves the Connect set too. Listening again brings both back.
	if err := appLn.Close(); err != nil {
		t.Fatal(err)
	}
	app.waitStatus(api.HealthCritical)
	_, checks, err := app.status()
	if err != nil {
		t.Fatal(err)
	}
	if got := checks["service:web-1"]; !strings.HasPrefix(got, api.HealthCritical) {
		t.Fatalf("app tcp check = %q, want critical", got)
	}
	conn.waitLast(t, regBound, "no proxy while the app is down", hasAddrs(SourceConsul))
	plain.waitLast(t, regBound, "no app while it is down", hasAddrs(SourceConsul))
	_, checks, err = proxy.status()
	if err != nil {
		t.Fatal(err)
	}
	if got := checks["service:web-1-sidecar-proxy"]; !strings.HasPrefix(got, api.HealthPassing) {
		t.Fatalf("proxy ready check = %q, want passing (only the alias fails)", got)
	}
	listenTCP(t, fmt.Sprintf("127.0.0.1:%d", appPort))
	app.waitStatus(api.HealthPassing)
	conn.waitLast(t, regBound, "the proxy once the app listens", hasAddrs(SourceConsul, ep(inPort)))

	// Shutdown: the proxy leaves the Connect set first, while the app stays registered and
	// passing (its in-flight requests still reach it through the sidecar).
	if err := proxy.r.WaitNotPassing(t.Context(), 300*time.Millisecond); !errors.Is(err, ErrStillPassing) {
		t.Fatalf("proxy WaitNotPassing while passing = %v, want ErrStillPassing", err)
	}
	if err := proxy.r.Maintenance(t.Context(), true, "sidecar draining"); err != nil {
		t.Fatal(err)
	}
	if err := proxy.r.WaitNotPassing(t.Context(), regBound); err != nil {
		t.Fatalf("proxy WaitNotPassing after maintenance = %v", err)
	}
	if got, err := connectIDs(client, "web"); err != nil || len(got) != 0 {
		t.Fatalf("connect endpoints after WaitNotPassing = %v, %v", got, err)
	}
	if ok, err := app.passing(); err != nil || !ok {
		t.Fatalf("app passing = %v, %v while only the proxy is in maintenance", ok, err)
	}
	if err := app.r.Maintenance(t.Context(), true, "sidecar draining"); err != nil {
		t.Fatal(err)
	}
	if err := app.r.WaitNotPassing(t.Context(), regBound); err != nil {
		t.Fatalf("app WaitNotPassing after maintenance = %v", err)
	}
	stopProxy()
	stopApp()
	for _, rt := range []*regTest{proxy, app} {
		if err := rt.r.Deregister(t.Context()); err != nil {
			t.Fatal(err)
		}
		rt.waitAgentHas(false)
		rt.waitStatus("")
	}
	eventually(t, regBound, func() error {
		entries, _, err := client.Health().Connect("web", "", false, nil)
		if err != nil || len(entries) != 0 {
			return fmt.Errorf("connect entries (any health) after deregistration = %d, %v", len(entries), err)
		}
		return nil
	})
}
