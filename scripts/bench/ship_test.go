package main

import (
	"errors"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/meshgate/meshgate/conf"
)

// testdata/metrics-ship.after is meshgate-ship's /metrics at the end of an EDGE_SHIP smoke
// run (after the outage and the drain); testdata/ship-drain-polls.txt is the same run's
// raw/ship-drain-polls.txt.
func TestParseShipCounters(t *testing.T) {
	t.Parallel()
	c, err := parseShipCounters(readTestdata(t, "metrics-ship.after"), "nats")
	if err != nil {
		t.Fatal(err)
	}
	if c.requests != 199973 || c.shipped != 199973 || c.spooled != 83303 || c.replayed != 83303 ||
		c.spoolBytes != 0 || c.logDropped != 0 || c.shipDropped() != 0 || c.droppedCell() != "0" {
		t.Fatalf("counters: %+v", c)
	}
	if _, err := parseShipCounters(readTestdata(t, "metrics-ship.after"), "other"); err == nil || !strings.Contains(err.Error(), `sink="other"`) {
		t.Fatalf("another sink: %v", err)
	}
	// Drops by reason, another sink's series ignored, the access log's own drops apart.
	text := `meshgate_requests_total{class="2xx",route="all"} 100
meshgate_requests_total{class="5xx",route="all"} 2
meshgate_access_log_dropped_total 3
meshgate_access_log_spool_bytes{sink="nats"} 4096
meshgate_access_log_spool_bytes{sink="b"} 1
meshgate_access_log_shipped_total{sink="nats"} 90
meshgate_access_log_ship_dropped_total{reason="queue_full",sink="nats"} 7
meshgate_access_log_ship_dropped_total{reason="max_bytes",sink="nats"} 2
meshgate_access_log_ship_dropped_total{reason="max_bytes",sink="b"} 50
`
	c, err = parseShipCounters(text, "nats")
	if err != nil {
		t.Fatal(err)
	}
	if c.requests != 102 || c.logDropped != 3 || c.spoolBytes != 4096 || c.shipped != 90 || c.shipDropped() != 9 ||
		c.droppedCell() != "max_bytes 2, queue_full 7" {
		t.Fatalf("counters: %+v (%s)", c, c.droppedCell())
	}
}

func readDrainPolls(t *testing.T, name string) []drainPoint {
	t.Helper()
	var out []drainPoint
	for line := range strings.Lines(readTestdata(t, name)) {
		f := strings.Fields(line)
		if len(f) != 3 || strings.HasPrefix(f[0], "#") {
			continue
		}
		var v [3]float64
		for i, s := range f {
			x, err := strconv.ParseFloat(s, 64)
			if err != nil {
				t.Fatalf("%s: %q: %v", name, line, err)
			}
			v[i] = x
		}
		out = append(out, drainPoint{at: time.Duration(v[0] * float64(time.Second)), replayed: v[1], spoolBytes: v[2]})
	}
	return out
}

