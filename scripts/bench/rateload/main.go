// Command rateload is the fixed-rate load generator of the bench harness's (scripts/bench)
// "sidecar" scenario. wrk keeps its connections busy (closed loop), so it
// measures a path at saturation; wrk2, which holds a rate, is not packaged
// here. rateload sends -rate requests per second for -duration (after an
// unrecorded -warmup at the same rate) whatever the answers' latency, and
// samples utime+stime of the -pid processes (and their direct children, for
// nginx's workers) from /proc at the start and the end of the recorded window.
// That gives what a proxy costs per request at a realistic rate, which a
// saturating load cannot: under wrk every process takes all the CPU it can get.
//
//	scheduler ── a slot every 1/rate s (open loop) ──▶ slots ──▶ -conns workers ──GET──▶ URL
//	                                                                (keep-alive)
//	/proc/<pid>/stat of each -pid at window start and end ──▶ vCPU per process
//
// Latency is measured from when the scheduler issued a request, not from when
// a worker got to it (as wrk2 does), so a path that falls behind the rate
// shows it in its percentiles instead of silently sending fewer requests. The
// issue time is the scheduler's actual wake-up, not the ideal slot: Go's
// timers wake up to about 1 ms late, and that lag is the generator's, not the
// path's. The time from the actual send is reported as well (svc_*).
//
// The report on stdout is "key value" lines for the script to parse; a
// one-line summary goes to stderr. The client never retries.
package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/valyala/fasthttp"

	"github.com/meshgate/meshgate/scripts/bench/procfs"
)

func main() {
	if err := run(os.Args[1:], os.Stdout, os.Stderr); err != nil {
		fmt.Fprintf(os.Stderr, "rateload: %v\n", err)
		os.Exit(1)
	}
}

type procFlag struct {
	labels []string
	pids   []int
}

func (p *procFlag) String() string { return fmt.Sprint(p.labels, p.pids) }

func (p *procFlag) Set(s string) error {
	label, v, ok := strings.Cut(s, "=")
	pid, err := strconv.Atoi(v)
	if !ok || label == "" || strings.ContainsAny(label, " \t") || err != nil || pid <= 0 {
		return fmt.Errorf("want LABEL=PID, got %q", s)
	}
	p.labels = append(p.labels, label)
	p.pids = append(p.pids, pid)
	return nil
}

type options struct {
	url         string
	rate        float64
	duration    time.Duration
	warmup      time.Duration
	conns       int
	timeout     time.Duration
	expectBytes int
	clkTck      int
	procs       procFlag
}

func parseOptions(args []string) (options, error) {
	var o options
	fs := flag.NewFlagSet("rateload", flag.ContinueOnError)
	fs.StringVar(&o.url, "url", "", "URL to GET (required)")
	fs.Float64Var(&o.rate, "rate", 1000, "requests per second")
	fs.DurationVar(&o.duration, "duration", 20*time.Second, "recorded window")
	fs.DurationVar(&o.warmup, "warmup", 2*time.Second, "unrecorded load at the same rate before the window")
	fs.IntVar(&o.conns, "conns", 16, "workers, each at most one request in flight (keep-alive connections)")
	fs.DurationVar(&o.timeout, "timeout", 5*time.Second, "per-request timeout (a timeout is a failure)")
	fs.IntVar(&o.expectBytes, "expect-bytes", 1024, "body size a 200 must have (0: any)")
	fs.IntVar(&o.clkTck, "clk-tck", 100, "kernel clock ticks per second (getconf CLK_TCK)")
	fs.Var(&o.procs, "pid", "LABEL=PID of a process whose CPU to sample (repeatable; labels may repeat and are summed)")
	if err := fs.Parse(args); err != nil {
		return o, fmt.Errorf("parse flags: %w", err)
	}
	u, err := url.Parse(o.url)
	switch {
	case err != nil || u.Scheme != "http" || u.Host == "":
		return o, fmt.Errorf("-url %q: want http://host:port/path", o.url)
	case o.rate <= 0 || o.conns <= 0 || o.clkTck <= 0:
		return o, errors.New("-rate, -conns and -clk-tck must be positive")
	case o.duration <= 0 || o.warmup < 0 || o.timeout <= 0:
		return o, errors.New("-duration and -timeout must be positive, -warmup not negative")
	}
	return o, nil
}

