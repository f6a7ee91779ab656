package host

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/valyala/fasthttp"

	"github.com/meshgate/meshgate/gateway/filter"
	"github.com/meshgate/meshgate/internal/await"
	"github.com/meshgate/meshgate/plugins/sdk"
)

func TestStamperDecisionApplied(t *testing.T) {
	t.Parallel()
	eachTransport(t, func(h *harness) {
		t := h.t
		p := h.ensure(t, pluginOptions(t, "stamp", "stamper",
			`{"request":{"X-Stamp":"v1","X-A":"1"},"response":{"X-Served-Via":"meshgate"}}`))

		r := request("GET", "/api/orders?id=7", "X-Stamp", "from-client", "X-Stamp", "twice")
		if v := p.Request(r); v != (filter.Verdict{}) {
			t.Fatalf("verdict = %+v, want continue", v)
		}
		// Set replaces every value the client sent.
		if got := r.Ctx.Request.Header.PeekAll("X-Stamp"); len(got) != 1 || string(got[0]) != "v1" {
			t.Errorf("X-Stamp = %q, want only v1", got)
		}
		if got := string(r.Ctx.Request.Header.Peek("X-A")); got != "1" {
			t.Errorf("X-A = %q", got)
		}

		resp := &fasthttp.Response{}
		resp.SetStatusCode(200)
		p.Response(r, resp)
		if got := string(resp.Header.Peek("X-Served-Via")); got != "meshgate" {
			t.Errorf("response X-Served-Via = %q, want meshgate", got)
		}

		if got := h.calls("stamp", "request", "ok"); got != 1 {
			t.Errorf("request calls ok = %v, want 1", got)
		}
		if got := h.calls("stamp", "response", "ok"); got != 1 {
			t.Errorf("response calls ok = %v, want 1", got)
		}
		if got := testutil.ToFloat64(h.m.metrics.up.WithLabelValues("stamp")); got != 1 {
			t.Errorf("up = %v, want 1", got)
		}

		st := p.Status()
		if st.State != StateRunning || st.PID == 0 || st.Path != binary("stamper") || st.Calls != 2 || st.Errors != 0 {
			t.Errorf("status = %+v", st)
		}
		// The stamper cannot deny, so an unset policy is open.
		if st.FailurePolicy != PolicyOpen || st.Breaker != "closed" || st.Timeout != "50ms" {
			t.Errorf("status policy/breaker/timeout = %s/%s/%s", st.FailurePolicy, st.Breaker, st.Timeout)
		}
		if c := st.Capabilities; c == nil || c.Name != "stamper" || strings.Join(c.Phases, ",") != "request,response" {
			t.Errorf("capabilities = %+v", st.Capabilities)
		}
		// /plugins is JSON.
		b, err := json.Marshal(h.m.Statuses())
		if err != nil || !strings.Contains(string(b), `"name":"stamp"`) || !strings.Contains(string(b), `"state":"running"`) {
			t.Errorf("Statuses JSON = %s, %v", b, err)
		}

		// The plugin's own log line, re-logged under its name.
		await.Until(t, 10*time.Second, "the plugin's log line with plugin=stamp", func() bool {
			for line := range strings.Lines(h.log.String()) {
				if strings.Contains(line, `"plugin":"stamp"`) && strings.Contains(line, `"source":"plugin"`) &&
					strings.Contains(line, `"message":"configured"`) && strings.Contains(line, `"level":"info"`) {
					return true
				}
			}
			return false
		})
	})
}

