package main

import (
	"context"
	"fmt"
	"strconv"
	"strings"
)

// ratelimit compares two edges that differ only in a never-triggering local
// rate_limit policy (target: the policy keeps ≥ 95% of the throughput).
func (h *harness) ratelimit(ctx context.Context) (string, error) {
	origin, err := h.startOrigin(ctx, "origin")
	if err != nil {
		return "", err
	}
	var ts []*target
	for _, s := range []struct{ name, note, policies string }{
		{"plain", "meshgate edge, route without policies, access log off", "[ ]"},
		{"ratelimit", "meshgate edge, route with a local rate_limit (100000000 per 1s, key client_ip) that never triggers, access log off", "[ never ]"},
	} {
		h.logf("starting %s", s.name)
		t, err := h.startMeshgate(ctx, meshgateSpec{name: s.name, tmpl: "meshgate-ratelimit.yaml.tmpl", note: s.note,
			vals: map[string]string{"ORIGIN_PORT": strconv.Itoa(origin.port), "ROUTE_POLICIES": s.policies}})
		if err != nil {
			return "", err
		}
		ts = append(ts, t)
	}
	r, err := h.measure(ctx, ts, nil)
	if err != nil {
		return "", err
	}
	body, err := httpGet(ctx, ts[1].adminURL("/metrics"))
	if err != nil {
		return "", fmt.Errorf("cannot read the ratelimit instance's metrics: %w", err)
	}
	m, err := parseProm(string(body))
	if err != nil {
		return "", err
	}
	samples := promDelta(nil, m)
	allowed := promSum(samples, "meshgate_ratelimit_decisions_total", map[string]string{"result": "allowed"})
	limited := promSum(samples, "meshgate_ratelimit_decisions_total", map[string]string{"result": "limited"})
	sent := h.wrkRequests("ratelimit", r)
	rr := r.median("ratelimit", rps) / r.median("plain", rps)

	var b strings.Builder
	b.WriteString(h.head("meshgate rate-limit overhead"))
	b.WriteString(h.resultsTable(r, []string{"plain", "ratelimit"}))
	fmt.Fprintf(&b, "ratelimit/plain req/s ratio (of medians): %s — %s\n\n", ratio(r.median("ratelimit", rps), r.median("plain", rps)),
		targetVerdict(rr, 0.95))
	b.WriteString(perRoundRatios(r, "ratelimit", "plain", "Per round (ratelimit/plain):"))
	b.WriteString("\n## Policy check\n\n")
	fmt.Fprintf(&b, "- meshgate_ratelimit_decisions_total on the ratelimit instance: allowed %.0f, limited %.0f; wrk completed %d requests against it\n", allowed, limited, sent)
	if allowed == 0 {
		b.WriteString("- **FLAGGED**: the policy made no decision; it was not on the request path\n")
	}
	if limited != 0 {
		b.WriteString("- **FLAGGED**: the policy limited requests; the comparison includes 429s\n")
	}
	b.WriteString("\n## Targets\n\n")
	for _, t := range ts {
		fmt.Fprintf(&b, "- %s: %s\n", t.name, t.note)
	}
	b.WriteString("- both instances run side by side (started once) and wrk alternates between them; only one is loaded at a time.\n")
	fmt.Fprintf(&b, "- note: wrk, meshgate and the origin share the same %d CPUs.\n\n", nproc())
	b.WriteString(h.roundsTable("Rounds", r, []string{"plain", "ratelimit"}))
	fmt.Fprintf(&b, "Raw wrk output: %s/\n", h.rawDir())
	return b.String(), nil
}

// perRoundRatios lists a/b req/s round by round, as markdown bullets.
func perRoundRatios(r rounds, a, b, title string) string {
	var s strings.Builder
	s.WriteString(title + "\n")
	for i := range min(len(r[a]), len(r[b])) {
		fmt.Fprintf(&s, "- round %d: %s\n", i+1, ratio(r[a][i].wrk.rps, r[b][i].wrk.rps))
	}
	return s.String()
}

// wrkRequests is every request wrk completed against a target (warm-ups
// included), to compare with a policy's decision count. The warm-up ran
// without --latency, so its count comes from the raw file.
func (h *harness) wrkRequests(name string, r rounds) int64 {
	var n int64
	for _, s := range r[name] {
		n += s.wrk.requests
	}
	return n + h.warmupRequests(name)
}

// targetVerdict is the sentence for a ratio with a lower bound.
func targetVerdict(r, limit float64) string {
	if r >= limit {
		return fmt.Sprintf("meets the >= %.2f target", limit)
	}
	return fmt.Sprintf("**BELOW the %.2f target**", limit)
}
