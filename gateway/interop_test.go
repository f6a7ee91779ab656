package gateway

import (
	"context"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"io"
	"maps"
	"net"
	"net/http"
	"net/http/httptrace"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hashicorp/consul/api"

	"github.com/meshgate/meshgate/conf"
	"github.com/meshgate/meshgate/internal/await"
	"github.com/meshgate/meshgate/internal/consuldev"
	"github.com/meshgate/meshgate/mesh/identity"
)

// Interop with Consul's own built-in Connect proxy (`consul connect proxy`, linked into the
// test build of Consul by scripts/consul/main.go): the reference peer our sidecar and edge must
// speak mTLS with in both directions, and the CA rotation a live mesh goes through.

// consulProxyLogTail bounds how much of a proxy's log a failure prints.
const consulProxyLogTail = 16 << 10

// consulProxy is one `consul connect proxy` subprocess.
type consulProxy struct {
	args []string
	cmd  *exec.Cmd
	done chan struct{} // closed once the process has exited and been reaped
	log  string
}

// startConsulProxy runs `consul connect proxy <args>` against agent. It is stopped at cleanup
// (SIGINT, so a -register proxy deregisters itself, then SIGKILL after a bounded grace), and
// its log is printed if the test failed. It is registered after the agent's cleanup, so it
// stops while the agent is still up.
func startConsulProxy(t *testing.T, agent *consuldev.Agent, args ...string) *consulProxy {
	t.Helper()
	bin, err := consuldev.Binary()
	if err != nil {
		t.Fatal(err)
	}
	p := &consulProxy{args: args, done: make(chan struct{}), log: filepath.Join(t.TempDir(), "consul-proxy.log")}
	f, err := os.Create(p.log)
	if err != nil {
		t.Fatal(err)
	}
	// Debug level logs every accepted connection, dial and authorisation: what a failure
	// needs to tell whose side refused.
	argv := append([]string{"connect", "proxy", "-http-addr", agent.HTTPAddr, "-log-level", "debug"}, args...)
	p.cmd = exec.Command(bin, argv...)
	// An *os.File is handed to the child as its fd, so no copying goroutine outlives it.
	p.cmd.Stdout, p.cmd.Stderr = f, f
	err = p.cmd.Start()
	_ = f.Close()
	if err != nil {
		t.Fatalf("start consul connect proxy: %v", err)
	}
	go func() {
		_ = p.cmd.Wait()
		close(p.done)
	}()
	t.Cleanup(func() {
		p.stop()
		if t.Failed() {
			t.Logf("consul connect proxy %s log (tail):\n%s", strings.Join(args, " "), p.output())
		}
	})
	return p
}

func (p *consulProxy) stop() {
	_ = p.cmd.Process.Signal(os.Interrupt)
	timer := time.NewTimer(10 * time.Second)
	defer timer.Stop()
	select {
	case <-p.done:
		return
	case <-timer.C:
	}
	_ = p.cmd.Process.Kill()
	<-p.done
}

// alive fails the test at once when the proxy has exited (a port taken between freePort and
// its bind, a bad flag) instead of letting a wait time out without saying why.
func (p *consulProxy) alive(t *testing.T) {
	t.Helper()
	select {
	case <-p.done:
		t.Fatalf("consul connect proxy %s exited (%s); log:\n%s", strings.Join(p.args, " "), p.cmd.ProcessState, p.output())
	default:
	}
}

func (p *consulProxy) output() string {
	b, err := os.ReadFile(p.log)
	if err != nil {
		return err.Error()
	}
	if len(b) > consulProxyLogTail {
		b = b[len(b)-consulProxyLogTail:]
	}
	return string(b)
}

