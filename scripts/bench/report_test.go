package main

import (
	"math"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
)

func TestMedian(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		in   []float64
		want float64
	}{
		{"odd", []float64{36036, 35012, 37001}, 36036},
		{"even: mean of the middle two", []float64{4, 1, 3, 2}, 2.5},
		{"one", []float64{7}, 7},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			in := slices.Clone(tt.in)
			if got := median(tt.in); got != tt.want {
				t.Fatalf("median(%v) = %v, want %v", tt.in, got, tt.want)
			}
			if !slices.Equal(in, tt.in) {
				t.Fatal("median reordered its input")
			}
		})
	}
	if !math.IsNaN(median(nil)) {
		t.Fatal("median of nothing must be NaN, not 0")
	}
}

func TestRatioAndCells(t *testing.T) {
	t.Parallel()
	tests := []struct{ got, want string }{
		{ratio(36036, 46940), "0.77"},
		{ratio(1, 0), "n/a"},
		{ratio(math.NaN(), 1), "n/a"},
		{pctSaving(0.492, 0.434), "12%"},
		{num(math.NaN(), 1), "n/a"},
		{signed(0.084, 3), "+0.084"},
		{atMost(17.6, 20), "meets"},
		{atMost(math.NaN(), 20), "**MISSES**"},
		{atLeast(0.48, 0.75), "**MISSES**"},
		{targetVerdict(0.96, 0.85), "meets the >= 0.85 target"},
		{targetVerdict(0.78, 0.95), "**BELOW the 0.95 target**"},
	}
	for _, tt := range tests {
		if tt.got != tt.want {
			t.Errorf("got %q, want %q", tt.got, tt.want)
		}
	}
}

func TestRotate(t *testing.T) {
	t.Parallel()
	ts := []string{"direct", "nginx", "haproxy", "fasthttp", "meshgate"}
	if got := rotate(ts, 1); !slices.Equal(got, ts) {
		t.Fatalf("round 1 = %v", got)
	}
	if got := rotate(ts, 3); !slices.Equal(got, []string{"haproxy", "fasthttp", "meshgate", "direct", "nginx"}) {
		t.Fatalf("round 3 = %v", got)
	}
}

func TestTable(t *testing.T) {
	t.Parallel()
	tb := newTable("target", ">req/s", ">CPU µs/req", "errors")
	tb.add("haproxy", num(46940, 0), num(18.04, 1), "none")
	tb.add("meshgate", num(36036, 0), num(math.NaN(), 1), "**FLAGGED**: 1 non-2xx, 0 socket")
	tb.add("a|b", 1, 2, "x")
	want := `| target | req/s | CPU µs/req | errors |
|---|---:|---:|---|
| haproxy | 46940 | 18.0 | none |
| meshgate | 36036 | n/a | **FLAGGED**: 1 non-2xx, 0 socket |
| a\|b | 1 | 2 | x |
`
	if got := tb.String(); got != want {
		t.Fatalf("table:\n%s\nwant:\n%s", got, want)
	}
}

