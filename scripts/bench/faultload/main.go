package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"sort"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/valyala/fasthttp"
)

func main() {
	if err := run(os.Args[1:], os.Stdout, os.Stderr); err != nil {
		fmt.Fprintf(os.Stderr, "faultload: %v\n", err)
		os.Exit(1)
	}
}

type options struct {
	url         string
	admin       string // host:port of meshgate's admin API
	host        string // the killed instance, as /clusters names it
	pid         int
	conns       int
	duration    time.Duration
	killAt      time.Duration
	afterFrom   time.Duration
	timeout     time.Duration
	poll        time.Duration
	expectBytes int
}

func parseOptions(args []string) (options, error) {
	var o options
	fs := flag.NewFlagSet("faultload", flag.ContinueOnError)
	fs.StringVar(&o.url, "url", "", "URL to load through meshgate (required)")
	fs.StringVar(&o.admin, "admin", "", "meshgate admin address host:port (required)")
	fs.StringVar(&o.host, "host", "", "address of the killed instance as /clusters lists it (required)")
	fs.IntVar(&o.pid, "kill-pid", 0, "pid of the instance to SIGKILL (required)")
	fs.IntVar(&o.conns, "conns", 64, "concurrent keep-alive connections")
	fs.DurationVar(&o.duration, "duration", 20*time.Second, "load duration")
	fs.DurationVar(&o.killAt, "kill-at", 5*time.Second, "when to kill, from the start of the load")
	fs.DurationVar(&o.afterFrom, "after-from", 10*time.Second, "start of the after-kill throughput window")
	fs.DurationVar(&o.timeout, "timeout", 5*time.Second, "per-request timeout (a timeout is a failure)")
	fs.DurationVar(&o.poll, "poll", 10*time.Millisecond, "interval between /clusters polls")
	fs.IntVar(&o.expectBytes, "expect-bytes", 1024, "body size a 200 must have (0: any)")
	if err := fs.Parse(args); err != nil {
		return o, fmt.Errorf("parse flags: %w", err)
	}
	switch {
	case o.url == "" || o.admin == "" || o.host == "" || o.pid <= 0:
		return o, errors.New("-url, -admin, -host and -kill-pid are required")
	case o.conns <= 0:
		return o, errors.New("-conns must be positive")
	case o.killAt <= 0 || o.afterFrom <= o.killAt || o.duration <= o.afterFrom:
		return o, errors.New("want 0 < -kill-at < -after-from < -duration")
	case o.timeout <= 0 || o.poll <= 0:
		return o, errors.New("-timeout and -poll must be positive")
	}
	return o, nil
}

func run(args []string, stdout, stderr io.Writer) error {
	o, err := parseOptions(args)
	if err != nil {
		return err
	}
	u, err := url.Parse(o.url)
	if err != nil || u.Scheme != "http" || u.Host == "" {
		return fmt.Errorf("-url %q: want http://host:port/path", o.url)
	}
	// Signal 0 checks the pid without touching the process: better to fail
	// now than to load for five seconds and then find nothing to kill.
	if err := syscall.Kill(o.pid, 0); err != nil {
		return fmt.Errorf("process %d: %w", o.pid, err)
	}
	obs := newObserver(o)
	first, err := obs.fetch()
	if err != nil {
		return fmt.Errorf("admin /clusters before the load: %w", err)
	}
	if _, ok := findHost(first, o.host); !ok {
		return fmt.Errorf("host %s is not in /clusters", o.host)
	}

	client := &fasthttp.HostClient{
		Addr:         u.Host,
		MaxConns:     o.conns,
		ReadTimeout:  o.timeout,
		WriteTimeout: o.timeout,
		// The point is to count what meshgate lets through; a client retry
		// would hide exactly that.
		MaxIdemponentCallAttempts: 1,
		RetryIfErr:                func(*fasthttp.Request, int, error) (bool, bool) { return false, false },
		NoDefaultUserAgentHeader:  true,
	}

	ctx, stop := context.WithCancel(context.Background())
	defer stop()
	start := time.Now()
	results := make([]workerResult, o.conns)
	var wg sync.WaitGroup
	for i := range results {
		wg.Add(1)
		go func() {
			defer wg.Done()
			results[i] = load(client, o, start)
		}()
	}
	obsDone := make(chan []transition, 1)
	go func() { obsDone <- obs.watch(ctx, start) }()

	// The kill is on the workers' clock, so "5 s" means 5 s into the load.
	time.Sleep(time.Until(start.Add(o.killAt)))
	killErr := syscall.Kill(o.pid, syscall.SIGKILL)
	killedAt := time.Since(start)
	wg.Wait()
	stop()
	trans := <-obsDone
	if killErr != nil {
		return fmt.Errorf("kill %d: %w", o.pid, killErr)
	}

	sum := summarize(results, o)
	final, finalErr := obs.fetch()
	metrics, metricsErr := obs.metrics()

	w := bufio.NewWriter(stdout)
	writeReport(w, o, sum, trans, killedAt, obs.pollErrors, final, finalErr, metrics, metricsErr)
	if err := w.Flush(); err != nil {
		return fmt.Errorf("write report: %w", err)
	}
	eject, ok := firstAfter(trans, killedAt, func(t transition) bool { return t.ejected })
	ejectText := "never"
	if ok {
		ejectText = fmt.Sprintf("%.0fms", ms(eject.at-killedAt))
	}
	fmt.Fprintf(stderr, "faultload: total=%d failed=%d rps_before=%.0f rps_after=%.0f kill_to_ejected=%s\n",
		sum.total, sum.failed, sum.rpsBefore, sum.rpsAfter, ejectText)
	if sum.total == 0 {
		return errors.New("no request completed")
	}
	return nil
}