// sample is one request of the recorded window.
type sample struct {
	lat, svc time.Duration // from the issue, from the actual send
	ok       bool
}

func run(args []string, stdout, stderr io.Writer) error {
	o, err := parseOptions(args)
	if err != nil {
		return err
	}
	u, _ := url.Parse(o.url)
	client := &fasthttp.HostClient{
		Addr:                      u.Host,
		MaxConns:                  o.conns,
		ReadTimeout:               o.timeout,
		WriteTimeout:              o.timeout,
		MaxIdemponentCallAttempts: 1,
		RetryIfErr:                func(*fasthttp.Request, int, error) (bool, bool) { return false, false },
		NoDefaultUserAgentHeader:  true,
	}
	// Fail fast when the path does not answer at all.
	if status, _, err := client.GetTimeout(nil, o.url, o.timeout); err != nil || status != fasthttp.StatusOK {
		return fmt.Errorf("probe %s: status %d, %v", o.url, status, err)
	}

	total := int(o.rate * (o.warmup + o.duration).Seconds())
	first := int(o.rate * o.warmup.Seconds()) // first recorded slot
	interval := float64(time.Second) / o.rate
	// Buffered for every slot: the scheduler never waits for the workers.
	type slot struct {
		i      int
		issued time.Time
	}
	slots := make(chan slot, total)
	results := make([]sample, total-first)
	failures := map[string]int{} // reason -> count, warm-up included
	var failMu sync.Mutex
	fail := func(reason string) {
		failMu.Lock()
		failures[reason]++
		failMu.Unlock()
	}

	start := time.Now()
	at := func(i int) time.Time { return start.Add(time.Duration(float64(i) * interval)) }
	var wg sync.WaitGroup
	for range o.conns {
		wg.Add(1)
		go func() {
			defer wg.Done()
			req := fasthttp.AcquireRequest()
			defer fasthttp.ReleaseRequest(req)
			resp := fasthttp.AcquireResponse()
			defer fasthttp.ReleaseResponse(resp)
			req.SetRequestURI(o.url)
			for sl := range slots {
				sent := time.Now()
				err := client.DoDeadline(req, resp, sent.Add(o.timeout))
				done := time.Now()
				ok := false
				switch {
				case err != nil:
					fail("transport: " + err.Error())
				case resp.StatusCode() != fasthttp.StatusOK:
					fail(fmt.Sprintf("status %d", resp.StatusCode()))
				case o.expectBytes > 0 && len(resp.Body()) != o.expectBytes:
					fail(fmt.Sprintf("200 with a %d-byte body", len(resp.Body())))
				default:
					ok = true
				}
				resp.Reset()
				if sl.i >= first {
					results[sl.i-first] = sample{lat: done.Sub(sl.issued), svc: done.Sub(sent), ok: ok}
				}
			}
		}()
	}

	// The CPU window opens when the first recorded slot is due and closes
	// when the last one is; a sampler goroutine keeps the scheduler's timing.
	type cpuSample struct {
		ticks []uint64
		at    time.Time
		err   error
	}
	cpuAt := func(when time.Time) <-chan cpuSample {
		ch := make(chan cpuSample, 1)
		go func() {
			time.Sleep(time.Until(when))
			t, err := sampleTicks(o.procs.pids)
			ch <- cpuSample{ticks: t, at: time.Now(), err: err}
		}()
		return ch
	}
	cpuStart := cpuAt(at(first))
	cpuEnd := cpuAt(at(total))

	for i := 0; i < total; {
		now := time.Now()
		due := min(total, int(float64(now.Sub(start))/interval)+1)
		for ; i < due; i++ {
			slots <- slot{i, now}
		}
		if i < total {
			time.Sleep(time.Until(at(i)))
		}
	}
	close(slots)
	c0, c1 := <-cpuStart, <-cpuEnd
	wg.Wait()
	elapsed := time.Since(at(first))
	if c0.err != nil || c1.err != nil {
		return fmt.Errorf("cpu sample: %v %v", c0.err, c1.err)
	}

	var lat, svc []time.Duration
	failed := 0
	for _, s := range results {
		if !s.ok {
			failed++
			continue
		}
		lat = append(lat, s.lat)
		svc = append(svc, s.svc)
	}
	slices.Sort(lat)
	slices.Sort(svc)
	window := c1.at.Sub(c0.at)

	w := func(k string, v any) { fmt.Fprintf(stdout, "%s %v\n", k, v) }
	w("rate", o.rate)
	w("window_s", fmt.Sprintf("%.3f", o.duration.Seconds()))
	w("sent", len(results))
	w("ok", len(lat))
	w("failed", failed)
	// Completions of the window's requests over the window's length: below
	// the rate when the path fell behind (the tail finished late).
	w("achieved_rps", fmt.Sprintf("%.1f", float64(len(lat))/elapsed.Seconds()))
	for _, p := range []float64{50, 90, 99, 99.9} {
		w(fmt.Sprintf("p%g_ms", p), ms(pct(lat, p)))
		w(fmt.Sprintf("svc_p%g_ms", p), ms(pct(svc, p)))
	}
	w("max_ms", ms(pct(lat, 100)))
	w("cpu_window_s", fmt.Sprintf("%.3f", window.Seconds()))
	sums := map[string]uint64{}
	var order []string
	for j, label := range o.procs.labels {
		if _, seen := sums[label]; !seen {
			order = append(order, label)
		}
		sums[label] += c1.ticks[j] - c0.ticks[j]
	}
	for _, label := range order {
		cpu := float64(sums[label]) / float64(o.clkTck)
		vcpu := cpu / window.Seconds()
		w("cpu_s."+label, fmt.Sprintf("%.2f", cpu))
		w("vcpu."+label, fmt.Sprintf("%.4f", vcpu))
	}
	for reason, n := range failures {
		w("failure", fmt.Sprintf("%d x %s (warm-up included)", n, reason))
	}
	fmt.Fprintf(stderr, "rateload: %d sent at %.0f/s, %d failed, p50 %s ms p99 %s ms\n",
		len(results), o.rate, failed, ms(pct(lat, 50)), ms(pct(lat, 99)))
	if len(lat) == 0 {
		return errors.New("no request succeeded")
	}
	return nil
}

