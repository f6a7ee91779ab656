package upstream

import (
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/valyala/fasthttp"
	"golang.org/x/net/http2"

	"github.com/meshgate/meshgate/internal/httphdr"
)

// Protocol is what a cluster's hosts speak.
type Protocol uint8

// The protocols a cluster can speak. gRPC is HTTP/2 on the wire; it is its own value because
// it changes how a try's outcome is read (grpc-status) and how the gateway renders errors.
const (
	HTTP1 Protocol = iota
	HTTP2
	GRPC
)

// ParseProtocol reads a config value: http1, http2 or grpc ("" is http1).
func ParseProtocol(s string) (Protocol, error) {
	switch s {
	case "", "http1":
		return HTTP1, nil
	case "http2":
		return HTTP2, nil
	case "grpc":
		return GRPC, nil
	}
	return HTTP1, fmt.Errorf("unknown protocol %q (want http1, http2 or grpc)", s)
}

func (p Protocol) String() string {
	switch p {
	case HTTP2:
		return "http2"
	case GRPC:
		return "grpc"
	}
	return "http1"
}

// ContextTransport is a Transport that can tie a try to the client's request: when ctx ends
// (the client reset its stream or went away) the upstream exchange is abandoned and, on
// HTTP/2, its stream reset, so a cancelled gRPC call stops work upstream too.
type ContextTransport interface {
	Transport
	DoContext(ctx context.Context, req *fasthttp.Request, resp *fasthttp.Response, deadline time.Time) error
}

// TrailerSource is implemented by the response body stream of a transport that carries
// trailers (HTTP/2): once the body has been read to its end, Trailer holds them.
type TrailerSource interface {
	Trailer() http.Header
}

var _ ContextTransport = (*http2Transport)(nil)

// h2 stream and connection bounds for upstream connections. The flow-control windows are
// those of a proxy that streams (Envoy's defaults are 256 KiB per stream, 1 MiB per
// connection): big enough that a bulk response is not throttled by round trips on loopback
// or a LAN, small enough that a thousand idle streams pin little memory.
const (
	h2ReadIdleTimeout = 30 * time.Second // ping a connection that has been silent this long
	h2PingTimeout     = 10 * time.Second // and close it when the ping is not answered
	h2WriteTimeout    = 30 * time.Second // a write that makes no progress this long kills the conn
)

// http2Transport is HTTP/2 to one host: h2c (prior knowledge) in plaintext, h2 negotiated by
// ALPN over TLS (Connect mTLS included). One http2.Transport per host keeps its own pool:
// requests are multiplexed over a connection until the host's SETTINGS_MAX_CONCURRENT_STREAMS
// is reached, then another connection is opened.
type http2Transport struct {
	addr   string
	scheme string // http or https: only for the URL the http2 package wants; the dial decides
	t      *http2.Transport
	conns  atomic.Int64
}

func newHTTP2Transport(addr string, opts *Options) *http2Transport {
	connectTimeout := opts.ConnectTimeout
	if connectTimeout <= 0 {
		connectTimeout = 2 * time.Second
	}
	tlsCfg := hostTLSConfig(opts.TLS, addr)
	if tlsCfg != nil {
		tlsCfg.NextProtos = []string{http2.NextProtoTLS}
	}
	t := &http2Transport{addr: addr, scheme: "http"}
	if tlsCfg != nil {
		t.scheme = "https"
	}
	dialer := &net.Dialer{Timeout: connectTimeout}
	t.t = &http2.Transport{
		// AllowHTTP lets the http scheme through; the dial below speaks TLS or not by the
		// cluster's config, and always to this host, whatever the request's authority says.
		AllowHTTP: true,
		// No dynamic table for request headers: every request carries a fresh x-request-id
		// (and trace context), so with the default 4 KiB table each one was added and an old
		// entry evicted, on a goroutine x/net starts per request whose stack grew for it
		// (hpack's add/evict and the stack copies were ~10% of an h2 load's profile). The
		// static table and Huffman coding still apply; upstream links are loopback or a LAN.
		MaxEncoderHeaderTableSize: 1,
		DialTLSContext: func(ctx context.Context, _, _ string, _ *tls.Config) (net.Conn, error) {
			raw, err := dialer.DialContext(ctx, "tcp", addr)
			if err != nil {
				return nil, err
			}
			c := net.Conn(raw)
			if tlsCfg != nil {
				tc := tls.Client(raw, tlsCfg)
				hctx, cancel := context.WithTimeout(ctx, connectTimeout)
				err := tc.HandshakeContext(hctx)
				cancel()
				if err != nil {
					_ = raw.Close()
					return nil, &handshakeError{err}
				}
				if p := tc.ConnectionState().NegotiatedProtocol; p != http2.NextProtoTLS {
					_ = raw.Close()
					return nil, &handshakeError{fmt.Errorf("host %s did not negotiate h2 (ALPN %q)", addr, p)}
				}
				c = tc
			}
			t.conns.Add(1)
			return &countedConn{Conn: c, n: &t.conns}, nil
		},
		DisableCompression: true, // a proxy passes content-encoding through untouched
		ReadIdleTimeout:    h2ReadIdleTimeout,
		PingTimeout:        h2PingTimeout,
		WriteByteTimeout:   h2WriteTimeout,
		IdleConnTimeout:    opts.IdleTimeout,
		// Headers come from a client the listener already bounded; this caps what a host
		// may send back.
		MaxHeaderListSize: 1 << 20,
	}
	return t
}

