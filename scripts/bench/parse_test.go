package main

import (
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func readTestdata(t *testing.T, name string) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("testdata", name))
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// The wrk reports in testdata/ were captured from wrk 4.1.0 (Debian) on this
// machine: a meshgate round of a smoke run, a proxy answering 502 to every
// request, and a server closing every other connection.
func TestParseWrk(t *testing.T) {
	t.Parallel()
	tests := []struct {
		file string
		want wrkResult
	}{
		{"wrk-latency.txt", wrkResult{rps: 20210.59, p50ms: 2.70, p99ms: 37.91, requests: 40494}},
		{"wrk-non2xx.txt", wrkResult{rps: 11697.20, p50ms: 0.122, p99ms: 8.63, requests: 12865, non2xx: 12865}},
		{"wrk-socket-errors.txt", wrkResult{rps: 4770.52, p50ms: 0.067, p99ms: 0.351, requests: 4775, socketErrs: 9550}},
	}
	for _, tt := range tests {
		t.Run(tt.file, func(t *testing.T) {
			t.Parallel()
			got, err := parseWrk(readTestdata(t, tt.file))
			if err != nil {
				t.Fatalf("parseWrk: %v", err)
			}
			if !approx(got.rps, tt.want.rps) || !approx(got.p50ms, tt.want.p50ms) || !approx(got.p99ms, tt.want.p99ms) ||
				got.requests != tt.want.requests || got.non2xx != tt.want.non2xx || got.socketErrs != tt.want.socketErrs {
				t.Fatalf("parseWrk = %+v, want %+v", got, tt.want)
			}
		})
	}
}

func TestParseWrkErrors(t *testing.T) {
	t.Parallel()
	// A warm-up report (no --latency) lacks the distribution; a failed run
	// prints only wrk's complaint.
	warmup := strings.Replace(readTestdata(t, "wrk-latency.txt"), "     50%    2.70ms\n", "", 1)
	tests := map[string]struct{ in, want string }{
		"no distribution": {warmup, "was --latency given?"},
		"connect failure": {"unable to connect to 127.0.0.1:1 Connection refused\n", "lacks Requests/sec"},
		"bad latency":     {strings.Replace(readTestdata(t, "wrk-latency.txt"), "37.91ms", "37.91xs", 1), `latency "37.91xs"`},
	}
	for name, tt := range tests {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			_, err := parseWrk(tt.in)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("parseWrk error = %v, want one containing %q", err, tt.want)
			}
		})
	}
}

func TestWrkMillis(t *testing.T) {
	t.Parallel()
	tests := map[string]float64{"512.00us": 0.512, "1.20ms": 1.2, "1.01s": 1010, "1.00m": 60000, "67.00us": 0.067}
	for in, want := range tests {
		t.Run(in, func(t *testing.T) {
			t.Parallel()
			got, err := wrkMillis(in)
			if err != nil || !approx(got, want) {
				t.Fatalf("wrkMillis(%q) = %v, %v; want %v", in, got, err, want)
			}
		})
	}
}

func TestWrkRequestCount(t *testing.T) {
	t.Parallel()
	if got := wrkRequestCount(readTestdata(t, "wrk-latency.txt")); got != 40494 {
		t.Fatalf("wrkRequestCount = %d, want 40494", got)
	}
	if got := wrkRequestCount("unable to connect\n"); got != 0 {
		t.Fatalf("wrkRequestCount of a failed run = %d, want 0", got)
	}
}

