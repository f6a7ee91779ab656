// Package proxy is the request engine's hot path: one Handler per listener turns a downstream
// request into an upstream one and back.
//
//	Serve ─▶ hygiene (underscores, framing, Host) ─▶ route.Table.Match ─▶ filter.Chain
//	      ─▶ weighted backend ─▶ buildRequest (hop-by-hop out, X-Forwarded-*, X-Request-Id,
//	         re-encoded target) ─▶ upstream.Cluster.Do ─▶ copy/stream the response
//	      ─▶ RenderError (the one error format) ─▶ metrics + access log
//
// A Generation (route table, backends, filters, bound metrics) is immutable and swapped
// atomically on reload; requests in flight finish on the one they started with. Per-request
// memory comes from pools owned by the Handler, and nothing derived from the RequestCtx outlives
// Serve except a streamed response body, which fasthttp closes after writing.
package proxy