func TestAPIKeyDeniesAndIdentifies(t *testing.T) {
	t.Parallel()
	eachTransport(t, func(h *harness) {
		t := h.t
		sum := sha256.Sum256([]byte("billing-secret"))
		p := h.ensure(t, pluginOptions(t, "auth", "apikey",
			fmt.Sprintf(`{"keys":[{"consumer":"billing","sha256":%q}]}`, hex.EncodeToString(sum[:]))))

		// No key: the plugin's own 401, written on the response for the engine to send as is.
		r := request("GET", "/api/orders")
		v := p.Request(r)
		if v != (filter.Verdict{Status: 401, Reason: ReasonResponse, Written: true}) {
			t.Fatalf("verdict = %+v, want the plugin's 401, written", v)
		}
		resp := &r.Ctx.Response
		if resp.StatusCode() != 401 || string(resp.Body()) != "missing API key\n" ||
			string(resp.Header.Peek("WWW-Authenticate")) != `ApiKey header="X-Api-Key"` ||
			!strings.HasPrefix(string(resp.Header.ContentType()), "text/plain") {
			t.Errorf("response = %d %q, headers:\n%s", resp.StatusCode(), resp.Body(), &resp.Header)
		}
		if len(r.Identity) != 0 {
			t.Errorf("identity = %q after a denial", r.Identity)
		}

		// The right key: continue, the consumer is the request's identity, the key does not go
		// upstream.
		r = request("GET", "/api/orders", "X-Api-Key", "billing-secret")
		if v := p.Request(r); v != (filter.Verdict{}) {
			t.Fatalf("verdict = %+v, want continue", v)
		}
		if string(r.Identity) != "billing" {
			t.Errorf("identity = %q, want billing", r.Identity)
		}
		if r.Ctx.Request.Header.Peek("X-Api-Key") != nil {
			t.Error("the API key is still on the upstream request")
		}
		// It can deny, so an unset failure policy is closed.
		if st := p.Status(); st.FailurePolicy != PolicyClosed || st.Capabilities == nil || !st.Capabilities.CanDeny {
			t.Errorf("status = %+v", st)
		}
	})
}

// TestCrashMidLoad crashes the plugin on one request of a sequential stream: that request
// and those in the gap get the failure policy, the process is restarted on its own with
// its configuration, and requests are served again.
func TestCrashMidLoad(t *testing.T) {
	t.Parallel()
	for _, policy := range []string{PolicyClosed, PolicyOpen} {
		t.Run(policy, func(t *testing.T) {
			t.Parallel()
			eachTransport(t, func(h *harness) {
				t := h.t
				o := pluginOptions(t, "mis", "misbehave", "")
				o.FailurePolicy = policy
				p := h.ensure(t, o)
				pid := p.Status().PID

				const total, crashAt = 200, 50
				var failed int
				for i := range total {
					var r *filter.Request
					if i == crashAt {
						r = request("GET", "/", "X-Misbehave", "crash")
					} else {
						r = request("GET", "/")
					}
					v := p.Request(r)
					switch {
					case i < crashAt && v != (filter.Verdict{}):
						t.Fatalf("call %d before the crash: %+v", i, v)
					case policy == PolicyClosed && v != (filter.Verdict{}):
						if v != (filter.Verdict{Status: 503, Reason: ReasonUnavailable}) {
							t.Fatalf("call %d: verdict %+v, want 503 %s", i, v, ReasonUnavailable)
						}
						failed++
					case policy == PolicyOpen && v != (filter.Verdict{}):
						t.Fatalf("call %d: verdict %+v, want continue (open)", i, v)
					}
				}
				if i := crashAt; policy == PolicyClosed && failed == 0 {
					t.Fatalf("no request failed closed after the crash at call %d", i)
				}
				t.Logf("%v of the %d calls from the crash on got the failure policy (%s)",
					h.calls("mis", "request", "unavailable"), total-crashAt, policy)

				await.Until(t, 10*time.Second, "the plugin restarted and running", func() bool {
					st := p.Status()
					return st.State == StateRunning && st.PID != 0 && st.PID != pid
				})
				if got := h.restarts("mis"); got != 1 {
					t.Errorf("restarts = %v, want 1", got)
				}
				st := p.Status()
				if st.Restarts != 1 || st.LastError != "" {
					t.Errorf("status after restart = %+v", st)
				}
				// Failures were counted as such, never as the plugin's errors.
				unavailable := h.calls("mis", "request", "unavailable")
				if unavailable < 1 || h.calls("mis", "request", "error") != 0 {
					t.Errorf("calls: unavailable=%v error=%v", unavailable, h.calls("mis", "request", "error"))
				}
				if policy == PolicyOpen && st.FailedOpen != uint64(unavailable) {
					t.Errorf("failed_open = %d, want %v", st.FailedOpen, unavailable)
				}
				if policy == PolicyClosed && st.FailedClosed != uint64(failed) {
					t.Errorf("failed_closed = %d, want %d", st.FailedClosed, failed)
				}
				// Served again, with the breaker untouched by the crash.
				for i := range 50 {
					if v := p.Request(request("GET", "/")); v != (filter.Verdict{}) {
						t.Fatalf("call %d after the restart: %+v", i, v)
					}
				}
				if st.Breaker != "closed" {
					t.Errorf("breaker = %s after a crash, want closed", st.Breaker)
				}
				await.Until(t, 10*time.Second, "the crash in the log", func() bool {
					return strings.Contains(h.log.String(), "crashing on command") &&
						strings.Contains(h.log.String(), "exit status 3")
				})
				// The restarted process got a socket of its own.
				if got := p.Status().Transport; got != h.transport {
					t.Errorf("transport after the restart = %q, want %q", got, h.transport)
				}
			})
		})
	}
}

