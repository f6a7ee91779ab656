package proxy

import (
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/valyala/fasthttp"

	"github.com/meshgate/meshgate/internal/httphdr"
	"github.com/meshgate/meshgate/mesh/upstream"
)

// The access log's protocol field.
const (
	protoHTTP10 = "HTTP/1.0"
	protoHTTP11 = "HTTP/1.1"
	protoHTTP2  = "HTTP/2.0"
)

// ServeHTTP is the engine for HTTP/2 requests (the listener's x/net/http2 server calls it per
// stream). fasthttp has no HTTP/2, so the request is carried into a fasthttp.RequestCtx of
// this handler's own and taken through exactly the same path as an HTTP/1.1 request: the
// request hygiene, the owned headers, routing, every filter and the intentions check, the
// cluster with its balancing and resilience, metrics and the access log. Only the edges
// differ: the body arrives as the stream's reader and is never buffered ahead of the
// upstream (a bidirectional gRPC stream would deadlock), and the response goes out through
// the ResponseWriter with a flush after every read (server streaming) and with the upstream's
// trailers. A gRPC request's errors are gRPC statuses (see grpc.go).
func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	growStack()
	ctx := h.acquireCtx(r)
	var rec *upstream.BodyRecorder
	defer func() {
		h.releaseCtx(ctx) // ends the upstream stream, so no try reads the body any more
		rec.Release()
	}()
	s := h.scratch.Get().(*scratch)
	defer h.scratch.Put(s)
	s.h2, s.reqCtx = true, r.Context()
	s.grpc = isGRPC(r.Header.Get("Content-Type"))
	defer func() { rec, s.h2, s.grpc, s.reqCtx, s.rec, s.call.Recorder = s.rec, false, false, nil, nil, nil }()

	h.serve(ctx, s)
	h.writeResponse(w, r, ctx, s.grpc)
}

// acquireCtx builds the fasthttp view of an HTTP/2 request. The protocol is set to HTTP/1.1:
// inside the engine it only decides the Host rules, and :authority is mandatory-equivalent
// on HTTP/2 (the server rejects a request with neither it nor Host).
func (h *Handler) acquireCtx(r *http.Request) *fasthttp.RequestCtx {
	ctx := h.ctxs.Get().(*fasthttp.RequestCtx)
	var c net.Conn
	if h.opts.ConnOf != nil {
		c = h.opts.ConnOf(r.Context())
	}
	if c == nil {
		c = addrConn{remote: r.RemoteAddr}
	}
	ctx.Init2(c, nil, false)
	req := &ctx.Request
	req.Header.SetMethod(r.Method)
	req.Header.SetProtocol("HTTP/1.1")
	req.SetRequestURI(r.RequestURI)
	req.Header.SetHost(r.Host)
	req.URI().SetHost(r.Host)
	for k, vs := range r.Header {
		for _, v := range vs {
			req.Header.Add(k, v)
		}
	}
	switch {
	case r.Body == nil || r.Body == http.NoBody || r.ContentLength == 0:
		req.Header.SetContentLength(0)
	default:
		cl := int(r.ContentLength)
		if cl < 0 {
			cl = -1
		}
		req.SetBodyStream(r.Body, cl)
	}
	return ctx
}

func (h *Handler) releaseCtx(ctx *fasthttp.RequestCtx) {
	// Closing the response body stream returns the upstream response (and, on HTTP/2, ends
	// the upstream stream); Reset would close it too, but only once, which is what matters.
	ctx.Response.Reset()
	ctx.Request.Reset()
	h.ctxs.Put(ctx)
}

// addrConn stands in for the connection when the listener does not hand it over (tests):
// the engine reads only the peer's address from it.
type addrConn struct {
	net.Conn
	remote string
}

func (a addrConn) RemoteAddr() net.Addr {
	ap, err := net.ResolveTCPAddr("tcp", a.remote)
	if err != nil {
		return &net.TCPAddr{}
	}
	return ap
}

func (a addrConn) LocalAddr() net.Addr { return &net.TCPAddr{} }

// h2Forbidden are the fields HTTP/2 does not carry (RFC 9113 §8.2.2): a response must not
// have them, and Content-Length is the writer's to set.
// h2ResponseField is httphdr's filter for the response: what HTTP/2 allows.
func h2ResponseField(k, _ []byte) bool { return !h2Forbidden(k) }

func h2Forbidden(k []byte) bool {
	switch string(k) {
	case fasthttp.HeaderConnection, "Keep-Alive", "Proxy-Connection", fasthttp.HeaderTransferEncoding,
		"Upgrade", fasthttp.HeaderContentLength, "Trailer":
		return true
	}
	return false
}

// handlerStack is about what a proxied HTTP/2 request needs of its goroutine's stack: the
// engine, the cluster, and x/net/http2's client under it.
const handlerStack = 16 << 10

