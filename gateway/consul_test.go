package gateway

import (
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/consul/api"

	"github.com/meshgate/meshgate/conf"
	"github.com/meshgate/meshgate/internal/consuldev"
)

// consulCatalog drives a real dev agent's catalog through its agent API.
type consulCatalog struct {
	t      *testing.T
	client *api.Client
}

func (c consulCatalog) register(id, name string, srv *httptest.Server, weight int, tags ...string) {
	c.t.Helper()
	_, port, _ := strings.Cut(hostport(srv), ":")
	p, _ := strconv.Atoi(port)
	err := c.client.Agent().ServiceRegister(&api.AgentServiceRegistration{
		ID: id, Name: name, Address: "127.0.0.1", Port: p, Tags: tags,
		Weights: &api.AgentWeights{Passing: weight, Warning: 1},
		Check:   &api.AgentServiceCheck{CheckID: id + "-ttl", TTL: "1h", Status: api.HealthPassing},
	})
	if err != nil {
		c.t.Fatalf("register %s: %v", id, err)
	}
	// A re-registration keeps an existing check's status; make it passing explicitly.
	c.ttl(id, api.HealthPassing)
}

func (c consulCatalog) ttl(id, status string) {
	c.t.Helper()
	if err := c.client.Agent().UpdateTTL(id+"-ttl", "test", status); err != nil {
		c.t.Fatalf("ttl %s %s: %v", id, status, err)
	}
}

func (c consulCatalog) deregister(id string) {
	c.t.Helper()
	if err := c.client.Agent().ServiceDeregister(id); err != nil {
		c.t.Fatalf("deregister %s: %v", id, err)
	}
}

func consulEdgeConfig(static, consulAddr, snapDir string) string {
	return fmt.Sprintf(`
admin: { address: 127.0.0.1:0 }
listeners:
  - name: public
    address: 127.0.0.1:0
routes:
  - name: weighted
    match: { path_prefix: /w/ }
    to: [ { service: weighted } ]
  - name: static
    match: { path_prefix: /static/ }
    to: [ { service: origin } ]
  - name: v2
    match: { path_prefix: /v2/ }
    to: [ { service: api-v2 } ]
  - name: api
    match: { path_prefix: / }
    to: [ { service: api } ]
discovery:
  static:
    origin: [ %s ]
  consul:
    address: %s
    snapshot_dir: %s
    services:
      api-v2: { name: api, tags: [ v2 ] }
access_log: { output: "off" }
`, static, consulAddr, snapDir)
}

// hits sends n GETs and counts answers by upstream; any non-200 fails the test.
func hits(t *testing.T, url string, n int) map[string]int {
	t.Helper()
	out := map[string]int{}
	for range n {
		resp, body := get(t, url, nil)
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("GET %s = %d %s", url, resp.StatusCode, body)
		}
		out[resp.Header.Get("X-Upstream")]++
	}
	return out
}

// waitTraffic polls until streak consecutive requests are answered only by the upstreams in
// want, and returns when the first request of that streak was sent.
func waitTraffic(t *testing.T, url string, streak int, want ...string) time.Time {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	var start time.Time
	var last string
	run := 0
	for time.Now().Before(deadline) {
		at := time.Now()
		resp, body := get(t, url, nil)
		last = fmt.Sprintf("%d %s %s", resp.StatusCode, resp.Header.Get("X-Upstream"), body)
		up := resp.Header.Get("X-Upstream")
		if resp.StatusCode == http.StatusOK && contains(want, up) {
			if run == 0 {
				start = at
			}
			if run++; run == streak {
				return start
			}
			continue
		}
		run = 0
		time.Sleep(5 * time.Millisecond)
	}
	t.Fatalf("%s: traffic did not settle on %v within 10s; last answer: %s", url, want, last)
	return time.Time{}
}

func contains(ss []string, s string) bool {
	for _, x := range ss {
		if x == s {
			return true
		}
	}
	return false
}