// TestRestartResendsConfig: a restarted process gets the configuration again.
func TestRestartResendsConfig(t *testing.T) {
	t.Parallel()
	eachTransport(t, func(h *harness) {
		t := h.t
		// Every call fails, and the header is ignored (so nothing can crash it but a kill).
		o := pluginOptions(t, "cfg", "misbehave", `{"mode":"error","obey_header":false}`)
		p := h.ensure(t, o)
		pid := p.Status().PID
		if v := p.Request(request("GET", "/")); v != (filter.Verdict{}) {
			t.Fatalf("verdict = %+v, want open (misbehave cannot deny)", v)
		}
		if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
			t.Fatal(err)
		}
		await.Until(t, 10*time.Second, "the plugin restarted", func() bool {
			st := p.Status()
			return st.State == StateRunning && st.PID != pid
		})
		before := h.calls("cfg", "request", "error")
		p.Request(request("GET", "/"))
		if got := h.calls("cfg", "request", "error"); got != before+1 {
			t.Errorf("after restart: error calls %v → %v; the configuration (mode error) was not re-sent", before, got)
		}
	})
}

// TestRestartFailsThenRecovers: while the executable is missing, restarts fail (state
// failed, the reason shown) and back off; once it is back, the next attempt brings it up.
func TestRestartFailsThenRecovers(t *testing.T) {
	t.Parallel()
	eachTransport(t, func(h *harness) {
		t := h.t
		dir := t.TempDir()
		path, moved := filepath.Join(dir, "stamper"), filepath.Join(dir, "stamper.away")
		b, err := os.ReadFile(binary("stamper"))
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, b, 0o755); err != nil {
			t.Fatal(err)
		}
		o := Options{Name: "stamp", Path: path, SHA256: sha256Hex(t, path)}
		p := h.ensure(t, o)
		pid := p.Status().PID

		if err := os.Rename(path, moved); err != nil {
			t.Fatal(err)
		}
		if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
			t.Fatal(err)
		}
		await.Until(t, 10*time.Second, "a failed restart", func() bool {
			st := p.Status()
			return st.State == StateFailed && strings.Contains(st.LastError, "no such file")
		})
		// Down: open policy, answered at once.
		var v filter.Verdict
		if took := timed(func() { v = p.Request(request("GET", "/")) }); v != (filter.Verdict{}) || took > 5*time.Millisecond {
			t.Errorf("while down: %+v after %s, want continue at once", v, took)
		}
		if got := testutil.ToFloat64(h.m.metrics.up.WithLabelValues("stamp")); got != 0 {
			t.Errorf("up = %v while down", got)
		}

		if err := os.Rename(moved, path); err != nil {
			t.Fatal(err)
		}
		await.Until(t, 10*time.Second, "running again", func() bool { return p.Status().State == StateRunning })
		if got := h.restarts("stamp"); got < 2 {
			t.Errorf("restarts = %v, want at least 2 (one failed, one good)", got)
		}
		r := request("GET", "/")
		if v := p.Request(r); v != (filter.Verdict{}) || string(r.Ctx.Request.Header.Peek("X-Stamped-By")) != "stamper" {
			t.Errorf("after recovery: %+v, X-Stamped-By %q", v, r.Ctx.Request.Header.Peek("X-Stamped-By"))
		}
		if st := p.Status(); st.LastError != "" || st.PID == pid {
			t.Errorf("status after recovery = %+v", st)
		}
	})
}