// growStack makes the goroutine's stack big enough for the whole request in one step, while
// it is still shallow. x/net/http2 starts a goroutine per stream, with a small stack that
// would otherwise double several times on the way down, each time copying and adjusting every
// frame already on it (runtime.copystack was 8–15% of an h2 load's profile).
//
//go:noinline
func growStack() {
	var pad [handlerStack]byte
	touch(pad[:])
}

// touch keeps growStack's array from being optimised away; it does not escape.
//
//go:noinline
func touch(b []byte) { b[len(b)-1] = 0 }

// writeResponse copies what the engine produced in ctx.Response to the HTTP/2 stream: the
// status and headers, the body (flushed as it arrives when streamed) and, after it, the
// upstream's trailers.
func (h *Handler) writeResponse(w http.ResponseWriter, r *http.Request, ctx *fasthttp.RequestCtx, grpc bool) {
	resp := &ctx.Response
	hdr := w.Header()
	httphdr.Response(hdr, &resp.Header, h2ResponseField)
	stream := resp.BodyStream()
	cl := resp.Header.ContentLength()
	if stream == nil && !resp.SkipBody && !grpc {
		hdr.Set(fasthttp.HeaderContentLength, strconv.Itoa(len(resp.Body())))
	} else if cl >= 0 && !grpc {
		hdr.Set(fasthttp.HeaderContentLength, strconv.Itoa(cl))
	}
	w.WriteHeader(resp.StatusCode())
	if r.Method == http.MethodHead || resp.SkipBody {
		return
	}
	if stream == nil {
		_, _ = w.Write(resp.Body())
		return
	}
	rc := http.NewResponseController(w)
	bp, _ := h.copyBufs.Get().(*[16 << 10]byte)
	if bp == nil {
		bp = new([16 << 10]byte)
	}
	defer h.copyBufs.Put(bp)
	buf := bp
	sent := 0
	for {
		n, err := stream.Read(buf[:])
		if n > 0 {
			if _, werr := w.Write(buf[:n]); werr != nil {
				return // the client went away; releaseCtx ends the upstream stream
			}
			sent += n
			// Flush what arrived, so a streamed answer reaches the client as it comes; but once
			// a known length is complete, the end of the handler sends the last bytes with
			// END_STREAM in the same write, one syscall fewer for every small response.
			if (cl < 0 || sent < cl) && rc.Flush() != nil {
				return
			}
		}
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			if grpc {
				// The upstream broke off (or our deadline cut it) after the headers went out: the
				// status can only be a trailer now.
				code := grpcUnavailable
				if errors.Is(err, upstream.ErrTimeout) || errors.Is(err, context.DeadlineExceeded) {
					code = grpcDeadlineExceeded
				}
				hdr.Set(http.TrailerPrefix+"Grpc-Status", strconv.Itoa(code))
				hdr.Set(http.TrailerPrefix+"Grpc-Message", "upstream stream ended: "+grpcCodeName(code))
				return
			}
			// Not gRPC: reset the stream, the only honest signal once the status has gone.
			panic(http.ErrAbortHandler)
		}
	}
	if rs, ok := stream.(*respStream); ok {
		if ts, ok := rs.resp.BodyStream().(upstream.TrailerSource); ok {
			for k, vs := range ts.Trailer() {
				for _, v := range vs {
					hdr.Add(http.TrailerPrefix+k, v)
				}
			}
		}
	}
}

// isGRPC reports whether a content type is gRPC's (application/grpc, +proto, +json, ...).
func isGRPC(ct string) bool {
	return strings.HasPrefix(ct, "application/grpc") &&
		(len(ct) == len("application/grpc") || ct[len("application/grpc")] == '+' || ct[len("application/grpc")] == ';')
}

// grpcTimeoutHeader is the gRPC deadline header: an integer of at most 8 digits and a unit.
const grpcTimeoutHeader = "Grpc-Timeout"

// parseGRPCTimeout reads a grpc-timeout value ("100m", "5S"); ok is false for a malformed one,
// which gRPC says to treat as absent.
func parseGRPCTimeout(v []byte) (time.Duration, bool) {
	if len(v) < 2 || len(v) > 9 {
		return 0, false
	}
	n, err := strconv.ParseInt(string(v[:len(v)-1]), 10, 64)
	if err != nil || n < 0 {
		return 0, false
	}
	var unit time.Duration
	switch v[len(v)-1] {
	case 'H':
		unit = time.Hour
	case 'M':
		unit = time.Minute
	case 'S':
		unit = time.Second
	case 'm':
		unit = time.Millisecond
	case 'u':
		unit = time.Microsecond
	case 'n':
		unit = time.Nanosecond
	default:
		return 0, false
	}
	return time.Duration(n) * unit, true
}
