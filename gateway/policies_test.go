package gateway

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/rs/zerolog"

	"github.com/meshgate/meshgate/conf"
	"github.com/meshgate/meshgate/gateway/ratelimit/redistest"
)

// policyConfig is a one-listener config whose routes (YAML list items) all go to upstream, plus
// the given policies map and any extra top-level blocks.
func policyConfig(upstream, routes, policies, extra string) string {
	return fmt.Sprintf(`
admin: { address: 127.0.0.1:0 }
listeners:
  - name: public
    address: 127.0.0.1:0
routes:
%s
discovery:
  static:
    origin: [ %s ]
access_log: { output: "off" }
policies:
%s
%s`, routes, upstream, policies, extra)
}

func requests(s *seen) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.reqs)
}

func TestLocalRateLimitRejectsAndRecovers(t *testing.T) {
	t.Parallel()
	up, saw := startUpstream(t, "a", nil)
	e := startEdge(t, policyConfig(hostport(up), `
  - name: all
    match: { path_prefix: / }
    to: [ { service: origin } ]
    policies: [ per-client ]`, `
  per-client:
    rate_limit: { requests: 3, per: 3s }`, ""))

	for i := range 3 {
		if resp, body := get(t, e.url+"/x", nil); resp.StatusCode != 200 {
			t.Fatalf("request %d: %d %s", i, resp.StatusCode, body)
		}
	}
	resp, body := get(t, e.url+"/x", nil)
	if resp.StatusCode != 429 || !strings.Contains(string(body), `"error":"rate_limited"`) {
		t.Fatalf("4th request: %d %s, want 429 rate_limited", resp.StatusCode, body)
	}
	for h, want := range map[string]string{
		"Retry-After": "1", "Ratelimit-Limit": "3", "Ratelimit-Remaining": "0", "Ratelimit-Policy": "3;w=3",
	} {
		if got := resp.Header.Get(h); got != want {
			t.Errorf("%s = %q, want %q", h, got, want)
		}
	}
	if reset, err := strconv.Atoi(resp.Header.Get("Ratelimit-Reset")); err != nil || reset < 1 {
		t.Errorf("RateLimit-Reset = %q, want ≥ 1", resp.Header.Get("Ratelimit-Reset"))
	}
	if resp.Header.Get("X-Request-Id") == "" {
		t.Error("429 lacks X-Request-Id")
	}
	if n := requests(saw); n != 3 {
		t.Errorf("upstream saw %d requests, want 3: a rejected request must not be forwarded", n)
	}

	// One token refills every second; rejected polls do not consume any.
	waitFor(t, "the bucket to refill", func() bool {
		resp, _ := get(t, e.url+"/x", nil)
		return resp.StatusCode == 200
	})
	_, metrics := get(t, "http://"+e.admin+"/metrics", nil)
	for _, want := range []string{
		`meshgate_ratelimit_decisions_total{policy="per-client",result="allowed"} 4`,
		`meshgate_ratelimit_decisions_total{policy="per-client",result="limited"}`,
		`meshgate_requests_total{class="4xx",route="all"}`,
	} {
		if !strings.Contains(string(metrics), want) {
			t.Errorf("/metrics lacks %s", want)
		}
	}
}

func TestRateLimitKeySeparatesClients(t *testing.T) {
	t.Parallel()
	up, _ := startUpstream(t, "a", nil)
	e := startEdge(t, policyConfig(hostport(up), `
  - name: all
    match: { path_prefix: / }
    to: [ { service: origin } ]
    policies: [ per-key ]`, `
  per-key:
    rate_limit: { requests: 2, per: 1m, key: "header:X-Api-Key" }`, ""))

	status := func(key string) int {
		var hdr map[string]string
		if key != "" {
			hdr = map[string]string{"X-Api-Key": key}
		}
		resp, _ := get(t, e.url+"/", hdr)
		return resp.StatusCode
	}
	for i, step := range []struct {
		key  string
		want int
	}{
		{"alice", 200}, {"alice", 200}, {"alice", 429},
		{"bob", 200}, {"bob", 200}, {"bob", 429},
		{"alice", 429},
		{"", 200}, {"", 200}, {"", 429}, // no key: one shared bucket
	} {
		if got := status(step.key); got != step.want {
			t.Fatalf("step %d (key %q): status %d, want %d", i, step.key, got, step.want)
		}
	}
}