// countedConn keeps the transport's open-connection count for the admin page.
type countedConn struct {
	net.Conn
	n    *atomic.Int64
	once sync.Once
}

func (c *countedConn) Close() error {
	c.once.Do(func() { c.n.Add(-1) })
	return c.Conn.Close()
}

// Do implements Transport.
func (t *http2Transport) Do(req *fasthttp.Request, resp *fasthttp.Response, deadline, _ time.Time) error {
	return t.DoContext(context.Background(), req, resp, deadline)
}

// DoContext implements ContextTransport: it converts the gateway's request into an HTTP/2
// one, sends it, and fills resp with the status, the headers and the body as a stream that
// also yields the trailers. The request body is sent while the response is read (full
// duplex), which is what bidirectional gRPC streams need.
func (t *http2Transport) DoContext(ctx context.Context, req *fasthttp.Request, resp *fasthttp.Response, deadline time.Time) error {
	cancel := context.CancelFunc(func() {})
	if !deadline.IsZero() {
		ctx, cancel = context.WithDeadline(ctx, deadline)
	}
	hr, err := t.build(ctx, req, deadline)
	if err != nil {
		cancel()
		return fmt.Errorf("%w: %w", ErrProtocol, err)
	}
	res, err := t.t.RoundTrip(hr)
	if err != nil {
		cancel()
		if hr.Header.Get("Grpc-Timeout") != "" && time.Until(deadline) <= grpcDeadlineSlack {
			// The upstream was told what was left in whole milliseconds, rounded down, so it
			// gives up (and grpc-go resets the stream) a moment before our own deadline: a
			// failure that close to the deadline is the deadline, not a broken upstream, and
			// must neither read as upstream_reset to the caller nor count against the host.
			return fmt.Errorf("%w: %w", ErrTimeout, err)
		}
		return h2Error(ctx, err)
	}
	resp.Reset()
	resp.SetStatusCode(res.StatusCode)
	for k, vs := range res.Header {
		for _, v := range vs {
			resp.Header.Add(k, v)
		}
	}
	if res.ContentLength >= 0 {
		resp.Header.SetContentLength(int(res.ContentLength))
	} else {
		// No length on h2: the body ends with the stream. SetContentLength(-1) would make a
		// HTTP/1.1 client side use chunked encoding, which is what it needs.
		resp.Header.SetContentLength(-1)
	}
	if req.Header.IsHead() || res.StatusCode == http.StatusNoContent || res.StatusCode == http.StatusNotModified {
		_ = res.Body.Close()
		cancel()
		return nil
	}
	resp.SetBodyStream(&h2Body{res: res, cancel: cancel, ctx: ctx}, int(res.ContentLength))
	return nil
}

// build converts the request. The request-target and the authority are taken as the gateway
// built them; the URL only tells the http2 package the scheme.
func (t *http2Transport) build(ctx context.Context, req *fasthttp.Request, deadline time.Time) (*http.Request, error) {
	u := &url.URL{Scheme: t.scheme, Host: t.addr, Opaque: string(req.RequestURI())}
	if i := bytes.IndexByte(req.RequestURI(), '?'); i >= 0 {
		u.Opaque, u.RawQuery = string(req.RequestURI()[:i]), string(req.RequestURI()[i+1:])
	}
	var body io.Reader = http.NoBody
	cl := int64(req.Header.ContentLength())
	switch {
	case req.IsBodyStream():
		body = req.BodyStream()
		if cl < 0 {
			cl = -1
		}
	case len(req.Body()) > 0:
		body = bytes.NewReader(req.Body())
		cl = int64(len(req.Body()))
	default:
		cl = 0
	}
	// The URL is set afterwards rather than given as a string for NewRequest to parse again.
	hr, err := http.NewRequestWithContext(ctx, httphdr.Method(req.Header.Method()), "", io.NopCloser(body))
	if err != nil {
		return nil, err
	}
	if body == http.NoBody {
		hr.Body = http.NoBody
	}
	hr.URL = u // Opaque keeps the path byte for byte
	hr.ContentLength = cl
	hr.Host = string(req.Header.Host())
	httphdr.Request(hr.Header, &req.Header, h2RequestField)
	if bytes.HasPrefix(req.Header.ContentType(), []byte("application/grpc")) {
		// gRPC servers expect "te: trailers" (the gateway strips TE as hop-by-hop), and the
		// call's deadline travels as grpc-timeout: what is left of this try's, so every hop
		// below gives up when the caller does.
		hr.Header.Set("Te", "trailers")
		if !deadline.IsZero() {
			ms := max(time.Until(deadline).Milliseconds(), 1)
			hr.Header.Set("Grpc-Timeout", strconv.FormatInt(ms, 10)+"m")
		}
	}
	return hr, nil
}

