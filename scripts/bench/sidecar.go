package main

import (
	"context"
	"fmt"
	"io"
	"math"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

// path is one way through the sidecar scenario: a target and the proxies on it.
type path struct {
	t       *target
	desc    string
	proxies []labelPid // for rateload's CPU sampling; none for direct
}

// sidecar compares the merged hop (edge ══mTLS══▶ app's sidecar) with the
// classic chain (nginx → client sidecar ══mTLS══▶ app's sidecar), against
// the app directly and a plaintext edge, at saturation and at a fixed rate.
func (h *harness) sidecar(ctx context.Context) (string, error) {
	o := h.opt
	bin, err := h.installConsul(ctx)
	if err != nil {
		return "", err
	}
	h.logf("starting consul agent -dev (Connect on, built-in CA)")
	agent, err := h.startConsul(ctx, bin, 1000)
	if err != nil {
		return "", err
	}
	// Intentions first: the sidecar denies callers no intention matches.
	h.logf("setting intentions edge -> app and client -> app (allow)")
	if err := putConfigEntries(ctx, agent, "http"); err != nil {
		return "", err
	}

	h.logf("starting the app (benchorigin) and its sidecar")
	app, err := h.startOrigin(ctx, "app")
	if err != nil {
		return "", err
	}
	appSC, err := h.startSidecar(ctx, agent, "app", app.port, "[ ]")
	if err != nil {
		return "", err
	}
	appPid := appSC.proc.pid()

	// Idle footprint before any request reaches it: watches (roots, leaf,
	// intentions) and the agent's check of /ready are all that run.
	h.logf("app sidecar idle for %s (RSS and CPU from /proc/%d)", o.idle, appPid)
	t0, _, err := readStat(appPid)
	if err != nil {
		return "", err
	}
	s0 := time.Now()
	if err := sleep(ctx, o.idle); err != nil {
		return "", err
	}
	t1, _, err := readStat(appPid)
	if err != nil {
		return "", err
	}
	idleCPU := 100 * float64(t1-t0) / float64(h.clkTck) / time.Since(s0).Seconds()
	idleMem, err := readMemory(appPid)
	if err != nil {
		return "", err
	}
	h.logf("app sidecar idle: VmRSS %.1f MB, VmHWM %.1f MB, CPU %.2f%% of a core", megabytes(idleMem.RSSKB), megabytes(idleMem.HWMKB), idleCPU)

	direct := &target{name: "direct", port: app.port}
	h.logf("starting B: meshgate edge, static plaintext route")
	edge, err := h.startMeshgate(ctx, meshgateSpec{name: "edge", tmpl: "meshgate-edge-static.yaml.tmpl",
		vals: map[string]string{"ORIGIN_PORT": strconv.Itoa(app.port)}})
	if err != nil {
		return "", err
	}
	h.logf("starting C: meshgate edge with identity edge (Connect) -> app's sidecar")
	merged, err := h.startMeshgate(ctx, meshgateSpec{name: "merged", tmpl: "meshgate-edge-connect.yaml.tmpl",
		vals: map[string]string{"CONSUL_PORT": strconv.Itoa(agent.http)}})
	if err != nil {
		return "", err
	}
	merged.cpu = []*proc{merged.proc, appSC.proc}
	h.logf("starting D: nginx -> client sidecar -> app's sidecar")
	// The client sidecar fronts nginx (registered as service "client" with a
	// TCP check on nginx's port) and gives it a plaintext listener for app.
	ports, err := freePorts(2)
	if err != nil {
		return "", err
	}
	client, err := h.startSidecar(ctx, agent, "client", ports[0], fmt.Sprintf("[ { service: app, bind: 127.0.0.1:%d } ]", ports[1]))
	if err != nil {
		return "", err
	}
	// The first 200 through nginx proves the whole chain, mTLS and intention included.
	chain, err := h.startNginx(ctx, "nginx", "nginx-sidecar.conf.tmpl", ports[0], map[string]string{"UPSTREAM_PORT": strconv.Itoa(ports[1])})
	if err != nil {
		return "", err
	}
	chain.name = "chain"
	chain.cpu = []*proc{chain.proc, client.proc, appSC.proc}
	edge.cpu = []*proc{edge.proc}

	paths := []path{
		{direct, "the app (benchorigin, fixed 1 KiB body) itself: the baseline", nil},
		{edge, "meshgate edge (static route, plaintext) → app", []labelPid{{"edge", edge.proc.pid()}}},
		{merged, "meshgate edge (identity edge, Connect) ═mTLS═▶ app's meshgate sidecar → app",
			[]labelPid{{"edge", merged.proc.pid()}, {"app-sidecar", appPid}}},
		{chain, "nginx (2 workers, upstream keepalive 64) → client's meshgate sidecar upstream listener ═mTLS═▶ app's sidecar → app",
			[]labelPid{{"nginx", chain.proc.pid()}, {"client-sidecar", client.proc.pid()}, {"app-sidecar", appPid}}},
	}
	ts := []*target{direct, edge, merged, chain}
	wrkR, err := h.measure(ctx, ts, nil)
	if err != nil {
		return "", err
	}
	h.logf("fixed-rate phase: %d req/s for %s per path and round", o.rate, o.rateDuration)
	rateR := rateRounds{}
	for round := 1; round <= o.rounds; round++ {
		for _, p := range rotate(paths, round) {
			var prof chan error
			if o.sidecarProfile && p.t.name == "merged" && round == 1 {
				prof = h.profile(ctx, appSC, filepath.Join(h.rawDir(), "app-sidecar-cpu.pprof"))
			}
			r, err := h.rateRound(ctx, p.t, round, p.proxies)
			if err != nil {
				return "", err
			}
			if prof != nil {
				if err := <-prof; err != nil {
					h.logf("warning: the CPU profile failed: %v", err)
				}
			}
			rateR[p.t.name] = append(rateR[p.t.name], r)
		}
	}
	loadedMem, err := readMemory(appPid)
	if err != nil {
		return "", err
	}
	// A sidecar drains on SIGTERM: it deregisters and waits (up to 10 s) for
	// the agent to stop listing it, so stop both while the agent still runs.
	h.logf("stopping the sidecars (they deregister from Consul first)")
	h.sup.stop(client.proc, 15*time.Second)
	h.sup.stop(appSC.proc, 15*time.Second)

	return h.sidecarReport(sidecarFigures{agent: agent, paths: paths, wrk: wrkR, rate: rateR,
		idle: idleMem, loaded: loadedMem, idleCPU: idleCPU}), nil
}

// putConfigEntries writes app's service-defaults (its protocol: http or grpc) and the allow
// intentions edge -> app and client -> app through the agent's HTTP API.
func putConfigEntries(ctx context.Context, agent *consulAgent, protocol string) error {
	for _, entry := range []string{
		`{"Kind":"service-defaults","Name":"app","Protocol":"` + protocol + `"}`,
		`{"Kind":"service-intentions","Name":"app","Sources":[{"Name":"edge","Action":"allow"},{"Name":"client","Action":"allow"}]}`,
	} {
		st, body, err := httpDo(ctx, http.MethodPut, agent.url("/v1/config"), "", []byte(entry))
		if err != nil || st != http.StatusOK || strings.TrimSpace(string(body)) != "true" {
			return fmt.Errorf("PUT /v1/config answered %d %q (%v) for %s", st, body, err, entry)
		}
	}
	return nil
}

// startSidecar starts `meshgate sidecar` for service name fronting appPort and
// waits for its admin /ready (leaf certificate, roots, intentions and
// registration done).
func (h *harness) startSidecar(ctx context.Context, agent *consulAgent, name string, appPort int, upstreams string) (*target, error) {
	return h.startSidecarProto(ctx, agent, name, appPort, "http1", upstreams)
}

// startSidecarProto is startSidecar for an app that speaks protocol (http1, http2, grpc).
func (h *harness) startSidecarProto(ctx context.Context, agent *consulAgent, name string, appPort int, protocol, upstreams string) (*target, error) {
	dir, err := h.dir("sidecar-" + name)
	if err != nil {
		return nil, err
	}
	ports, err := freePorts(2)
	if err != nil {
		return nil, err
	}
	conf := filepath.Join(dir, "meshgate.yaml")
	if err := h.render("meshgate-sidecar.yaml.tmpl", conf, map[string]string{
		"ADMIN_PORT": strconv.Itoa(ports[0]), "CONSUL_PORT": strconv.Itoa(agent.http), "NAME": name,
		"APP_PORT": strconv.Itoa(appPort), "INBOUND_PORT": strconv.Itoa(ports[1]), "UPSTREAMS": upstreams,
		"PPROF": strconv.FormatBool(h.opt.sidecarProfile), "PROTOCOL": protocol,
	}); err != nil {
		return nil, err
	}
	return h.runMeshgate(ctx, meshgateSpec{name: "sidecar-" + name, mode: "sidecar", env: h.sidecarEnv(),
		readyPath: "/ready"}, conf, ports[1], ports[0])
}

// sidecarEnv is the Go runtime settings the two sidecars run with.
func (h *harness) sidecarEnv() []string {
	var e []string
	if h.opt.sidecarGOGC != "" {
		e = append(e, "GOGC="+h.opt.sidecarGOGC)
	}
	if h.opt.sidecarGOMEMLIMIT != "" {
		e = append(e, "GOMEMLIMIT="+h.opt.sidecarGOMEMLIMIT)
	}
	return e
}

// profile takes a CPU profile of a sidecar over a fixed-rate round's recorded
// window (it starts after the warm-up) into out.
func (h *harness) profile(ctx context.Context, sc *target, out string) chan error {
	secs := max(int(h.opt.rateDuration.Seconds())-1, 1)
	h.logf("profiling the app sidecar for %ds", secs)
	done := make(chan error, 1)
	go func() {
		done <- func() error {
			if err := sleep(ctx, h.opt.rateWarmup); err != nil {
				return err
			}
			req, err := http.NewRequestWithContext(ctx, http.MethodGet, sc.adminURL(fmt.Sprintf("/debug/pprof/profile?seconds=%d", secs)), nil)
			if err != nil {
				return err
			}
			resp, err := (&http.Client{Timeout: time.Duration(secs+30) * time.Second}).Do(req)
			if err != nil {
				return err
			}
			defer func() { _ = resp.Body.Close() }() // read-side close: nothing to act on
			if resp.StatusCode != http.StatusOK {
				return fmt.Errorf("pprof: %s", resp.Status)
			}
			f, err := os.Create(out)
			if err != nil {
				return err
			}
			_, err = io.Copy(f, resp.Body)
			// A written file's Close can report a lost write: a truncated profile.
			if cerr := f.Close(); err == nil {
				err = cerr
			}
			return err
		}()
	}()
	return done
}

// rateRounds holds every target's fixed-rate results, by round.
type rateRounds map[string][]rateResult

func (r rateRounds) median(name string, f func(rateResult) float64) float64 {
	vals := make([]float64, 0, len(r[name]))
	for _, x := range r[name] {
		if v := f(x); !math.IsNaN(v) {
			vals = append(vals, v)
		}
	}
	return median(vals)
}

func key(k string) func(rateResult) float64 { return func(r rateResult) float64 { return r.get(k) } }

// per1kTotal is the vCPU per 1000 req/s of every proxy on a path.
func per1kTotal(procs []labelPid) func(rateResult) float64 {
	return func(r rateResult) float64 {
		var t float64
		for _, p := range procs {
			t += r.per1k(p.label)
		}
		return t
	}
}

func per1kOf(label string) func(rateResult) float64 {
	return func(r rateResult) float64 { return r.per1k(label) }
}

func (r rateRounds) failed(name string) int {
	n := 0
	for _, x := range r[name] {
		if v := x.get("failed"); !math.IsNaN(v) {
			n += int(v)
		}
	}
	return n
}

type sidecarFigures struct {
	agent        *consulAgent
	paths        []path
	wrk          rounds
	rate         rateRounds
	idle, loaded memory
	idleCPU      float64
}

func (h *harness) sidecarReport(f sidecarFigures) string {
	o := h.opt
	var b strings.Builder
	w := func(format string, a ...any) { fmt.Fprintf(&b, format, a...) }
	b.WriteString(h.head("meshgate sidecar benchmark"))
	w("## Paths\n\n| path | what wrk / rateload reach |\n|---|---|\n")
	for i, p := range f.paths {
		w("| %c. %s | %s |\n", 'A'+i, p.t.name, p.desc)
	}
	w("\n- Consul: %s, agent -dev (built-in Connect CA), log level warn; intentions: app allows edge and client (service-intentions config entry), everything else denied\n", f.agent.version())
	w("- Access logs off on every hop (nginx and meshgate); meshgate log level warn; metrics on (always).\n")
	env := strings.Join(h.sidecarEnv(), " ")
	if env == "" {
		env = "defaults (no GOGC or GOMEMLIMIT)"
	}
	w("- Sidecar Go runtime settings: %s\n", env)
	if o.sidecarProfile {
		w("- SIDECAR_PROFILE=1: the app sidecar was CPU-profiled during C's first fixed-rate round (that round's CPU includes the profiler's cost): %s\n", filepath.Join(h.rawDir(), "app-sidecar-cpu.pprof"))
	}
	w("- All four paths run side by side (started once); only one is loaded at a time, in a rotating order.\n\n")

	r := f.wrk
	dP50, dP99 := r.median("direct", p50), r.median("direct", p99)
	added := func(name string, base, v float64) string {
		if name == "direct" {
			return "—"
		}
		return signed(v-base, 3)
	}
	w("## Saturation: wrk -t%d -c%d, keep-alive (median of %d rounds)\n\n", o.threads, o.conns, o.rounds)
	tb := newTable("path", ">req/s", ">p50 ms", ">p99 ms", ">added p50 ms vs direct", ">added p99 ms vs direct", ">proxies' CPU µs/req", "errors")
	for _, p := range f.paths {
		n := p.t.name
		tb.add(n, num(r.median(n, rps), 0), num(r.median(n, p50), 3), num(r.median(n, p99), 3),
			added(n, dP50, r.median(n, p50)), added(n, dP99, r.median(n, p99)), dash(num(r.median(n, cpuUs), 1)), r.errorsCell(n))
	}
	w("%s\n", tb)
	m50, m99, mr := r.median("merged", p50), r.median("merged", p99), r.median("merged", rps)
	c50, c99, cr := r.median("chain", p50), r.median("chain", p99), r.median("chain", rps)
	w("Merged hop (C) vs classic chain (D), saturation: req/s ratio C/D %s; p50 saving %s ms (%s); p99 saving %s ms (%s).\n",
		ratio(mr, cr), num(c50-m50, 3), pctSaving(c50, m50), num(c99-m99, 3), pctSaving(c99, m99))
	w("Per round (C/D req/s):")
	for i := range min(len(r["merged"]), len(r["chain"])) {
		w(" %s", ratio(r["merged"][i].wrk.rps, r["chain"][i].wrk.rps))
	}
	w("\n\nUnder wrk every path is saturated (closed loop): latency there is mostly queueing, about connections / throughput, so the fixed-rate table below is the one for per-hop latency.\n")
	w("A negative added figure means direct's own median was worse: at saturation wrk and the app fight for the %d CPUs and direct's p99 is scheduler noise (see the rounds below).\n\n", nproc())

	q := f.rate
	w("## Fixed rate: %d req/s open loop for %s (after %s warm-up), median of %d rounds\n\n", o.rate, o.rateDuration, o.rateWarmup, o.rounds)
	dr50, dr99 := q.median("direct", key("p50_ms")), q.median("direct", key("p99_ms"))
	tb = newTable("path", ">achieved req/s", ">p50 ms", ">p99 ms", ">added p50 ms vs direct", ">added p99 ms vs direct", ">proxies' vCPU per 1000 req/s", ">failed")
	for _, p := range f.paths {
		n := p.t.name
		cpu := "— (none)"
		if n != "direct" {
			cpu = num(q.median(n, per1kTotal(p.proxies)), 4)
		}
		tb.add(n, num(q.median(n, key("achieved_rps")), 1), num(q.median(n, key("p50_ms")), 3), num(q.median(n, key("p99_ms")), 3),
			added(n, dr50, q.median(n, key("p50_ms"))), added(n, dr99, q.median(n, key("p99_ms"))), cpu, q.failed(n))
	}
	w("%s\n", tb)
	mergedCPU := q.median("merged", per1kTotal(f.paths[2].proxies))
	chainCPU := q.median("chain", per1kTotal(f.paths[3].proxies))
	m50, m99 = q.median("merged", key("p50_ms")), q.median("merged", key("p99_ms"))
	c50, c99 = q.median("chain", key("p50_ms")), q.median("chain", key("p99_ms"))
	w("Merged hop (C) vs classic chain (D), fixed rate: p50 saving %s ms (%s); p99 saving %s ms (%s); proxies' CPU %s vs %s vCPU per 1000 req/s (%s less).\n\n",
		num(c50-m50, 3), pctSaving(c50, m50), num(c99-m99, 3), pctSaving(c99, m99), num(mergedCPU, 4), num(chainCPU, 4), pctSaving(chainCPU, mergedCPU))
	w("Latency is from when rateload issued each request (a request waiting for a free worker counts); rateload's own service-time percentiles (svc_*) are in the raw files.\n\n")
	w("### CPU by process at %d req/s (median of %d rounds; utime+stime from /proc over the window)\n\n", o.rate, o.rounds)
	tb = newTable("path", "process", ">vCPU", ">vCPU per 1000 req/s")
	for _, p := range f.paths[1:] {
		for _, lp := range p.proxies {
			tb.add(p.t.name, lp.label, num(q.median(p.t.name, key("vcpu."+lp.label)), 4), num(q.median(p.t.name, per1kOf(lp.label)), 4))
		}
	}
	w("%s\n", tb)

	cpuC, cpuD := q.median("merged", per1kOf("app-sidecar")), q.median("chain", per1kOf("app-sidecar"))
	w("## Targets\n\n| figure | measured | target | verdict |\n|---|---:|---|---|\n")
	w("| app sidecar idle VmRSS (after start-up + %s idle, watches running) | %.1f MB (%.1f MiB) | ≤ 20 MB | %s |\n",
		o.idle, megabytes(f.idle.RSSKB), mebibytes(f.idle.RSSKB), atMost(megabytes(f.idle.RSSKB), 20))
	w("| app sidecar CPU per 1000 req/s through C (median of %d) | %s vCPU | ≤ 0.1 vCPU | %s |\n\n", o.rounds, num(cpuC, 4), atMost(cpuC, 0.1))
	w("- app sidecar idle: VmHWM %.1f MB, CPU %.2f%% of one core over the %s (no request had reached it yet)\n", megabytes(f.idle.HWMKB), f.idleCPU, o.idle)
	w("- app sidecar after all the load: VmRSS %.1f MB, VmHWM %.1f MB\n", megabytes(f.loaded.RSSKB), megabytes(f.loaded.HWMKB))
	w("- app sidecar CPU per 1000 req/s through D (same role, callers via client sidecar): %s vCPU\n", num(cpuD, 4))
	w("- CPU per round (C, app sidecar):")
	for _, x := range q["merged"] {
		w(" %.4f", x.per1k("app-sidecar"))
	}
	w("\n- MB = 10^6 bytes; MiB = 2^20. Clock-tick resolution: 1/%d s per sample.\n", h.clkTck)
	w("- note: wrk/rateload, consul, nginx, every meshgate and the app share the same %d CPUs; vCPU figures include the sidecar's Consul watches and the agent's /ready checks.\n\n", nproc())

	w("## Rounds (wrk)\n\n")
	tb = newTable(">round", "path", ">req/s", ">p50 ms", ">p99 ms", ">proxies' CPU µs/req", "non-2xx/socket errors")
	for i := range o.rounds {
		for _, p := range f.paths {
			if i >= len(r[p.t.name]) {
				continue
			}
			s := r[p.t.name][i]
			tb.add(i+1, p.t.name, num(s.wrk.rps, 2), num(s.wrk.p50ms, 3), num(s.wrk.p99ms, 3), dash(num(s.cpuUs, 1)), fmt.Sprintf("%d/%d", s.wrk.non2xx, s.wrk.socketErrs))
		}
	}
	w("%s\n## Rounds (fixed rate)\n\n", tb)
	tb = newTable(">round", "path", ">achieved req/s", ">p50 ms", ">p99 ms", ">p99.9 ms", ">proxies' vCPU per 1000 req/s", ">failed")
	for i := range o.rounds {
		for _, p := range f.paths {
			if i >= len(q[p.t.name]) {
				continue
			}
			x := q[p.t.name][i]
			tb.add(i+1, p.t.name, num(x.get("achieved_rps"), 1), num(x.get("p50_ms"), 3), num(x.get("p99_ms"), 3), num(x.get("p99.9_ms"), 3),
				num(per1kTotal(p.proxies)(x), 4), num(x.get("failed"), 0))
		}
	}
	w("%s\n## meshgate warnings\n\n```text\n", tb)
	for _, n := range []string{"edge", "merged", "sidecar-app", "sidecar-client"} {
		lp := filepath.Join(h.tmp, n, "stderr.log")
		if st, err := os.Stat(lp); err == nil && st.Size() > 0 {
			w("== %s\n%s\n", n, tail(lp, 10))
		}
	}
	w("```\n\nRaw output: %s/ (configs: %s/*/meshgate.yaml, %s/nginx/nginx.conf; agent log: %s)\n", h.rawDir(), h.tmp, h.tmp, f.agent.proc.logPath)
	return b.String()
}

// dash shows a missing figure as a dash (direct has no proxy).
func dash(s string) string {
	if s == "n/a" {
		return "—"
	}
	return s
}