func TestFaultInjection(t *testing.T) {
	t.Parallel()
	up, saw := startUpstream(t, "a", nil)
	e := startEdge(t, policyConfig(hostport(up), `
  - name: abort
    match: { path_prefix: /abort }
    to: [ { service: origin } ]
    policies: [ abort ]
  - name: delay
    match: { path_prefix: /delay }
    to: [ { service: origin } ]
    policies: [ delay ]
  - name: deadline
    match: { path_prefix: /deadline }
    to: [ { service: origin } ]
    timeout: 100ms
    policies: [ slow ]
  - name: gated
    match: { path_prefix: /gated }
    to: [ { service: origin } ]
    policies: [ gated ]`, `
  abort: { fault: { abort: { status: 503, percent: 100 } } }
  delay: { fault: { delay: { duration: 150ms, percent: 100 } } }
  slow: { fault: { delay: { duration: 5s, percent: 100 } } }
  gated:
    fault:
      abort: { status: 418, percent: 100 }
      header: X-Chaos`, ""))

	t.Run("abort", func(t *testing.T) {
		before := requests(saw)
		resp, body := get(t, e.url+"/abort", nil)
		if resp.StatusCode != 503 || !strings.Contains(string(body), `"error":"fault_abort"`) {
			t.Fatalf("got %d %s, want 503 fault_abort", resp.StatusCode, body)
		}
		if requests(saw) != before {
			t.Error("an aborted request reached the upstream")
		}
	})
	t.Run("delay", func(t *testing.T) {
		start := time.Now()
		resp, body := get(t, e.url+"/delay", nil)
		if took := time.Since(start); took < 150*time.Millisecond {
			t.Errorf("delayed request took %v, want ≥ 150ms", took)
		}
		if resp.StatusCode != 200 || string(body) != "hello from a" {
			t.Errorf("got %d %q, want the upstream's answer after the delay", resp.StatusCode, body)
		}
	})
	t.Run("delay capped by the route deadline", func(t *testing.T) {
		start := time.Now()
		resp, body := get(t, e.url+"/deadline", nil)
		took := time.Since(start)
		if resp.StatusCode != 504 || !strings.Contains(string(body), `"error":"fault_delay_timeout"`) {
			t.Fatalf("got %d %s, want 504 fault_delay_timeout", resp.StatusCode, body)
		}
		if took < 100*time.Millisecond {
			t.Errorf("answered after %v, before the 100ms route timeout", took)
		}
	})
	t.Run("header gate", func(t *testing.T) {
		if resp, _ := get(t, e.url+"/gated", nil); resp.StatusCode != 200 {
			t.Errorf("without X-Chaos: %d, want 200", resp.StatusCode)
		}
		if resp, _ := get(t, e.url+"/gated", map[string]string{"X-Chaos": "1"}); resp.StatusCode != 418 {
			t.Errorf("with X-Chaos: %d, want 418", resp.StatusCode)
		}
	})
	_, metrics := get(t, "http://"+e.admin+"/metrics", nil)
	for _, want := range []string{
		`meshgate_fault_injected_total{kind="abort",policy="abort"} 1`,
		`meshgate_fault_injected_total{kind="delay",policy="delay"} 1`,
		`meshgate_fault_injected_total{kind="abort",policy="gated"} 1`,
	} {
		if !strings.Contains(string(metrics), want) {
			t.Errorf("/metrics lacks %s", want)
		}
	}
}

