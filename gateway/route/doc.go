// Package route owns the route table: it compiles the configured routes once per config into an
// immutable Table and answers, per request, "which route serves this?".
//
//	conf routes ──(edge assembly)──▶ Options ──New──▶ *Table ──atomic.Pointer swap──▶ listener
//	                                                    │
//	        request (method, canonical host, path, ─────┴──Match──▶ *Route ──▶ filters, PickTarget,
//	        headers, query)                                          (or nil)    RewritePath, Timeout
//
// # Precedence
//
// Routes are tried in this order, and the first match wins:
//
// higher priority first; among equal priorities, the order in the file; the first route whose every condition matches wins
//
// "Every condition" means all of: the host (exact, or "*.example.com" matching any host that ends
// in ".example.com" with at least one more label, never "example.com" itself), the path (exact
// path, segment-agnostic path_prefix, or path_regex anchored to the whole path), the method, every
// header matcher and every query matcher. A condition that is not configured always holds. There
// is no implicit "most specific wins": an exact path listed after a prefix that covers it, at the
// same priority, is never reached — give it a higher priority or list it first.
//
// Header names match case-insensitively; the first occurrence of a header is the one compared,
// and because fasthttp cannot tell an empty header value from a missing header, an empty value
// counts as absent. Query parameters are compared after URL decoding; "?debug" (no value) counts
// as present. A route without hosts also matches requests without a Host (empty host).
//
// # Why immutable, swapped atomically
//
// Match runs on every request from many goroutines. A Table is never modified after New, so
// lookups need no locks and a reload cannot expose a half-updated table: the caller compiles the
// new config into a fresh Table (keeping the old one if New fails) and publishes it with an
// atomic.Pointer[route.Table] store. Requests in flight keep the *Route they matched, which stays
// valid for as long as they hold it. Route.Key lets the caller find per-config state (filter
// chains, clusters) without the route package importing anything of its own.
//
// # Cost
//
// New sorts the routes and indexes those whose hosts are all exact by host; Match merges that
// host's list with the list of host-agnostic and wildcard routes, both already in precedence
// order, so the visiting order is identical to a linear scan while routes for other hosts are
// skipped without being looked at. Within a route the cheapest checks come first (method bitmask,
// host, path, headers, then query, whose parsing is paid only by routes that have query
// matchers). Match does not allocate for host, path prefix/exact, method and header-exact
// routes; regex conditions cost whatever regexp.(*Regexp).Match costs (0 allocations with Go's
// pooled matchers in our measurements, see TestAllocs), and matching on the Cookie header
// allocates because fasthttp rebuilds that header on Peek.
package route
