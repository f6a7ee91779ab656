package gateway

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/consul/api"
	"github.com/rs/zerolog"
	"go.yaml.in/yaml/v3"

	"github.com/meshgate/meshgate/conf"
	"github.com/meshgate/meshgate/internal/consuldev"
	"github.com/meshgate/meshgate/internal/syncbuf"
)

// startEdgeLogging is startEdge with the process log kept.
func startEdgeLogging(t *testing.T, text string, log io.Writer) *edgeUnderTest {
	t.Helper()
	cfg, err := conf.Parse("test.yaml", []byte(text))
	if err != nil {
		t.Fatalf("config: %v", err)
	}
	e, err := NewServer(cfg, ServerOptions{Logger: zerolog.New(log)})
	if err != nil {
		t.Fatalf("NewEdge: %v", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	eut := &edgeUnderTest{edge: e, cancel: cancel, done: make(chan error, 1),
		addr: e.ListenerAddrs()["public"].String(), admin: e.AdminAddr().String()}
	eut.url = "http://" + eut.addr
	go func() { eut.done <- e.Run(ctx) }()
	t.Cleanup(func() { eut.stop(t) })
	waitFor(t, "edge ready", func() bool {
		code, _ := readyBody(t, eut.admin)
		return code == http.StatusOK
	})
	return eut
}

func kvEdgeConfig(origin, consulAddr, snapDir string) string {
	return fmt.Sprintf(`
admin: { address: 127.0.0.1:0 }
listeners:
  - name: public
    address: 127.0.0.1:0
routes:
  - name: site
    match: { path_prefix: /site/ }
    to: [ { service: origin } ]
policies:
  gentle: { rate_limit: { requests: 1000 } }
discovery:
  static:
    origin: [ %s ]
  consul:
    address: %s
    snapshot_dir: %s
    kv_prefix: meshgate/routes/
access_log: { output: "off" }
`, origin, consulAddr, snapDir)
}

// answeredBy polls url until it is answered with status (and, for 200, by upstream).
func answeredBy(t *testing.T, url string, status int, upstream string) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	var last string
	for time.Now().Before(deadline) {
		resp, body := get(t, url, nil)
		if resp.StatusCode == status && (status != http.StatusOK || resp.Header.Get("X-Upstream") == upstream) {
			return
		}
		last = fmt.Sprintf("%d %q %s", resp.StatusCode, resp.Header.Get("X-Upstream"), body)
		time.Sleep(10 * time.Millisecond)
	}
	t.Fatalf("%s was not answered %d by %q within 10s; last: %s", url, status, upstream, last)
}

func configText(t *testing.T, admin string) string {
	t.Helper()
	resp, body := get(t, "http://"+admin+"/config", nil)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("/config = %d", resp.StatusCode)
	}
	return string(body)
}

