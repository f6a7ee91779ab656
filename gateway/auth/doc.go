// Package auth is the home of the edge authentication filters. Each scheme lives in its own
// subpackage so a route pays only for what it uses and the schemes share no state:
//
//	gateway/auth/jwt     bearer tokens (JWT) verified against JWKS URLs or static PEM keys
//	gateway/auth/apikey  static API keys, stored as SHA-256 hashes, reloadable (file, Consul KV)
//	gateway/auth/hmac    HMAC-SHA256 signed requests with a body digest and a replay window
//
// Every filter follows the same contract, so the chain, the access log and the rate limiter
// treat them alike:
//
//	request ─▶ strip headers the filter owns (a client must never inject them)
//	         ─▶ extract credential ── none ──▶ 401 (challenge in WWW-Authenticate)
//	         ─▶ verify ── bad ──▶ 401 / 403, Reason = short code (jwt_expired, apikey_unknown, …)
//	         ─▶ r.Identity = consumer name (rate-limit key, access log, upstream identity header)
//
// The filters never render error bodies and never put an error's text on the wire: they return
// a filter.Verdict and the engine's one error renderer answers. Options structs carry no conf
// types; the edge assembly translates the user's schema into them.
package auth