// TestEdgeReport renders the edge scenario's tables from fixed rounds, so a
// change to what the report says shows as a diff here.
func TestEdgeReport(t *testing.T) {
	t.Parallel()
	s := func(rps, p50, p99, cpu float64) sample {
		return sample{wrk: wrkResult{rps: rps, p50ms: p50, p99ms: p99, requests: int64(rps * 10)}, cpuUs: cpu}
	}
	r := rounds{
		"haproxy":  {s(23000, 2.5, 8.9, 35.5), s(23054, 2.4, 9.1, 35.0), s(22900, 2.6, 8.7, 36.0)},
		"nginx":    {s(25073, 2.2, 12.8, 30.8), s(25000, 2.2, 12.0, 31.0), s(25100, 2.1, 13.0, 30.0)},
		"fasthttp": {s(27833, 2.0, 6.8, 31.3), s(27000, 2.0, 7.0, 31.0), s(28000, 1.9, 6.5, 32.0)},
		"meshgate": {s(18499, 3.1, 11.3, 54.2), s(18400, 3.2, 11.0, 55.0), s(18600, 3.0, 12.0, 54.0)},
	}
	r["meshgate"][1].wrk.non2xx = 3
	h := &harness{opt: options{rounds: 3}}
	got := h.resultsTable(r, []string{"haproxy", "nginx", "fasthttp", "meshgate"}) + edgeRatios(r, true, false) +
		h.roundsTable("Rounds", r, []string{"meshgate"})
	want := `## Results (median of 3 rounds)

| target | req/s | p50 ms | p99 ms | CPU µs/req | errors |
|---|---:|---:|---:|---:|---|
| haproxy | 23000 | 2.500 | 8.900 | 35.5 | none |
| nginx | 25073 | 2.200 | 12.800 | 30.8 | none |
| fasthttp | 27833 | 2.000 | 6.800 | 31.3 | none |
| meshgate | 18499 | 3.100 | 11.300 | 54.2 | **FLAGGED**: 3 non-2xx, 0 socket |

| ratio (of medians) | value | target |
|---|---:|---|
| meshgate/haproxy req/s | 0.80 | ≥ 1.10 |
| meshgate/nginx req/s | 0.74 | |
| meshgate/fasthttp req/s | 0.66 | |
| meshgate/haproxy p99 (lower is better) | 1.27 | ≤ 1.00 |
| meshgate/nginx p99 (lower is better) | 0.88 | |
| meshgate/fasthttp CPU per request (lower is better) | 1.73 | ≤ 1.10 |
| meshgate/haproxy CPU per request (lower is better) | 1.53 | |

Targets are issue 16's (CPU per request first, then throughput and p99).
## Rounds

| round | target | req/s | p50 ms | p99 ms | CPU µs/req | non-2xx/socket errors |
|---:|---|---:|---:|---:|---:|---|
| 1 | meshgate | 18499.00 | 3.100 | 11.300 | 54.2 | 0/0 |
| 2 | meshgate | 18400.00 | 3.200 | 11.000 | 55.0 | 3/0 |
| 3 | meshgate | 18600.00 | 3.000 | 12.000 | 54.0 | 0/0 |

`
	if got != want {
		t.Fatalf("report:\n%s\nwant:\n%s", got, want)
	}
	if got := edgeRatios(r, false, false); !strings.Contains(got, "SKIP_MESHGATE=1") {
		t.Fatalf("without meshgate: %q", got)
	}
}

// TestPluginWindow reads two /metrics snapshots captured around one
// fixed-rate window of a plugins smoke run (200 req/s for 3 s through one
// stamper). The expected figures are what bench.sh's Python computed from the
// same two files.
func TestPluginWindow(t *testing.T) {
	t.Parallel()
	before, err := parseProm(readTestdata(t, "metrics-p1.before"))
	if err != nil {
		t.Fatal(err)
	}
	after, err := parseProm(readTestdata(t, "metrics-p1.after"))
	if err != nil {
		t.Fatal(err)
	}
	w := newPluginWindow(promDelta(before, after))
	if w.requests != 601 || w.non2xx != 0 || w.notOK() != 0 {
		t.Fatalf("requests %v, non2xx %v, not ok %v", w.requests, w.non2xx, w.notOK())
	}
	c := w.calls[[2]string{"s1", "request"}]
	if c == nil {
		t.Fatal("no s1 request calls")
	}
	ws := windows{"p1": {w}}
	for _, tt := range []struct {
		name     string
		f        callFigure
		decimals int
		want     string
	}{
		{"per request", perReq, 3, "1.000"},
		{"mean", meanUs, 1, "507.1"},
		{"p50", quantileUs(0.5), 1, "471.7"},
		{"p99", quantileUs(0.99), 1, "1999.2"},
	} {
		if got := num(ws.median("p1", "s1", "request", tt.f), tt.decimals); got != tt.want {
			t.Errorf("%s = %s, want %s", tt.name, got, tt.want)
		}
	}
	if got := num(ws.median("p1", "s1", "response", meanUs), 1); got != "n/a" {
		t.Errorf("response mean = %s, want n/a (no calls)", got)
	}
	if got := ws.bad("p1"); got != "none" {
		t.Errorf("bad = %q, want none", got)
	}
}

