package main

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
)

// runScenario starts the scenario's peers, loads them and renders its report.
func (h *harness) runScenario(ctx context.Context) (string, error) {
	switch h.scenario {
	case "edge":
		return h.edge(ctx)
	case "grpc":
		return h.grpcScenario(ctx)
	case "fault":
		return h.fault(ctx)
	case "ratelimit":
		return h.ratelimit(ctx)
	case "jwt":
		return h.jwt(ctx)
	case "consul":
		return h.consul(ctx)
	case "sidecar":
		return h.sidecar(ctx)
	case "plugins":
		return h.plugins(ctx)
	}
	return "", fmt.Errorf("unknown scenario %q", h.scenario)
}

// edge compares meshgate's edge with nginx, HAProxy and a bare fasthttp proxy
// in front of one origin, and the origin directly.
func (h *harness) edge(ctx context.Context) (string, error) {
	origin, err := h.startOrigin(ctx, "origin")
	if err != nil {
		return "", err
	}
	direct := *origin
	direct.name = "direct"
	h.logf("starting nginx")
	nginx, err := h.startNginx(ctx, "nginx", "nginx.conf.tmpl", 0, map[string]string{"ORIGIN_PORT": strconv.Itoa(origin.port)})
	if err != nil {
		return "", err
	}
	h.logf("starting haproxy")
	haproxy, err := h.startHAProxy(ctx, origin)
	if err != nil {
		return "", err
	}
	h.logf("starting the bare fasthttp proxy")
	fast, err := h.startFastproxy(ctx, origin)
	if err != nil {
		return "", err
	}
	ts := []*target{&direct, nginx, haproxy, fast}
	if !h.opt.skipMeshgate {
		specs := []meshgateSpec{{name: "meshgate", note: "edge mode, metrics on, access log on (file)",
			vals: map[string]string{"ACCESS_LOG": filepath.Join(h.tmp, "meshgate", "access.log")}}}
		if h.opt.edgeNoLog {
			// What the access log costs, measured in the same run (issue 16's table has both rows).
			specs = append(specs, meshgateSpec{name: "meshgate-nolog", note: "edge mode, metrics on, access log off",
				vals: map[string]string{"ACCESS_LOG": "off"}})
		}
		for _, s := range specs {
			h.logf("starting %s", s.name)
			s.tmpl = "meshgate.yaml.tmpl"
			s.vals["ORIGIN_PORT"] = strconv.Itoa(origin.port)
			mg, err := h.startMeshgate(ctx, s)
			if err != nil {
				return "", err
			}
			ts = append(ts, mg)
		}
	}
	r, err := h.measure(ctx, ts, nil)
	if err != nil {
		return "", err
	}
	names := targetNames(ts)

	var b strings.Builder
	b.WriteString(h.head("meshgate comparative benchmark"))
	b.WriteString(h.resultsTable(r, names))
	b.WriteString(edgeRatios(r, !h.opt.skipMeshgate, h.opt.edgeNoLog))
	b.WriteString("\n## Targets\n\n")
	for _, t := range ts {
		fmt.Fprintf(&b, "- %s: %s\n", t.name, t.note)
	}
	b.WriteString("- note: HAProxy and the bare fasthttp proxy run without an access log; nginx and meshgate write one.\n")
	fmt.Fprintf(&b, "- note: wrk, the proxy and the origin share the same %d CPUs.\n", nproc())
	b.WriteString("- CPU µs/req: the target's utime+stime (its workers included) read from /proc before and after each round, divided by the requests wrk completed in it; for direct it is the origin's own.\n\n")
	b.WriteString(h.roundsTable("Rounds", r, names))
	fmt.Fprintf(&b, "Raw wrk output: %s/\n\n## Access logs\n\n", h.rawDir())
	for _, t := range ts {
		if t.name != "nginx" && t.name != "meshgate" {
			continue
		}
		f := filepath.Join(h.tmp, t.name, "access.log")
		if st, err := os.Stat(f); err == nil {
			fmt.Fprintf(&b, "- %s access log: %d lines, %.1f MB\n", t.name, countLines(f), float64(st.Size())/1e6)
		} else {
			fmt.Fprintf(&b, "- %s access log: **missing** (%s)\n", t.name, f)
		}
	}
	return b.String(), nil
}

// edgeRatios are the comparisons the edge targets are stated in (issue 16):
// throughput and p99 against HAProxy and nginx, CPU per request against the
// bare fasthttp floor.
func edgeRatios(r rounds, haveMeshgate, haveNoLog bool) string {
	if !haveMeshgate {
		return "meshgate skipped (SKIP_MESHGATE=1): no meshgate ratios.\n"
	}
	m := func(name string, f func(sample) float64) float64 { return r.median(name, f) }
	var b strings.Builder
	b.WriteString("| ratio (of medians) | value | target |\n|---|---:|---|\n")
	fmt.Fprintf(&b, "| meshgate/haproxy req/s | %s | ≥ 1.10 |\n", ratio(m("meshgate", rps), m("haproxy", rps)))
	fmt.Fprintf(&b, "| meshgate/nginx req/s | %s | |\n", ratio(m("meshgate", rps), m("nginx", rps)))
	fmt.Fprintf(&b, "| meshgate/fasthttp req/s | %s | |\n", ratio(m("meshgate", rps), m("fasthttp", rps)))
	fmt.Fprintf(&b, "| meshgate/haproxy p99 (lower is better) | %s | ≤ 1.00 |\n", ratio(m("meshgate", p99), m("haproxy", p99)))
	fmt.Fprintf(&b, "| meshgate/nginx p99 (lower is better) | %s | |\n", ratio(m("meshgate", p99), m("nginx", p99)))
	fmt.Fprintf(&b, "| meshgate/fasthttp CPU per request (lower is better) | %s | ≤ 1.10 |\n", ratio(m("meshgate", cpuUs), m("fasthttp", cpuUs)))
	fmt.Fprintf(&b, "| meshgate/haproxy CPU per request (lower is better) | %s | |\n", ratio(m("meshgate", cpuUs), m("haproxy", cpuUs)))
	if haveNoLog {
		fmt.Fprintf(&b, "| meshgate-nolog/fasthttp CPU per request (lower is better) | %s | |\n", ratio(m("meshgate-nolog", cpuUs), m("fasthttp", cpuUs)))
		fmt.Fprintf(&b, "| meshgate-nolog/haproxy req/s | %s | |\n", ratio(m("meshgate-nolog", rps), m("haproxy", rps)))
	}
	b.WriteString("\nTargets are issue 16's (CPU per request first, then throughput and p99).\n")
	return b.String()
}

func targetNames(ts []*target) []string {
	out := make([]string, len(ts))
	for i, t := range ts {
		out[i] = t.name
	}
	return out
}

// countLines streams the file: an access log reaches hundreds of MB.
func countLines(path string) int {
	f, err := os.Open(path)
	if err != nil {
		return 0
	}
	defer func() { _ = f.Close() }() // opened read-only
	n := 0
	buf := make([]byte, 1<<20)
	for {
		k, err := f.Read(buf)
		n += bytes.Count(buf[:k], []byte{'\n'})
		if err != nil {
			return n
		}
	}
}
