package gateway

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/consul/api"
	"github.com/rs/zerolog"

	"github.com/meshgate/meshgate/conf"
	"github.com/meshgate/meshgate/gateway/route"
	"github.com/meshgate/meshgate/internal/await"
	"github.com/meshgate/meshgate/internal/consuldev"
)

// startEngine runs a Server (edge or sidecar config) and waits for /ready; unlike startEdge it
// does not assume a listener named "public".
func startEngine(t *testing.T, yaml string) *edgeUnderTest {
	t.Helper()
	cfg, err := conf.Parse("test.yaml", []byte(yaml))
	if err != nil {
		t.Fatalf("config: %v", err)
	}
	e, err := NewServer(cfg, ServerOptions{Logger: zerolog.New(io.Discard)})
	if err != nil {
		t.Fatalf("NewEdge: %v", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	eut := &edgeUnderTest{edge: e, cancel: cancel, done: make(chan error, 1), admin: e.AdminAddr().String()}
	if a, ok := e.ListenerAddrs()["public"]; ok {
		eut.addr = a.String()
		eut.url = "http://" + eut.addr
	}
	go func() { eut.done <- e.Run(ctx) }()
	t.Cleanup(func() { eut.stop(t) })
	await.Until(t, 30*time.Second, "engine ready", func() bool {
		code, _ := readyBody(t, eut.admin)
		return code == http.StatusOK
	})
	return eut
}

func (e *edgeUnderTest) listener(name string) string { return e.edge.ListenerAddrs()[name].String() }

// sidecarConfig is a Connect sidecar for the app at appAddr.
func sidecarConfig(consulAddr, name, appAddr string, upstreams ...string) string {
	return sidecarConfigWith(consulAddr, name, appAddr, "{ address: 127.0.0.1:0 }", upstreams...)
}

// sidecarConfigWith takes the inbound block as flow YAML.
func sidecarConfigWith(consulAddr, name, appAddr, inbound string, upstreams ...string) string {
	host, port, _ := net.SplitHostPort(appAddr)
	var ups strings.Builder
	for _, u := range upstreams {
		fmt.Fprintf(&ups, "    - { service: %s, bind: 127.0.0.1:0 }\n", u)
	}
	if ups.Len() == 0 {
		ups.WriteString("    []\n")
	}
	return fmt.Sprintf(`
admin: { address: 127.0.0.1:0 }
access_log: { output: "off" }
discovery: { consul: { address: %s, wait: 2s } }
sidecar:
  service: { name: %s, address: %s, port: %s }
  inbound: %s
  upstreams:
%s`, consulAddr, name, host, port, inbound, ups.String())
}

func connectEdgeConfig(consulAddr string) string {
	return fmt.Sprintf(`
admin: { address: 127.0.0.1:0 }
access_log: { output: "off" }
identity: { service: edge, connect: true }
listeners: [ { name: public, address: 127.0.0.1:0 } ]
routes:
  - { name: api, match: { path_prefix: / }, to: [ { service: api } ] }
discovery: { consul: { address: %s, wait: 2s } }
`, consulAddr)
}

func agentClient(t *testing.T, addr string) *api.Client {
	t.Helper()
	tr := &http.Transport{}
	t.Cleanup(tr.CloseIdleConnections)
	c, err := api.NewClient(&api.Config{Address: addr, Transport: tr})
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func setIntentions(t *testing.T, c *api.Client, dest string, sources ...*api.SourceIntention) {
	t.Helper()
	if _, _, err := c.ConfigEntries().Set(&api.ServiceConfigEntry{Kind: api.ServiceDefaults, Name: dest, Protocol: "http"}, nil); err != nil {
		t.Fatalf("service-defaults %s: %v", dest, err)
	}
	if _, _, err := c.ConfigEntries().Set(&api.ServiceIntentionsConfigEntry{Kind: api.ServiceIntentions, Name: dest, Sources: sources}, nil); err != nil {
		t.Fatalf("service-intentions %s: %v", dest, err)
	}
}

func status(t *testing.T, url string) (int, string) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		return 0, err.Error()
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// TestSidecarEndToEnd: edge (identity "edge") → api's meshgate sidecar over mTLS → api app, and
// web's app → web's sidecar upstream listener → api's sidecar. Intentions: L7 on api (edge may
// GET /public only), then a deny that must be enforced within 2 s. Plaintext to the inbound
// port is refused and never reaches the app.
func TestSidecarEndToEnd(t *testing.T) {
	t.Parallel()
	agent := consuldev.Start(t)
	client := agentClient(t, agent.HTTPAddr)
	setIntentions(t, client, "api",
		&api.SourceIntention{Name: "edge", Permissions: []*api.IntentionPermission{
			{Action: api.IntentionActionAllow, HTTP: &api.IntentionHTTPPermission{PathPrefix: "/public"}},
		}},
		&api.SourceIntention{Name: "web", Action: api.IntentionActionAllow},
	)

	app, appSeen := startUpstream(t, "api-app", nil)
	// The edge may speak for its clients (trusted_peers); web's sidecar may not.
	apiSide := startEngine(t, sidecarConfigWith(agent.HTTPAddr, "api", hostport(app), "{ address: 127.0.0.1:0, trusted_peers: [ edge ] }"))
	webApp, _ := startUpstream(t, "web-app", nil)
	webSide := startEngine(t, sidecarConfig(agent.HTTPAddr, "web", hostport(webApp), "api"))
	edge := startEngine(t, connectEdgeConfig(agent.HTTPAddr))

	// Registration: api's proxy is in the Connect passing set, with its destination.
	await.Until(t, 30*time.Second, "api's sidecar in /v1/health/connect/api", func() bool {
		es, _, err := client.Health().Connect("api", "", true, nil)
		return err == nil && len(es) == 1 && es[0].Service.Proxy != nil && es[0].Service.Proxy.DestinationServiceName == "api"
	})

	// Edge → sidecar → app over mTLS, allowed by the L7 permission.
	var code int
	var body string
	await.Until(t, 20*time.Second, "edge reaches api through its sidecar", func() bool {
		code, body = status(t, edge.url+"/public/hello")
		return code == http.StatusOK
	})
	if body != "hello from api-app" {
		t.Fatalf("body = %q", body)
	}
	req, _ := appSeen.last(t)
	if req.URL.Path != "/public/hello" {
		t.Fatalf("app saw %s", req.URL.Path)
	}
	// The caller's identity reaches the app, and a client cannot forge it.
	if resp, _ := get(t, edge.url+"/public/hello", map[string]string{"X-Meshgate-Identity": "admin"}); resp.StatusCode != http.StatusOK {
		t.Fatalf("with a forged identity header: %d", resp.StatusCode)
	}
	if req, _ = appSeen.last(t); req.Header.Get("X-Meshgate-Identity") != "edge" {
		t.Fatalf("app saw X-Meshgate-Identity %q, want edge", req.Header.Get("X-Meshgate-Identity"))
	}
	// The sidecar trusts the edge, a trusted peer: the app sees the client's scheme and the
	// chain (client, edge), not the edge as the client; and what the internet client wrote
	// itself never gets through, however many lines it sends.
	if resp, _ := getLines(t, edge.url+"/public/hello", [][2]string{
		{"X-Forwarded-For", "6.6.6.6"}, {"X-Forwarded-For", "7.7.7.7"}, {"X-Forwarded-Proto", "https"},
	}); resp.StatusCode != http.StatusOK {
		t.Fatalf("with forged forwarding headers: %d", resp.StatusCode)
	}
	req, _ = appSeen.last(t)
	if xff, proto := req.Header.Values("X-Forwarded-For"), req.Header.Values("X-Forwarded-Proto"); len(xff) != 1 || len(proto) != 1 ||
		strings.Count(xff[0], ",") != 1 || strings.Contains(xff[0], "6.6.6.6") || strings.Contains(xff[0], "7.7.7.7") || proto[0] != "http" {
		t.Fatalf("app saw X-Forwarded-For %q and X-Forwarded-Proto %q, want one line each: the client and the edge, and http", xff, proto)
	}

	// L7: a path outside the permission is denied by api's sidecar, and the app never sees it.
	before := len(appSeen.reqs)
	if code, body = status(t, edge.url+"/admin"); code != http.StatusForbidden || !strings.Contains(body, ReasonIntentionDenied) {
		t.Fatalf("GET /admin = %d %s, want 403 %s", code, body, ReasonIntentionDenied)
	}
	if len(appSeen.reqs) != before {
		t.Fatal("a denied request reached the app")
	}
	if got := edgeMetricValue(t, apiSide.admin, `meshgate_intentions_denied_total{source="edge"}`); got != "1" {
		t.Fatalf("denied counter for edge = %q, want 1", got)
	}

	// The app's own sidecar: web's app calls api through its upstream listener.
	upURL := "http://" + webSide.listener(conf.SidecarUpstreamName("api"))
	if code, body = status(t, upURL+"/anything"); code != http.StatusOK || body != "hello from api-app" {
		t.Fatalf("web → api through web's sidecar = %d %q", code, body)
	}
	// web is an authenticated peer but not a trusted one: api's sidecar judges it by its own
	// socket address and scheme, whatever web's sidecar forwarded.
	req, _ = appSeen.last(t)
	if xff, proto := req.Header.Get("X-Forwarded-For"), req.Header.Get("X-Forwarded-Proto"); strings.Contains(xff, ",") || proto != "https" {
		t.Fatalf("from web, app saw X-Forwarded-For %q and X-Forwarded-Proto %q, want web's sidecar only, and https", xff, proto)
	}

	// Plaintext to the mTLS inbound port: no HTTP answer, nothing reaches the app.
	before = len(appSeen.reqs)
	inbound := apiSide.listener(conf.SidecarInboundName)
	if code, body = status(t, "http://"+inbound+"/public/x"); code == http.StatusOK {
		t.Fatalf("plaintext request to the inbound port was served: %d %s", code, body)
	}
	if len(appSeen.reqs) != before {
		t.Fatal("a plaintext request reached the app")
	}

	// Deny web; enforced within 2 s.
	setIntentions(t, client, "api",
		&api.SourceIntention{Name: "edge", Permissions: []*api.IntentionPermission{
			{Action: api.IntentionActionAllow, HTTP: &api.IntentionHTTPPermission{PathPrefix: "/public"}},
		}},
		&api.SourceIntention{Name: "web", Action: api.IntentionActionDeny},
	)
	changed := time.Now()
	await.Until(t, 5*time.Second, "web denied", func() bool {
		code, _ := status(t, upURL+"/anything")
		return code == http.StatusForbidden
	})
	took := time.Since(changed)
	t.Logf("deny intention enforced after %s", took)
	if took > 2*time.Second {
		t.Errorf("deny enforced after %s, want within 2s", took)
	}
}

// TestSidecarPlaintextMode: connect: false is discovery only. api's sidecar registers api at
// its plain inbound listener; web's sidecar reaches it through /v1/health/service (no mTLS, no
// intentions), and the inbound policies still apply.
func TestSidecarPlaintextMode(t *testing.T) {
	t.Parallel()
	agent := consuldev.Start(t)
	client := agentClient(t, agent.HTTPAddr)
	app, _ := startUpstream(t, "api-app", nil)
	apiSide := startEngine(t, strings.Replace(sidecarConfigWith(agent.HTTPAddr, "api", hostport(app), "{ address: 127.0.0.1:0, policies: [ one ] }"),
		"sidecar:\n", "policies: { one: { rate_limit: { requests: 1, per: 1h } } }\nsidecar:\n  connect: false\n", 1))
	webApp, _ := startUpstream(t, "web-app", nil)
	webSide := startEngine(t, strings.Replace(sidecarConfig(agent.HTTPAddr, "web", hostport(webApp), "api"),
		"sidecar:\n", "sidecar:\n  connect: false\n", 1))

	inbound := apiSide.listener(conf.SidecarInboundName)
	await.Until(t, 30*time.Second, "api registered at the sidecar's inbound", func() bool {
		es, _, err := client.Health().Service("api", "", true, nil)
		return err == nil && len(es) == 1 && net.JoinHostPort(es[0].Service.Address, fmt.Sprint(es[0].Service.Port)) == inbound
	})
	if es, _, _ := client.Health().Connect("api", "", false, nil); len(es) != 0 {
		t.Fatalf("plaintext mode registered a connect-proxy: %+v", es[0].Service)
	}
	upURL := "http://" + webSide.listener(conf.SidecarUpstreamName("api"))
	var code int
	var body string
	await.Until(t, 20*time.Second, "web → api in plaintext", func() bool {
		code, body = status(t, upURL+"/x")
		return code != 0 && code != http.StatusServiceUnavailable
	})
	if code != http.StatusOK || body != "hello from api-app" {
		t.Fatalf("first call = %d %q", code, body)
	}
	// The inbound rate limit (1 per hour) answers the second call.
	if code, _ = status(t, upURL+"/x"); code != http.StatusTooManyRequests {
		t.Fatalf("second call = %d, want 429 from api's inbound policy", code)
	}
}

// TestConnectSurvivesConsulOutage: with snapshot_dir, the edge and the sidecar keep their leaf
// certificates, CA roots, intentions and endpoints on disk. Both are restarted while Consul is
// down and still serve edge → sidecar → app over mTLS with intentions enforced.
func TestConnectSurvivesConsulOutage(t *testing.T) {
	t.Parallel()
	agent := consuldev.Start(t)
	client := agentClient(t, agent.HTTPAddr)
	setIntentions(t, client, "api", &api.SourceIntention{Name: "edge", Permissions: []*api.IntentionPermission{
		{Action: api.IntentionActionAllow, HTTP: &api.IntentionHTTPPermission{PathPrefix: "/public"}},
	}})
	app, _ := startUpstream(t, "api-app", nil)

	// Fixed inbound port: the restarted sidecar must be where the edge's snapshot says it is.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	inbound := ln.Addr().String()
	ln.Close()
	sideDir, edgeDir := t.TempDir(), t.TempDir()
	sideYAML := strings.Replace(sidecarConfigWith(agent.HTTPAddr, "api", hostport(app), "{ address: "+inbound+" }"),
		"wait: 2s", "wait: 2s, snapshot_dir: "+sideDir, 1)
	edgeYAML := strings.Replace(connectEdgeConfig(agent.HTTPAddr), "wait: 2s", "wait: 2s, snapshot_dir: "+edgeDir, 1)

	side := startEngine(t, sideYAML)
	edge := startEngine(t, edgeYAML)
	await.Until(t, 30*time.Second, "edge reaches api through its sidecar", func() bool {
		code, _ := status(t, edge.url+"/public/a")
		return code == http.StatusOK
	})

	agent.Kill()
	edge.stop(t)
	side.stop(t)

	side = startEngine(t, sideYAML)
	edge = startEngine(t, edgeYAML)
	if code, body := status(t, edge.url+"/public/b"); code != http.StatusOK || body != "hello from api-app" {
		t.Fatalf("with consul down after restart: %d %q", code, body)
	}
	if code, _ := status(t, edge.url+"/admin"); code != http.StatusForbidden {
		t.Fatalf("intentions from the snapshot: /admin = %d, want 403", code)
	}
	if _, body := readyBody(t, side.admin); !strings.Contains(body, "degraded") {
		t.Fatalf("sidecar /ready body %q does not say degraded", body)
	}
}

// TestSidecarReload: inbound policies reload in place; adding an upstream needs a new listener
// and is refused with the running config kept.
func TestSidecarReload(t *testing.T) {
	t.Parallel()
	agent := consuldev.Start(t)
	app, _ := startUpstream(t, "web-app", nil)
	base := sidecarConfigWith(agent.HTTPAddr, "web", hostport(app), "{ address: 127.0.0.1:0 }", "api")
	side := startEngine(t, base)
	parse := func(y string) *conf.Config {
		t.Helper()
		c, err := conf.Parse("reload.yaml", []byte(y))
		if err != nil {
			t.Fatal(err)
		}
		return c
	}

	limited := strings.Replace(sidecarConfigWith(agent.HTTPAddr, "web", hostport(app), "{ address: 127.0.0.1:0, policies: [ one ] }", "api"),
		"sidecar:\n", "policies: { one: { rate_limit: { requests: 1, per: 1h } } }\nsidecar:\n", 1)
	if err := side.edge.Reload(parse(limited)); err != nil {
		t.Fatalf("reload with inbound policies: %v", err)
	}
	routes := side.edge.routesView().(map[string][]route.Info)
	if len(routes[conf.SidecarInboundName]) != 1 {
		t.Fatalf("inbound routes after reload: %+v", routes)
	}
	var cfgOut strings.Builder
	b, _ := side.edge.configYAML()
	cfgOut.Write(b)
	if !strings.Contains(cfgOut.String(), "- one") {
		t.Fatalf("/config does not show the inbound policy:\n%s", cfgOut.String())
	}

	more := sidecarConfigWith(agent.HTTPAddr, "web", hostport(app), "{ address: 127.0.0.1:0 }", "api", "db")
	err := side.edge.Reload(parse(more))
	if err == nil || !strings.Contains(err.Error(), "restart") {
		t.Fatalf("adding an upstream: err = %v, want a restart-needed error", err)
	}
	if _, ok := side.edge.ListenerAddrs()[conf.SidecarUpstreamName("db")]; ok {
		t.Fatal("a refused reload added a listener")
	}
}
