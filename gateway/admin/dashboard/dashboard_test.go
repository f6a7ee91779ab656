package dashboard_test

import (
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"regexp"
	"strings"
	"testing"

	"github.com/meshgate/meshgate/gateway/admin/dashboard"
)

// muxRegistrar registers on a plain ServeMux, GET-only like the admin server.
type muxRegistrar struct{ *http.ServeMux }

func (m muxRegistrar) Handle(pattern string, h http.Handler) error {
	m.ServeMux.Handle(http.MethodGet+" "+pattern, h)
	return nil
}

func TestServesPageAndAssets(t *testing.T) {
	t.Parallel()
	mux := http.NewServeMux()
	if err := dashboard.Register(muxRegistrar{mux}); err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close) // the parallel subtests run after this function returns

	for _, tc := range []struct {
		path, status, contentType, contains string
	}{
		{"/", "200 OK", "text/html; charset=utf-8", `<script src="/dashboard/app.js"`},
		{"/dashboard/app.js", "200 OK", "text/javascript; charset=utf-8", "textContent"},
		{"/dashboard/style.css", "200 OK", "text/css; charset=utf-8", "body"},
		{"/dashboard/index.html", "404 Not Found", "", ""}, // only the listed assets
		{"/dashboard/../go.mod", "404 Not Found", "", ""},
		{"/elsewhere", "404 Not Found", "", ""}, // "/" is the root alone, not a catch-all
	} {
		t.Run(tc.path, func(t *testing.T) {
			t.Parallel()
			req, err := http.NewRequestWithContext(t.Context(), http.MethodGet, srv.URL+tc.path, nil)
			if err != nil {
				t.Fatal(err)
			}
			resp, err := srv.Client().Do(req)
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			body, _ := io.ReadAll(resp.Body)
			if resp.Status != tc.status {
				t.Fatalf("status %q, want %q", resp.Status, tc.status)
			}
			if tc.contentType == "" {
				return
			}
			if got := resp.Header.Get("Content-Type"); got != tc.contentType {
				t.Errorf("Content-Type %q, want %q", got, tc.contentType)
			}
			if got := resp.Header.Get("Content-Security-Policy"); got != dashboard.ContentSecurityPolicy {
				t.Errorf("Content-Security-Policy %q", got)
			}
			if got := resp.Header.Get("X-Content-Type-Options"); got != "nosniff" {
				t.Errorf("X-Content-Type-Options %q", got)
			}
			if !strings.Contains(string(body), tc.contains) {
				t.Errorf("body lacks %q", tc.contains)
			}
		})
	}
}

// The CSP must not allow what the page must not need: inline script or style, eval, any other
// origin.
func TestPolicyIsStrict(t *testing.T) {
	t.Parallel()
	for _, bad := range []string{"unsafe-inline", "unsafe-eval", "*", "http:", "https:", "data:"} {
		if strings.Contains(dashboard.ContentSecurityPolicy, bad) {
			t.Errorf("policy allows %q: %s", bad, dashboard.ContentSecurityPolicy)
		}
	}
	for _, want := range []string{"default-src 'none'", "script-src 'self'", "connect-src 'self'", "frame-ancestors 'none'"} {
		if !strings.Contains(dashboard.ContentSecurityPolicy, want) {
			t.Errorf("policy lacks %q", want)
		}
	}
}

// The assets keep to the rules the CSP enforces in the browser, so a violation is caught here
// and not only as a blank section: no inline script, handler or style; nothing loaded from
// another origin; data reaches the DOM only as text.
func TestAssetsKeepTheRules(t *testing.T) {
	t.Parallel()
	read := func(name string) string {
		b, err := os.ReadFile("assets/" + name)
		if err != nil {
			t.Fatal(err)
		}
		return string(b)
	}
	html, js, css := read("index.html"), read("app.js"), read("style.css")
	for _, s := range regexp.MustCompile(`<script[^>]*>`).FindAllString(html, -1) {
		if !strings.Contains(s, `src="/dashboard/`) {
			t.Errorf("inline script in index.html: %s", s)
		}
	}
	if m := regexp.MustCompile(`(?i)\son[a-z]+=|\sstyle=|<style`).FindString(html); m != "" {
		t.Errorf("inline handler or style in index.html: %q", m)
	}
	for name, text := range map[string]string{"index.html": html, "app.js": js, "style.css": css} {
		if m := regexp.MustCompile(`https?://|//cdn|@import`).FindString(text); m != "" {
			t.Errorf("%s refers to another origin: %q", name, m)
		}
	}
	for _, sink := range []string{"innerHTML", "outerHTML", "insertAdjacentHTML", "document.write", "eval(", "new Function"} {
		// The header comment names innerHTML to forbid it; code must not use it.
		code := regexp.MustCompile(`(?m)^\s*//.*$`).ReplaceAllString(js, "")
		if strings.Contains(code, sink) {
			t.Errorf("app.js uses %s", sink)
		}
	}
}
