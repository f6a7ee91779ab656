// Package headers owns header transforms and path rewrites: a policy that edits the request on
// its way upstream and the response on its way back, so upstreams need not know they sit behind
// a gateway (strip an internal header, add a version header, serve /v2/users from /users).
//
//	request ─▶ Request: remove ─▶ set ─▶ add ─▶ path rewrite (prefix or regex) ─▶ … ─▶ upstream
//	client  ◀─ (proxy copies, strips hop-by-hop) ◀─ Response: remove ─▶ set ─▶ add ◀─ upstream
//
// Why remove, then set, then add: each rule then means one thing regardless of the others —
// "remove X, add X: v" yields exactly one X, and "set" never deletes something an "add" wrote.
//
// Why some names are refused at construction: framing and connection headers (Content-Length,
// Transfer-Encoding, Connection, Keep-Alive, TE, Trailer, Upgrade, Proxy-*) are the proxy's to
// write; a rule that changed them would either be silently undone by the hop-by-hop stripping
// or desynchronise the body from its framing (request smuggling). Host is refused because the
// proxy routes on one canonical authority and forwards it; a route's host rewrite is the place
// to change it. Names with underscores are refused as they are at the edge, since CGI-style
// upstreams fold them onto dashed names.
//
// Why the rewritten path is re-escaped: fasthttp stores the decoded path and decodes again when
// a path is set, so a rewrite of "/a%2541" (decoded "/a%41") would otherwise reach the upstream
// as "/aA". Every '%' in the new path is written as %25 so exactly one decoding ever happens.
//
// Header edits and prefix rewrites allocate nothing; a regex rewrite allocates only when the
// expression matches (Go's regexp has no append-style replace).
package headers
