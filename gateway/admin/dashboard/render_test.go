package dashboard_test

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/meshgate/meshgate/gateway/admin/dashboard"
	"github.com/meshgate/meshgate/internal/browsertest"
	"github.com/meshgate/meshgate/mesh/intentions"
	"github.com/meshgate/meshgate/mesh/upstream"
)

// hostile is a value that would run script if the page ever put data in as markup.
const hostile = `<img src=x onerror="document.body.dataset.pwned=1">`

// TestRendersConnectAndAbsentSections renders what the edge test cannot show without Consul (a
// Connect identity with intentions, an ejected endpoint behind an open breaker) next to endpoints
// that are absent (/config, /plugins answer 404), from the admin API's own types so that a
// renamed JSON field breaks this test and not only the page. The edge test
// (gateway/dashboard_test.go) covers a real gateway with live traffic.
func TestRendersConnectAndAbsentSections(t *testing.T) {
	t.Parallel()
	mux := http.NewServeMux()
	if err := dashboard.Register(muxRegistrar{mux}); err != nil {
		t.Fatal(err)
	}
	asJSON := func(v any) http.HandlerFunc {
		return func(w http.ResponseWriter, _ *http.Request) {
			w.Header().Set("Content-Type", "application/json")
			_ = json.NewEncoder(w).Encode(v)
		}
	}
	until := time.Now().Add(time.Minute).UTC()
	mux.Handle("GET /clusters", asJSON([]upstream.Status{{
		Name: "api", Source: "consul", Policy: "least_request", Protocol: "http2", Ejected: 1,
		Hosts: []upstream.HostStatus{
			{Address: "10.0.0.1:20000", Weight: 1, Healthy: true, Breaker: "closed", Requests: 10},
			{Address: "10.0.0.2:20000", Weight: 1, Healthy: false, Breaker: "open", Ejected: true, EjectedUntil: &until, Errors: 7},
		},
	}}))
	mux.Handle("GET /routes", asJSON(map[string][]map[string]any{"public": {{"name": "api", "path_prefix": "/api/", "targets": []map[string]any{{"service": "api", "weight": 1}}}}}))
	// The edge's view (gateway/mesh.go) is a map; its intentions are the authorizer's own type.
	mux.Handle("GET /identity", asJSON(map[string]any{
		"connect": true, "service": "edge", "intentions_default": "deny", "roots": 1, "trust_domain": "11111111.consul",
		"leaf": map[string]any{"spiffe_id": "spiffe://11111111.consul/ns/default/dc/dc1/svc/edge",
			"not_after": time.Now().Add(30 * time.Minute).UTC(), "serial": "1f"},
		"intentions": intentions.RulesView{Destination: "edge", Ready: true, Origin: "consul", Version: 3,
			Intentions: []intentions.Intention{
				{SourceName: "web", DestinationName: "edge", Action: intentions.ActionAllow, Precedence: 9},
				{SourceName: "*", DestinationName: "edge", Action: intentions.ActionDeny, Precedence: 8, Description: hostile},
			}},
	}))
	mux.Handle("GET /metrics", http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/plain; version=0.0.4")
		_, _ = w.Write([]byte("# TYPE meshgate_requests_total counter\nmeshgate_requests_total{route=\"api\",class=\"2xx\"} 5\n"))
	}))
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)

	ctx, console := browsertest.Start(t, 1100, 800)
	if err := chromedp.Do(ctx, chromedp.Navigate(srv.URL+"/?refresh=0.2")); err != nil {
		t.Fatal(err)
	}
	if _, err := chromedp.Run(ctx, chromedp.Poll[bool](`Number(document.body.dataset.refreshes) >= 2`,
		chromedp.WithPollingInterval(50*time.Millisecond), chromedp.WithPollingTimeout(20*time.Second))); err != nil {
		t.Fatalf("the page did not refresh twice: %v", err)
	}
	type view struct {
		Sections map[string]string `json:"sections"`
		Images   int               `json:"images"`
		Pwned    bool              `json:"pwned"`
	}
	v, err := chromedp.Run(ctx, chromedp.Evaluate[view](`({
	  sections: Object.fromEntries([...document.querySelectorAll("section")].map((s) => [s.id, s.querySelector(".body").textContent])),
	  images: document.querySelectorAll("main img").length,
	  pwned: document.body.dataset.pwned === "1",
	})`))
	if err != nil {
		t.Fatal(err)
	}
	for section, want := range map[string][]string{
		"listeners":  {"No /config endpoint", "public"}, // names from /routes while /config is absent
		"routes":     {"api", "/api/*"},
		"traffic":    {"api", "Per service"},
		"clusters":   {"10.0.0.1:20000", "healthy", "10.0.0.2:20000", "unhealthy", "until", "open", "least_request", "1 ejected"},
		"identity":   {"edge", "spiffe://11111111.consul/ns/default/dc/dc1/svc/edge", "11111111.consul", "(in 29m)"},
		"intentions": {"in force (version 3, consul)", "web", "allow", "deny", hostile},
		"plugins":    {"No /plugins endpoint"},
	} {
		for _, w := range want {
			if !strings.Contains(v.Sections[section], w) {
				t.Errorf("section %s lacks %q: %s", section, w, v.Sections[section])
			}
		}
	}
	if v.Images != 0 || v.Pwned {
		t.Errorf("a description was rendered as markup: %d images, pwned %v", v.Images, v.Pwned)
	}
	png, err := chromedp.Run(ctx, chromedp.FullScreenshot(100))
	if err != nil {
		t.Fatalf("screenshot: %v", err)
	}
	shot := filepath.Join(t.TempDir(), "dashboard-connect.png")
	if err := os.WriteFile(shot, png, 0o600); err != nil {
		t.Fatal(err)
	}
	t.Logf("screenshot: %s", shot)
	for _, p := range console.Problems() {
		// The browser logs each 404 it fetched; those two are the point of this test.
		if strings.Contains(p, "404") && (strings.HasSuffix(p, "/config") || strings.HasSuffix(p, "/plugins")) {
			continue
		}
		t.Errorf("browser reported %s", p)
	}
}