// grpcDeadlineSlack is how far before the deadline an upstream that was sent grpc-timeout may
// end the stream because of it: the millisecond the value was rounded down by, and a little.
const grpcDeadlineSlack = 3 * time.Millisecond

// h2RequestField says which fields of the gateway's request go on to an HTTP/2 upstream.
func h2RequestField(k, v []byte) bool {
	switch string(k) {
	case fasthttp.HeaderHost, fasthttp.HeaderContentLength, fasthttp.HeaderConnection,
		fasthttp.HeaderTransferEncoding:
		// HTTP/2 carries these in pseudo-headers and frames, and forbids the
		// connection-specific ones.
		return false
	case "Te":
		return bytes.EqualFold(v, []byte("trailers")) // the only TE allowed on h2 (RFC 9113 §8.2.2)
	}
	return true
}

// h2Error maps a failed round trip onto the package's sentinels. The http2 package reports
// a refused or reset stream as a StreamError and a connection that went away as GoAwayError;
// a dial failure comes through as the dialer's error, which classify already knows.
func h2Error(ctx context.Context, err error) error {
	var se http2.StreamError
	var ga http2.GoAwayError
	switch {
	case errors.Is(err, context.DeadlineExceeded) || ctx.Err() == context.DeadlineExceeded:
		return fmt.Errorf("%w: %w", ErrTimeout, err)
	case errors.Is(err, context.Canceled):
		return fmt.Errorf("%w: %w", ErrReset, err)
	case errors.As(err, &se) && se.Code == http2.ErrCodeRefusedStream:
		// The host refused the stream before processing it (RFC 9113 §8.7): nothing was done,
		// so it is as safe to retry as a connect failure.
		return fmt.Errorf("%w: %w", ErrConnect, err)
	case errors.As(err, &se), errors.As(err, &ga):
		return fmt.Errorf("%w: %w", ErrReset, err)
	}
	return err
}

// h2Body is the response body as the gateway reads it: the http2 body, then its trailers.
// Close ends the upstream stream (RST_STREAM CANCEL if it was not finished).
type h2Body struct {
	res    *http.Response
	ctx    context.Context
	cancel context.CancelFunc
	done   bool
}

func (b *h2Body) Read(p []byte) (int, error) {
	n, err := b.res.Body.Read(p)
	if err != nil && !errors.Is(err, io.EOF) {
		if b.ctx.Err() == context.DeadlineExceeded {
			err = fmt.Errorf("%w: %w", ErrTimeout, err)
		}
	}
	if errors.Is(err, io.EOF) {
		b.done = true
	}
	return n, err
}

// Trailer implements TrailerSource: valid once Read returned io.EOF.
func (b *h2Body) Trailer() http.Header {
	if !b.done {
		return nil
	}
	return b.res.Trailer
}

func (b *h2Body) Close() error {
	err := b.res.Body.Close()
	b.cancel()
	return err
}

// ConnsCount implements Transport.
func (t *http2Transport) ConnsCount() int { return int(t.conns.Load()) }

// CloseIdleConnections implements Transport.
func (t *http2Transport) CloseIdleConnections() { t.t.CloseIdleConnections() }

// GRPCStatus reads a grpc-status value ("14") from a response head; ok is false when there is
// none (a normal response whose status comes in the trailers).
func GRPCStatus(h *fasthttp.ResponseHeader) (code int, ok bool) {
	v := h.Peek("grpc-status")
	if len(v) == 0 {
		return 0, false
	}
	n, err := strconv.Atoi(string(v))
	if err != nil {
		return 0, false
	}
	return n, true
}
