// Package otlptest is a real OTLP/HTTP trace receiver for tests: an HTTP server on loopback
// that decodes each POST /v1/traces body as an ExportTraceServiceRequest
// (go.opentelemetry.io/proto/otlp, the collector's own wire types) and keeps the spans, so a
// test asserts on what meshgate actually sent. It can also be made slow (Hold) to show that a
// collector's trouble never reaches requests. It owns nothing else; only tests import it.
package otlptest
