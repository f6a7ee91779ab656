package main

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"math"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"
)

// grpcTargets is one proxy (or the origin) as the grpc scenario loads it: its h2c HTTP
// port for h2load and its gRPC port for grpcload, charged to the same processes.
type grpcTargets struct{ h2, grpc *target }

// load is one way the grpc scenario loads a target: h2load, grpcload unary or stream.
type load struct {
	name, desc string
	run        func(ctx context.Context, t *target, seconds int, out string) (wrkResult, error)
}

// grpcScenario compares HTTP/2 and gRPC through the meshgate edge with HAProxy and nginx
// and the origin directly, then gRPC through the merged hop against the classic chain
// (issue 14's benchmark).
func (h *harness) grpcScenario(ctx context.Context) (string, error) {
	o := h.opt
	origin, err := h.startGRPCOrigin(ctx)
	if err != nil {
		return "", err
	}
	ports := map[string]string{"H2_ORIGIN_PORT": strconv.Itoa(origin.h2.port), "GRPC_ORIGIN_PORT": strconv.Itoa(origin.grpc.port)}

	h.logf("starting nginx (h2c, grpc_pass)")
	nginx, err := h.startNginxGRPC(ctx, "nginx", ports)
	if err != nil {
		return "", err
	}
	h.logf("starting haproxy (h2c both sides)")
	haproxy, err := h.startHAProxyGRPC(ctx, ports)
	if err != nil {
		return "", err
	}
	h.logf("starting meshgate (h2c listeners; upstreams http2 and grpc)")
	mgPorts, err := freePorts(1)
	if err != nil {
		return "", err
	}
	vals := map[string]string{"GRPC_PORT": strconv.Itoa(mgPorts[0])}
	for k, v := range ports {
		vals[k] = v
	}
	// The readiness probe is an HTTP/1.1 GET on the h2 listener, which meshgate forwards to
	// the h2c origin: both protocols on one path.
	mgH2, err := h.startMeshgate(ctx, meshgateSpec{name: "meshgate", tmpl: "meshgate-grpc.yaml.tmpl", vals: vals,
		note: "edge mode, h2c listeners, upstreams protocol http2 / grpc, metrics on, access log on (file)"})
	if err != nil {
		return "", err
	}
	mgGRPC := *mgH2
	mgGRPC.port = mgPorts[0]
	if err := h.waitGRPC(ctx, &mgGRPC); err != nil {
		return "", err
	}
	meshgate := grpcTargets{h2: mgH2, grpc: &mgGRPC}

	all := []grpcTargets{origin, nginx, haproxy, meshgate}
	pick := func(f func(grpcTargets) *target) []*target {
		out := make([]*target, len(all))
		for i, x := range all {
			out[i] = f(x)
		}
		return out
	}
	h2ts := pick(func(x grpcTargets) *target { return x.h2 })
	grpcts := pick(func(x grpcTargets) *target { return x.grpc })

	loads := h.grpcLoads()
	res := map[string]rounds{}
	for _, l := range loads {
		ts := grpcts
		if l.name == "h2" {
			ts = h2ts
		}
		h.logf("load %s: %s", l.name, l.desc)
		if res[l.name], err = h.measureLoad(ctx, l, ts); err != nil {
			return "", err
		}
	}

	mesh, err := h.grpcMesh(ctx, origin.grpc, loads[1])
	if err != nil {
		return "", err
	}

	var b strings.Builder
	b.WriteString(h.head("meshgate HTTP/2 and gRPC benchmark"))
	names := targetNames(grpcts)
	for _, l := range loads {
		fmt.Fprintf(&b, "## %s (median of %d rounds)\n\nLoad: %s.\n\n%s\n", l.name, o.rounds, l.desc, h.medianTable(res[l.name], names))
	}
	b.WriteString(grpcRatios(res))
	fmt.Fprintf(&b, "\n## gRPC unary through the mesh (median of %d rounds)\n\nLoad: %s.\n\n%s\n", o.rounds, loads[1].desc, h.medianTable(mesh.r, targetNames(mesh.ts)))
	b.WriteString(meshRatios(mesh.r))
	b.WriteString("\n## Targets\n\n")
	for _, x := range all {
		fmt.Fprintf(&b, "- %s: %s\n", x.h2.name, x.h2.note)
	}
	for _, t := range mesh.ts {
		fmt.Fprintf(&b, "- mesh %s: %s\n", t.name, t.note)
	}
	b.WriteString("- note: nginx speaks HTTP/1.1 (keep-alive) to the origin in the h2 load (its proxy_pass has no HTTP/2 upstream); HAProxy and meshgate speak h2c. In the gRPC loads every proxy speaks h2c upstream.\n")
	b.WriteString("- note: HAProxy runs without an access log; nginx and meshgate write one (the mesh paths log nowhere).\n")
	fmt.Fprintf(&b, "- note: the load generator, the proxies and the origin share the same %d CPUs; grpc-go's client costs more per call than the proxies, so it bounds every figure.\n", nproc())
	b.WriteString("- CPU µs/req: the target's utime+stime (its workers and threads included) read from /proc before and after each round, divided by the requests (or stream messages) completed in it; for direct it is the origin's own; for a mesh path every proxy on it.\n\n")
	for _, l := range loads {
		b.WriteString(h.roundsTable("Rounds: "+l.name, res[l.name], names))
	}
	b.WriteString(h.roundsTable("Rounds: mesh", mesh.r, targetNames(mesh.ts)))
	fmt.Fprintf(&b, "Raw load-generator output: %s/\n", h.rawDir())
	return b.String(), nil
}