func TestAnalyzeDrain(t *testing.T) {
	t.Parallel()
	pts := readDrainPolls(t, "ship-drain-polls.txt")
	d := analyzeDrain(pts, 0)
	// 83303 lines from the poll at 0.320 s (the last with none replayed) to 2.674 s (spool
	// empty); the peak is the best window of at least 1 s between two polls.
	if !d.drained || d.lines != 83303 || d.firstReplay != 423*time.Millisecond || d.empty != 2674*time.Millisecond {
		t.Fatalf("drain: %+v", d)
	}
	if math.Abs(d.rate-83303/2.354) > 0.01 || math.Abs(d.peak-39293.02) > 0.01 {
		t.Fatalf("rate %.2f, peak %.2f", d.rate, d.peak)
	}
	if want := []float64{26112, 32256, 24935}; !slices.Equal(d.perSecond, want) {
		t.Fatalf("per second %v, want %v", d.perSecond, want)
	}

	// A base above zero (lines replayed before the outage) is subtracted.
	shifted := slices.Clone(pts)
	for i := range shifted {
		shifted[i].replayed += 1000
	}
	if s := analyzeDrain(shifted, 1000); s.lines != d.lines || s.rate != d.rate || !slices.Equal(s.perSecond, d.perSecond) {
		t.Fatalf("with a base: %+v", s)
	}

	// Never replayed: nothing to report.
	none := []drainPoint{{at: time.Second, spoolBytes: 10}, {at: 2 * time.Second, spoolBytes: 10}}
	if n := analyzeDrain(none, 0); n.drained || n.lines != 0 || n.firstReplay != 0 {
		t.Fatalf("no replay: %+v", n)
	}
	// Replaying but not empty when the polls stopped (SHIP_DRAIN_TIMEOUT).
	part := []drainPoint{{at: 500 * time.Millisecond, spoolBytes: 10}, {at: time.Second, replayed: 5, spoolBytes: 10},
		{at: 2500 * time.Millisecond, replayed: 20, spoolBytes: 5}}
	p := analyzeDrain(part, 0)
	if p.drained || p.lines != 20 || p.firstReplay != time.Second || p.rate != 0 || math.Abs(p.peak-10) > 1e-9 ||
		!slices.Equal(p.perSecond, []float64{5, 0, 15}) {
		t.Fatalf("partial: %+v", p)
	}
}

func TestDeliveryVerdict(t *testing.T) {
	t.Parallel()
	ok := shipCounters{requests: 10, shipped: 10, dropped: map[string]float64{}}
	tests := []struct {
		d    deliveryCheck
		want string
	}{
		{deliveryCheck{c: ok, stream: 10, settled: true}, "OK: one message per request"},
		{deliveryCheck{c: ok, stream: 7, settled: true}, "**FLAGGED**: 3 lines missing from the stream"},
		{deliveryCheck{c: ok, stream: 12, settled: true}, "**FLAGGED**: 2 more messages than requests (duplicates)"},
		{deliveryCheck{c: shipCounters{requests: 10, shipped: 6, logDropped: 1, dropped: map[string]float64{"queue_full": 3}}, stream: 6, settled: true},
			"**FLAGGED**: 4 lines missing from the stream; 1 lines dropped by the access log; 3 lines dropped by the sink (queue_full 3)"},
		{deliveryCheck{c: ok, stream: 10}, "**FLAGGED**: counters had not settled"},
		{deliveryCheck{c: ok, streamErr: errors.New("nats: no servers available for connection")}, "**FLAGGED**: stream not read (nats: no servers available for connection)"},
	}
	for _, tt := range tests {
		if got := tt.d.verdict(); got != tt.want {
			t.Errorf("%+v: %q, want %q", tt.d, got, tt.want)
		}
	}
}