func TestHangHitsDeadlineThenBreakerOpens(t *testing.T) {
	t.Parallel()
	eachTransport(t, func(h *harness) {
		t := h.t
		o := pluginOptions(t, "hang", "misbehave", "")
		o.Timeout = 30 * time.Millisecond
		o.FailurePolicy = PolicyClosed
		p := h.ensure(t, o)

		for i := range breakerConsecutive {
			var v filter.Verdict
			took := timed(func() { v = p.Request(request("GET", "/", "X-Misbehave", "hang")) })
			if v != (filter.Verdict{Status: 503, Reason: ReasonTimeout}) {
				t.Fatalf("hang %d: verdict %+v, want 503 %s", i, v, ReasonTimeout)
			}
			if took < o.Timeout || took > 2*time.Second {
				t.Errorf("hang %d answered after %s, want about the %s timeout", i, took, o.Timeout)
			}
		}
		if got := h.calls("hang", "request", "timeout"); got != breakerConsecutive {
			t.Errorf("timeouts = %v, want %d", got, breakerConsecutive)
		}
		if st := p.Status(); st.Breaker != "open" {
			t.Fatalf("breaker = %s after %d timeouts, want open", st.Breaker, breakerConsecutive)
		}
		if got := testutil.ToFloat64(h.m.metrics.breaker.WithLabelValues("hang")); got != 2 {
			t.Errorf("breaker gauge = %v, want 2 (open)", got)
		}

		// Open: even a well-behaved request fails fast, without waiting for the plugin.
		var slowest time.Duration
		for range 20 {
			var v filter.Verdict
			took := timed(func() { v = p.Request(request("GET", "/")) })
			slowest = max(slowest, took)
			if v != (filter.Verdict{Status: 503, Reason: ReasonUnavailable}) {
				t.Fatalf("with the breaker open: verdict %+v", v)
			}
		}
		if slowest > 5*time.Millisecond {
			t.Errorf("calls with the breaker open took up to %s, want well under the timeout", slowest)
		}
		t.Logf("slowest call with the breaker open: %s", slowest)
		if got := h.calls("hang", "request", "circuit_open"); got != 20 {
			t.Errorf("circuit_open = %v, want 20", got)
		}

		// After the open period one probe goes through, and a good answer closes it again.
		await.Until(t, 10*time.Second, "the breaker closing after a good probe", func() bool {
			return p.Request(request("GET", "/")) == (filter.Verdict{}) && p.Status().Breaker == "closed"
		})
		if p.Status().PID == 0 {
			t.Error("a hang cost the process")
		}
	})
}

