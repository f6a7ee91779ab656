package proxy

import (
	"errors"
	"net"
	"os"
	"strconv"

	"github.com/valyala/fasthttp"

	"github.com/meshgate/meshgate/mesh/upstream"
)

// Reason codes are what clients and the access log see instead of internal error text.
const (
	ReasonNoRoute          = "no_route"
	ReasonNoHosts          = "no_healthy_upstream"
	ReasonConnect          = "upstream_connect_failure"
	ReasonReset            = "upstream_reset"
	ReasonTimeout          = "upstream_timeout"
	ReasonOverflow         = "upstream_overflow"
	ReasonTooLarge         = "upstream_response_too_large"
	ReasonProtocol         = "upstream_protocol_error"
	ReasonBadRequest       = "bad_request"
	ReasonUnderscoreHeader = "invalid_header_name"
	ReasonMissingHost      = "missing_host"
	ReasonHeaderTooLarge   = "header_too_large"
	ReasonBodyTooLarge     = "body_too_large"
	ReasonRequestTimeout   = "request_timeout"
	ReasonShuttingDown     = "shutting_down"
	ReasonCircuitOpen      = "circuit_open"      // every usable host's breaker is open
	ReasonDeadline         = "deadline_exceeded" // the caller's X-Meshgate-Budget-Ms ran out
	ReasonHTTPVersion      = "http_version_not_supported"
	ReasonBadMethod        = "invalid_method"     // not all upper-case and no route names it
	ReasonBadPath          = "invalid_path"       // a rewrite would produce a . or .. segment
	ReasonWebSocketOff     = "websocket_disabled" // a WebSocket handshake on a route with websocket: false
)

// upstreamStatus maps an upstream.Do error to a status and reason code.
func upstreamStatus(err error) (int, string) {
	switch {
	case errors.Is(err, upstream.ErrNoHosts):
		return fasthttp.StatusServiceUnavailable, ReasonNoHosts
	case errors.Is(err, upstream.ErrOverflow):
		return fasthttp.StatusServiceUnavailable, ReasonOverflow
	case errors.Is(err, upstream.ErrCircuitOpen):
		return fasthttp.StatusServiceUnavailable, ReasonCircuitOpen
	case errors.Is(err, upstream.ErrTimeout):
		return fasthttp.StatusGatewayTimeout, ReasonTimeout
	case errors.Is(err, upstream.ErrConnect):
		return fasthttp.StatusBadGateway, ReasonConnect
	case errors.Is(err, upstream.ErrReset):
		return fasthttp.StatusBadGateway, ReasonReset
	case errors.Is(err, upstream.ErrResponseTooLarge):
		return fasthttp.StatusBadGateway, ReasonTooLarge
	}
	return fasthttp.StatusBadGateway, ReasonProtocol
}

// RenderError writes the one error format meshgate sends: a small JSON object with the status,
// a reason code and the request id. It never includes internal error text. Headers already set
// on the response (a filter's Retry-After, say) are kept; the body is replaced.
func RenderError(ctx *fasthttp.RequestCtx, status int, reason string, requestID []byte) {
	ctx.Response.ResetBody()
	ctx.SetStatusCode(status)
	ctx.SetContentType("application/json")
	var buf [256]byte
	out := append(buf[:0], `{"status":`...)
	out = strconv.AppendInt(out, int64(status), 10)
	out = append(out, `,"error":"`...)
	out = append(out, reason...) // reason codes are constants: no escaping needed
	out = append(out, '"')
	if len(requestID) > 0 {
		out = append(out, `,"request_id":"`...)
		out = append(out, requestID...) // validated or generated: [A-Za-z0-9._:-] only
		out = append(out, '"')
	}
	out = append(out, "}\n"...)
	ctx.Response.AppendBody(out)
	if len(requestID) > 0 {
		ctx.Response.Header.SetBytesV(hdrXRequestID, requestID)
	}
}

// ParseErrorHandler is the fasthttp Server.ErrorHandler: requests fasthttp could not parse get
// the right 4xx in our error format (fasthttp closes the connection afterwards). Its default
// would answer 400 for an oversized body, where 413 is what clients can act on.
func ParseErrorHandler(ctx *fasthttp.RequestCtx, err error) {
	var small *fasthttp.ErrSmallBuffer
	var netErr net.Error
	switch {
	case errors.As(err, &small):
		RenderError(ctx, fasthttp.StatusRequestHeaderFieldsTooLarge, ReasonHeaderTooLarge, nil)
	case errors.Is(err, fasthttp.ErrBodyTooLarge):
		RenderError(ctx, fasthttp.StatusRequestEntityTooLarge, ReasonBodyTooLarge, nil)
	case errors.Is(err, os.ErrDeadlineExceeded), errors.As(err, &netErr) && netErr.Timeout():
		RenderError(ctx, fasthttp.StatusRequestTimeout, ReasonRequestTimeout, nil)
	default:
		RenderError(ctx, fasthttp.StatusBadRequest, ReasonBadRequest, nil)
	}
}
