// Package otlptest is a real OTLP/HTTP receiver for tests: an HTTP server on loopback that
// decodes each POST /v1/traces body as an ExportTraceServiceRequest and each POST /v1/logs body
// as an ExportLogsServiceRequest (go.opentelemetry.io/proto/otlp, the collector's own wire
// types) and keeps the spans and log records, so a test asserts on what meshgate actually sent.
// It can be made slow (Hold), stopped and restarted on the same port (an outage), made to
// answer a chosen status (Respond) or a partial success (RejectLogs). It owns nothing else;
// only tests import it.
package otlptest