// TestKVRoutesEndToEnd drives dynamic routes through a real agent's KV: documents apply,
// change and disappear with their keys; invalid ones are rejected with the reason in the log
// and /config while the previous routes keep serving; a file reload re-merges the documents;
// an agent outage changes nothing; a restart during the outage serves the saved documents.
func TestKVRoutesEndToEnd(t *testing.T) {
	t.Parallel()
	agent := consuldev.Start(t)
	client, err := api.NewClient(&api.Config{Address: agent.HTTPAddr})
	if err != nil {
		t.Fatal(err)
	}
	cat := consulCatalog{t: t, client: client}
	put := func(key, value string) {
		t.Helper()
		if _, err := client.KV().Put(&api.KVPair{Key: key, Value: []byte(value)}, nil); err != nil {
			t.Fatalf("put %s: %v", key, err)
		}
	}
	u1, _ := startUpstream(t, "u1", nil)
	origin, _ := startUpstream(t, "origin", nil)
	cat.register("api-1", "api", u1, 1)

	snapDir := t.TempDir()
	fileCfg := kvEdgeConfig(hostport(origin), agent.HTTPAddr, snapDir)
	var logs syncbuf.Buffer
	e := startEdgeLogging(t, fileCfg, &logs)
	answeredBy(t, e.url+"/site/", 200, "origin")
	answeredBy(t, e.url+"/api/", 404, "")

	// A document adds a route to a Consul service, using a file policy and its own.
	put("meshgate/routes/api", `
routes:
  - name: api
    match: { path_prefix: /api/ }
    to: [ { service: api } ]
    policies: [ gentle, api-limit ]
policies:
  api-limit: { rate_limit: { requests: 1000 } }
`)
	answeredBy(t, e.url+"/api/", 200, "u1")

	// Changing it applies the change.
	put("meshgate/routes/api", `
routes:
  - name: api
    match: { path_prefix: /api/ }
    to: [ { service: origin } ]
`)
	answeredBy(t, e.url+"/api/", 200, "origin")

	// Invalid documents: each rejected with its reason in /config and the log; the previous
	// version of an edited key keeps serving.
	bad := []struct{ key, doc, reason string }{
		{"meshgate/routes/api", "routes:\n  - name: api\n    match: { path_prefix: /api/ \n", "did not find expected"},
		{"meshgate/routes/unknown-key", "listeners: []\n", `key \"listeners\" is not allowed here`},
		{"meshgate/routes/no-policy", "routes:\n  - name: np\n    match: { path: /np }\n    to: [ { service: api } ]\n    policies: [ nope ]\n",
			`no policy named \"nope\"`},
		{"meshgate/routes/bad-service", "routes:\n  - name: bs\n    match: { path: /bs }\n    to: [ { service: \"no such\" } ]\n",
			`invalid service name \"no such\"`},
		{"meshgate/routes/collision", "routes:\n  - name: site\n    match: { path: /c }\n    to: [ { service: api } ]\n",
			`route \"site\" is already defined by the config file`},
	}
	for _, b := range bad {
		put(b.key, b.doc)
	}
	for _, b := range bad {
		waitFor(t, "/config to show "+b.key+" rejected", func() bool {
			return strings.Contains(configText(t, e.admin), "#   rejected: "+b.key+" (")
		})
		want := strings.ReplaceAll(b.reason, `\"`, `"`)
		if cfg := configText(t, e.admin); !strings.Contains(cfg, want) {
			t.Errorf("/config lacks the reason %q for %s:\n%s", want, b.key, cfg)
		}
		waitFor(t, "the log to name "+b.key+" and its reason", func() bool {
			for line := range strings.Lines(logs.String()) {
				if strings.Contains(line, `"key":"`+b.key+`"`) && strings.Contains(line, b.reason) && strings.Contains(line, "kv document rejected") {
					return true
				}
			}
			return false
		})
	}
	cfg := configText(t, e.admin)
	if !strings.Contains(cfg, "rejected: meshgate/routes/api (") || !strings.Contains(cfg, "serving its last accepted version") {
		t.Errorf("/config does not say the edited key serves its previous version:\n%s", cfg)
	}
	var eff conf.Config
	if err := yaml.Unmarshal([]byte(cfg), &eff); err != nil {
		t.Fatalf("/config with rejections is not YAML: %v", err)
	}
	if len(eff.Routes) != 2 || eff.Routes[0].Name != "site" || eff.Routes[1].Name != "api" {
		t.Fatalf("effective routes = %+v, want site then api", eff.Routes)
	}
	for _, path := range []string{"/np", "/bs", "/c"} {
		answeredBy(t, e.url+path, 404, "")
	}
	if got := hits(t, e.url+"/api/", 5); got["origin"] != 5 {
		t.Fatalf("after invalid edits /api/ went to %v, want the previous version (origin)", got)
	}
	answeredBy(t, e.url+"/site/", 200, "origin")

	// A valid edit replaces the previous version and clears its rejection.
	put("meshgate/routes/api", "routes: [ { name: api, match: { path_prefix: /api/ }, to: [ { service: api } ] } ]\n")
	answeredBy(t, e.url+"/api/", 200, "u1")
	waitFor(t, "the api rejection to clear", func() bool {
		return !strings.Contains(configText(t, e.admin), "rejected: meshgate/routes/api (")
	})

	// Deleting the key removes its routes.
	if _, err := client.KV().Delete("meshgate/routes/api", nil); err != nil {
		t.Fatal(err)
	}
	answeredBy(t, e.url+"/api/", 404, "")
	put("meshgate/routes/web", "routes: [ { name: web, match: { path_prefix: /web/ }, to: [ { service: api } ] } ]\n")
	answeredBy(t, e.url+"/web/", 200, "u1")

	// A file reload re-merges the documents; a file route taking a document's name wins.
	reload := func(text string) {
		t.Helper()
		c, err := conf.Parse("reload.yaml", []byte(text))
		if err != nil {
			t.Fatal(err)
		}
		if err := e.edge.Reload(c); err != nil {
			t.Fatalf("reload: %v", err)
		}
	}
	withWeb := strings.Replace(fileCfg, "policies:\n", `  - name: web
    match: { path_prefix: /web/ }
    to: [ { service: origin } ]
policies:
`, 1)
	reload(withWeb)
	answeredBy(t, e.url+"/web/", 200, "origin")
	if cfg := configText(t, e.admin); !strings.Contains(cfg, `route "web" is already defined by the config file`) {
		t.Fatalf("/config after the file took the name:\n%s", cfg)
	}
	reload(fileCfg)
	answeredBy(t, e.url+"/web/", 200, "u1")

	// Outage: the documents stay, /ready says the kv watch is degraded.
	agent.Kill()
	waitFor(t, "/ready to report the kv watch", func() bool {
		code, body := readyBody(t, e.admin)
		return code == 200 && strings.Contains(body, "kv:meshgate/routes: consul query failing")
	})
	if got := hits(t, e.url+"/web/", 10); got["u1"] != 10 {
		t.Fatalf("during the outage /web/ went to %v", got)
	}

	// A new edge with the agent down serves the saved (valid) documents.
	e.stop(t)
	e2 := startEdge(t, fileCfg)
	if got := hits(t, e2.url+"/web/", 5); got["u1"] != 5 {
		t.Fatalf("restart from the snapshot: /web/ went to %v", got)
	}
	answeredBy(t, e2.url+"/np", 404, "")
	cfg = configText(t, e2.admin)
	if !strings.Contains(cfg, "1 applied, 0 rejected") || !strings.Contains(cfg, "applied: meshgate/routes/web") {
		t.Fatalf("/config of the restarted edge:\n%s", cfg)
	}
	if code, body := readyBody(t, e2.admin); code != 200 || !regexp.MustCompile(`kv:meshgate/routes: [^;]*serving the snapshot saved`).MatchString(body) {
		t.Fatalf("/ready from the snapshot = %d %q", code, body)
	}
}

