package proxy

import (
	"strconv"

	"github.com/valyala/fasthttp"
)

// gRPC status codes the gateway produces (google.golang.org/grpc/codes; the numbers are the
// wire format, so they are spelled out rather than importing grpc into the request path).
const (
	grpcUnknown           = 2
	grpcDeadlineExceeded  = 4
	grpcPermissionDenied  = 7
	grpcResourceExhausted = 8
	grpcUnimplemented     = 12
	grpcInternal          = 13
	grpcUnavailable       = 14
	grpcUnauthenticated   = 16
)

func grpcCodeName(code int) string {
	switch code {
	case grpcDeadlineExceeded:
		return "DEADLINE_EXCEEDED"
	case grpcPermissionDenied:
		return "PERMISSION_DENIED"
	case grpcResourceExhausted:
		return "RESOURCE_EXHAUSTED"
	case grpcUnimplemented:
		return "UNIMPLEMENTED"
	case grpcInternal:
		return "INTERNAL"
	case grpcUnavailable:
		return "UNAVAILABLE"
	case grpcUnauthenticated:
		return "UNAUTHENTICATED"
	}
	return "UNKNOWN"
}

// grpcCode maps a gateway answer onto a gRPC status. The reasons that name a deadline win
// over the HTTP status (a 504 and a budget that ran out are both DEADLINE_EXCEEDED); the rest
// follow gRPC's own HTTP-to-gRPC table, except that a refused caller is told why: 401 is
// UNAUTHENTICATED (jwt, api_key, hmac) and 403 PERMISSION_DENIED (intentions, ip).
func grpcCode(status int, reason string) int {
	switch reason {
	case ReasonTimeout, ReasonDeadline:
		return grpcDeadlineExceeded
	case ReasonBodyTooLarge, ReasonTooLarge:
		return grpcResourceExhausted
	}
	switch status {
	case fasthttp.StatusUnauthorized:
		return grpcUnauthenticated
	case fasthttp.StatusForbidden:
		return grpcPermissionDenied
	case fasthttp.StatusTooManyRequests:
		return grpcResourceExhausted
	case fasthttp.StatusNotFound:
		return grpcUnimplemented
	case fasthttp.StatusGatewayTimeout:
		return grpcDeadlineExceeded
	case fasthttp.StatusBadGateway, fasthttp.StatusServiceUnavailable:
		return grpcUnavailable
	case fasthttp.StatusBadRequest, fasthttp.StatusRequestHeaderFieldsTooLarge:
		return grpcInternal
	}
	return grpcUnknown
}

// RenderGRPCError is the gRPC form of RenderError: a Trailers-Only response (HTTP 200, the
// status in the one HEADERS frame that ends the stream) with grpc-status and grpc-message, so
// a gRPC client sees a status, never an HTML or JSON body. Headers a filter set (Retry-After)
// are kept. The request id is sent as a header, as on every other answer.
func RenderGRPCError(ctx *fasthttp.RequestCtx, status int, reason string, requestID []byte) {
	code := grpcCode(status, reason)
	ctx.Response.ResetBody()
	ctx.SetStatusCode(fasthttp.StatusOK)
	ctx.SetContentType("application/grpc")
	var buf [8]byte
	ctx.Response.Header.SetBytesV("Grpc-Status", strconv.AppendInt(buf[:0], int64(code), 10))
	// reason codes are [a-z_] constants: no percent-encoding needed (gRPC's grpc-message rule).
	ctx.Response.Header.Set("Grpc-Message", reason)
	ctx.Response.Header.SetContentLength(0)
	if len(requestID) > 0 {
		ctx.Response.Header.SetBytesV(hdrXRequestID, requestID)
	}
}
