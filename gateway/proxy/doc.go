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
// WebSocket (websocket.go) is a branch at the end of the same path: a handshake (GET, HTTP/1.1,
// Upgrade: websocket, Connection: upgrade; one header-scan bit decides whether to look) passes
// hygiene, intentions, routing and the route's filters like any request; then, instead of
// Upstream.Do, the backend's Upgrader dials a host picked by the cluster, and on a 101 the
// client connection is hijacked from fasthttp and bytes are relayed both ways until either side
// ends, both are idle for Options.WebSocketIdleTimeout, or the listener (told of the session by
// Options.Upgraded) closes it at its drain deadline. Any other Upgrade is stripped as a
// hop-by-hop field. The session logs its one access-log line when it ends.
//
// A Generation (route table, backends, filters, bound metrics) is immutable and swapped
// atomically on reload; requests in flight finish on the one they started with. Per-request
// memory comes from pools owned by the Handler, and nothing derived from the RequestCtx outlives
// Serve except a streamed response body, which fasthttp closes after writing.
//
// With Options.Tracer set (tracing.go), serve starts the request's server span first (its parent
// read from the trace headers, mesh/tracing deciding the sampling), buildRequest makes the trace
// headers owned ones carrying the gateway's span, upstream.Call.Trace lets Cluster.Do record a
// client span per try, and the span is finished with the response's attributes. An unsampled
// request allocates nothing for it; without a Tracer the path is as it was.
//
// HTTP/2 requests arrive through ServeHTTP (h2.go): each stream gets a pooled RequestCtx built
// from the http.Request and goes through the same serve; the response is copied to the
// ResponseWriter with a flush per read and the upstream's trailers. A gRPC request's errors are
// Trailers-Only gRPC statuses (grpc.go).
package proxy
