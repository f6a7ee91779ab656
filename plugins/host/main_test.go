package host

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"os"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/rs/zerolog"
	"github.com/valyala/fasthttp"

	"github.com/meshgate/meshgate/gateway/filter"
	"github.com/meshgate/meshgate/internal/plugintest"
	"github.com/meshgate/meshgate/internal/syncbuf"
	"github.com/meshgate/meshgate/plugins/sdk"
)

// The tests run the example plugins as real processes. They are built once, here: a link of
// gRPC per test would cost seconds each on a 2-core machine.
var binDir string

func TestMain(m *testing.M) {
	os.Exit(plugintest.Main(m, &binDir))
}

func binary(name string) string { return filepath.Join(binDir, name) }

func sha256Hex(t testing.TB, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:])
}

type harness struct {
	m   *Manager
	reg *prometheus.Registry
	log *syncbuf.Buffer
	// transport, when set, is what ensure checks every plugin it starts calls over.
	transport string
	// t is the subtest an eachTransport body runs in (nil otherwise).
	t *testing.T
}

// eachTransport runs f as one parallel subtest per transport: the socket (what plugins
// built with the SDK get) and the gRPC fallback (a Manager that offers no socket, which the
// host treats exactly as a plugin that does not claim one). The behaviour under test must be
// the same on both.
// f gets its subtest as h.t: a func(t *testing.T, ...) would be taken for a test helper.
func eachTransport(t *testing.T, f func(h *harness)) {
	t.Helper()
	for _, tr := range [...]string{sdk.TransportSocket, sdk.TransportGRPC} {
		t.Run(tr, func(t *testing.T) {
			t.Parallel()
			h := newHarnessWith(t, ManagerOptions{GRPCOnly: tr == sdk.TransportGRPC})
			h.transport, h.t = tr, t
			f(h)
		})
	}
}

// newHarness returns a Manager that is closed (and its processes gone) when t ends; on
// failure the log is printed.
func newHarness(t testing.TB) *harness {
	t.Helper()
	return newHarnessWith(t, ManagerOptions{})
}

// newHarnessWith is newHarness with opts (their Logger and Registerer are the harness's).
func newHarnessWith(t testing.TB, opts ManagerOptions) *harness {
	t.Helper()
	h := &harness{reg: prometheus.NewRegistry(), log: &syncbuf.Buffer{}}
	opts.Logger, opts.Registerer = zerolog.New(h.log).Level(zerolog.DebugLevel), h.reg
	m, err := NewManager(opts)
	if err != nil {
		t.Fatal(err)
	}
	h.m = m
	t.Cleanup(func() {
		m.Close()
		if t.Failed() {
			t.Logf("log:\n%s", h.log)
		}
	})
	return h
}

func (h *harness) ensure(t testing.TB, o Options) *Plugin {
	t.Helper()
	p, err := h.m.Ensure(o)
	if err != nil {
		t.Fatalf("Ensure(%s): %v", o.Name, err)
	}
	if h.transport != "" {
		if got := p.Status().Transport; got != h.transport {
			t.Fatalf("Ensure(%s): transport %q, want %q", o.Name, got, h.transport)
		}
	}
	return p
}

func pluginOptions(t testing.TB, name, bin, config string) Options {
	t.Helper()
	return Options{Name: name, Path: binary(bin), SHA256: sha256Hex(t, binary(bin)), Config: []byte(config), Procs: 1}
}

func (h *harness) calls(name, ph, res string) float64 {
	return testutil.ToFloat64(h.m.metrics.calls.WithLabelValues(name, ph, res))
}

func (h *harness) restarts(name string) float64 {
	return testutil.ToFloat64(h.m.metrics.restarts.WithLabelValues(name))
}

// request builds a filter.Request on a real fasthttp.RequestCtx (no connection: the adapter
// needs none). headers are name, value pairs.
func request(method, uri string, headers ...string) *filter.Request {
	ctx := &fasthttp.RequestCtx{}
	ctx.Request.Header.SetMethod(method)
	ctx.Request.SetRequestURI(uri)
	for i := 0; i+1 < len(headers); i += 2 {
		ctx.Request.Header.Add(headers[i], headers[i+1])
	}
	return &filter.Request{Ctx: ctx, Route: "api", Identity: make([]byte, 0, 64), RequestID: []byte("0af7651916cd43dd8448eb211c80319c")}
}

// processGone reports whether pid no longer exists (go-plugin reaps what it starts).
func processGone(pid int) bool {
	return errors.Is(syscall.Kill(pid, 0), syscall.ESRCH)
}

// timed runs f and returns how long it took.
func timed(f func()) time.Duration {
	start := time.Now()
	f()
	return time.Since(start)
}
