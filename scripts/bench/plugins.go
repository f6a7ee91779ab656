package main

import (
	"context"
	"encoding/json"
	"fmt"
	"math"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"
)

// pluginEdge is one meshgate of the plugins scenario and what was checked on it.
type pluginEdge struct {
	t      *target
	n      int      // stamper policies on the route
	procs  []string // "name pid state phases transport" from /plugins
	names  []string // plugin names from /plugins
	phases int      // phases the first plugin implements
	stamps string   // the X-Stamp-* headers the upstream saw
}

func (e *pluginEdge) label() string {
	if e.n == 1 {
		return "1 plugin"
	}
	return fmt.Sprintf("%d plugins", e.n)
}

// windows holds one kind of load's meshgate-side figures, by instance and round.
type windows map[string][]pluginWindow

// plugins measures what out-of-process plugins cost: three edges with 0, 1 and
// 3 stamper policies on the route (each stamper its own process).
func (h *harness) plugins(ctx context.Context) (string, error) {
	o := h.opt
	h.logf("stamper: %s (sha256 %s)", h.bins.stamper, h.bins.stamperSHA)
	origin, err := h.startOrigin(ctx, "origin")
	if err != nil {
		return "", err
	}
	echo, err := serveEcho(ctx)
	if err != nil {
		return "", err
	}
	defer func() { _ = echo.Close() }()
	var edges []*pluginEdge
	for _, n := range []int{0, 1, 3} {
		e := &pluginEdge{n: n}
		h.logf("starting p%d (%s on the route)", n, e.label())
		if e.t, err = h.startPluginEdge(ctx, n, origin.port, echo.Addr().(*net.TCPAddr).Port); err != nil {
			return "", err
		}
		edges = append(edges, e)
	}
	for _, e := range edges {
		if err := h.checkPlugins(ctx, e); err != nil {
			return "", err
		}
	}
	ts := make([]*target, len(edges))
	for i, e := range edges {
		ts[i] = e.t
	}

	stat0 := cpuStat()
	if err := h.warmUp(ctx, ts, nil); err != nil {
		return "", err
	}
	wrkR, wrkW := rounds{}, windows{}
	for round := 1; round <= o.rounds; round++ {
		for _, t := range rotate(ts, round) {
			var s sample
			win, err := h.pluginWindow(ctx, t, round, "wrk", func() (err error) {
				s, err = h.wrkRound(ctx, t, round, nil)
				return err
			})
			if err != nil {
				return "", err
			}
			wrkR[t.name] = append(wrkR[t.name], s)
			wrkW[t.name] = append(wrkW[t.name], win)
		}
	}
	loadMid := loadAverage()
	h.logf("fixed-rate phase: %d req/s for %s per instance and round (load average %s)", o.rate, o.rateDuration, loadMid)
	rateR, rateW := rateRounds{}, windows{}
	for round := 1; round <= o.rounds; round++ {
		for _, t := range rotate(ts, round) {
			var r rateResult
			win, err := h.pluginWindow(ctx, t, round, "rate", func() (err error) {
				// rateload adds the CPU of a pid's direct children: the plugin processes.
				r, err = h.rateRound(ctx, t, round, []labelPid{{"meshgate+plugins", t.proc.pid()}})
				return err
			})
			if err != nil {
				return "", err
			}
			rateR[t.name] = append(rateR[t.name], r)
			rateW[t.name] = append(rateW[t.name], win)
		}
	}
	stat1 := cpuStat()
	// The stamps must still arrive after all the load (no silent fail-open).
	for _, e := range edges {
		if err := h.checkPlugins(ctx, e); err != nil {
			return "", err
		}
	}
	return h.pluginsReport(pluginFigures{edges: edges, wrk: wrkR, wrkW: wrkW, rate: rateR, rateW: rateW,
		loadMid: loadMid, steal: stealPct(stat0, stat1)}), nil
}