// ------------------------------------------------------------------- load --

type outcome uint8

const (
	outcomeOK outcome = iota
	outcomeFailed
)

// record is one finished request. Records are kept rather than counted so
// that any window or bucketing can be computed afterwards.
type record struct {
	at   time.Duration // completion, since the start of the load
	kind outcome
}

type failureStat struct {
	count       int
	first, last time.Duration
}

type workerResult struct {
	records  []record
	failures map[string]*failureStat
}

func (r *workerResult) fail(what string, at time.Duration) {
	if r.failures == nil {
		r.failures = make(map[string]*failureStat)
	}
	s := r.failures[what]
	if s == nil {
		s = &failureStat{first: at}
		r.failures[what] = s
	}
	s.count++
	s.last = at
	r.records = append(r.records, record{at: at, kind: outcomeFailed})
}

// load runs one connection's worth of back-to-back requests until the
// duration is over.
func load(client *fasthttp.HostClient, o options, start time.Time) workerResult {
	req := fasthttp.AcquireRequest()
	defer fasthttp.ReleaseRequest(req)
	resp := fasthttp.AcquireResponse()
	defer fasthttp.ReleaseResponse(resp)
	req.SetRequestURI(o.url)

	// Sized for ~1000 req/s per connection so appends rarely copy.
	res := workerResult{records: make([]record, 0, int(o.duration.Seconds()+1)*1000)}
	for time.Since(start) < o.duration {
		err := client.DoDeadline(req, resp, time.Now().Add(o.timeout))
		at := time.Since(start)
		switch {
		case err != nil:
			res.fail("transport: "+err.Error(), at)
		case resp.StatusCode() != fasthttp.StatusOK:
			res.fail(fmt.Sprintf("status %d: %.80s", resp.StatusCode(), resp.Body()), at)
		case o.expectBytes > 0 && len(resp.Body()) != o.expectBytes:
			res.fail(fmt.Sprintf("status 200 with a %d-byte body", len(resp.Body())), at)
		default:
			res.records = append(res.records, record{at: at, kind: outcomeOK})
		}
		resp.Reset()
	}
	return res
}

type bucket struct{ ok, failed int }

type summary struct {
	total, failed       int
	rpsBefore, rpsAfter float64
	perSecond           []bucket
	failures            map[string]*failureStat
}

// summarize merges the workers' records. The throughput windows count
// successful requests only: a fast error is not throughput.
func summarize(results []workerResult, o options) summary {
	s := summary{failures: make(map[string]*failureStat)}
	var before, after int
	for _, r := range results {
		for _, rec := range r.records {
			s.total++
			sec := int(rec.at / time.Second)
			for len(s.perSecond) <= sec {
				s.perSecond = append(s.perSecond, bucket{})
			}
			if rec.kind != outcomeOK {
				s.failed++
				s.perSecond[sec].failed++
				continue
			}
			s.perSecond[sec].ok++
			switch {
			case rec.at < o.killAt:
				before++
			case rec.at >= o.afterFrom && rec.at < o.duration:
				after++
			}
		}
		for what, f := range r.failures {
			m := s.failures[what]
			if m == nil {
				s.failures[what] = &failureStat{count: f.count, first: f.first, last: f.last}
				continue
			}
			m.count += f.count
			m.first = min(m.first, f.first)
			m.last = max(m.last, f.last)
		}
	}
	s.rpsBefore = float64(before) / o.killAt.Seconds()
	s.rpsAfter = float64(after) / (o.duration - o.afterFrom).Seconds()
	return s
}