// grpcLoads are the three loads, each with H2_CONNS connections × H2_STREAMS concurrent
// streams: h2load GETs of the 1 KiB body, unary calls and ping-pong messages on
// bidirectional streams, both with 1 KiB payloads each way.
func (h *harness) grpcLoads() []load {
	o := h.opt
	shape := fmt.Sprintf("%d connections x %d concurrent streams, %s per round, %d rounds (rotating order), %s warm-up",
		o.h2Conns, o.h2Streams, o.duration, o.rounds, o.warmup)
	return []load{
		{"h2", fmt.Sprintf("h2load -t%d (HTTP/2 GET, 1 KiB response), %s", min(o.threads, o.h2Conns), shape), h.h2loadRun},
		{"grpc-unary", "scripts/bench/grpcload -mode unary (grpc-go, 1 KiB payload each way), " + shape, h.grpcloadRun("unary")},
		{"grpc-stream", "scripts/bench/grpcload -mode stream (one bidirectional stream per caller, 1 KiB ping-pong; a message is a request), " + shape, h.grpcloadRun("stream")},
	}
}

// measureLoad warms every target up, then runs ROUNDS rounds in rotating order, reading
// each target's CPU time around its window.
func (h *harness) measureLoad(ctx context.Context, l load, ts []*target) (rounds, error) {
	if err := os.MkdirAll(h.rawDir(), 0o755); err != nil {
		return nil, err
	}
	for _, t := range ts {
		h.logf("warming up %s (%s)", t.name, h.opt.warmup)
		out := filepath.Join(h.rawDir(), fmt.Sprintf("%s-%s-warmup.txt", l.name, t.name))
		if _, err := l.run(ctx, t, int(h.opt.warmup.Seconds()), out); err != nil {
			return nil, fmt.Errorf("warm-up of %s failed (%s): %w", t.name, out, err)
		}
	}
	r := rounds{}
	for round := 1; round <= h.opt.rounds; round++ {
		for _, t := range rotate(ts, round) {
			out := filepath.Join(h.rawDir(), fmt.Sprintf("%s-%s-round%d.txt", l.name, t.name, round))
			t0, err := h.ticks(t)
			if err != nil {
				return nil, err
			}
			w, err := l.run(ctx, t, int(h.opt.duration.Seconds()), out)
			if err != nil {
				return nil, fmt.Errorf("%s through %s, round %d (%s): %w", l.name, t.name, round, out, err)
			}
			t1, err := h.ticks(t)
			if err != nil {
				return nil, err
			}
			s := sample{wrk: w, cpuUs: math.NaN()}
			if len(t.cpuProcs()) > 0 {
				s.cpuUs = cpuPerRequestMicros(t1-t0, h.clkTck, w.requests)
			}
			if w.non2xx+w.socketErrs > 0 {
				h.logf("%s %s round %d: %d failed, %d errored", l.name, t.name, round, w.non2xx, w.socketErrs)
			}
			h.logf("%-11s %-9s round %d: %10.0f req/s  p50 %7.3f ms  p99 %7.3f ms  CPU %s µs/req",
				l.name, t.name, round, w.rps, w.p50ms, w.p99ms, num(s.cpuUs, 1))
			r[t.name] = append(r[t.name], s)
		}
	}
	return r, nil
}

