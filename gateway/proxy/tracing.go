package proxy

import (
	"strconv"
	"time"

	"github.com/valyala/fasthttp"

	"github.com/meshgate/meshgate/mesh/tracing"
)

// The request's server span (Options.Tracer). serve starts it before anything else so its
// time covers the whole request, buildRequest writes its context upstream, Cluster.Do hangs a
// client span per try under it, and endSpan, once the response is decided, names it, adds the
// attributes and hands it to the exporter. Nothing here runs for a request that is not
// recorded beyond the End call that resets the span (and the error check of sample_errors).

// endSpan finishes the server span of a request answered with status.
func (h *Handler) endSpan(ctx *fasthttp.RequestCtx, gen *Generation, s *scratch, status int, end time.Time) {
	sp := &s.span
	grpcCode, grpcOK := -1, false
	if s.grpc {
		// A Trailers-Only answer (the gateway's own error, or an upstream's) has grpc-status in
		// its head; one sent as a trailer after a body is not seen here.
		if v := ctx.Response.Header.Peek("Grpc-Status"); len(v) > 0 {
			if n, err := strconv.Atoi(string(v)); err == nil {
				grpcCode, grpcOK = n, true
			}
		}
	}
	failed := status >= 500 || (grpcOK && grpcCode != 0)
	if !sp.Recording() && failed && h.opts.Tracer.SampleErrors() {
		sp.Promote()
	}
	if sp.Recording() {
		e := &s.entry
		m := ctx.Request.Header.Method()
		if e.Route != "" {
			sp.SetName(gen.routes[s.key].spans.For(m))
			sp.SetString("http.route", e.Route)
		} else {
			sp.SetName(tracing.Method(m))
		}
		sp.SetString("http.request.method", tracing.Method(m))
		sp.SetInt("http.response.status_code", int64(status))
		sp.SetString("network.protocol.version", protocolVersion(e.Protocol))
		sp.SetString("meshgate.listener", h.opts.Listener)
		sp.SetString("meshgate.request_id", string(s.reqID))
		if e.Service != "" {
			sp.SetString("meshgate.service", e.Service)
		}
		if e.Upstream != "" {
			sp.SetString("meshgate.upstream.address", e.Upstream)
			sp.SetInt("meshgate.attempts", int64(e.Attempts))
		}
		if len(e.Identity) > 0 {
			sp.SetString("meshgate.identity", string(e.Identity))
		}
		if grpcOK {
			sp.SetInt("rpc.grpc.status_code", int64(grpcCode))
		}
		if n := &s.notes; n.Intention != "" {
			decision := "deny"
			if n.IntentionAllow {
				decision = "allow"
			}
			sp.SetString("meshgate.intention.decision", decision)
			sp.SetString("meshgate.intention", n.Intention)
		}
		if pt := s.notes.PluginTime; pt > 0 {
			sp.SetInt("meshgate.plugin.duration_us", pt.Microseconds())
		}
		if failed {
			msg := e.Error
			if msg == "" {
				msg = strconv.Itoa(status)
			}
			sp.SetStatus(tracing.Error, msg)
		}
	}
	sp.End(end)
}

// protocolVersion is the client's protocol as OpenTelemetry's network.protocol.version.
func protocolVersion(p string) string {
	switch p {
	case protoHTTP2:
		return "2"
	case protoHTTP10:
		return "1.0"
	}
	return "1.1"
}