func TestHistogramQuantile(t *testing.T) {
	t.Parallel()
	h := histogram{0.001: 0, 0.002: 50, 0.004: 100, math.Inf(1): 100}
	if v, overflow, ok := h.quantile(0.5); !ok || overflow || !approx(v, 0.002) {
		t.Fatalf("p50 = %v %v %v", v, overflow, ok)
	}
	if v, _, _ := h.quantile(0.75); !approx(v, 0.003) {
		t.Fatalf("p75 = %v, want 0.003 (linear inside the bucket)", v)
	}
	over := histogram{0.001: 10, math.Inf(1): 100}
	if v, overflow, ok := over.quantile(0.99); !ok || !overflow || v != 0.001 {
		t.Fatalf("overflow p99 = %v %v %v", v, overflow, ok)
	}
	if _, _, ok := (histogram{}).quantile(0.5); ok {
		t.Fatal("empty histogram must have no quantile")
	}
}

func TestPromSum(t *testing.T) {
	t.Parallel()
	m, err := parseProm(`# HELP meshgate_ratelimit_decisions_total x
meshgate_ratelimit_decisions_total{policy="never",result="allowed",route="all"} 52770
meshgate_ratelimit_decisions_total{policy="never",result="limited",route="all"} 0
meshgate_ratelimit_decisions_total{policy="other",result="allowed",route="x"} 5
`)
	if err != nil {
		t.Fatal(err)
	}
	d := promDelta(nil, m)
	if got := promSum(d, "meshgate_ratelimit_decisions_total", map[string]string{"result": "allowed"}); got != 52775 {
		t.Fatalf("allowed = %v", got)
	}
}

func TestCheckStamps(t *testing.T) {
	t.Parallel()
	echoed := "User-Agent: fasthttp\nX-Stamp-2: stamp-2\nX-Stamp-1: stamp-1\nX-Stamp-3: stamp-3\n"
	got, err := checkStamps(echoed, 3)
	if err != nil || got != "X-Stamp-1: stamp-1; X-Stamp-2: stamp-2; X-Stamp-3: stamp-3" {
		t.Fatalf("checkStamps = %q, %v", got, err)
	}
	for _, tt := range []struct {
		in   string
		n    int
		want string
	}{
		{"X-Stamp-1: wrong\n", 1, "did not see X-Stamp-1: stamp-1"},
		{"X-Stamp-1: stamp-1\n", 0, "saw 1 X-Stamp-* headers, want 0"},
	} {
		if _, err := checkStamps(tt.in, tt.n); err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("checkStamps(%q, %d) = %v, want %q", tt.in, tt.n, err, tt.want)
		}
	}
}

func TestRenderTemplate(t *testing.T) {
	t.Parallel()
	got, err := renderTemplate("# @PORT@ stays in comments\nlisten @PORT@;\nemail: a@b.c\n", map[string]string{"PORT": "8080"})
	if err != nil || got != "# 8080 stays in comments\nlisten 8080;\nemail: a@b.c\n" {
		t.Fatalf("renderTemplate = %q, %v", got, err)
	}
	if _, err := renderTemplate("# @X@\nlisten @PORT@;\n", nil); err == nil || !strings.Contains(err.Error(), "unfilled placeholder @PORT@") {
		t.Fatalf("unfilled: %v", err)
	}
}