// startPluginEdge starts a meshgate edge whose routes carry n policies, each
// running its own stamper process (s1..sn) that sets the request header
// X-Stamp-<i>: stamp-<i>.
func (h *harness) startPluginEdge(ctx context.Context, n, originPort, echoPort int) (*target, error) {
	var plugins, policies, route []string
	timeout := ""
	if h.opt.pluginTimeout != "" {
		timeout = ", timeout: " + h.opt.pluginTimeout
	}
	for i := 1; i <= n; i++ {
		plugins = append(plugins, fmt.Sprintf("s%d: { path: %s, sha256: %s, config: { request: { X-Stamp-%d: stamp-%d } }%s }",
			i, h.bins.stamper, h.bins.stamperSHA, i, i, timeout))
		policies = append(policies, fmt.Sprintf("s%d: { plugin: s%d }", i, i))
		route = append(route, fmt.Sprintf("s%d", i))
	}
	note := "meshgate edge, route without policies"
	switch {
	case n == 1:
		note = "meshgate edge, route with 1 plugin policy (stamper s1: one process)"
	case n > 1:
		note = fmt.Sprintf("meshgate edge, route with %d plugin policies (stampers s1..s%d: %d processes)", n, n, n)
	}
	return h.startMeshgate(ctx, meshgateSpec{name: fmt.Sprintf("p%d", n), tmpl: "meshgate-plugins.yaml.tmpl",
		note: note + ", access log off",
		vals: map[string]string{
			"ORIGIN_PORT": strconv.Itoa(originPort), "ECHO_PORT": strconv.Itoa(echoPort),
			"PLUGINS": "{ " + strings.Join(plugins, ", ") + " }", "POLICIES": "{ " + strings.Join(policies, ", ") + " }",
			"ROUTE_POLICIES": "[ " + strings.Join(route, ", ") + " ]",
		}})
}

// serveEcho is the upstream of the stamp check: it answers every GET with the
// request headers it received, one "Name: value" a line.
func serveEcho(ctx context.Context) (net.Listener, error) {
	l, err := (&net.ListenConfig{}).Listen(ctx, "tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	srv := &http.Server{ReadHeaderTimeout: 5 * time.Second, Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var b strings.Builder
		for k, vs := range r.Header {
			for _, v := range vs {
				fmt.Fprintf(&b, "%s: %s\n", k, v)
			}
		}
		w.Header().Set("Content-Type", "text/plain")
		_, _ = w.Write([]byte(b.String()))
	})}
	go func() { _ = srv.Serve(l) }()
	return l, nil
}

// pluginStatus is the part of the admin /plugins answer the check reads.
type pluginStatus struct {
	Name         string `json:"name"`
	Pid          int    `json:"pid"`
	State        string `json:"state"`
	Transport    string `json:"transport"` // socket or grpc (empty: not running)
	Capabilities struct {
		Phases []string `json:"phases"`
	} `json:"capabilities"`
}

// checkPlugins requires e.n running plugins and that the upstream of the
// echo route sees exactly the n stamps, each with its value.
func (h *harness) checkPlugins(ctx context.Context, e *pluginEdge) error {
	body, err := httpGet(ctx, e.t.adminURL("/plugins"))
	if err != nil {
		return fmt.Errorf("%s: cannot read /plugins: %w", e.t.name, err)
	}
	var ps []pluginStatus
	if err := json.Unmarshal(body, &ps); err != nil {
		return fmt.Errorf("%s: /plugins: %w", e.t.name, err)
	}
	e.procs, e.names = nil, nil
	running := 0
	for _, p := range ps {
		phases := strings.Join(p.Capabilities.Phases, ",")
		if phases == "" {
			phases = "-"
		}
		transport := p.Transport
		if transport == "" {
			transport = "-"
		}
		e.procs = append(e.procs, fmt.Sprintf("%s %d %s %s %s", p.Name, p.Pid, p.State, phases, transport))
		e.names = append(e.names, p.Name)
		if p.State == "running" {
			running++
		}
	}
	if len(ps) > 0 {
		e.phases = len(ps[0].Capabilities.Phases)
	}
	if running != e.n {
		return fmt.Errorf("%s: %d plugins running, want %d: %v", e.t.name, running, e.n, e.procs)
	}
	echoed, err := httpGet(ctx, e.t.url("/__echo"))
	if err != nil {
		return fmt.Errorf("%s: the stamp check request failed: %w", e.t.name, err)
	}
	stamps, err := checkStamps(string(echoed), e.n)
	if err != nil {
		return fmt.Errorf("%s: %w\n%s", e.t.name, err, echoed)
	}
	e.stamps = stamps
	shown := stamps
	if shown == "" {
		shown = "no stamp"
	}
	h.logf("%s: upstream saw %s (%d plugin processes running)", e.t.name, shown, e.n)
	return nil
}