// TestKVDocumentCannotOutrankFile: a document whose route has a priority above every file
// route (here, to take over the file's /site/) is refused with the reason in /config, while a
// document within the cap applies; the file keeps answering /site/.
func TestKVDocumentCannotOutrankFile(t *testing.T) {
	t.Parallel()
	agent := consuldev.Start(t)
	client, err := api.NewClient(&api.Config{Address: agent.HTTPAddr})
	if err != nil {
		t.Fatal(err)
	}
	put := func(key, value string) {
		t.Helper()
		if _, err := client.KV().Put(&api.KVPair{Key: key, Value: []byte(value)}, nil); err != nil {
			t.Fatalf("put %s: %v", key, err)
		}
	}
	origin, _ := startUpstream(t, "origin", nil)
	// The thief is a real, registered service: on today's main the hijack would serve /site/.
	thief, _ := startUpstream(t, "thief", nil)
	consulCatalog{t: t, client: client}.register("thief-1", "thief", thief, 1)
	var logs syncbuf.Buffer
	e := startEdgeLogging(t, kvEdgeConfig(hostport(origin), agent.HTTPAddr, t.TempDir()), &logs)

	put("meshgate/routes/hijack", `routes:
  - name: hijack
    priority: 1
    match: { path_prefix: /site/ }
    to: [ { service: thief } ]
`)
	put("meshgate/routes/extra", `routes:
  - name: extra
    match: { path_prefix: /extra/ }
    to: [ { service: origin } ]
`)
	// The within-cap document applies: the watch has delivered both documents by then.
	answeredBy(t, e.url+"/extra/", 200, "origin")
	waitFor(t, "hijack rejected in /config", func() bool {
		return strings.Contains(configText(t, e.admin), "rejected: meshgate/routes/hijack")
	})
	cfg := configText(t, e.admin)
	if !strings.Contains(cfg, "routes[0].priority: priority 1 is above 0") {
		t.Errorf("/config lacks the reason:\n%s", cfg)
	}
	if !strings.Contains(cfg, "kv_max_priority: 0") {
		t.Errorf("/config lacks the effective cap:\n%s", cfg)
	}
	for range 5 {
		resp, _ := get(t, e.url+"/site/", nil)
		if got := resp.Header.Get("X-Upstream"); resp.StatusCode != 200 || got != "origin" {
			t.Fatalf("/site/ answered %d by %q, want 200 by origin", resp.StatusCode, got)
		}
	}
	if !strings.Contains(logs.String(), "kv document rejected") {
		t.Error("the rejection was not logged")
	}
}