func TestParseStat(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name, in  string
		ticks     uint64
		ppid      int
		errSubstr string
	}{
		// testdata/proc-stat.txt is a real /proc/self/stat of cat.
		{"captured", readTestdata(t, "proc-stat.txt"), 0, 25105, ""},
		// A command name with spaces and a ')' must not shift the fields.
		{"odd comm", "42 (a) b (c)) S 7 42 42 0 -1 4194304 1 0 0 0 1234 56 0 0 20 0 9 0 1 2 3", 1290, 7, ""},
		{"no comm", "42 S 7", 0, 0, "no command name"},
		{"short", "42 (x) S 7 42", 0, 0, "fields after the command name"},
		{"bad utime", "42 (x) S 7 42 42 0 -1 4194304 1 0 0 0 x 56 0", 0, 0, "stat utime"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			ticks, ppid, err := parseStat(tt.in)
			if tt.errSubstr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.errSubstr) {
					t.Fatalf("parseStat error = %v, want %q", err, tt.errSubstr)
				}
				return
			}
			if err != nil || ticks != tt.ticks || ppid != tt.ppid {
				t.Fatalf("parseStat = %d, %d, %v; want %d, %d", ticks, ppid, err, tt.ticks, tt.ppid)
			}
		})
	}
}

// TestProcessTicksSelf reads this test process's own /proc entry: the live
// path of what the harness samples around every round.
func TestProcessTicksSelf(t *testing.T) {
	t.Parallel()
	if _, err := os.Stat("/proc/self/stat"); err != nil {
		t.Skip("no /proc")
	}
	if _, err := processTicks(os.Getpid()); err != nil {
		t.Fatalf("processTicks(self): %v", err)
	}
	if _, err := readMemory(os.Getpid()); err != nil {
		t.Fatalf("readMemory(self): %v", err)
	}
}

func TestParseStatus(t *testing.T) {
	t.Parallel()
	in := "Name:\tmeshgate\nVmHWM:\t   25480 kB\nVmRSS:\t   24312 kB\nThreads:\t9\n"
	m, err := parseStatus(in)
	if err != nil || m.RSSKB != 24312 || m.HWMKB != 25480 {
		t.Fatalf("parseStatus = %+v, %v", m, err)
	}
	if _, err := parseStatus("Name:\tx\nVmRSS:\t1 kB\n"); err == nil || !strings.Contains(err.Error(), "no VmRSS or VmHWM") {
		t.Fatalf("parseStatus without VmHWM: %v", err)
	}
}

func TestCPUPerRequest(t *testing.T) {
	t.Parallel()
	// 850 ticks at 100/s = 8.5 s of CPU over 200,000 requests = 42.5 µs each.
	if got := cpuPerRequestMicros(850, 100, 200000); !approx(got, 42.5) {
		t.Fatalf("cpuPerRequestMicros = %v, want 42.5", got)
	}
	if got := cpuPerRequestMicros(850, 100, 0); !math.IsNaN(got) {
		t.Fatalf("cpuPerRequestMicros with no requests = %v, want NaN", got)
	}
}

func TestStealPct(t *testing.T) {
	t.Parallel()
	a := "cpu  100 0 100 700 0 0 0 0 0 0"
	b := "cpu  150 0 150 1450 0 0 0 50 0 0"
	if got := stealPct(a, b); got != "5.6%" {
		t.Fatalf("stealPct = %s, want 5.6%%", got)
	}
	if got := stealPct(a, "cpu"); got != "n/a" {
		t.Fatalf("stealPct of a short line = %s, want n/a", got)
	}
}

func TestParseRateload(t *testing.T) {
	t.Parallel()
	// testdata/rateload.txt is rateload's report through the merged path of
	// a sidecar smoke run (edge and app-sidecar sampled).
	r := parseRateload(readTestdata(t, "rateload.txt") + "failure 3 x status 502 (warm-up included)\n")
	if !approx(r.get("achieved_rps"), 199.6) || !approx(r.get("p99.9_ms"), 1.568) || r.get("failed") != 0 {
		t.Fatalf("parseRateload: %v", r.vals)
	}
	if got := r.per1k("app-sidecar"); !approx(got, 0.0450/0.1996) {
		t.Fatalf("per1k(app-sidecar) = %v", got)
	}
	if !math.IsNaN(r.get("vcpu.nginx")) || !math.IsNaN(r.per1k("nginx")) {
		t.Fatal("a label rateload did not report must be missing")
	}
	if len(r.failures) != 1 || r.failures[0] != "3 x status 502 (warm-up included)" {
		t.Fatalf("failures = %q", r.failures)
	}
}