func TestDeadlineCappedByRequest(t *testing.T) {
	t.Parallel()
	eachTransport(t, func(h *harness) {
		t := h.t
		o := pluginOptions(t, "slow", "misbehave", "")
		o.Timeout = 5 * time.Second
		p := h.ensure(t, o)

		// The request has 50ms left: the call gets no more, although the plugin's is 5s.
		r := request("GET", "/", "X-Misbehave", "slow=3s")
		r.Deadline = time.Now().Add(50 * time.Millisecond)
		var v filter.Verdict
		took := timed(func() { v = p.Request(r) })
		if v != (filter.Verdict{}) { // misbehave cannot deny: open
			t.Errorf("verdict = %+v, want continue (open)", v)
		}
		if took > time.Second {
			t.Errorf("call took %s, want about the request's 50ms", took)
		}
		if got := h.calls("slow", "request", "timeout"); got != 1 {
			t.Errorf("timeouts = %v, want 1", got)
		}

		// No time left at all: the plugin is not called.
		r = request("GET", "/")
		r.Deadline = time.Now().Add(-time.Millisecond)
		p.Request(r)
		if got := h.calls("slow", "request", "timeout"); got != 2 {
			t.Errorf("timeouts = %v, want 2", got)
		}
		if got := h.calls("slow", "request", "ok"); got != 0 {
			t.Errorf("ok = %v, want 0", got)
		}
	})
}

func TestEnsureRefusesBrokenPlugins(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	dir := t.TempDir()
	notExec := filepath.Join(dir, "stamper")
	b, err := os.ReadFile(binary("stamper"))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(notExec, b, 0o644); err != nil {
		t.Fatal(err)
	}

	tests := []struct {
		name string
		o    Options
		want []string
		is   error
	}{
		{
			name: "checksum mismatch",
			o:    Options{Name: "tampered", Path: binary("stamper"), SHA256: sha256Hex(t, binary("apikey"))},
			want: []string{`plugin "tampered"`, "sha256 does not match", "checksums did not match"},
		},
		{
			name: "not executable",
			o:    Options{Name: "noexec", Path: notExec, SHA256: sha256Hex(t, notExec)},
			want: []string{`plugin "noexec"`, "permission denied"},
		},
		{
			name: "missing",
			o:    Options{Name: "missing", Path: filepath.Join(dir, "nope"), SHA256: strings.Repeat("ab", 32)},
			want: []string{`plugin "missing"`, "no such file"},
		},
		{
			name: "configuration rejected",
			o:    pluginOptions(t, "badconf", "stamper", `{"request":{"bad name":"x"}}`),
			want: []string{`plugin "badconf"`, `"bad name" is not a valid header name`},
			is:   sdk.ErrInvalidConfig,
		},
		{
			name: "bad checksum syntax",
			o:    Options{Name: "badsum", Path: binary("stamper"), SHA256: "abc"},
			want: []string{`plugin "badsum"`, "64 hex digits"},
		},
		{
			name: "bad policy",
			o:    Options{Name: "badpolicy", Path: binary("stamper"), SHA256: sha256Hex(t, binary("stamper")), FailurePolicy: "sometimes"},
			want: []string{`plugin "badpolicy"`, `"sometimes"`},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p, err := h.m.Ensure(tt.o)
			if err == nil {
				t.Fatalf("Ensure succeeded: %+v", p.Status())
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("err = %q, want it to mention %q", err, w)
				}
			}
			if tt.is != nil && !errors.Is(err, tt.is) {
				t.Errorf("err = %v, want errors.Is %v", err, tt.is)
			}
		})
	}
	if st := h.m.Statuses().([]Status); len(st) != 0 {
		t.Errorf("refused plugins are listed: %+v", st)
	}
	if n := testutil.CollectAndCount(h.m.metrics.calls); n != 0 {
		t.Errorf("refused plugins left %d call series", n)
	}
}

// loadGen calls a Plugin from several goroutines until stopped, each checking its calls.
type loadGen struct {
	n      atomic.Int64
	wg     sync.WaitGroup
	stop   chan struct{}
	once   sync.Once
	err    error
	broken atomic.Bool
}

// load starts 4 callers of p; each gets its own check from newCheck, so a check may keep
// state about what its caller saw before.
func load(p *Plugin, newCheck func() func(v filter.Verdict, r *filter.Request) error) *loadGen {
	l := &loadGen{stop: make(chan struct{})}
	for range 4 {
		check := newCheck()
		l.wg.Add(1)
		go func() {
			defer l.wg.Done()
			for {
				select {
				case <-l.stop:
					return
				default:
				}
				r := request("GET", "/")
				if err := check(p.Request(r), r); err != nil {
					l.once.Do(func() { l.err = err })
					l.broken.Store(true)
					return
				}
				l.n.Add(1)
			}
		}()
	}
	return l
}

