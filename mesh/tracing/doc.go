// Package tracing owns distributed tracing: the trace context on the wire (W3C traceparent and
// tracestate, B3 in its single-header and multi-header forms), the sampling decision, spans,
// and their export to a collector over OTLP/HTTP (protobuf).
//
//	request headers ─▶ Tracer.StartServer ─▶ parent (first configured format found) or none
//	                     │                    sampled? parent's flag, else ratio of the trace id
//	                     ▼
//	                   Span (server) ── StartChild ─▶ Span (client, one per upstream try)
//	                     │                               │ Inject: the try's span as the parent
//	                     ▼ End                           ▼ End
//	                   queue (batches filled under a short lock; all taken: dropped, counted;
//	                     │    never blocks)
//	                     ▼ one goroutine, woken per full batch or by its interval
//	                   POST {endpoint}/v1/traces (ExportTraceServiceRequest)
//
// It imports nothing of meshgate's, so the request engine (gateway/proxy: the server span) and
// the clusters (mesh/upstream: a client span per try) can both use it. It knows no header
// library either: headers are reached through Carrier, which *fasthttp.RequestHeader satisfies.
//
// Cost: a request that is not sampled costs a parse of its trace headers, a few random numbers
// and the headers written upstream, with no allocation (Span lives in the caller's pooled
// memory, ids are arrays, formatting appends to the caller's buffer). Only a sampled span
// allocates, and only until the buffers it reuses have grown: its attributes, and their copy in
// the queue's batch. A collector that is slow or down only fills the queue; requests never
// wait for it.
package tracing
