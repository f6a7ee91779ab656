// Package jwt owns bearer-token authentication: a filter that verifies a JWT (RFC 7519) from the
// Authorization header (or a configured header or cookie), checks its issuer, audience, time
// claims and required claims, names the consumer from one claim and forwards selected claims to
// the upstream as request headers.
//
//	token ─▶ parse (golang-jwt/v5, WithValidMethods: only the configured algorithms)
//	           │ key by kid
//	           ▼
//	   static PEM keys ──miss──▶ JWKS cache (keyfunc/v3, background refresh every RefreshInterval)
//	                                 │ unknown kid
//	                                 ▼
//	                      one synchronous refresh, at most once per UnknownKIDInterval (non-blocking
//	                      gate: other unknown-kid requests fail fast instead of queueing)
//	         ─▶ exp / nbf (with Leeway) ─▶ iss ─▶ aud (any of) ─▶ required claims
//	         ─▶ r.Identity = IdentityClaim; forwarded claims ─▶ upstream headers
//
// Algorithm confusion is impossible by construction: with a shared secret only HS* is accepted
// and no public key is loaded; without one only asymmetric algorithms are accepted, so an HS256
// token "signed" with a public key's bytes is rejected before any key is looked up. "none" is
// never accepted.
//
// A request carries exactly one token: repeated Authorization (or token header) lines, a
// comma-separated list in one value, two tokens in one value, the cookie twice, or a token in
// two sources get 400 error="invalid_request" (ReasonMultipleTokens), because the upstream
// might read the token we did not verify. StripToken removes the verified one (its header, or
// only its cookie).
//
// JWKS URLs must be https unless AllowHTTP. A JWKS (NewJWKS) may be shared by filters and
// outlive them; the gateway keeps one per URL across reloads, so a reload does not refetch.
//
// Status codes follow RFC 6750 §3.1: no token → 401 with a bare Bearer challenge; a token that is
// malformed, expired, mis-signed or for another issuer/audience → 401 error="invalid_token"; a
// valid token lacking a required claim → 403 error="insufficient_scope".
package jwt