func readyBody(t *testing.T, admin string) (int, string) {
	t.Helper()
	resp, err := http.Get("http://" + admin + "/ready")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// TestConsulDiscoveryEndToEnd: instances registered in a real agent get traffic; a failed
// check or a deregistration moves it; subsets and weights are honoured; killing the agent
// keeps traffic on the last set with /ready degraded; a new edge started while the agent is
// down serves from the snapshot; the agent's return is caught up with.
func TestConsulDiscoveryEndToEnd(t *testing.T) {
	t.Parallel()
	agent := consuldev.Start(t)
	client, err := api.NewClient(&api.Config{Address: agent.HTTPAddr})
	if err != nil {
		t.Fatal(err)
	}
	cat := consulCatalog{t: t, client: client}
	u1, _ := startUpstream(t, "u1", nil)
	u2, _ := startUpstream(t, "u2", nil)
	w1, _ := startUpstream(t, "w1", nil)
	w3, _ := startUpstream(t, "w3", nil)
	origin, _ := startUpstream(t, "origin", nil)
	cat.register("api-1", "api", u1, 1)
	cat.register("api-2", "api", u2, 1, "v2")
	cat.register("weighted-1", "weighted", w1, 1)
	cat.register("weighted-3", "weighted", w3, 3)

	cfg := consulEdgeConfig(hostport(origin), agent.HTTPAddr, t.TempDir())
	e := startEdge(t, cfg)
	waitTraffic(t, e.url+"/", 1, "u1")
	waitTraffic(t, e.url+"/", 1, "u2")
	if got := hits(t, e.url+"/static/", 3); got["origin"] != 3 {
		t.Fatalf("static route answered by %v", got)
	}
	if got := hits(t, e.url+"/v2/", 10); got["u2"] != 10 {
		t.Fatalf("subset tags [v2] answered by %v, want only u2", got)
	}
	// Weights: round_robin in proportion to Weights.Passing (1:3).
	got := hits(t, e.url+"/w/", 400)
	if share := float64(got["w3"]) / 400; share < 0.65 || share > 0.85 {
		t.Fatalf("weighted split %v: w3 share %.2f, want ≈ 0.75", got, share)
	}
	if code, body := readyBody(t, e.admin); code != 200 || body != "ready\n" {
		t.Fatalf("/ready = %d %q with consul up", code, body)
	}

	// Removals settle when 10 requests in a row avoid the removed instance; additions when the
	// added one first answers. Both are timed from just before the catalog call.
	var lat []time.Duration
	change := func(what string, do func(), streak int, want ...string) {
		t.Helper()
		start := time.Now()
		do()
		d := max(waitTraffic(t, e.url+"/", streak, want...).Sub(start), 0)
		lat = append(lat, d)
		t.Logf("%s: traffic moved after %s", what, d.Round(100*time.Microsecond))
	}
	change("api-2 check critical", func() { cat.ttl("api-2", api.HealthCritical) }, 10, "u1")
	change("api-2 check passing", func() { cat.ttl("api-2", api.HealthPassing) }, 1, "u2")
	change("api-1 deregistered", func() { cat.deregister("api-1") }, 10, "u2")
	change("api-1 registered", func() { cat.register("api-1", "api", u1, 1) }, 1, "u1")
	change("api-2 deregistered", func() { cat.deregister("api-2") }, 10, "u1")
	for _, d := range lat {
		if d > 5*time.Second {
			t.Errorf("catalog change took %s to reach traffic, want < 5s", d)
		}
	}

	// Outage: traffic stays on the last set, /ready stays 200 and says degraded.
	agent.Kill()
	waitFor(t, "/ready to say degraded", func() bool {
		code, body := readyBody(t, e.admin)
		return code == 200 && strings.Contains(body, "degraded: ") && strings.Contains(body, "api: consul query failing")
	})
	if got := hits(t, e.url+"/", 20); got["u1"] != 20 {
		t.Fatalf("during the outage traffic went to %v, want u1 only", got)
	}
	if m := edgeMetricValue(t, e.admin, "meshgate_discovery_degraded"); m != "1" {
		t.Fatalf("meshgate_discovery_degraded = %q during the outage", m)
	}

	// A restarted meshgate with the agent still down serves from the snapshot at once.
	e.stop(t)
	e2 := startEdge(t, cfg)
	if got := hits(t, e2.url+"/", 10); got["u1"] != 10 {
		t.Fatalf("restart from snapshot: traffic went to %v, want u1", got)
	}
	if got := hits(t, e2.url+"/w/", 8); got["w1"]+got["w3"] != 8 {
		t.Fatalf("restart from snapshot: weighted traffic %v", got)
	}
	if code, body := readyBody(t, e2.admin); code != 200 || !strings.Contains(body, "snapshot") {
		t.Fatalf("/ready from snapshot = %d %q, want 200 naming the snapshot", code, body)
	}

	// Consul comes back; the instances re-register (the agent's local state is not trusted).
	agent.Restart(t)
	for _, id := range []string{"api-1", "api-2", "weighted-1", "weighted-3"} {
		_ = client.Agent().ServiceDeregister(id)
	}
	cat.register("api-2", "api", u2, 1, "v2")
	cat.register("weighted-1", "weighted", w1, 1)
	waitTraffic(t, e2.url+"/", 10, "u2")
	waitTraffic(t, e2.url+"/w/", 10, "w1")
	waitFor(t, "/ready to be clean", func() bool {
		code, body := readyBody(t, e2.admin)
		return code == 200 && body == "ready\n"
	})
}

func edgeMetricValue(t *testing.T, admin, name string) string {
	t.Helper()
	resp, err := http.Get("http://" + admin + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, name+" "); ok {
			return v
		}
	}
	return ""
}

