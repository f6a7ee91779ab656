package dashboard

import (
	"embed"
	"fmt"
	"net/http"
)

// Patterns the page is served on. The index is "/{$}", the root alone, so that unknown admin
// paths keep answering 404 rather than the page.
const (
	PatternIndex  = "/{$}"
	PatternAssets = "/dashboard/{file}"
)

// ContentSecurityPolicy allows the page to load its own script and style and to fetch from its
// own origin, nothing else: no inline script or style, no other origin, no framing, no forms.
const ContentSecurityPolicy = "default-src 'none'; script-src 'self'; style-src 'self'; " +
	"connect-src 'self'; img-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"

// files is embedded so that the single binary carries its page and nothing is fetched at run
// time. A go:embed variable must be package-level; embed.FS is read-only, so it is no mutable
// global.
//
//go:embed assets
var files embed.FS

// contentType is the type of each asset served under /dashboard/; anything else there is 404.
func contentType(name string) string {
	switch name {
	case "app.js":
		return "text/javascript; charset=utf-8"
	case "style.css":
		return "text/css; charset=utf-8"
	}
	return ""
}

// Registrar is what Register needs of the admin server.
type Registrar interface {
	Handle(pattern string, h http.Handler) error
}

// Register adds the page and its assets to r.
func Register(r Registrar) error {
	index, err := files.ReadFile("assets/index.html")
	if err != nil {
		return fmt.Errorf("dashboard: %w", err)
	}
	assets := map[string]http.Handler{}
	for _, name := range [...]string{"app.js", "style.css"} {
		body, err := files.ReadFile("assets/" + name)
		if err != nil {
			return fmt.Errorf("dashboard: %w", err)
		}
		assets[name] = page(contentType(name), body)
	}
	if err := r.Handle(PatternIndex, page("text/html; charset=utf-8", index)); err != nil {
		return fmt.Errorf("dashboard: %w", err)
	}
	err = r.Handle(PatternAssets, http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		h, ok := assets[req.PathValue("file")]
		if !ok {
			http.NotFound(w, req)
			return
		}
		h.ServeHTTP(w, req)
	}))
	if err != nil {
		return fmt.Errorf("dashboard: %w", err)
	}
	return nil
}

// page serves body with the headers every dashboard response carries. nosniff is set here too
// (the admin server sets it already) so the assets are safe on any mux they are registered on.
func page(contentType string, body []byte) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		h := w.Header()
		h.Set("Content-Type", contentType)
		h.Set("Content-Security-Policy", ContentSecurityPolicy)
		h.Set("X-Content-Type-Options", "nosniff")
		h.Set("X-Frame-Options", "DENY")
		h.Set("Referrer-Policy", "no-referrer")
		_, _ = w.Write(body) // a browser that went away is not worth logging
	})
}