// TestRealTemplates renders every template the harness uses with the keys
// its scenario fills in, so a placeholder added to a template without the
// harness filling it fails here rather than in a benchmark run.
func TestRealTemplates(t *testing.T) {
	t.Parallel()
	common := map[string]string{"DIR": "/tmp/x", "PORT": "1", "ADMIN_PORT": "2"}
	tests := map[string]map[string]string{
		"haproxy.cfg.tmpl":                {"PORT": "1", "ORIGIN_PORT": "3"},
		"nginx.conf.tmpl":                 {"DIR": "/tmp/x", "PORT": "1", "ORIGIN_PORT": "3"},
		"nginx-sidecar.conf.tmpl":         {"DIR": "/tmp/x", "PORT": "1", "UPSTREAM_PORT": "3"},
		"meshgate.yaml.tmpl":              {"ORIGIN_PORT": "3", "ACCESS_LOG": "off", "TRACING": "", "SHIP": ""},
		"meshgate-fault.yaml.tmpl":        {"ORIGIN_PORT_1": "3", "ORIGIN_PORT_2": "4", "ORIGIN_PORT_3": "5"},
		"meshgate-ratelimit.yaml.tmpl":    {"ORIGIN_PORT": "3", "ROUTE_POLICIES": "[ never ]"},
		"meshgate-jwt.yaml.tmpl":          {"ORIGIN_PORT": "3", "ROUTE_POLICIES": "[ token ]", "JWKS_URL": "http://127.0.0.1:4/jwks.json", "ISSUER": "i", "AUDIENCE": "a"},
		"meshgate-plugins.yaml.tmpl":      {"ORIGIN_PORT": "3", "ECHO_PORT": "4", "PLUGINS": "{ }", "POLICIES": "{ }", "ROUTE_POLICIES": "[ ]"},
		"meshgate-edge-static.yaml.tmpl":  {"ORIGIN_PORT": "3"},
		"meshgate-edge-connect.yaml.tmpl": {"CONSUL_PORT": "3"},
		"meshgate-sidecar.yaml.tmpl": {"ADMIN_PORT": "2", "CONSUL_PORT": "3", "NAME": "app", "APP_PORT": "4",
			"INBOUND_PORT": "5", "UPSTREAMS": "[ ]", "PPROF": "false", "PROTOCOL": "grpc"},
		"haproxy-grpc.cfg.tmpl":   {"PORT": "1", "GRPC_PORT": "2", "H2_ORIGIN_PORT": "3", "GRPC_ORIGIN_PORT": "4"},
		"nginx-grpc.conf.tmpl":    {"DIR": "/tmp/x", "PORT": "1", "GRPC_PORT": "2", "H2_ORIGIN_PORT": "3", "GRPC_ORIGIN_PORT": "4"},
		"meshgate-grpc.yaml.tmpl": {"GRPC_PORT": "5", "H2_ORIGIN_PORT": "3", "GRPC_ORIGIN_PORT": "4"},
	}
	for name, vals := range tests {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			b, err := os.ReadFile(filepath.Join(".", name))
			if err != nil {
				t.Fatal(err)
			}
			v := map[string]string{}
			if strings.HasPrefix(name, "meshgate") && name != "meshgate-sidecar.yaml.tmpl" {
				for k, x := range common {
					v[k] = x
				}
			}
			for k, x := range vals {
				v[k] = x
			}
			if _, err := renderTemplate(string(b), v); err != nil {
				t.Fatalf("render: %v", err)
			}
		})
	}
}

