package upstream

import (
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/rs/zerolog"

	"github.com/meshgate/meshgate/internal/syncbuf"
)

// plain turns outlier detection and breakers off and makes the retry budget unlimited, for
// tests of retry and balancing rules that must not be disturbed by resilience.
func plain(o Options) Options {
	o.Outlier.Disabled = true
	o.Breaker.Disabled = true
	o.RetryBudget.Ratio = 1000
	o.RetryBudget.MinRetriesPerSecond = 1 << 20
	return o
}

// fakeClock is an injectable Options.Now that only moves when told.
type fakeClock struct{ ns atomic.Int64 }

func newFakeClock() *fakeClock {
	c := &fakeClock{}
	c.ns.Store(time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC).UnixNano())
	return c
}

func (c *fakeClock) Now() time.Time          { return time.Unix(0, c.ns.Load()) }
func (c *fakeClock) Advance(d time.Duration) { c.ns.Add(int64(d)) }

// logBuffer is a goroutine-safe zerolog sink that counts matching lines.
type logBuffer struct{ syncbuf.Buffer }

// count is how many log lines contain every one of parts.
func (l *logBuffer) count(parts ...string) int {
	n := 0
	for _, line := range strings.Split(l.String(), "\n") {
		all := line != ""
		for _, p := range parts {
			all = all && strings.Contains(line, p)
		}
		if all {
			n++
		}
	}
	return n
}

// newLoggedManager is newManager with the log captured.
func newLoggedManager(t *testing.T) (*Manager, *prometheus.Registry, *logBuffer) {
	t.Helper()
	reg := prometheus.NewRegistry()
	logs := &logBuffer{}
	m, err := NewManager(ManagerOptions{Registerer: reg, Logger: zerolog.New(logs)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(m.Close)
	return m, reg, logs
}

// switchServer answers 503 while failing is set, 200 otherwise.
func switchServer(t *testing.T, failing bool) (*upstreamServer, *atomic.Bool) {
	t.Helper()
	var f atomic.Bool
	f.Store(failing)
	u := startServer(t, func(w http.ResponseWriter, _ *http.Request) {
		if f.Load() {
			w.WriteHeader(http.StatusServiceUnavailable)
		}
	})
	return u, &f
}

// hostStatus finds addr in c's status.
func hostStatus(t *testing.T, c *Cluster, addr string) HostStatus {
	t.Helper()
	for _, h := range c.Status().Hosts {
		if h.Address == addr {
			return h
		}
	}
	t.Fatalf("%s not in status", addr)
	return HostStatus{}
}