// awaitCalls waits until n more calls were made: the load is running, on both sides of a change.
func (l *loadGen) awaitCalls(t *testing.T, n int64) {
	t.Helper()
	target := l.n.Load() + n
	await.Until(t, 10*time.Second, fmt.Sprintf("%d calls", n), func() bool { return l.n.Load() >= target || l.failed() })
}

// failed reports a caller that stopped on a failed check (end reports it).
func (l *loadGen) failed() bool { return l.broken.Load() }

// end stops the callers and returns how many calls succeeded.
func (l *loadGen) end(t *testing.T) int64 {
	t.Helper()
	close(l.stop)
	l.wg.Wait()
	if l.err != nil {
		t.Errorf("during the load: %v", l.err)
	}
	return l.n.Load()
}

// stampChecker accepts v1 then v2: once a caller saw v2, every later call of that caller
// must see v2 (the plugin swaps its configuration atomically).
func stampChecker(sawV2 *atomic.Bool) func() func(v filter.Verdict, r *filter.Request) error {
	return func() func(v filter.Verdict, r *filter.Request) error {
		mine := false
		return func(v filter.Verdict, r *filter.Request) error {
			if v != (filter.Verdict{}) {
				return fmt.Errorf("verdict %+v", v)
			}
			switch s := string(r.Ctx.Request.Header.Peek("X-Stamp")); {
			case s == "v2":
				mine = true
				sawV2.Store(true)
			case s != "v1" || mine:
				return fmt.Errorf("X-Stamp = %q (this caller saw v2 before: %v)", s, mine)
			}
			return nil
		}
	}
}

func stampOf(v filter.Verdict, r *filter.Request) (string, error) {
	if v != (filter.Verdict{}) {
		return "", fmt.Errorf("verdict %+v", v)
	}
	return string(r.Ctx.Request.Header.Peek("X-Stamp")), nil
}

func TestReconfigureUnderLoad(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	o := pluginOptions(t, "stamp", "stamper", `{"request":{"X-Stamp":"v1"}}`)
	// What is checked is that no call is dropped, not the plugin's latency: a 2-core machine
	// running -race while starting a process can exceed the 50ms default.
	o.Timeout = 5 * time.Second
	p := h.ensure(t, o)
	pid := p.Status().PID

	var sawV2 atomic.Bool
	l := load(p, stampChecker(&sawV2))
	l.awaitCalls(t, 100)
	o.Config = []byte(`{"request":{"X-Stamp":"v2"}}`)
	if p2 := h.ensure(t, o); p2 != p {
		t.Error("Ensure returned another *Plugin for the same name")
	}
	await.Until(t, 10*time.Second, "v2 stamped", sawV2.Load)

	// A rejected configuration fails the Ensure and keeps v2.
	bad := o
	bad.Config = []byte(`{"request":{"bad name":"v3"}}`)
	if _, err := h.m.Ensure(bad); !errors.Is(err, sdk.ErrInvalidConfig) {
		t.Errorf("Ensure(bad config): err = %v, want ErrInvalidConfig", err)
	}
	l.awaitCalls(t, 100)
	n := l.end(t)
	t.Logf("%d calls during the reconfiguration", n)

	r := request("GET", "/")
	if s, err := stampOf(p.Request(r), r); err != nil || s != "v2" {
		t.Errorf("after the rejected config: X-Stamp = %q, %v; want v2", s, err)
	}
	if got := p.Status().PID; got != pid {
		t.Errorf("pid %d → %d: a configuration change restarted the process", pid, got)
	}
	if got := h.calls("stamp", "request", "ok"); got != float64(n)+1 {
		t.Errorf("ok calls = %v, want %d (no failures)", got, n+1)
	}
}