// h2loadRun runs h2load against t's h2c port for seconds; the percentiles come from its
// per-request log (its text report has only mean and deviation).
func (h *harness) h2loadRun(ctx context.Context, t *target, seconds int, out string) (wrkResult, error) {
	o := h.opt
	logFile := out + ".log"
	args := []string{"-D", strconv.Itoa(seconds), "-c", strconv.Itoa(o.h2Conns), "-m", strconv.Itoa(o.h2Streams),
		"-t", strconv.Itoa(min(o.threads, o.h2Conns)), "--log-file=" + logFile, t.url("/")}
	b, err := exec.CommandContext(ctx, "h2load", args...).CombinedOutput()
	if werr := os.WriteFile(out, b, 0o644); werr != nil && err == nil {
		err = werr
	}
	if err != nil {
		return wrkResult{}, fmt.Errorf("h2load: %w\n%s", err, tail(out, 10))
	}
	r, err := parseH2load(string(b))
	if err != nil {
		return r, err
	}
	f, err := os.Open(logFile)
	if err != nil {
		return r, err
	}
	defer func() { _ = f.Close() }() // opened read-only
	lat, err := parseH2loadLog(f)
	if err != nil {
		return r, err
	}
	// The per-request log is large (one line per request) and its figures are in the report.
	_ = os.Remove(logFile)
	r.p50ms, r.p99ms = percentileMs(lat, 0.50), percentileMs(lat, 0.99)
	return r, nil
}

// parseH2load reads h2load's summary: the rate from "finished in" and the counts from the
// "requests:" line. Failed answers (status ≥ 400) count as non-2xx, errored and timed-out
// requests as socket errors, as wrkResult has them.
func parseH2load(out string) (wrkResult, error) {
	var r wrkResult
	var haveRate, haveReq bool
	sc := bufio.NewScanner(strings.NewReader(out))
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		switch {
		case strings.HasPrefix(line, "finished in "):
			// finished in 3.00s, 29146.67 req/s, 29.08MB/s
			f := strings.Split(line, ", ")
			if len(f) >= 2 && strings.HasSuffix(f[1], " req/s") {
				v, err := strconv.ParseFloat(strings.TrimSuffix(f[1], " req/s"), 64)
				r.rps, haveRate = v, err == nil
			}
		case strings.HasPrefix(line, "requests: "):
			// requests: 87440 total, 87504 started, 87440 done, 87440 succeeded, 0 failed, 0 errored, 0 timeout
			counts := map[string]int64{}
			for _, part := range strings.Split(strings.TrimPrefix(line, "requests: "), ", ") {
				n, what, ok := strings.Cut(part, " ")
				if v, err := strconv.ParseInt(n, 10, 64); ok && err == nil {
					counts[what] = v
				}
			}
			if _, ok := counts["succeeded"]; ok {
				r.requests, haveReq = counts["succeeded"], true
				r.non2xx = counts["failed"]
				r.socketErrs = counts["errored"] + counts["timeout"]
			}
		}
	}
	if !haveRate || !haveReq {
		return r, fmt.Errorf("h2load output has no %s", map[bool]string{true: "requests line", false: "finished line"}[haveRate])
	}
	return r, nil
}

// parseH2loadLog reads h2load's --log-file (start µs since the epoch, status, µs until the
// end of the response; tab-separated) and returns the latencies of the 2xx answers, sorted.
func parseH2loadLog(r io.Reader) ([]float64, error) {
	var lat []float64
	sc := bufio.NewScanner(r)
	for sc.Scan() {
		f := strings.Split(sc.Text(), "\t")
		if len(f) < 3 {
			continue
		}
		st, err1 := strconv.Atoi(f[1])
		us, err2 := strconv.ParseFloat(f[2], 64)
		if err1 != nil || err2 != nil {
			return nil, fmt.Errorf("h2load log line %q", sc.Text())
		}
		if st >= 200 && st < 300 {
			lat = append(lat, us)
		}
	}
	slices.Sort(lat)
	return lat, sc.Err()
}