func ms(d time.Duration) string { return fmt.Sprintf("%.3f", float64(d)/1e6) }

// pct is the nearest-rank percentile of sorted durations (0 when empty).
func pct(sorted []time.Duration, p float64) time.Duration {
	if len(sorted) == 0 {
		return 0
	}
	i := int(p/100*float64(len(sorted))+0.5) - 1
	return sorted[max(0, min(i, len(sorted)-1))]
}

// sampleTicks returns utime+stime of each pid plus its direct children's
// (nginx's master does no proxying; its workers do).
func sampleTicks(pids []int) ([]uint64, error) {
	kids, err := children()
	if err != nil {
		return nil, err
	}
	out := make([]uint64, len(pids))
	for j, pid := range pids {
		for _, p := range append([]int{pid}, kids[pid]...) {
			t, _, err := readStat(p)
			if err != nil {
				return nil, fmt.Errorf("pid %d: %w", p, err)
			}
			out[j] += t
		}
	}
	return out, nil
}

// children maps each pid to its direct children, from /proc/*/stat.
func children() (map[int][]int, error) {
	dirs, err := filepath.Glob("/proc/[0-9]*")
	if err != nil {
		return nil, err
	}
	m := map[int][]int{}
	for _, d := range dirs {
		pid, err := strconv.Atoi(filepath.Base(d))
		if err != nil {
			continue
		}
		if _, ppid, err := readStat(pid); err == nil {
			m[ppid] = append(m[ppid], pid)
		}
	}
	return m, nil
}

func readStat(pid int) (uint64, int, error)   { return procfs.ReadStat(pid) }
func parseStat(s string) (uint64, int, error) { return procfs.ParseStat(s) }