func TestBinarySwapUnderLoad(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	o := pluginOptions(t, "stamp", "stamper", `{"request":{"X-Stamp":"v1"}}`)
	// What is checked is that no call is dropped, not the plugin's latency: a 2-core machine
	// running -race while starting a process can exceed the 50ms default.
	o.Timeout = 5 * time.Second
	p := h.ensure(t, o)
	oldPID := p.Status().PID

	// The same program at another path is another executable to the host: a new process.
	copyPath := filepath.Join(t.TempDir(), "stamper-v2")
	b, err := os.ReadFile(binary("stamper"))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(copyPath, b, 0o755); err != nil {
		t.Fatal(err)
	}

	var sawV2 atomic.Bool
	l := load(p, stampChecker(&sawV2))
	l.awaitCalls(t, 100)
	o.Path, o.SHA256, o.Config = copyPath, sha256Hex(t, copyPath), []byte(`{"request":{"X-Stamp":"v2"}}`)
	h.ensure(t, o)
	await.Until(t, 10*time.Second, "the new process answering", sawV2.Load)
	l.awaitCalls(t, 100)
	n := l.end(t)
	t.Logf("%d calls during the swap", n)

	st := p.Status()
	if st.PID == oldPID || st.Path != copyPath || st.State != StateRunning {
		t.Errorf("status after the swap = %+v (old pid %d)", st, oldPID)
	}
	await.Until(t, 10*time.Second, "the old process gone", func() bool { return processGone(oldPID) })
	if got := h.restarts("stamp"); got != 0 {
		t.Errorf("restarts = %v: a swap is not a restart", got)
	}
	if got := h.calls("stamp", "request", "ok"); got != float64(n) {
		t.Errorf("ok calls = %v, want %d (no failures)", got, n)
	}

	// A new binary that cannot start leaves the running one in place.
	o.SHA256 = strings.Repeat("00", 32)
	if _, err := h.m.Ensure(o); err == nil || !strings.Contains(err.Error(), "sha256") {
		t.Errorf("Ensure with a wrong checksum: err = %v", err)
	}
	r := request("GET", "/")
	if s, err := stampOf(p.Request(r), r); err != nil || s != "v2" {
		t.Errorf("after the refused swap: X-Stamp = %q, %v; want v2 from the running process", s, err)
	}
}

func TestRetainStopsProcess(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	keep := h.ensure(t, pluginOptions(t, "keep", "stamper", ""))
	drop := h.ensure(t, pluginOptions(t, "drop", "apikey", `{"keys":[{"consumer":"a","key":"k"}]}`))
	pid := drop.Status().PID
	if processGone(pid) {
		t.Fatalf("pid %d gone before Retain", pid)
	}

	h.m.Retain([]string{"keep"})
	await.Until(t, 10*time.Second, "the dropped plugin's process gone", func() bool { return processGone(pid) })
	if st := drop.Status(); st.State != StateStopped || st.PID != 0 {
		t.Errorf("dropped status = %+v", st)
	}
	// A filter still holding it (an old configuration's route) gets its policy: closed.
	if v := drop.Request(request("GET", "/")); v != (filter.Verdict{Status: 503, Reason: ReasonUnavailable}) {
		t.Errorf("call to a stopped auth plugin: %+v, want 503", v)
	}
	statuses := h.m.Statuses().([]Status)
	if len(statuses) != 1 || statuses[0].Name != "keep" {
		t.Errorf("statuses = %+v, want only keep", statuses)
	}
	if _, ok := h.m.Plugin("drop"); ok {
		t.Error("Plugin(drop) still found")
	}
	if v := keep.Request(request("GET", "/")); v != (filter.Verdict{}) {
		t.Errorf("kept plugin: %+v", v)
	}
	// Its series are gone from /metrics.
	if n := testutil.CollectAndCount(h.m.metrics.up); n != 1 {
		t.Errorf("%d up series, want 1", n)
	}

	// The name can be used again.
	again := h.ensure(t, pluginOptions(t, "drop", "stamper", ""))
	if again == drop {
		t.Error("a stopped Plugin was reused")
	}
	if v := again.Request(request("GET", "/")); v != (filter.Verdict{}) {
		t.Errorf("re-added plugin: %+v", v)
	}
}