// --------------------------------------------------------------- observer --

// The subset of mesh/upstream's ClusterStatus and HostStatus JSON we read.
type clusterJSON struct {
	Name         string     `json:"name"`
	HostsEjected int        `json:"hosts_ejected"`
	Panic        bool       `json:"panic"`
	Hosts        []hostJSON `json:"hosts"`
}

type hostJSON struct {
	Address           string `json:"address"`
	Healthy           bool   `json:"healthy"`
	Requests          uint64 `json:"requests"`
	Errors            uint64 `json:"errors"`
	Ejected           bool   `json:"ejected"`
	Ejections         int    `json:"ejections"`
	ConsecutiveErrors int    `json:"consecutive_errors"`
	Breaker           string `json:"breaker"`
}

func findHost(clusters []clusterJSON, addr string) (hostJSON, bool) {
	for _, c := range clusters {
		for _, h := range c.Hosts {
			if h.Address == addr {
				return h, true
			}
		}
	}
	return hostJSON{}, false
}

// transition is a change of the killed host's state as seen by the poller.
// The change happened after notBefore (when the previous poll, which still
// showed the old state, was sent) and before at (when this poll's answer
// arrived).
type transition struct {
	notBefore, at     time.Duration
	present           bool
	ejected, healthy  bool
	breaker           string
	consecutiveErrors int
}

type observer struct {
	o          options
	client     *http.Client
	pollErrors int // only touched by watch, read after it returns
}

func newObserver(o options) *observer {
	return &observer{o: o, client: &http.Client{Timeout: time.Second}}
}

func (ob *observer) get(path string) ([]byte, error) {
	resp, err := ob.client.Get("http://" + ob.o.admin + path)
	if err != nil {
		return nil, fmt.Errorf("get %s: %w", path, err)
	}
	defer func() { _ = resp.Body.Close() }() // read-side close: nothing to act on
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", path, err)
	}
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("get %s: status %d", path, resp.StatusCode)
	}
	return body, nil
}

func (ob *observer) fetch() ([]clusterJSON, error) {
	body, err := ob.get("/clusters")
	if err != nil {
		return nil, err
	}
	var cs []clusterJSON
	if err := json.Unmarshal(body, &cs); err != nil {
		return nil, fmt.Errorf("decode /clusters: %w", err)
	}
	return cs, nil
}

// metrics returns the series that explain a zero (or non-zero) loss.
func (ob *observer) metrics() ([]string, error) {
	prefixes := []string{
		"meshgate_upstream_retries_total",
		"meshgate_upstream_retry_budget_exhausted_total",
		"meshgate_upstream_ejections_total",
		"meshgate_upstream_errors_total",
		"meshgate_upstream_breaker_rejections_total",
	}
	body, err := ob.get("/metrics")
	if err != nil {
		return nil, err
	}
	var out []string
	for line := range strings.SplitSeq(string(body), "\n") {
		for _, p := range prefixes {
			if strings.HasPrefix(line, p) {
				out = append(out, line)
				break
			}
		}
	}
	return out, nil
}

// watch polls /clusters every poll interval until ctx ends and returns the
// changes of the watched host's state (the first poll is always one).
func (ob *observer) watch(ctx context.Context, start time.Time) []transition {
	tick := time.NewTicker(ob.o.poll)
	defer tick.Stop()
	var (
		out      []transition
		last     transition
		prevSent time.Duration
		have     bool
	)
	for {
		sent := time.Since(start)
		cs, err := ob.fetch()
		at := time.Since(start)
		if err != nil {
			ob.pollErrors++
		} else {
			h, present := findHost(cs, ob.o.host)
			cur := transition{
				notBefore: prevSent, at: at, present: present,
				ejected: h.Ejected, healthy: h.Healthy, breaker: h.Breaker,
				consecutiveErrors: h.ConsecutiveErrors,
			}
			if !have || cur.present != last.present || cur.ejected != last.ejected ||
				cur.healthy != last.healthy || cur.breaker != last.breaker {
				out = append(out, cur)
				last, have = cur, true
			}
			prevSent = sent
		}
		select {
		case <-ctx.Done():
			return out
		case <-tick.C:
		}
	}
}

// firstAfter returns the first transition after killedAt (by the time its
// answer arrived) that satisfies cond.
func firstAfter(trans []transition, killedAt time.Duration, cond func(transition) bool) (transition, bool) {
	for _, t := range trans {
		if t.at >= killedAt && cond(t) {
			return t, true
		}
	}
	return transition{}, false
}

