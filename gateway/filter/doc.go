// Package filter defines the request filter chain that routes (and later the sidecar's inbound
// side) run before a request is forwarded: rate limits, fault injection, and later auth, CORS,
// header transforms and out-of-process plugins.
//
//	route matched ─▶ filter 1 ─▶ filter 2 ─▶ … ─▶ cluster pick ─▶ upstream
//	                    │ Verdict{Status≠0}
//	                    ▼
//	            one error renderer (JSON body, headers the filter set are kept)
//
// A filter is built once per config generation and called concurrently for every request of
// its routes; it must not keep the Request or anything derived from its RequestCtx after it
// returns. State that must survive reloads (rate-limit buckets) is owned by the builder of the
// filter and keyed by policy name, not by the filter value.
package filter