func TestShipReport(t *testing.T) {
	t.Parallel()
	s := func(rps, cpu, broker float64) sample {
		return sample{wrk: wrkResult{rps: rps, p50ms: 2, p99ms: 10, requests: int64(rps * 3)}, cpuUs: cpu, brokerCPUUs: broker}
	}
	r := rounds{"meshgate": {s(20000, 40, math.NaN())}, "meshgate-ship": {s(16000, 50, 10)}}
	clean := shipCounters{requests: 1000, shipped: 1000, dropped: map[string]float64{}}
	o := &shipOutage{
		before: s(16000, 50, 10), down: s(18000, 45, math.NaN()),
		atStop:    shipCounters{dropped: map[string]float64{}},
		atRestart: shipCounters{spooled: 54000, spoolBytes: 20e6, dropped: map[string]float64{}},
		ready:     100 * time.Millisecond, drainCPU: 3.25, drainBrokerCPU: 5,
		drain: drainResult{lines: 54000, firstReplay: 400 * time.Millisecond, empty: 2 * time.Second, drained: true,
			rate: 30000, peak: 35000, perSecond: []float64{20000, 34000}},
		afterRounds: deliveryCheck{phase: "after the rounds", c: clean, stream: 1000, settled: true},
		afterSpan:   deliveryCheck{phase: "after the outage and drain", c: clean, stream: 990, settled: true},
	}
	o.down.wrk.socketErrs = 4
	h := &harness{opt: options{rounds: 1, shipOutage: 10 * time.Second, shipPoll: 100 * time.Millisecond}, tmp: "/tmp/x"}
	got := h.shipReport(r, o)
	for _, want := range []string{
		"| meshgate | 20000 | 10.000 | 40.0 | — | 40.0 |\n",
		"| meshgate-ship | 16000 | 10.000 | 50.0 | 10.0 | 60.0 |\n",
		"| meshgate-ship/meshgate CPU per request, meshgate alone (the shipping cost in the proxy) | 1.25 |\n",
		"| meshgate-ship/meshgate CPU per request, with nats-server | 1.50 |\n",
		"| meshgate-ship/meshgate req/s | 0.80 |\n",
		"| after the rounds | 1000 | 0 | 1000 | 0 | 0 | 0 | 1000 | OK: one message per request |\n",
		"| after the outage and drain | 1000 | 0 | 1000 | 0 | 0 | 0 | 990 | **FLAGGED**: 10 lines missing from the stream |\n",
		"| broker down | 18000 | 2.000 | 10.000 | 45.0 | 0/4 | 54000 | 20.0 |\n",
		"req/s 1.12 of before, p99 1.00 of before, **FLAGGED**: 0 non-2xx and 4 socket errors with the broker down (before: 0 and 0)\n",
		"first line replayed after 400ms; spool empty after 2s",
		"**replay rate: 30000 lines/s** (54000 lines,",
		"peak over 1 s: 35000 lines/s\n",
		"each second since the restart began (the last second is partial): 20000, 34000\n",
		"CPU per replayed line over the drain: meshgate 3.2 µs, nats-server 5.0 µs",
		"| 1 | 20000 | 40.0 | 16000 | 50.0 | 10.0 |\n",
	} {
		if !strings.Contains(got, want) {
			t.Errorf("report lacks %q:\n%s", want, got)
		}
	}
	o.drain = drainResult{lines: 10, firstReplay: time.Second}
	o.drainErr = "the spool still held 3.0 MB after SHIP_DRAIN_TIMEOUT=2m0s"
	if got := h.shipReport(r, o); !strings.Contains(got, "**spool not empty**: the spool still held 3.0 MB") {
		t.Errorf("undrained:\n%s", got)
	}
}

// TestShipConfig renders meshgate-ship's config as the harness does and runs it through
// meshgate's own config parser and validation.
func TestShipConfig(t *testing.T) {
	t.Parallel()
	tmpl, err := os.ReadFile("meshgate.yaml.tmpl")
	if err != nil {
		t.Fatal(err)
	}
	h := &harness{tmp: "/tmp/bench"}
	spec := h.shipSpec(&natsBroker{port: 4222})
	v := map[string]string{"DIR": "/tmp/bench/meshgate-ship", "PORT": "1", "ADMIN_PORT": "2", "ORIGIN_PORT": "3"}
	for k, x := range spec.vals {
		v[k] = x
	}
	text, err := renderTemplate(string(tmpl), v)
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := conf.Parse("meshgate-ship.yaml", []byte(text))
	if err != nil {
		t.Fatalf("%v\n%s", err, text)
	}
	a := cfg.AccessLog
	if len(a.Sinks) != 1 || a.Sinks[0].Name != shipSink || a.Sinks[0].URL != "nats://127.0.0.1:4222" ||
		a.Sinks[0].Subject != shipSubject || a.Sinks[0].Stream != shipStream ||
		a.Spool.Dir != filepath.Join("/tmp/bench", "meshgate-ship", "spool") || a.Output != "/tmp/bench/meshgate-ship/access.log" {
		t.Fatalf("access_log: %+v", a)
	}
}