// TestConsulReloadKeepsQueries: a reload re-watches every service, which must join the
// running blocking queries rather than start new ones; a changed subset applies at once.
func TestConsulReloadKeepsQueries(t *testing.T) {
	t.Parallel()
	agent := consuldev.Start(t)
	client, err := api.NewClient(&api.Config{Address: agent.HTTPAddr})
	if err != nil {
		t.Fatal(err)
	}
	cat := consulCatalog{t: t, client: client}
	u1, _ := startUpstream(t, "u1", nil)
	u2, _ := startUpstream(t, "u2", nil)
	origin, _ := startUpstream(t, "origin", nil)
	cat.register("api-1", "api", u1, 1)
	cat.register("api-2", "api", u2, 1, "v2")

	cfg := consulEdgeConfig(hostport(origin), agent.HTTPAddr, t.TempDir())
	e := startEdge(t, cfg)
	waitTraffic(t, e.url+"/v2/", 5, "u2")
	queries := func() string {
		return edgeMetricValue(t, e.admin, `meshgate_discovery_consul_queries_total{result="success",service="api"}`)
	}
	before := queries()

	parsed, err := conf.Parse("reload.yaml", []byte(strings.Replace(cfg, "tags: [ v2 ]", "tags: [ v2 ], meta: { zone: none }", 1)))
	if err != nil {
		t.Fatal(err)
	}
	if err := e.edge.Reload(parsed); err != nil {
		t.Fatalf("reload: %v", err)
	}
	// The narrowed subset matches nothing: a real empty answer, so /v2/ has no upstream. Its
	// new query ran; a restarted api query would have run alongside it.
	waitFor(t, "api-v2 to be empty", func() bool {
		resp, _ := get(t, e.url+"/v2/", nil)
		return resp.StatusCode == http.StatusServiceUnavailable
	})
	// The old api-v2 loop ended with the old generation; api and weighted were joined.
	waitFor(t, "three query loops", func() bool {
		return edgeMetricValue(t, e.admin, "meshgate_discovery_consul_watches") == "3"
	})
	if after := queries(); after != before {
		t.Fatalf("reload restarted the api query: success count %s → %s", before, after)
	}
	waitTraffic(t, e.url+"/", 1, "u1")
}