func approx(a, b float64) bool { return math.Abs(a-b) <= 1e-9*math.Max(1, math.Abs(b)) }

// The h2load reports in testdata/ were captured from h2load 1.52.0 (Debian's nghttp2-client)
// on this machine: a meshgate round of a smoke run of the grpc scenario, and a run against a
// meshgate whose origin was down (every answer a 502).
func TestParseH2load(t *testing.T) {
	t.Parallel()
	tests := []struct {
		file string
		want wrkResult
	}{
		{"h2load.txt", wrkResult{rps: 4370.50, requests: 8741}},
		{"h2load-failed.txt", wrkResult{rps: 6296.24, requests: 0, non2xx: 200}},
	}
	for _, tt := range tests {
		t.Run(tt.file, func(t *testing.T) {
			t.Parallel()
			got, err := parseH2load(readTestdata(t, tt.file))
			if err != nil {
				t.Fatalf("parseH2load: %v", err)
			}
			if !approx(got.rps, tt.want.rps) || got.requests != tt.want.requests || got.non2xx != tt.want.non2xx || got.socketErrs != tt.want.socketErrs {
				t.Errorf("got %+v, want %+v", got, tt.want)
			}
		})
	}
	if _, err := parseH2load("finished in 2.01s, 4370.50 req/s, 4.47MB/s\n"); err == nil {
		t.Error("a report without its requests line parsed")
	}
}

// testdata/h2load-log.tsv is h2load's --log-file from two real runs: six 200s through
// meshgate and two 415s from a gRPC server asked a plain GET. Only the 2xx latencies count.
func TestParseH2loadLog(t *testing.T) {
	t.Parallel()
	lat, err := parseH2loadLog(strings.NewReader(readTestdata(t, "h2load-log.tsv")))
	if err != nil {
		t.Fatal(err)
	}
	want := []float64{603, 1085, 1757, 5488, 9137, 14290}
	if len(lat) != len(want) {
		t.Fatalf("got %v, want %v", lat, want)
	}
	for i := range want {
		if lat[i] != want[i] {
			t.Fatalf("got %v, want %v", lat, want)
		}
	}
	if p := percentileMs(lat, 0.50); !approx(p, 1.757) {
		t.Errorf("p50 = %v ms, want 1.757", p)
	}
	if p := percentileMs(lat, 0.99); !approx(p, 14.290) {
		t.Errorf("p99 = %v ms, want 14.290", p)
	}
	if p := percentileMs(nil, 0.5); !math.IsNaN(p) {
		t.Errorf("percentile of nothing = %v, want NaN", p)
	}
	if _, err := parseH2loadLog(strings.NewReader("1\tok\t2\n")); err == nil {
		t.Error("a malformed log line parsed")
	}
}

// testdata/grpcload*.txt are scripts/bench/grpcload's reports from a smoke run through
// meshgate and from a run against a proxy whose origin was down.
func TestParseGrpcload(t *testing.T) {
	t.Parallel()
	got, err := parseGrpcload(readTestdata(t, "grpcload.txt"))
	if err != nil {
		t.Fatal(err)
	}
	if want := (wrkResult{rps: 1898.2, p50ms: 28.271, p99ms: 111.082, requests: 3827}); got != want {
		t.Errorf("got %+v, want %+v", got, want)
	}
	failed, err := parseGrpcload(readTestdata(t, "grpcload-failed.txt"))
	if err != nil {
		t.Fatal(err)
	}
	if failed.requests != 0 || failed.non2xx != 9007 {
		t.Errorf("failed run: got %+v, want 0 requests and 9007 errors", failed)
	}
	if _, err := parseGrpcload("requests 5\n"); err == nil {
		t.Error("a report without rps and percentiles parsed")
	}
}
