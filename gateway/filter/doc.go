// Package filter defines the request filter chain that routes run before a request is
// forwarded, a sidecar's inbound and upstream routes included. Every policy kind is a filter:
// rate limits (ratelimit), fault injection (fault), jwt, api_key and hmac authentication (auth/*),
// ip allow/deny (ipfilter), CORS (cors), header transforms (headers) and out-of-process plugins
// (plugins/host). A connect listener's intentions check is a filter too, run before routing
// (proxy.ListenerOptions.Authorize).
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
