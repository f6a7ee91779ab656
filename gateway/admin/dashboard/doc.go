// Package dashboard is the operator's page on the admin API: GET / serves one HTML page whose
// script polls the admin endpoints that already exist and renders them.
//
//	browser ── GET /                    ──▶ index.html (embedded)
//	        ── GET /dashboard/app.js    ──▶ plain JS, no build step, no CDN
//	        ── GET /dashboard/style.css
//	app.js, every 2 s ──▶ /config (YAML: listeners) /routes /clusters /metrics (Prometheus text)
//	                      /identity /plugins; rates come from two successive scrapes
//
// The page adds no endpoint that reads state: everything it shows, curl can show too, so the
// dashboard cannot leak more than the admin API already does, and the admin API's own rule
// applies to it: keep the admin listener private (loopback, or behind something that
// authenticates). Because the data it renders comes from the gateway's configuration and from
// peers (route names, host addresses, plugin errors), the page is built with textContent only,
// and served with a Content-Security-Policy that allows no inline script and no other origin, so
// a hostile value can neither run nor phone home.
//
// The package imports nothing internal; the assembly registers it with Register on the admin
// server, whose Host check (DNS rebinding) and no-store headers cover these paths as well.
package dashboard