// freePort is a loopback port that was free a moment ago, for processes that take a port
// number rather than reporting the one they bound.
func freePort(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// awaitConnectProxy waits until /v1/health/connect/<service>?passing lists exactly one proxy,
// listening on port when port is not 0: what Connect clients, ours and Consul's, dial.
func awaitConnectProxy(t *testing.T, c *api.Client, service string, port int) {
	t.Helper()
	await.Until(t, 30*time.Second, "a passing connect-proxy for "+service, func() bool {
		es, _, err := c.Health().Connect(service, "", true, nil)
		return err == nil && len(es) == 1 && es[0].Service.Proxy != nil &&
			es[0].Service.Proxy.DestinationServiceName == service && (port == 0 || es[0].Service.Port == port)
	})
}

// tracedClient is a keep-alive HTTP client that reports which local connection carried each
// call, so a test can tell a reused connection from a new one.
type tracedClient struct {
	hc *http.Client
}

func newTracedClient(t *testing.T) *tracedClient {
	t.Helper()
	tr := &http.Transport{}
	t.Cleanup(tr.CloseIdleConnections)
	return &tracedClient{hc: &http.Client{Transport: tr, Timeout: 5 * time.Second}}
}

// get returns the status (0 on a transport error), the body or error text, and the local
// address of the connection used.
func (c *tracedClient) get(url string) (code int, body, conn string) {
	trace := &httptrace.ClientTrace{GotConn: func(i httptrace.GotConnInfo) { conn = i.Conn.LocalAddr().String() }}
	req, err := http.NewRequestWithContext(httptrace.WithClientTrace(context.Background(), trace), http.MethodGet, url, nil)
	if err != nil {
		return 0, err.Error(), conn
	}
	resp, err := c.hc.Do(req)
	if err != nil {
		return 0, err.Error(), conn
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return 0, err.Error(), conn
	}
	return resp.StatusCode, string(b), conn
}

// TestConsulProxyCallsOurSidecar: Consul's built-in proxy, as the Connect identity "client",
// calls api through its upstream listener; api is behind our sidecar. The mTLS handshake has
// to work in that direction (Consul's client config offers ALPN h2 and presents its leaf from
// GetClientCertificate; our server must accept it and Consul must accept our leaf as "api"),
// and our sidecar authorises "client" by intentions. A deny is then enforced within 2 s, per
// request, even on the connection Consul's proxy opened (and authorised) while it was allowed.
func TestConsulProxyCallsOurSidecar(t *testing.T) {
	t.Parallel()
	agent := consuldev.Start(t)
	client := agentClient(t, agent.HTTPAddr)
	setIntentions(t, client, "api", &api.SourceIntention{Name: "client", Action: api.IntentionActionAllow})

	app, appSeen := startUpstream(t, "api-app", nil)
	apiSide := startEngine(t, sidecarConfig(agent.HTTPAddr, "api", hostport(app)))
	awaitConnectProxy(t, client, "api", 0)

	port := freePort(t)
	proxy := startConsulProxy(t, agent, "-service", "client", "-upstream", fmt.Sprintf("api:127.0.0.1:%d", port))
	url := fmt.Sprintf("http://127.0.0.1:%d/from-consul", port)

	hc := newTracedClient(t)
	var code int
	var body, allowedConn string
	start := time.Now()
	await.Until(t, 30*time.Second, "client → Consul's proxy → our api sidecar → app", func() bool {
		proxy.alive(t)
		code, body, allowedConn = hc.get(url)
		return code == http.StatusOK
	})
	t.Logf("first call through Consul's proxy answered after %s", time.Since(start))
	if body != "hello from api-app" {
		t.Fatalf("body = %q", body)
	}
	if req, _ := appSeen.last(t); req.URL.Path != "/from-consul" {
		t.Fatalf("app saw %s", req.URL.Path)
	}

	// Deny "client". Consul's proxy is L4 and authorises nothing itself on its upstream side; our
	// sidecar is HTTP-aware and answers each request on the existing mTLS connection with 403.
	setIntentions(t, client, "api", &api.SourceIntention{Name: "client", Action: api.IntentionActionDeny})
	changed := time.Now()
	before := requests(appSeen)
	var deniedConn string
	await.Until(t, 5*time.Second, "client denied", func() bool {
		code, body, deniedConn = hc.get(url)
		return code == http.StatusForbidden
	})
	took := time.Since(changed)
	t.Logf("deny seen by Consul's proxy's client after %s", took)
	if took > 2*time.Second {
		t.Errorf("deny enforced after %s, want within 2s", took)
	}
	if !strings.Contains(body, ReasonIntentionDenied) {
		t.Errorf("403 body %q does not name %s", body, ReasonIntentionDenied)
	}
	if deniedConn != allowedConn {
		t.Errorf("the 403 came on connection %s, the allowed call on %s: the per-request check was not exercised on a live connection", deniedConn, allowedConn)
	}
	// Calls between the change and the 403 may still have been allowed; none after it.
	after := requests(appSeen)
	if code, _, _ = hc.get(url); code != http.StatusForbidden {
		t.Fatalf("call after the deny = %d, want 403", code)
	}
	if got := requests(appSeen); got != after {
		t.Fatalf("a denied request reached the app (%d → %d requests; %d before the change)", after, got, before)
	}
	if got := edgeMetricValue(t, apiSide.admin, `meshgate_intentions_denied_total{source="client"}`); got == "" || got == "0" {
		t.Fatalf("denied counter for client = %q", got)
	}
}

// connectEdgeTo is a Connect edge (identity "edge") routing everything to service.
func connectEdgeTo(consulAddr, service string) string {
	return fmt.Sprintf(`
admin: { address: 127.0.0.1:0 }
access_log: { output: "off" }
identity: { service: edge, connect: true }
listeners: [ { name: public, address: 127.0.0.1:0 } ]
routes:
  - { name: all, match: { path_prefix: / }, to: [ { service: %s } ] }
discovery: { consul: { address: %s, wait: 2s } }
`, service, consulAddr)
}

// TestOurEdgeCallsConsulProxy: the app "legacy" is fronted by Consul's built-in proxy, which
// registers itself as legacy's connect-proxy. Our edge and our sidecar for "web" (upstream
// legacy) find it through /v1/health/connect/legacy and reach the app over mTLS: Consul's server
// side must accept our client leaf and our client must accept its leaf as "legacy". Consul's
// proxy authorises each new connection through the agent (L4), so a deny for web applies to
// the next connection web's sidecar opens, while edge stays allowed.
func TestOurEdgeCallsConsulProxy(t *testing.T) {
	t.Parallel()
	agent := consuldev.Start(t)
	client := agentClient(t, agent.HTTPAddr)
	setIntentions(t, client, "legacy",
		&api.SourceIntention{Name: "edge", Action: api.IntentionActionAllow},
		&api.SourceIntention{Name: "web", Action: api.IntentionActionAllow},
	)

	// Consul's proxy authorises a connection once, at its handshake. Paths under /fresh/ close
	// the connection after the answer (Consul's proxy closes the mTLS side with it), so the next
	// call through the mesh needs a new connection and a new authorisation; other paths keep
	// the connection alive, as pooled production traffic does.
	app, appSeen := startUpstream(t, "legacy-app", func(w http.ResponseWriter, r *http.Request) {
		if strings.HasPrefix(r.URL.Path, "/fresh/") {
			w.Header().Set("Connection", "close")
		}
		fmt.Fprint(w, "hello from legacy-app")
	})
	proxyPort := freePort(t)
	proxy := startConsulProxy(t, agent, "-service", "legacy", "-service-addr", hostport(app),
		"-listen", fmt.Sprintf("127.0.0.1:%d", proxyPort), "-register")
	await.Until(t, 30*time.Second, "Consul's proxy registered as legacy's connect-proxy", func() bool {
		proxy.alive(t)
		es, _, err := client.Health().Connect("legacy", "", true, nil)
		return err == nil && len(es) == 1 && es[0].Service.Port == proxyPort
	})

	edge := startEngine(t, connectEdgeTo(agent.HTTPAddr, "legacy"))
	webApp, _ := startUpstream(t, "web-app", nil)
	webSide := startEngine(t, sidecarConfig(agent.HTTPAddr, "web", hostport(webApp), "legacy"))
	upURL := "http://" + webSide.listener(conf.SidecarUpstreamName("legacy"))

	for _, c := range []struct{ who, url string }{{"edge", edge.url}, {"web's sidecar", upURL}} {
		var code int
		var body string
		await.Until(t, 20*time.Second, c.who+" reaches legacy through Consul's proxy", func() bool {
			proxy.alive(t)
			code, body = status(t, c.url+"/kept/first")
			return code == http.StatusOK
		})
		if body != "hello from legacy-app" {
			t.Fatalf("%s → legacy: body %q", c.who, body)
		}
		// Pooled and new connections both work.
		for _, p := range []string{"/kept/a", "/fresh/a", "/kept/b", "/fresh/b", "/fresh/c"} {
			if code, body = status(t, c.url+p); code != http.StatusOK {
				t.Fatalf("%s → legacy %s = %d %s", c.who, p, code, body)
			}
			if req, _ := appSeen.last(t); req.URL.Path != p {
				t.Fatalf("%s → legacy %s: app saw %s", c.who, p, req.URL.Path)
			}
		}
	}

	// Deny web. The decision is the agent's (Consul's proxy asks /v1/agent/connect/authorize on
	// every handshake), so wait until the agent says so for web's own certificate.
	setIntentions(t, client, "legacy",
		&api.SourceIntention{Name: "edge", Action: api.IntentionActionAllow},
		&api.SourceIntention{Name: "web", Action: api.IntentionActionDeny},
	)
	changed := time.Now()
	webURI := webSide.edge.mesh.id.Leaf().SPIFFEID
	await.Until(t, 10*time.Second, "the agent denies web → legacy", func() bool {
		a, err := client.Agent().ConnectAuthorize(&api.AgentAuthorizeParams{Target: "legacy", ClientCertURI: webURI})
		return err == nil && !a.Authorized
	})
	// A connection web's sidecar pooled while allowed may carry one more call (that is L4
	// authorisation); /fresh/ closes it, so the deny shows within a call or two.
	var code int
	var body string
	await.Until(t, 5*time.Second, "web → legacy refused", func() bool {
		code, body = status(t, upURL+"/fresh/denied")
		return code != http.StatusOK
	})
	t.Logf("web → legacy after the deny: %d %q, %s after the change", code, body, time.Since(changed))
	before := requests(appSeen)
	for i := range 3 {
		if code, body = status(t, upURL+"/fresh/denied"); code == http.StatusOK || code == 0 {
			t.Fatalf("web → legacy call %d after the deny = %d %q, want an HTTP error from web's sidecar", i, code, body)
		}
	}
	if got := requests(appSeen); got != before {
		t.Fatalf("denied calls reached the app (%d → %d requests)", before, got)
	}
	// edge is still allowed, on new connections too.
	for _, p := range []string{"/fresh/edge-1", "/fresh/edge-2"} {
		if code, body = status(t, edge.url+p); code != http.StatusOK {
			t.Fatalf("edge → legacy %s after web's deny = %d %q", p, code, body)
		}
	}
}

// trafficStream sends calls one after another until stopped and counts the answers; any
// answer but 200 is a failure.
type trafficStream struct {
	name string
	do   func() (int, string)

	ok, failed atomic.Int64
	mu         sync.Mutex
	firstFails []string
}

func (s *trafficStream) run(ctx context.Context, wg *sync.WaitGroup) {
	wg.Add(1)
	go func() {
		defer wg.Done()
		// Paced rather than flat out: four streams spinning on two cores would starve the agent
		// whose rotation is under test, and a few hundred calls per second per stream are plenty
		// to cover every moment of it.
		tick := time.NewTicker(2 * time.Millisecond)
		defer tick.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-tick.C:
			}
			code, body := s.do()
			if code == http.StatusOK {
				s.ok.Add(1)
				continue
			}
			if ctx.Err() != nil && code == 0 {
				return // the call was cut short by the stop itself
			}
			s.failed.Add(1)
			s.mu.Lock()
			if len(s.firstFails) < 5 {
				s.firstFails = append(s.firstFails, fmt.Sprintf("%s: %d %s", time.Now().Format(time.StampMilli), code, body))
			}
			s.mu.Unlock()
		}
	}()
}