// percentileMs is the p-quantile (nearest rank) of sorted µs, in ms; NaN for none.
func percentileMs(sorted []float64, p float64) float64 {
	if len(sorted) == 0 {
		return math.NaN()
	}
	i := int(p*float64(len(sorted))+0.5) - 1
	return sorted[min(max(i, 0), len(sorted)-1)] / 1000
}

// grpcloadRun is a load of scripts/bench/grpcload in mode against t's gRPC port.
func (h *harness) grpcloadRun(mode string) func(ctx context.Context, t *target, seconds int, out string) (wrkResult, error) {
	return func(ctx context.Context, t *target, seconds int, out string) (wrkResult, error) {
		o := h.opt
		cmd := exec.CommandContext(ctx, h.bins.grpcload, "-addr", addr(t.port), "-mode", mode,
			"-conns", strconv.Itoa(o.h2Conns), "-streams", strconv.Itoa(o.h2Streams), "-duration", fmt.Sprintf("%ds", seconds))
		var stderr strings.Builder
		cmd.Stderr = &stderr
		b, err := cmd.Output()
		_ = os.WriteFile(out, b, 0o644)
		if err != nil {
			return wrkResult{}, fmt.Errorf("grpcload: %w\n%s", err, stderr.String())
		}
		return parseGrpcload(string(b))
	}
}

// parseGrpcload maps grpcload's "key value" report onto the figures wrk's has; a failed
// call counts as a non-2xx answer, and the first failures are logged by measureLoad's caller
// through the raw file.
func parseGrpcload(out string) (wrkResult, error) {
	r := parseRateload(out)
	for _, k := range []string{"requests", "errors", "rps", "p50_ms", "p99_ms"} {
		if math.IsNaN(r.get(k)) {
			return wrkResult{}, fmt.Errorf("grpcload output has no %s", k)
		}
	}
	return wrkResult{rps: r.get("rps"), p50ms: r.get("p50_ms"), p99ms: r.get("p99_ms"),
		requests: int64(r.get("requests")), non2xx: int64(r.get("errors"))}, nil
}

// startGRPCOrigin starts scripts/bench/grpcorigin: "direct" in both loads.
func (h *harness) startGRPCOrigin(ctx context.Context) (grpcTargets, error) {
	dir, err := h.dir("origin")
	if err != nil {
		return grpcTargets{}, err
	}
	ports, err := freePorts(2)
	if err != nil {
		return grpcTargets{}, err
	}
	p, err := h.sup.start("origin", filepath.Join(dir, "stderr.log"), nil, h.bins.grpcorigin,
		"-grpc", addr(ports[0]), "-h2", addr(ports[1]))
	if err != nil {
		return grpcTargets{}, err
	}
	note := "the origin itself (scripts/bench/grpcorigin: grpc-go TestService, and net/http h2c with a fixed 1 KiB body): the ceiling"
	g := grpcTargets{h2: &target{name: "direct", port: ports[1], proc: p, note: note},
		grpc: &target{name: "direct", port: ports[0], proc: p, note: note}}
	if err := waitReady(ctx, p, g.h2.url("/"), h.readyTimeout(), h2OK); err != nil {
		return g, err
	}
	return g, h.waitGRPC(ctx, g.grpc)
}

func (h *harness) startNginxGRPC(ctx context.Context, name string, vals map[string]string) (grpcTargets, error) {
	ports, err := freePorts(1)
	if err != nil {
		return grpcTargets{}, err
	}
	v := map[string]string{"GRPC_PORT": strconv.Itoa(ports[0])}
	for k, x := range vals {
		v[k] = x
	}
	t, err := h.spawnNginx(name, "nginx-grpc.conf.tmpl", 0, v)
	if err != nil {
		return grpcTargets{}, err
	}
	t.note = "2 workers, listen http2 (h2c), proxy_pass over HTTP/1.1 keepalive 64 (h2) and grpc_pass keepalive 64 (gRPC), access log on (file, buffered)"
	g := grpcTargets{h2: t}
	gt := *t
	gt.port = ports[0]
	g.grpc = &gt
	if err := waitReady(ctx, t.proc, t.url("/"), h.readyTimeout(), h2OK); err != nil {
		return g, err
	}
	return g, h.waitGRPC(ctx, g.grpc)
}