func TestParseOptions(t *testing.T) {
	t.Parallel()
	env := func(m map[string]string) func(string) string { return func(k string) string { return m[k] } }
	o, err := parseOptions("edge", env(map[string]string{"ROUNDS": "1", "DURATION": "2", "BENCH_CACHE": "/c"}))
	if err != nil || o.rounds != 1 || o.duration.Seconds() != 2 || o.conns != 64 || o.cache != "/c" {
		t.Fatalf("edge: %+v, %v", o, err)
	}
	o, err = parseOptions("edge", env(map[string]string{"EDGE_SHIP": "1"}))
	if err != nil || !o.edgeShip || o.shipOutage != 10*time.Second || o.shipDrainTimeout != 120*time.Second {
		t.Fatalf("edge ship defaults: %+v, %v", o, err)
	}
	o, err = parseOptions("sidecar", env(nil))
	if err != nil || o.conns != 16 || o.stopTimeout.Seconds() != 15 || o.rate != 1000 {
		t.Fatalf("sidecar defaults: %+v, %v", o, err)
	}
	o, err = parseOptions("grpc", env(nil))
	if err != nil || o.h2Conns != 4 || o.h2Streams != 16 || o.threads != 2 {
		t.Fatalf("grpc defaults: %+v, %v", o, err)
	}
	o, err = parseOptions("fault", env(map[string]string{"FAULT_DURATION": "8"}))
	if err != nil || o.faultKillAt.Seconds() != 2 || o.faultAfterFrom.Seconds() != 4 {
		t.Fatalf("fault schedule: %+v, %v", o, err)
	}
	for _, tt := range []struct {
		scenario string
		env      map[string]string
		want     string
	}{
		{"edge", map[string]string{"ROUNDS": "0"}, "ROUNDS must be a positive integer"},
		{"edge", map[string]string{"DURATION": "2s"}, `DURATION must be an integer >= 1 (seconds), got "2s"`},
		{"jwt", map[string]string{"SKIP_MESHGATE": "1"}, "edge scenario only"},
		{"consul", map[string]string{"SERVICES": "5", "CHANGES": "6"}, "CHANGES must be 0..SERVICES"},
		{"grpc", map[string]string{"THREADS": "4", "H2_CONNS": "2"}, "THREADS must be at most H2_CONNS"},
		{"edge", map[string]string{"EDGE_SHIP": "1", "SKIP_MESHGATE": "1"}, "EDGE_SHIP=1 applies to the edge scenario with meshgate"},
		{"jwt", map[string]string{"EDGE_SHIP": "1"}, "EDGE_SHIP=1 applies to the edge scenario"},
		{"edge", map[string]string{"EDGE_SHIP": "1", "SHIP_OUTAGE": "0"}, "SHIP_OUTAGE must be an integer >= 1"},
	} {
		if _, err := parseOptions(tt.scenario, env(tt.env)); err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("%s %v: %v, want %q", tt.scenario, tt.env, err, tt.want)
		}
	}
}

// The paired table: each window's ratio of the meshgate target's CPU per request over the
// bare proxy's, and their median.
func TestPairedTable(t *testing.T) {
	t.Parallel()
	p := func(base, other float64) pairResult {
		return pairResult{base: sample{cpuUs: base}, other: sample{cpuUs: other}}
	}
	h := &harness{opt: options{threads: 2, conns: 64, duration: 8 * time.Second}}
	got := h.pairedTable("fasthttp", map[string][]pairResult{
		"meshgate":        {p(18, 20), p(20, 24), p(17.5, 20)},
		"meshgate-trace0": {p(18, 21)},
	}, []string{"meshgate", "meshgate-trace0"})
	for _, want := range []string{
		"wrk -t1 -c32 each, 8s",
		"| meshgate/fasthttp CPU per request | 1.143 | ≤ 1.10 |", // median of 1.111, 1.200, 1.143
		"| meshgate-trace0/fasthttp CPU per request | 1.167 | ≤ 1.10 |",
		"| meshgate | 2 | 20.0 | 24.0 | 1.200 |",
	} {
		if !strings.Contains(got, want) {
			t.Errorf("paired table lacks %q:\n%s", want, got)
		}
	}
	if h.pairedTable("fasthttp", map[string][]pairResult{}, nil) != "" {
		t.Error("no pairs must render nothing")
	}
}