// ----------------------------------------------------------------- report --

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

func secs(d time.Duration) float64 { return d.Seconds() }

func writeReport(w io.Writer, o options, s summary, trans []transition, killedAt time.Duration,
	pollErrors int, final []clusterJSON, finalErr error, metrics []string, metricsErr error,
) {
	p := func(format string, a ...any) { fmt.Fprintf(w, format, a...) }
	failedCell := "0"
	if s.failed > 0 {
		failedCell = fmt.Sprintf("**%d (FLAGGED)**", s.failed)
	}
	delay := func(cond func(transition) bool) string {
		t, ok := firstAfter(trans, killedAt, cond)
		if !ok {
			return "not observed during the run"
		}
		lo := max(t.notBefore-killedAt, 0)
		return fmt.Sprintf("%.0f ms (changed between %.0f and %.0f ms)", ms(t.at-killedAt), ms(lo), ms(t.at-killedAt))
	}

	p("## Results\n\n")
	p("| figure | value |\n|---|---:|\n")
	p("| requests completed | %d |\n", s.total)
	p("| requests lost (non-200 or transport error) | %s |\n", failedCell)
	p("| req/s in [0 s, %g s) (before the kill) | %.0f |\n", secs(o.killAt), s.rpsBefore)
	p("| req/s in [%g s, %g s) (after the kill) | %.0f |\n", secs(o.afterFrom), secs(o.duration), s.rpsAfter)
	p("| after/before | %.2f |\n", ratio(s.rpsAfter, s.rpsBefore))
	p("| kill at | %.3f s |\n", secs(killedAt))
	p("| kill → /clusters shows the host ejected | %s |\n", delay(func(t transition) bool { return t.ejected }))
	p("| kill → /clusters shows the host unhealthy | %s |\n", delay(func(t transition) bool { return !t.healthy }))
	p("\n")

	if len(s.failures) > 0 {
		p("### Failures seen by the client\n\n| what | count | first s | last s |\n|---|---:|---:|---:|\n")
		keys := make([]string, 0, len(s.failures))
		for k := range s.failures {
			keys = append(keys, k)
		}
		sort.Slice(keys, func(i, j int) bool { return s.failures[keys[i]].count > s.failures[keys[j]].count })
		for _, k := range keys {
			f := s.failures[k]
			p("| %s | %d | %.3f | %.3f |\n", strings.ReplaceAll(k, "|", "\\|"), f.count, secs(f.first), secs(f.last))
		}
		p("\n")
	}

	p("### Killed host %s in /clusters (polled every %s, %d failed polls)\n\n", o.host, o.poll, pollErrors)
	p("| at s | ejected | healthy | breaker | consecutive errors |\n|---:|---|---|---|---:|\n")
	for _, t := range trans {
		if !t.present {
			p("| %.3f | (host not listed) | | | |\n", secs(t.at))
			continue
		}
		p("| %.3f | %t | %t | %s | %d |\n", secs(t.at), t.ejected, t.healthy, t.breaker, t.consecutiveErrors)
	}
	p("\n")

	p("### Per second (completions)\n\n| second | ok | failed |\n|---:|---:|---:|\n")
	for i, b := range s.perSecond {
		mark := ""
		if time.Duration(i)*time.Second <= killedAt && killedAt < time.Duration(i+1)*time.Second {
			mark = " (kill)"
		}
		p("| %d%s | %d | %d |\n", i, mark, b.ok, b.failed)
	}
	p("\n")

	p("### Hosts at the end of the run\n\n")
	if finalErr != nil {
		p("(could not read /clusters: %v)\n\n", finalErr)
	} else {
		p("| cluster | host | requests | errors | ejected | ejections | breaker |\n|---|---|---:|---:|---|---:|---|\n")
		for _, c := range final {
			for _, h := range c.Hosts {
				p("| %s | %s | %d | %d | %t | %d | %s |\n", c.Name, h.Address, h.Requests, h.Errors, h.Ejected, h.Ejections, h.Breaker)
			}
		}
		p("\n")
	}
	p("### meshgate metrics at the end of the run\n\n")
	if metricsErr != nil {
		p("(could not read /metrics: %v)\n", metricsErr)
		return
	}
	p("```text\n")
	for _, m := range metrics {
		p("%s\n", m)
	}
	p("```\n")
}

func ratio(a, b float64) float64 {
	if b == 0 {
		return 0
	}
	return a / b
}