// Rate-limit buckets survive a reload that keeps the policy.
func TestRateLimitSurvivesReload(t *testing.T) {
	t.Parallel()
	up, _ := startUpstream(t, "a", nil)
	cfg := policyConfig(hostport(up), `
  - name: all
    match: { path_prefix: / }
    to: [ { service: origin } ]
    policies: [ once ]`, `
  once:
    rate_limit: { requests: 1, per: 1h }`, "")
	e := startEdge(t, cfg)
	if resp, _ := get(t, e.url+"/", nil); resp.StatusCode != 200 {
		t.Fatalf("first request: %d", resp.StatusCode)
	}
	reloaded := strings.Replace(cfg, "name: all", "name: all-v2", 1)
	c, err := conf.Parse("test.yaml", []byte(reloaded))
	if err != nil {
		t.Fatal(err)
	}
	if err := e.edge.Reload(c); err != nil {
		t.Fatal(err)
	}
	resp, _ := get(t, e.url+"/", nil)
	if resp.StatusCode != 429 {
		t.Fatalf("after reload: %d, want 429 (the bucket must survive)", resp.StatusCode)
	}
}

func metricsOf(t *testing.T, e *edgeUnderTest) string {
	t.Helper()
	_, body := get(t, "http://"+e.admin+"/metrics", nil)
	return string(body)
}

// edgeMetric reports whether the edge's /metrics has the exact sample line.
func edgeMetric(t *testing.T, e *edgeUnderTest, line string) bool {
	t.Helper()
	return strings.Contains(metricsOf(t, e), line+"\n")
}

// Two edges share one cluster limit through a real Redis; a Redis outage applies each policy's
// on_redis_error; a restarted Redis is used again.
func TestClusterRateLimitWithRedis(t *testing.T) {
	t.Parallel()
	srv := redistest.Start(t)
	up, _ := startUpstream(t, "a", nil)
	var routes, policies strings.Builder
	for _, mode := range []string{"local", "open", "closed"} {
		fmt.Fprintf(&routes, `
  - name: %[1]s
    match: { path_prefix: /%[1]s }
    to: [ { service: origin } ]
    policies: [ cl-%[1]s ]`, mode)
		fmt.Fprintf(&policies, `
  cl-%[1]s:
    rate_limit: { requests: 5, per: 1m, cluster: true, on_redis_error: %[1]s }`, mode)
	}
	cfg := policyConfig(hostport(up), routes.String(), policies.String(), "redis: { address: "+srv.Addr+", timeout: 1s }\n")
	a, b := startEdge(t, cfg), startEdge(t, cfg)

	allowed := func(path string, n int, edges ...*edgeUnderTest) (ok int, statuses []int) {
		for i := range n {
			resp, _ := get(t, edges[i%len(edges)].url+path, nil)
			statuses = append(statuses, resp.StatusCode)
			if resp.StatusCode == 200 {
				ok++
			}
		}
		return ok, statuses
	}

	// Together the two edges allow the limit once (one more may refill: 1 per 12s).
	if n, st := allowed("/local", 20, a, b); n < 5 || n > 6 {
		t.Fatalf("two edges allowed %d of 20 (%v), want ~5: the limit is shared", n, st)
	}
	if n, st := allowed("/closed", 1, a); n != 1 {
		t.Fatalf("closed policy with Redis up: %v", st)
	}

	srv.Stop()
	t.Run("outage local", func(t *testing.T) {
		if n, st := allowed("/local", 10, a); n < 5 || n > 6 {
			t.Errorf("edge alone allowed %d of 10 (%v), want its local limit ~5", n, st)
		}
		if !edgeMetric(t, a, `meshgate_ratelimit_fallback{policy="cl-local"} 1`) {
			t.Error("fallback gauge is not 1 during the outage")
		}
		m := metricsOf(t, a)
		if !strings.Contains(m, `meshgate_ratelimit_redis_errors_total{policy="cl-local"} `) ||
			strings.Contains(m, `meshgate_ratelimit_redis_errors_total{policy="cl-local"} 0`+"\n") {
			t.Error("redis errors not counted")
		}
	})
	t.Run("outage open", func(t *testing.T) {
		if n, st := allowed("/open", 10, a); n != 10 {
			t.Errorf("open policy allowed %d of 10 (%v), want all", n, st)
		}
	})
	t.Run("outage closed", func(t *testing.T) {
		resp, body := get(t, a.url+"/closed", nil)
		if resp.StatusCode != 503 || !strings.Contains(string(body), `"error":"rate_limit_unavailable"`) {
			t.Errorf("closed policy: %d %s, want 503 rate_limit_unavailable", resp.StatusCode, body)
		}
	})

	// Redis comes back (empty: no persistence). Both edges must use it again within a
	// bounded wait; the closed policy answers 200 only when Redis decided.
	srv.Start()
	for _, e := range []*edgeUnderTest{a, b} {
		waitFor(t, "the closed policy to reach Redis again", func() bool {
			resp, _ := get(t, e.url+"/closed", nil)
			return resp.StatusCode == 200
		})
	}
	if n, st := allowed("/local", 20, a, b); n < 5 || n > 6 {
		t.Fatalf("after Redis restarted, two edges allowed %d of 20 (%v), want ~5", n, st)
	}
	if !edgeMetric(t, a, `meshgate_ratelimit_fallback{policy="cl-local"} 0`) {
		t.Error("fallback gauge did not return to 0 after recovery")
	}
}