// checkStamps verifies an echoed header dump holds exactly X-Stamp-1..n with
// their values and returns them joined by "; " in header order.
func checkStamps(echoed string, n int) (string, error) {
	var stamps []string
	for line := range strings.Lines(echoed) {
		line = strings.TrimSpace(line)
		if strings.HasPrefix(strings.ToLower(line), "x-stamp-") {
			stamps = append(stamps, line)
		}
	}
	for i := 1; i <= n; i++ {
		want := fmt.Sprintf("x-stamp-%d: stamp-%d", i, i)
		if !slices.ContainsFunc(stamps, func(s string) bool { return strings.ToLower(s) == want }) {
			return "", fmt.Errorf("the upstream did not see X-Stamp-%d: stamp-%d", i, i)
		}
	}
	if len(stamps) != n {
		return "", fmt.Errorf("the upstream saw %d X-Stamp-* headers, want %d", len(stamps), n)
	}
	slices.Sort(stamps)
	return strings.Join(stamps, "; "), nil
}

// pluginWindow runs load between two /metrics snapshots of t and returns what
// meshgate counted in between.
func (h *harness) pluginWindow(ctx context.Context, t *target, round int, kind string, load func() error) (pluginWindow, error) {
	snap := func(when string) (map[string]promSample, error) {
		b, err := httpGet(ctx, t.adminURL("/metrics"))
		if err != nil {
			return nil, fmt.Errorf("%s: cannot read /metrics: %w", t.name, err)
		}
		_ = os.WriteFile(filepath.Join(h.rawDir(), fmt.Sprintf("metrics-%s-%s-round%d.%s", t.name, kind, round, when)), b, 0o644)
		return parseProm(string(b))
	}
	before, err := snap("before")
	if err != nil {
		return pluginWindow{}, err
	}
	if err := load(); err != nil {
		return pluginWindow{}, err
	}
	after, err := snap("after")
	if err != nil {
		return pluginWindow{}, err
	}
	w := newPluginWindow(promDelta(before, after))
	if w.non2xx != 0 || w.notOK() != 0 {
		h.logf("%s %s round %d: meshgate counted %.0f non-2xx answers and %.0f plugin calls that were not ok", t.name, kind, round, w.non2xx, w.notOK())
	}
	return w, nil
}

// bad sums, over all rounds, meshgate's non-2xx answers and the plugin calls
// that were not "ok" (by result): "none", or a flag. A not-ok call under the
// open failure policy is a request that skipped the plugin, so that window
// understates what the plugins cost.
func (ws windows) bad(name string) string {
	var non2xx, notOK float64
	by := map[string]float64{}
	for _, w := range ws[name] {
		non2xx += w.non2xx
		notOK += w.notOK()
		for k, c := range w.calls {
			if k[0] == "ALL" {
				continue
			}
			for r, v := range c.notOKBy {
				if v != 0 {
					by[r] += v
				}
			}
		}
	}
	if non2xx+notOK == 0 {
		return "none"
	}
	cell := fmt.Sprintf("**FLAGGED**: %.0f non-2xx, %.0f plugin calls not ok", non2xx, notOK)
	if len(by) > 0 {
		var parts []string
		for r, v := range by {
			parts = append(parts, fmt.Sprintf("%.0f %s", v, r))
		}
		slices.Sort(parts)
		cell += " (" + strings.Join(parts, ", ") + ")"
	}
	return cell
}

// callFigure is one figure of one plugin and phase in one window; NaN when
// the window has no such calls (or the quantile fell past the last bucket).
type callFigure func(w pluginWindow, c *pluginCalls) float64

func perReq(w pluginWindow, c *pluginCalls) float64 {
	if w.requests <= 0 {
		return math.NaN()
	}
	return c.count / w.requests
}

func meanUs(_ pluginWindow, c *pluginCalls) float64 {
	if c.count <= 0 {
		return math.NaN()
	}
	return c.sum / c.count * 1e6
}

