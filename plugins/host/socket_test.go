package host

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/meshgate/meshgate/gateway/filter"
	"github.com/meshgate/meshgate/internal/await"
	"github.com/meshgate/meshgate/plugins/sdk"
)

// TestTransportNegotiated: a plugin built with the SDK is called over the socket; one that
// does not claim it (stamper -grpc-only, as a plugin built before the socket transport) and
// every plugin of a Manager that offers none are called over gRPC, with the same results.
// /plugins says which.
func TestTransportNegotiated(t *testing.T) {
	t.Parallel()
	const config = `{"request":{"X-Stamp":"v1"},"response":{"X-Served-Via":"meshgate"}}`
	tests := []struct {
		name     string
		grpcOnly bool
		args     []string
		want     string
	}{
		{name: "both sides", want: sdk.TransportSocket},
		{name: "plugin without the socket", args: []string{"-grpc-only"}, want: sdk.TransportGRPC},
		{name: "host without the socket", grpcOnly: true, want: sdk.TransportGRPC},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			h := newHarnessWith(t, ManagerOptions{GRPCOnly: tt.grpcOnly})
			o := pluginOptions(t, "stamp", "stamper", config)
			o.Args = tt.args
			p := h.ensure(t, o)
			if got := p.Status().Transport; got != tt.want {
				t.Errorf("transport = %q, want %q", got, tt.want)
			}
			raw, err := json.Marshal(h.m.Statuses())
			if err != nil {
				t.Fatal(err)
			}
			if want := fmt.Sprintf(`"transport":%q`, tt.want); !strings.Contains(string(raw), want) {
				t.Errorf("/plugins = %s, want %s in it", raw, want)
			}
			for i := range 20 {
				r := request("GET", "/api/orders")
				if v := p.Request(r); v != (filter.Verdict{}) || string(r.Ctx.Request.Header.Peek("X-Stamp")) != "v1" {
					t.Fatalf("call %d: %+v, X-Stamp %q", i, v, r.Ctx.Request.Header.Peek("X-Stamp"))
				}
				p.Response(r, &r.Ctx.Response)
				if got := string(r.Ctx.Response.Header.Peek("X-Served-Via")); got != "meshgate" {
					t.Fatalf("call %d: X-Served-Via %q", i, got)
				}
			}
			if got := h.calls("stamp", "request", "ok"); got != 20 {
				t.Errorf("ok calls = %v, want 20", got)
			}
		})
	}
}

// TestConcurrentCallsMatched: many requests in flight on one plugin process at once, each
// with its own API key; every one gets its own consumer (or its own 401), on both transports.
func TestConcurrentCallsMatched(t *testing.T) {
	t.Parallel()
	const consumers, workers, each = 16, 16, 40
	var keys []string
	for i := range consumers {
		sum := sha256.Sum256(fmt.Appendf(nil, "secret-%d", i))
		keys = append(keys, fmt.Sprintf(`{"consumer":"c%d","sha256":%q}`, i, hex.EncodeToString(sum[:])))
	}
	config := `{"keys":[` + strings.Join(keys, ",") + `]}`
	eachTransport(t, func(h *harness) {
		t := h.t
		o := pluginOptions(t, "auth", "apikey", config)
		o.Timeout = 5 * time.Second // a loaded machine must not turn this into a timeout test
		p := h.ensure(t, o)
		var wg sync.WaitGroup
		errs := make(chan error, workers)
		for w := range workers {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for i := range each {
					k := (w + i) % (consumers + 1)
					if k == consumers { // no key: the plugin's own 401
						r := request("GET", "/api")
						if v := p.Request(r); v.Status != 401 || !v.Written {
							errs <- fmt.Errorf("worker %d call %d without a key: %+v", w, i, v)
							return
						}
						continue
					}
					r := request("GET", "/api", "X-Api-Key", fmt.Sprintf("secret-%d", k))
					v := p.Request(r)
					if want := fmt.Sprintf("c%d", k); v != (filter.Verdict{}) || string(r.Identity) != want {
						errs <- fmt.Errorf("worker %d call %d: %+v, consumer %q, want %q", w, i, v, r.Identity, want)
						return
					}
				}
			}()
		}
		wg.Wait()
		close(errs)
		for err := range errs {
			t.Error(err)
		}
		if got := h.calls("auth", "request", "ok"); got != workers*each {
			t.Errorf("ok calls = %v, want %d", got, workers*each)
		}
	})
}

// TestKilledMidCallFailsAtOnce: calls waiting on a process that is killed fail at once with
// the failure policy, not at their deadline. On the socket this holds because the child is
// the only holder of the other end: its death closes the socket, and the reader fails every
// waiting call.
func TestKilledMidCallFailsAtOnce(t *testing.T) {
	t.Parallel()
	eachTransport(t, func(h *harness) {
		t := h.t
		o := pluginOptions(t, "mis", "misbehave", "")
		o.Timeout = 20 * time.Second
		o.FailurePolicy = PolicyClosed
		p := h.ensure(t, o)
		pid := p.Status().PID

		const waiting = 4
		verdicts := make(chan filter.Verdict, waiting)
		for range waiting {
			go func() { verdicts <- p.Request(request("GET", "/", "X-Misbehave", "hang")) }()
		}
		await.Until(t, 10*time.Second, "the calls in flight", func() bool {
			return p.cur.Load().inst.inflight.Load() == waiting
		})
		time.Sleep(50 * time.Millisecond) // and sent
		start := time.Now()
		if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
			t.Fatal(err)
		}
		for range waiting {
			if v := <-verdicts; v != (filter.Verdict{Status: 503, Reason: ReasonUnavailable}) {
				t.Errorf("verdict %+v, want 503 %s", v, ReasonUnavailable)
			}
		}
		if took := time.Since(start); took > 5*time.Second {
			t.Errorf("the waiting calls failed %s after the kill, want at once (timeout %s)", took, o.Timeout)
		}
		if got := h.calls("mis", "request", "unavailable"); got != waiting {
			t.Errorf("unavailable = %v, want %d", got, waiting)
		}
		if got := h.calls("mis", "request", "timeout") + h.calls("mis", "request", "error"); got != 0 {
			t.Errorf("timeouts and errors = %v, want 0", got)
		}
		await.Until(t, 10*time.Second, "the plugin restarted", func() bool {
			st := p.Status()
			return st.State == StateRunning && st.PID != pid && st.Transport == h.transport
		})
		if v := p.Request(request("GET", "/")); v != (filter.Verdict{}) {
			t.Errorf("after the restart: %+v", v)
		}
	})
}
