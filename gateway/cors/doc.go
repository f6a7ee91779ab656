// Package cors owns cross-origin resource sharing policies: which browser origins may call a
// route, answered at the edge so preflights never reach the upstream.
//
//	OPTIONS + Origin + Access-Control-Request-Method (a preflight)
//	   │
//	   ├─ origin, method and every requested header allowed ─▶ 204 + Access-Control-* (Written)
//	   └─ otherwise ───────────────────────────────────────────▶ 403 cors_denied, no CORS headers
//
//	any other request ─▶ continue ─▶ upstream ─▶ Response: drop the upstream's Access-Control-*,
//	                                             add Allow-Origin (+ Credentials, Expose-Headers)
//	                                             when the Origin is allowed; Vary: Origin
//
// Why at the edge: a preflight carries no credentials and no body, so sending it upstream only
// costs a round trip and lets every service answer it differently. The policy is the single
// source of truth for the route, which is also why the upstream's own Access-Control-* response
// headers are removed: two Allow-Origin headers make browsers reject the response.
//
// Why actual requests are never rejected: CORS is enforced by the browser, which withholds the
// response from the page when Allow-Origin is missing. Rejecting here would also break
// same-origin and non-browser clients that send an Origin header. Access control belongs to
// auth and ipfilter; CORS only decides what a browser page may read.
//
// Why "*" is refused together with credentials: browsers reject that combination, and the usual
// workaround (echo any Origin with Allow-Credentials) lets every site on the internet read a
// logged-in user's responses. New returns an error instead, so the mistake is caught at load.
//
// Origins are matched ASCII-case-insensitively against exact entries ("https://app.mesh.test"),
// "*", and subdomain wildcards ("https://*.mesh.test" matches any deeper host with that scheme
// and port, never the apex itself). Matching and header writing allocate nothing.
package cors
