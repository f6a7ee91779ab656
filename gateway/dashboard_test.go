package gateway

import (
	"flag"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/meshgate/meshgate/internal/browsertest"
)

var updateScreenshot = flag.Bool("update-screenshot", false, "also write docs/img/dashboard.png from TestDashboardInChromium")

// dashboardView is what the probe script reads from the rendered page.
type dashboardView struct {
	State      string            `json:"state"`
	Status     string            `json:"status"`
	Refreshes  int               `json:"refreshes"`
	Sections   map[string]string `json:"sections"`
	Health     []string          `json:"health"`
	RouteRPS   float64           `json:"routeRPS"`
	ServiceRPS float64           `json:"serviceRPS"`
	// Of route api: latency over the last interval; of route web: 5xx/s (/fail answers 500).
	MeanMS float64 `json:"meanMS"`
	P99MS  float64 `json:"p99MS"`
	Web5xx float64 `json:"web5xx"`
}

// dashboardProbe summarises the DOM; it is evaluated in the page, so it sees what a person sees
// (what app.js rendered), not what the admin endpoints answer.
const dashboardProbe = `(() => {
  const text = (sel) => { const e = document.querySelector(sel); return e ? e.textContent : null; };
  const ids = ["listeners", "routes", "traffic", "clusters", "identity", "intentions", "plugins"];
  const value = (sel) => { const e = document.querySelector(sel); return e && e.dataset.value ? Number(e.dataset.value) : 0; };
  return {
    state: document.body.dataset.state,
    status: text("#status"),
    refreshes: Number(document.body.dataset.refreshes),
    sections: Object.fromEntries(ids.map((id) => [id, text("#" + id + " .body")])),
    health: [...document.querySelectorAll('#clusters [data-cluster="api"] tr[data-host] td.health')].map((e) => e.textContent),
    routeRPS: value('#traffic tr[data-route="api"] td.rps'),
    serviceRPS: value('#traffic tr[data-service="api"] td.rps'),
    meanMS: value('#traffic tr[data-route="api"] td.mean'),
    p99MS: value('#traffic tr[data-route="api"] td.p99'),
    web5xx: value('#traffic tr[data-route="web"] td.e5xx'),
  };
})()`

// TestDashboardInChromium loads the admin page of a real edge, with traffic flowing to real
// upstreams, in headless Chromium and checks the rendered DOM: every section, the names from
// the config, each endpoint's health, and request rates, 5xx rates and latency above zero,
// which need two scrapes of /metrics and /clusters by the page's own refresh loop.
func TestDashboardInChromium(t *testing.T) {
	api1, _ := startUpstream(t, "api-1", nil)
	api2, _ := startUpstream(t, "api-2", nil)
	web, _ := startUpstream(t, "web", func(w http.ResponseWriter, r *http.Request) {
		if strings.HasPrefix(r.URL.Path, "/fail") {
			w.WriteHeader(http.StatusInternalServerError) // some 5xx for the error columns
		}
	})
	e := startEdge(t, fmt.Sprintf(`
admin: { address: 127.0.0.1:0 }
listeners: [ { name: public, address: 127.0.0.1:0 } ]
routes:
  - { name: api, match: { path_prefix: /api/ }, to: [ { service: api } ] }
  - { name: web, match: { path_prefix: / }, to: [ { service: web } ] }
discovery:
  static:
    api: [ %s, %s ]
    web: [ %s ]
access_log: { output: "off" }
`, hostport(api1), hostport(api2), hostport(web)))

	// Traffic until the test has seen its rates; paced so that it stays light on 2 cores.
	client := &http.Client{Transport: &http.Transport{}, Timeout: 5 * time.Second}
	defer client.CloseIdleConnections()
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		tick := time.NewTicker(5 * time.Millisecond)
		defer tick.Stop()
		for i := 0; ; i++ {
			select {
			case <-stop:
				return
			case <-tick.C:
			}
			// One web request in four fails: errors to show, but below the breaker's ratio.
			path := [...]string{"/api/users", "/", "/api/orders", "/", "/api/users", "/", "/api/orders", "/fail"}[i%8]
			if resp, err := client.Get(e.url + path); err == nil {
				resp.Body.Close()
			}
		}
	}()
	defer func() { close(stop); wg.Wait() }()

	ctx, console := browsertest.Start(t, 1280, 900)
	if err := chromedp.Do(ctx, chromedp.Navigate("http://"+e.admin+"/?refresh=0.3")); err != nil {
		t.Fatalf("load the dashboard: %v", err)
	}
	// The poll returns the first view that shows everything, so the checks below all look at
	// one refresh; the rates need the page's own loop to have scraped twice with traffic between.
	const ready = `(() => { const v = ` + dashboardProbe + `;
	  return v.routeRPS > 0 && v.serviceRPS > 0 && v.meanMS > 0 && v.web5xx > 0 && v.health.length === 2 && v.refreshes >= 3 && v; })()`
	v, err := chromedp.Run(ctx, chromedp.Poll[dashboardView](ready,
		chromedp.WithPollingInterval(100*time.Millisecond), chromedp.WithPollingTimeout(30*time.Second)))
	if err != nil {
		v, _ := chromedp.Run(ctx, chromedp.Evaluate[dashboardView](dashboardProbe))
		t.Fatalf("the page never showed rates, latency and both api endpoints: %v\nrendered: %+v", err, v)
	}

	if v.State != "ok" {
		t.Errorf("page state %q, status %q", v.State, v.Status)
	}
	for section, want := range map[string][]string{
		"listeners":  {"public", "127.0.0.1:0"},
		"routes":     {"api", "web", "/api/*"},
		"traffic":    {"Per route", "Per service", "api", "web"},
		"clusters":   {"api", "web", hostport(api1), hostport(api2), "healthy", "closed"},
		"identity":   {"No mesh identity"},
		"intentions": {"No intentions in force"},
		"plugins":    {"No plugins configured."},
	} {
		got, ok := v.Sections[section]
		if !ok || got == "" {
			t.Errorf("section %s is missing or empty", section)
			continue
		}
		if strings.Contains(got, "Could not render") {
			t.Errorf("section %s failed: %s", section, got)
		}
		for _, w := range want {
			if !strings.Contains(got, w) {
				t.Errorf("section %s lacks %q: %s", section, w, got)
			}
		}
	}
	if v.MeanMS <= 0 || v.P99MS <= 0 {
		t.Errorf("route api latency: mean %v ms, p99 %v ms; want both above 0", v.MeanMS, v.P99MS)
	}
	for i, h := range v.Health {
		if h != "healthy" {
			t.Errorf("api endpoint %d shows %q", i, h)
		}
	}

	png, err := chromedp.Run(ctx, chromedp.FullScreenshot(100))
	if err != nil {
		t.Fatalf("screenshot: %v", err)
	}
	shot := filepath.Join(t.TempDir(), "dashboard.png")
	if err := os.WriteFile(shot, png, 0o600); err != nil {
		t.Fatal(err)
	}
	t.Logf("screenshot: %s (%d bytes)", shot, len(png))
	if *updateScreenshot {
		if err := os.WriteFile(filepath.Join("..", "docs", "img", "dashboard.png"), png, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	for _, p := range console.Problems() {
		t.Errorf("browser reported %s", p)
	}
}