// TestEveryPolicyKindBuilds: every kind the schema declares (conf.PolicyKinds, so a new kind is
// in this test without anyone adding it) has a case in policyBuilder.build that turns a valid
// policy of that kind into a filter, or into what apply or ensurePlugins makes one from; a policy
// without a kind is refused. A new kind fails here until it has an example below and its case.
func TestEveryPolicyKindBuilds(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	file := func(name, content string) string {
		path := filepath.Join(dir, name)
		if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
		return path
	}
	sum := sha256.Sum256([]byte("bob-key"))
	examples := map[conf.PolicyKind]string{
		conf.KindRateLimit: "rate_limit: { requests: 5 }",
		conf.KindFault:     "fault: { abort: { status: 503, percent: 1 } }",
		conf.KindPlugin:    "plugin: stamp", // build only names it: no process starts here
		conf.KindJWT:       "jwt: { hmac_secret_file: " + file("jwt-secret", "shared-secret") + " }",
		conf.KindAPIKey:    "api_key: { file: " + file("keys", "bob:"+hex.EncodeToString(sum[:])+"\n") + " }",
		conf.KindHMAC:      "hmac: { secrets_file: " + file("secrets", "k1:0123456789abcdef-secret\n") + " }",
		conf.KindIP:        "ip: { allow: [ 10.0.0.0/8 ] }",
		conf.KindCORS:      "cors: { origins: [ https://app.example ] }",
		conf.KindHeaders:   "headers: { request: { set: { X-Via: edge } } }",
	}
	var pols strings.Builder
	for _, k := range conf.PolicyKinds() {
		ex, ok := examples[k]
		if !ok {
			t.Fatalf("no example %s policy: add one here and its case in policyBuilder.build", k)
		}
		fmt.Fprintf(&pols, "  %s: { %s }\n", k, ex)
	}
	cfg, err := conf.Parse("kinds.yaml", []byte(policyConfig("127.0.0.1:1", `
  - name: all
    match: { path_prefix: / }
    to: [ { service: origin } ]`, pols.String(), `
plugins:
  stamp: { path: /usr/lib/meshgate/stamp, sha256: `+strings.Repeat("0", 64)+` }
`)))
	if err != nil {
		t.Fatal(err)
	}
	b, err := newPolicyBuilder(prometheus.NewRegistry(), zerolog.Nop())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(b.close)
	p := newPolicyPlan(0)
	t.Cleanup(func() { closeAll(p.closers) })
	for _, k := range conf.PolicyKinds() {
		pol := cfg.Policies[string(k)]
		if pol.Kind() != k {
			t.Fatalf("example %s policy is of kind %q", k, pol.Kind())
		}
		pl, err := b.build(string(k), pol, p)
		switch {
		case err != nil:
			t.Errorf("%s: %v", k, err)
		case pl.filter == nil && pl.limit == nil && pl.plugin == "":
			t.Errorf("%s: build returned nothing to run", k)
		}
	}
	if _, err := b.build("none", conf.Policy{}, p); err == nil || !strings.Contains(err.Error(), "not available") {
		t.Errorf("a policy without a kind: err = %v, want it refused", err)
	}
}