// httpDo is one GET with c; 0 and the error text on a transport error.
func httpDo(c *http.Client, url string) (int, string) {
	resp, err := c.Get(url)
	if err != nil {
		return 0, err.Error()
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return 0, err.Error()
	}
	return resp.StatusCode, string(b)
}

// activeRoot is the cluster's active Connect CA root and its parsed certificate.
func activeRoot(t *testing.T, c *api.Client) (string, *x509.Certificate) {
	t.Helper()
	roots, _, err := c.Connect().CARoots(nil)
	if err != nil {
		t.Fatalf("ca roots: %v", err)
	}
	for _, r := range roots.Roots {
		if r.ID != roots.ActiveRootID {
			continue
		}
		b, _ := pem.Decode([]byte(r.RootCertPEM))
		if b == nil {
			t.Fatalf("active root %s: no PEM", r.ID)
		}
		cert, err := x509.ParseCertificate(b.Bytes)
		if err != nil {
			t.Fatalf("active root %s: %v", r.ID, err)
		}
		return r.ID, cert
	}
	t.Fatalf("no active root among %d", len(roots.Roots))
	return "", nil
}

func leafSignedBy(l *identity.Leaf, root *x509.Certificate) bool {
	return l != nil && l.Cert.Leaf.CheckSignatureFrom(root) == nil
}

