// Package proxy is the request engine's hot path: one Handler per listener turns a downstream
// request into an upstream one and back.
//
//	Serve ─▶ hygiene (underscores, framing, Host) ─▶ route.Table.Match ─▶ filter.Chain
//	      ─▶ weighted backend ─▶ buildRequest (hop-by-hop out, X-Forwarded-*, X-Request-Id,
//	         re-encoded target) ─▶ Upstream.Do ─▶ copy/stream the response
//	      ─▶ RenderError (the one error format) ─▶ metrics + access log
//
// The engine's one dependency on where a request goes is Upstream (Name, Do,
// MaxResponseBytes), defined here where it is consumed: the gateway passes an
// *upstream.Cluster, behind which balancing, retries, outlier detection and breakers run; the
// engine only builds the request, fills an upstream.Call (deadline, the caller's share of it,
// idempotency, whether the body is replayable, the streamed body that knows whether the client
// broke it) and maps the sentinel error it gets back to a status. The tests in serve_test.go
// use a fake Upstream to check every hygiene and trust rule of docs/security.md on what
// reaches the backend, without a network.
//
// A Generation (route table, backends, filters, bound metrics) is immutable and swapped
// atomically on reload; requests in flight finish on the one they started with. Per-request
// memory comes from pools owned by the Handler, and nothing derived from the RequestCtx outlives
// Serve except a streamed response body, which fasthttp closes after writing.
package proxy