func (h *harness) startHAProxyGRPC(ctx context.Context, vals map[string]string) (grpcTargets, error) {
	ports, err := freePorts(2)
	if err != nil {
		return grpcTargets{}, err
	}
	v := map[string]string{"PORT": strconv.Itoa(ports[0]), "GRPC_PORT": strconv.Itoa(ports[1])}
	for k, x := range vals {
		v[k] = x
	}
	t, err := h.spawnHAProxy(ctx, "haproxy-grpc.cfg.tmpl", v)
	if err != nil {
		return grpcTargets{}, err
	}
	t.port = ports[0]
	t.note = "nbthread 2, bind and server proto h2 (h2c both sides), http-reuse always, NO access log"
	g := grpcTargets{h2: t}
	gt := *t
	gt.port = ports[1]
	g.grpc = &gt
	if err := waitReady(ctx, t.proc, t.url("/"), h.readyTimeout(), h2OK); err != nil {
		return g, err
	}
	return g, h.waitGRPC(ctx, g.grpc)
}

// waitGRPC waits until one unary call through t succeeds (grpcload -check).
func (h *harness) waitGRPC(ctx context.Context, t *target) error {
	ok := func(ctx context.Context, a string) bool {
		return exec.CommandContext(ctx, h.bins.grpcload, "-check", "-addr", a).Run() == nil
	}
	return waitReady(ctx, t.proc, addr(t.port), h.readyTimeout(), ok)
}

// h2OK is originOK over h2c with prior knowledge: the listeners of the h2 load speak
// nothing else.
func h2OK(ctx context.Context, url string) bool {
	var protos http.Protocols
	protos.SetUnencryptedHTTP2(true)
	c := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{Proxy: nil, Protocols: &protos}}
	defer c.CloseIdleConnections()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return false
	}
	resp, err := c.Do(req)
	if err != nil {
		return false
	}
	defer func() { _ = resp.Body.Close() }() // read-side close: nothing to act on
	b, err := io.ReadAll(resp.Body)
	return err == nil && resp.StatusCode == http.StatusOK && resp.ProtoMajor == 2 && len(b) == 1024
}

// meshRun is the mesh part's targets and rounds.
type meshRun struct {
	ts []*target
	r  rounds
}

// grpcMesh loads gRPC unary through the merged hop (edge ══mTLS h2══▶ app's sidecar → app)
// and the classic chain (nginx grpc_pass → client's sidecar ══mTLS h2══▶ app's sidecar →
// app), with Consul's service-defaults declaring app a gRPC service.
func (h *harness) grpcMesh(ctx context.Context, app *target, l load) (meshRun, error) {
	bin, err := h.installConsul(ctx)
	if err != nil {
		return meshRun{}, err
	}
	h.logf("starting consul agent -dev (Connect on, built-in CA)")
	agent, err := h.startConsul(ctx, bin, 1000)
	if err != nil {
		return meshRun{}, err
	}
	if err := putConfigEntries(ctx, agent, "grpc"); err != nil {
		return meshRun{}, err
	}
	h.logf("starting app's sidecar (in front of grpcorigin's gRPC port)")
	appSC, err := h.startSidecarProto(ctx, agent, "app", app.port, "grpc", "[ ]")
	if err != nil {
		return meshRun{}, err
	}
	h.logf("starting the merged hop: meshgate edge (identity edge, Connect; app's protocol from service-defaults)")
	// Its readiness probe is HTTP/1.1 GET /, which a gRPC path cannot answer: wait for
	// /ready, then for a gRPC call.
	merged, err := h.startMeshgate(ctx, meshgateSpec{name: "merged", tmpl: "meshgate-edge-connect.yaml.tmpl",
		vals: map[string]string{"CONSUL_PORT": strconv.Itoa(agent.http)}, readyPath: "/ready",
		note: "meshgate edge (identity edge, Connect) ═mTLS h2═▶ app's meshgate sidecar ─h2c─▶ grpcorigin"})
	if err != nil {
		return meshRun{}, err
	}
	if err := h.waitGRPC(ctx, merged); err != nil {
		return meshRun{}, err
	}
	merged.cpu = []*proc{merged.proc, appSC.proc}

	h.logf("starting the classic chain: nginx grpc_pass -> client's sidecar -> app's sidecar")
	ports, err := freePorts(2)
	if err != nil {
		return meshRun{}, err
	}
	// nginx's grpc server is what the client sidecar fronts (registered as "client" with a
	// TCP check on it); its h2 server is unused here.
	client, err := h.startSidecar(ctx, agent, "client", ports[0], fmt.Sprintf("[ { service: app, bind: 127.0.0.1:%d } ]", ports[1]))
	if err != nil {
		return meshRun{}, err
	}
	up := strconv.Itoa(ports[1])
	ng, err := h.spawnNginx("nginx-chain", "nginx-grpc.conf.tmpl", 0, map[string]string{
		"GRPC_PORT": strconv.Itoa(ports[0]), "GRPC_ORIGIN_PORT": up, "H2_ORIGIN_PORT": up})
	if err != nil {
		return meshRun{}, err
	}
	chain := *ng
	chain.name, chain.port = "chain", ports[0]
	chain.note = "nginx (2 workers, grpc_pass keepalive 64) ─h2c─▶ client's meshgate sidecar upstream listener ═mTLS h2═▶ app's sidecar ─h2c─▶ grpcorigin"
	if err := h.waitGRPC(ctx, &chain); err != nil {
		return meshRun{}, err
	}
	chain.cpu = []*proc{ng.proc, client.proc, appSC.proc}
	direct := *app
	direct.note = "grpcorigin's gRPC port directly"

	ts := []*target{&direct, merged, &chain}
	r, err := h.measureLoad(ctx, load{name: "mesh", desc: l.desc, run: l.run}, ts)
	if err != nil {
		return meshRun{}, err
	}
	// A sidecar drains on SIGTERM and deregisters first: stop both while the agent runs.
	h.logf("stopping the sidecars (they deregister from Consul first)")
	h.sup.stop(client.proc, 15*time.Second)
	h.sup.stop(appSC.proc, 15*time.Second)
	return meshRun{ts: ts, r: r}, nil
}

