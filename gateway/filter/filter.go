package filter

import (
	"net/netip"
	"time"

	"github.com/valyala/fasthttp"
)

// Request is what a filter sees of one request. It is valid only during the call.
type Request struct {
	Ctx      *fasthttp.RequestCtx
	Route    string     // matched route name
	ClientIP netip.Addr // the trusted client address (X-Forwarded-For resolved)
	// Identity is the authenticated caller, empty until an auth filter sets it. It arrives as
	// an empty slice with pooled capacity: filters set it with append(r.Identity[:0], ...) so
	// naming the caller costs no allocation. Never keep it past the call.
	Identity []byte
	Deadline time.Time // the request's overall deadline; zero = none
	// RequestID is the request's id as the engine decided it (a trusted sender's, or its own):
	// the client's X-Request-Id lines are gone from Ctx by the time filters run.
	RequestID []byte
	// Notes is what filters report about the request for its trace span; the engine reads it
	// only when the request's span is recorded.
	Notes Notes

	// body is the engine's reader of the whole request body (SetBody); nil outside the engine.
	body BodySource
}

// Notes are facts filters report for the request's server span (docs/observability.md): cheap
// to set (no allocation), read only when the request is traced.
type Notes struct {
	// Intention is the label of what decided a connect listener's authorisation (the
	// intention's name, or "default deny" and the like); IntentionAllow is the decision.
	// Empty when no intention was evaluated.
	Intention      string
	IntentionAllow bool
	// PluginTime is the time spent in plugin calls, request and response phases together.
	PluginTime time.Duration
}

// BodySource reads a request's whole body for a filter that must see it. The engine's
// implementation reads through the listener's max_body_bytes and keeps what it read for
// forwarding, so the upstream receives the body unchanged.
type BodySource interface {
	ReadBody() ([]byte, Verdict)
}

// SetBody installs the engine's body reader for this request.
func (r *Request) SetBody(b BodySource) { r.body = b }

// Body returns the whole request body. A non-zero Verdict (413 past the listener's body limit,
// 400 for a body the client broke off or mis-framed) is the answer the filter must give. The
// bytes are valid only during the call. Never read r.Ctx.Request.Body() instead: on a streamed
// body that reads without a limit and leaves nothing to forward.
func (r *Request) Body() ([]byte, Verdict) {
	if r.body != nil {
		return r.body.ReadBody()
	}
	// Outside the engine (unit tests): only a body already in memory is safe to hand out.
	if r.Ctx == nil {
		return nil, Verdict{}
	}
	if r.Ctx.Request.IsBodyStream() {
		return nil, Verdict{Status: fasthttp.StatusRequestEntityTooLarge, Reason: "body_too_large"}
	}
	return r.Ctx.Request.Body(), Verdict{}
}

// Verdict is a filter's decision. The zero value means "continue".
type Verdict struct {
	Status int    // non-zero: answer now with this status
	Reason string // the reason code rendered in the JSON error body and the access log
	// Written: the filter wrote the whole answer (status, headers and body) on r.Ctx.Response
	// itself, e.g. a plugin's own 401 page; the engine sends it as is instead of rendering its
	// JSON error. Status and Reason still go to metrics and the access log.
	Written bool
}

// Filter runs on the request path before forwarding. Headers it sets on r.Ctx.Response are kept
// when it rejects (e.g. Retry-After on a 429).
type Filter interface {
	Request(r *Request) Verdict
}

// ResponseFilter runs on the upstream's response before it is sent to the client (a plugin's
// response phase). It may edit resp's headers; r is the same request the request filters saw.
type ResponseFilter interface {
	Response(r *Request, resp *fasthttp.Response)
}

// Chain runs filters in order and stops at the first rejection.
type Chain []Filter

// Request runs the chain.
func (c Chain) Request(r *Request) Verdict {
	for _, f := range c {
		if v := f.Request(r); v.Status != 0 {
			return v
		}
	}
	return Verdict{}
}