// identityView is the part of the admin API's /identity this file checks.
type identityView struct {
	Leaf struct {
		Serial string `json:"serial"`
	} `json:"leaf"`
	Roots int `json:"roots"`
}

func adminIdentity(t *testing.T, admin string) identityView {
	t.Helper()
	resp, err := http.Get("http://" + admin + "/identity")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var v identityView
	if err := json.NewDecoder(resp.Body).Decode(&v); err != nil {
		t.Fatalf("/identity: %v", err)
	}
	return v
}

// TestCARotationKeepsTraffic: a CA rotation through Consul's API (a new root, cross-signed by
// the old one) while four streams of calls run: through the edge on a kept-alive connection and
// on a new connection per call (the edge → sidecar mTLS connection is pooled either way), with a
// new mTLS handshake per call to the sidecar using the edge's own client TLS config (its leaf
// and roots as they are at that moment), and through Consul's built-in proxy with a new
// handshake per call. Every call must answer 200 while the edge and the sidecar move to leaves
// signed by the new root, each at its own moment within the agent's 30 s jitter window, and new
// connections after the rotation must be made with the new leaves on both ends.
func TestCARotationKeepsTraffic(t *testing.T) {
	t.Parallel()
	agent := consuldev.Start(t)
	client := agentClient(t, agent.HTTPAddr)
	setIntentions(t, client, "api",
		&api.SourceIntention{Name: "edge", Action: api.IntentionActionAllow},
		&api.SourceIntention{Name: "client", Action: api.IntentionActionAllow},
	)
	app, _ := startUpstream(t, "api-app", nil)
	apiSide := startEngine(t, sidecarConfig(agent.HTTPAddr, "api", hostport(app)))
	edge := startEngine(t, connectEdgeConfig(agent.HTTPAddr))
	awaitConnectProxy(t, client, "api", 0)
	proxyPort := freePort(t)
	proxy := startConsulProxy(t, agent, "-service", "client", "-upstream", fmt.Sprintf("api:127.0.0.1:%d", proxyPort))

	kept := &http.Transport{}
	fresh := &http.Transport{DisableKeepAlives: true}
	// No session cache in the edge's config, so every connection is a full handshake.
	mesh := &http.Transport{DisableKeepAlives: true, TLSClientConfig: edge.edge.mesh.clientTLS("api")}
	for _, tr := range []*http.Transport{kept, fresh, mesh} {
		t.Cleanup(tr.CloseIdleConnections)
	}
	keptC := &http.Client{Transport: kept, Timeout: 5 * time.Second}
	freshC := &http.Client{Transport: fresh, Timeout: 5 * time.Second}
	meshC := &http.Client{Transport: mesh, Timeout: 5 * time.Second}
	inbound := "https://" + apiSide.listener(conf.SidecarInboundName)
	viaConsul := fmt.Sprintf("http://127.0.0.1:%d", proxyPort)
	streams := []*trafficStream{
		{name: "edge, kept-alive", do: func() (int, string) { return httpDo(keptC, edge.url+"/kept") }},
		{name: "edge, new connection per call", do: func() (int, string) { return httpDo(freshC, edge.url+"/fresh") }},
		{name: "edge's TLS config → sidecar, new handshake per call", do: func() (int, string) { return httpDo(meshC, inbound+"/mesh") }},
		{name: "Consul's proxy → sidecar, new handshake per call", do: func() (int, string) { return httpDo(freshC, viaConsul+"/consul") }},
	}
	for _, s := range streams {
		await.Until(t, 30*time.Second, s.name+" answers", func() bool {
			proxy.alive(t)
			code, _ := s.do()
			return code == http.StatusOK
		})
	}

	oldID, oldRoot := activeRoot(t, client)
	edgeID, sideID := edge.edge.mesh.id, apiSide.edge.mesh.id
	if !leafSignedBy(edgeID.Leaf(), oldRoot) || !leafSignedBy(sideID.Leaf(), oldRoot) {
		t.Fatal("before the rotation, the leaves are not signed by the active root")
	}

	ctx, stop := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	for _, s := range streams {
		s.run(ctx, &wg)
	}
	stopped := false
	stopStreams := func() {
		if !stopped {
			stopped = true
			stop()
			wg.Wait()
		}
	}
	t.Cleanup(stopStreams)
	// Some traffic before the change, so a failure at its very start would be seen.
	await.Until(t, 10*time.Second, "traffic flowing", func() bool {
		for _, s := range streams {
			if s.ok.Load() < 10 {
				return false
			}
		}
		return true
	})

	// A new private key size makes the built-in provider a new provider instance (its ID hashes
	// the key type and size; 1.16's default is ec/256), which generates a new root; the old provider cross-signs it.
	caConf, _, err := client.Connect().CAGetConfig(nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("CA config before: provider %s, key %v/%v (<nil>: the default)", caConf.Provider, caConf.Config["PrivateKeyType"], caConf.Config["PrivateKeyBits"])
	caConf.Config["PrivateKeyType"] = "ec"
	caConf.Config["PrivateKeyBits"] = 384
	rotated := time.Now()
	if _, err := client.Connect().CASetConfig(caConf, nil); err != nil {
		t.Fatalf("CA rotation: %v", err)
	}
	var newID string
	var newRoot *x509.Certificate
	await.Until(t, 10*time.Second, "a new active root", func() bool {
		newID, newRoot = activeRoot(t, client)
		return newID != oldID
	})
	t.Logf("new active root after %s", time.Since(rotated))

	// Each leaf moves on its own schedule: the agent re-issues it at a random point within 30 s
	// of the root change, which identity.ConsulProvider's leaf wait (longer than that window)
	// always catches. Consul's proxy's own leaf is not awaited: asking the agent for it would
	// force it to be re-issued, and its stream must pass with either generation anyway.
	pending := map[string]*identity.Manager{"edge": edgeID, "api's sidecar": sideID}
	t.Cleanup(func() {
		if len(pending) > 0 {
			t.Logf("still without a leaf from the new root: %v", slices.Sorted(maps.Keys(pending)))
		}
	})
	await.Until(t, 45*time.Second, "every leaf signed by the new root", func() bool {
		for who, id := range pending {
			if leafSignedBy(id.Leaf(), newRoot) {
				t.Logf("%s has a leaf from the new root %s after the rotation", who, time.Since(rotated).Round(time.Millisecond))
				delete(pending, who)
			}
		}
		return len(pending) == 0
	})

	// Traffic on the new leaves before stopping.
	marks := make([]int64, len(streams))
	for i, s := range streams {
		marks[i] = s.ok.Load()
	}
	await.Until(t, 10*time.Second, "traffic after the rotation", func() bool {
		for i, s := range streams {
			if s.ok.Load() < marks[i]+20 {
				return false
			}
		}
		return true
	})
	stopStreams()
	for _, s := range streams {
		t.Logf("%s: %d ok, %d failed", s.name, s.ok.Load(), s.failed.Load())
		if n := s.failed.Load(); n > 0 {
			t.Errorf("%s: %d calls failed during the rotation; first: %s", s.name, n, strings.Join(s.firstFails, "; "))
		}
	}

	// A new connection now is made with the new leaves on both ends.
	resp, err := meshC.Get(inbound + "/after")
	if err != nil {
		t.Fatalf("new mTLS connection after the rotation: %v", err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || resp.TLS == nil || len(resp.TLS.PeerCertificates) == 0 {
		t.Fatalf("new mTLS connection after the rotation: %d, tls %v", resp.StatusCode, resp.TLS != nil)
	}
	if resp.TLS.PeerCertificates[0].CheckSignatureFrom(newRoot) != nil {
		t.Fatal("the sidecar presented a leaf not signed by the new root")
	}
	if code, body := httpDo(freshC, edge.url+"/after"); code != http.StatusOK {
		t.Fatalf("edge after the rotation: %d %s", code, body)
	}
	// The admin API shows the leaf in use and both roots (the old one stays trusted until it
	// expires, so leaves it signed keep verifying).
	for _, e := range []struct {
		who   string
		admin string
		id    *identity.Manager
	}{{"edge", edge.admin, edgeID}, {"api's sidecar", apiSide.admin, sideID}} {
		v := adminIdentity(t, e.admin)
		if want := fmt.Sprintf("%x", e.id.Leaf().Cert.Leaf.SerialNumber); v.Leaf.Serial != want || v.Roots != 2 {
			t.Errorf("%s /identity: serial %q roots %d, want %q and 2", e.who, v.Leaf.Serial, v.Roots, want)
		}
	}
}