// medianTable is the medians over rounds, one row per target.
func (h *harness) medianTable(r rounds, names []string) string {
	tb := newTable("target", ">req/s", ">p50 ms", ">p99 ms", ">CPU µs/req", "errors")
	for _, n := range names {
		tb.add(n, num(r.median(n, rps), 0), num(r.median(n, p50), 3), num(r.median(n, p99), 3),
			num(r.median(n, cpuUs), 1), r.errorsCell(n))
	}
	return tb.String()
}

// grpcRatios are issue 14's comparisons: meshgate against HAProxy (target: gRPC req/s ≥ 1.0,
// p99 ≤ 1.0) and nginx, in each load, with CPU per request beside them (issue 16).
func grpcRatios(res map[string]rounds) string {
	var b strings.Builder
	b.WriteString("## Ratios (of medians)\n\n| load | meshgate/haproxy req/s | meshgate/haproxy p99 | meshgate/haproxy CPU/req | meshgate/nginx req/s | meshgate/nginx p99 | meshgate/nginx CPU/req |\n|---|---:|---:|---:|---:|---:|---:|\n")
	for _, l := range []string{"h2", "grpc-unary", "grpc-stream"} {
		r := res[l]
		m := func(n string, f func(sample) float64) float64 { return r.median(n, f) }
		fmt.Fprintf(&b, "| %s | %s | %s | %s | %s | %s | %s |\n", l,
			ratio(m("meshgate", rps), m("haproxy", rps)), ratio(m("meshgate", p99), m("haproxy", p99)), ratio(m("meshgate", cpuUs), m("haproxy", cpuUs)),
			ratio(m("meshgate", rps), m("nginx", rps)), ratio(m("meshgate", p99), m("nginx", p99)), ratio(m("meshgate", cpuUs), m("nginx", cpuUs)))
	}
	b.WriteString("\nIssue 14's target: gRPC through the edge ≥ 1.00× HAProxy's req/s with p99 ≤ 1.00× HAProxy's. Lower is better for p99 and CPU/req.\n")
	return b.String()
}

// meshRatios compare the merged hop with the classic chain.
func meshRatios(r rounds) string {
	m := func(n string, f func(sample) float64) float64 { return r.median(n, f) }
	return fmt.Sprintf("| ratio (of medians) | value |\n|---|---:|\n| merged/chain req/s | %s |\n| merged/chain p99 (lower is better) | %s |\n| merged/chain CPU per request (lower is better) | %s |\n",
		ratio(m("merged", rps), m("chain", rps)), ratio(m("merged", p99), m("chain", p99)), ratio(m("merged", cpuUs), m("chain", cpuUs)))
}