func TestCloseStopsEverything(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	p := h.ensure(t, pluginOptions(t, "stamp", "stamper", ""))
	pid := p.Status().PID
	h.m.Close()
	if !processGone(pid) {
		t.Errorf("pid %d still running after Close", pid)
	}
	if _, err := h.m.Ensure(pluginOptions(t, "late", "stamper", "")); !errors.Is(err, ErrClosed) {
		t.Errorf("Ensure after Close: %v", err)
	}
	h.m.Close() // idempotent
}

// TestPolicyAndTimeoutChangeInPlace: changing only the policy or timeout makes no call and
// keeps the process.
func TestPolicyAndTimeoutChangeInPlace(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	o := pluginOptions(t, "mis", "misbehave", "")
	p := h.ensure(t, o)
	pid := p.Status().PID
	if v := p.Request(request("GET", "/", "X-Misbehave", "error")); v != (filter.Verdict{}) {
		t.Fatalf("open policy: %+v", v)
	}
	o.FailurePolicy, o.Timeout = PolicyClosed, 80*time.Millisecond
	h.ensure(t, o)
	if v := p.Request(request("GET", "/", "X-Misbehave", "error")); v != (filter.Verdict{Status: 503, Reason: ReasonUnavailable}) {
		t.Errorf("closed policy: %+v", v)
	}
	if st := p.Status(); st.PID != pid || st.Timeout != "80ms" || st.FailurePolicy != PolicyClosed {
		t.Errorf("status = %+v (pid was %d)", st, pid)
	}
}

// TestPluginEnvIsMinimal: secrets in meshgate's environment never reach a plugin.
func TestPluginEnvIsMinimal(t *testing.T) {
	env := pluginEnv(func(k string) string {
		return map[string]string{"PATH": "/usr/bin", "CONSUL_HTTP_TOKEN": "secret", "TMPDIR": "/tmp/x",
			"GODEBUG": "schedtrace=2147483647", "GOMEMLIMIT": "100MiB"}[k]
	})
	got := strings.Join(env, " ")
	if got != "PATH=/usr/bin TMPDIR=/tmp/x GODEBUG=schedtrace=2147483647" {
		t.Fatalf("plugin env = %q", got)
	}
}

// TestProcsSetsGOMAXPROCS: the plugin process runs with GOMAXPROCS=procs, and a change of procs
// is a new process (the runtime reads it once, at start), not a Configure call.
func TestProcsSetsGOMAXPROCS(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("reads the plugin's environment from /proc")
	}
	h := newHarness(t)
	o := pluginOptions(t, "stamp", "stamper", `{"request":{"X-Stamp":"v"}}`)
	o.Procs = 3
	p := h.ensure(t, o)
	environ := func(pid int) []string {
		t.Helper()
		b, err := os.ReadFile(fmt.Sprintf("/proc/%d/environ", pid))
		if err != nil {
			t.Fatal(err)
		}
		return strings.Split(string(b), "\x00")
	}
	first := p.Status().PID
	if env := environ(first); !slices.Contains(env, "GOMAXPROCS=3") {
		t.Fatalf("plugin environment %q has no GOMAXPROCS=3", env)
	}
	o.Procs = 1
	h.ensure(t, o)
	await.Until(t, 10*time.Second, "a new process for the new procs", func() bool {
		st := p.Status()
		return st.State == StateRunning && st.PID != first && st.PID != 0
	})
	if env := environ(p.Status().PID); !slices.Contains(env, "GOMAXPROCS=1") {
		t.Fatalf("plugin environment %q has no GOMAXPROCS=1", env)
	}
}