func quantileUs(q float64) callFigure {
	return func(_ pluginWindow, c *pluginCalls) float64 {
		v, overflow, ok := c.buckets.quantile(q)
		if !ok || overflow {
			return math.NaN()
		}
		return v * 1e6
	}
}

// median of one call figure over the rounds of one instance.
func (ws windows) median(name, plugin, phase string, f callFigure) float64 {
	var vals []float64
	for _, w := range ws[name] {
		if c := w.calls[[2]string{plugin, phase}]; c != nil {
			if v := f(w, c); !math.IsNaN(v) {
				vals = append(vals, v)
			}
		}
	}
	return median(vals)
}

func (ws windows) notOKSum(name, plugin, phase string) float64 {
	var n float64
	for _, w := range ws[name] {
		if c := w.calls[[2]string{plugin, phase}]; c != nil {
			n += c.notOK
		}
	}
	return n
}

type pluginFigures struct {
	edges   []*pluginEdge
	wrk     rounds
	wrkW    windows
	rate    rateRounds
	rateW   windows
	loadMid string
	steal   string
}

func (h *harness) pluginsReport(f pluginFigures) string {
	o := h.opt
	var b strings.Builder
	w := func(format string, a ...any) { fmt.Fprintf(&b, format, a...) }
	b.WriteString(h.head("meshgate plugin overhead"))
	w("## Setup\n\n")
	tb := newTable("instance", "route policies", "plugin processes (name pid state phases transport)", "upstream saw (checked before and after the load)")
	for _, e := range f.edges {
		procs, stamps := strings.Join(e.procs, "; "), e.stamps
		if procs == "" {
			procs = "—"
		}
		if stamps == "" {
			stamps = "no X-Stamp-* header"
		}
		tb.add(e.t.name, e.label(), procs, stamps)
	}
	w("%s\n", tb)
	phases := max(f.edges[1].phases, 1)
	w("- plugin: plugins/examples/stamper (go build into %s, sha256 %s); it asks for no request part and sets one request header; it implements both phases, so every plugin on the route costs %d calls per request (request + response phase), over the transport the setup table names\n", h.bins.stamper, h.bins.stamperSHA, phases)
	timeout := o.pluginTimeout
	if timeout == "" {
		timeout = "50ms (the default)"
	}
	w("- plugin settings: timeout %s; default failure policy (open: the stamper cannot deny) and breaker (opens after 5 consecutive failures, for 2 s). Any call that is not \"ok\" is flagged below: under the open policy that request skipped the plugin, so its window understates what the plugins cost\n", timeout)
	w("- origin: benchorigin (1 KiB body); the stamp check goes to a header-echo server (in the harness) through the same instances (route \"echo\", same policies); the load goes to route \"all\"\n")
	w("- all three instances run side by side (started once); only one is loaded at a time, in a rotating order\n")
	w("- access log off; meshgate log level warn; metrics on (always)\n")
	w("- load average when the fixed-rate phase started: %s (the saturation phase's own processes make most of it: wrk's threads, meshgate, the plugins, the origin)\n", f.loadMid)
	w("- CPU steal (time the hypervisor gave this VM's CPUs to others) over the measurement: %s\n\n", f.steal)

	r := f.wrk
	r0 := r.median("p0", rps)
	w("## Throughput: wrk -t%d -c%d, keep-alive (median of %d rounds)\n\n", o.threads, o.conns, o.rounds)
	tb = newTable("plugins on the route", ">req/s", ">vs 0 plugins", ">p50 ms", ">p99 ms", ">meshgate+plugins CPU µs/req", "wrk non-2xx/socket errors", "meshgate non-2xx, plugin calls not ok")
	for _, e := range f.edges {
		n := e.t.name
		tb.add(e.label(), num(r.median(n, rps), 0), ratio(r.median(n, rps), r0), num(r.median(n, p50), 3), num(r.median(n, p99), 3),
			num(r.median(n, cpuUs), 1), r.errorsCell(n), f.wrkW.bad(n))
	}
	w("%s\n", tb)
	ratio1 := r.median("p1", rps) / r0
	w("1 plugin keeps %s of plugin-less throughput (target ≥ 0.75): %s.\n", ratio(r.median("p1", rps), r0), atLeast(ratio1, 0.75))
	var per []string
	for i := range min(len(r["p0"]), len(r["p1"]), len(r["p3"])) {
		per = append(per, fmt.Sprintf("round %d: 1 plugin %s, 3 plugins %s", i+1, ratio(r["p1"][i].wrk.rps, r["p0"][i].wrk.rps), ratio(r["p3"][i].wrk.rps, r["p0"][i].wrk.rps)))
	}
	w("Per round (vs 0 plugins, same round): %s\n\n", strings.Join(per, "; "))

	q := f.rate
	f50 := func(n string) float64 { return q.median(n, key("p50_ms")) }
	f99 := func(n string) float64 { return q.median(n, key("p99_ms")) }
	us := func(a, b, div float64) float64 { return (b - a) * 1000 / div }
	w("## Added latency at a fixed rate: %d req/s open loop for %s (after %s warm-up), median of %d rounds\n\n", o.rate, o.rateDuration, o.rateWarmup, o.rounds)
	tb = newTable("plugins on the route", ">achieved req/s", ">p50 ms", ">p99 ms", ">added p50 µs vs 0", ">added p99 µs vs 0", ">meshgate+plugins vCPU per 1000 req/s", ">rateload failed", "meshgate non-2xx, plugin calls not ok")
	for _, e := range f.edges {
		n := e.t.name
		a50, a99 := "—", "—"
		if n != "p0" {
			a50, a99 = signed(us(f50("p0"), f50(n), 1), 1), signed(us(f99("p0"), f99(n), 1), 1)
		}
		tb.add(e.label(), num(q.median(n, key("achieved_rps")), 1), num(f50(n), 3), num(f99(n), 3), a50, a99,
			num(q.median(n, per1kOf("meshgate+plugins")), 4), q.failed(n), f.rateW.bad(n))
	}
	w("%s\n", tb)
	a50_1, a99_1 := us(f50("p0"), f50("p1"), 1), us(f99("p0"), f99("p1"), 1)
	a50_3, a99_3 := us(f50("p0"), f50("p3"), 3), us(f99("p0"), f99("p3"), 3)
	ph := float64(phases)
	w("### Per plugin and per call\n\n| figure | added p50 µs | added p99 µs | target (p50) | verdict |\n|---|---:|---:|---|---|\n")
	w("| per plugin, 1 plugin − 0 (%d calls) | %s | %s | ≤ 30 µs | %s |\n", phases, signed(a50_1, 1), signed(a99_1, 1), atMost(a50_1, 30))
	w("| per plugin, (3 plugins − 0) / 3 | %s | %s | ≤ 30 µs | %s |\n", signed(a50_3, 1), signed(a99_3, 1), atMost(a50_3, 30))
	w("| per call, 1 plugin: the above / %d | %s | %s | | |\n", phases, signed(a50_1/ph, 1), signed(a99_1/ph, 1))
	w("| per call, 3 plugins: the above / %d | %s | %s | | |\n\n", phases, signed(a50_3/ph, 1), signed(a99_3/ph, 1))
	per = nil
	for i := range min(len(q["p0"]), len(q["p1"]), len(q["p3"])) {
		base := q["p0"][i].get("p50_ms")
		per = append(per, fmt.Sprintf("round %d: 1 plugin %s, 3 plugins %s", i+1,
			signed(us(base, q["p1"][i].get("p50_ms"), 1), 1), signed(us(base, q["p3"][i].get("p50_ms"), 3), 1)))
	}
	w("Per round (added p50 µs per plugin, paired within the round): %s\n\n", strings.Join(per, "; "))
	w("Latency is rateload's, from when it issued each request (1 µs resolution). Medians of differences this small move by several µs between runs on a shared 2-CPU machine: read the per-round figures, not one number.\n\n")

	w("## Host-measured call latency: meshgate_plugin_call_duration_seconds (admin /metrics)\n\n")
	w("Per load window (snapshot before and after, difference of the counters), median of %d rounds. p50/p99 are interpolated inside the histogram's buckets (50, 100, 250, 500 µs, 1 ms, ...), so they are approximate; the mean is exact (sum / count).\n\n", o.rounds)
	tb = newTable("load", "instance", "plugin", "phase", ">calls per request", ">mean µs", ">≈ p50 µs", ">≈ p99 µs", ">calls not ok")
	for _, kind := range []string{"rate", "wrk"} {
		ws, load := f.rateW, fmt.Sprintf("%d req/s", o.rate)
		if kind == "wrk" {
			ws, load = f.wrkW, fmt.Sprintf("wrk -c%d", o.conns)
		}
		for _, e := range f.edges[1:] {
			names := slices.Clone(e.names)
			if e.n > 1 {
				names = append(names, "ALL")
			}
			for _, plugin := range names {
				for _, phase := range []string{"request", "response"} {
					if len(ws[e.t.name]) == 0 || ws[e.t.name][0].calls[[2]string{plugin, phase}] == nil {
						continue
					}
					n := e.t.name
					tb.add(load, n, plugin, phase, num(ws.median(n, plugin, phase, perReq), 3), num(ws.median(n, plugin, phase, meanUs), 1),
						num(ws.median(n, plugin, phase, quantileUs(0.5)), 1), num(ws.median(n, plugin, phase, quantileUs(0.99)), 1),
						num(ws.notOKSum(n, plugin, phase), 0))
				}
			}
		}
	}
	w("%s\n", tb)
	w("Host-measured per-call p50 with 1 plugin at %d req/s: request phase ≈ %s µs, response phase ≈ %s µs. This is the whole call as meshgate times it (message fill, gRPC over the plugin's socket, the plugin's work, the decision checked); the end-to-end added latency above also includes applying the decision and the scheduling of one more process.\n\n",
		o.rate, num(f.rateW.median("p1", "s1", "request", quantileUs(0.5)), 1), num(f.rateW.median("p1", "s1", "response", quantileUs(0.5)), 1))
	w("- note: wrk/rateload, meshgate, the plugin processes and the origin share the same %d CPUs; with 3 plugins, 3 more processes compete for them.\n\n", nproc())

	w("## Rounds (wrk)\n\n")
	tb = newTable(">round", "instance", ">req/s", ">p50 ms", ">p99 ms", ">CPU µs/req", "wrk non-2xx/socket errors", ">requests (meshgate)", ">plugin calls not ok")
	for i := range o.rounds {
		for _, e := range f.edges {
			n := e.t.name
			if i >= len(r[n]) || i >= len(f.wrkW[n]) {
				continue
			}
			s, win := r[n][i], f.wrkW[n][i]
			tb.add(i+1, n, num(s.wrk.rps, 2), num(s.wrk.p50ms, 3), num(s.wrk.p99ms, 3), num(s.cpuUs, 1),
				fmt.Sprintf("%d/%d", s.wrk.non2xx, s.wrk.socketErrs), num(win.requests, 0), num(win.notOK(), 0))
		}
	}
	w("%s\n## Rounds (fixed rate)\n\n", tb)
	tb = newTable(">round", "instance", ">achieved req/s", ">p50 ms", ">p99 ms", ">p99.9 ms", ">meshgate+plugins vCPU per 1000 req/s", ">failed", ">plugin calls not ok", ">s1 request ≈ p50 µs")
	for i := range o.rounds {
		for _, e := range f.edges {
			n := e.t.name
			if i >= len(q[n]) || i >= len(f.rateW[n]) {
				continue
			}
			x, win := q[n][i], f.rateW[n][i]
			s1 := "—"
			if c := win.calls[[2]string{"s1", "request"}]; c != nil {
				s1 = num(quantileUs(0.5)(win, c), 1)
			}
			tb.add(i+1, n, num(x.get("achieved_rps"), 1), num(x.get("p50_ms"), 3), num(x.get("p99_ms"), 3), num(x.get("p99.9_ms"), 3),
				num(x.per1k("meshgate+plugins"), 4), num(x.get("failed"), 0), num(win.notOK(), 0), s1)
		}
	}
	w("%s\n## meshgate warnings\n\n```text\n", tb)
	for _, e := range f.edges {
		if t := tail(e.t.proc.logPath, 10); strings.TrimSpace(t) != "" {
			w("== %s\n%s\n", e.t.name, t)
		}
	}
	w("```\n\nRaw output: %s/ (wrk, rateload; configs: %s/p*/meshgate.yaml)\n", h.rawDir(), h.tmp)
	return b.String()
}
