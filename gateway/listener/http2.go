package listener

import (
	"bytes"
	"context"
	"crypto/tls"
	"log"
	"net"
	"net/http"
	"sync"
	"time"

	"github.com/rs/zerolog"
	"golang.org/x/net/http2"
)

// HTTP/2 defaults for a listener. The windows are those of an edge (Envoy's 256 KiB per
// stream, 1 MiB per connection): a client cannot make the gateway buffer more than that per
// connection for a slow upstream, and an upload is not throttled by round trips.
const (
	DefaultMaxConcurrentStreams = 100
	h2StreamWindow              = 256 << 10
	h2ConnWindow                = 1 << 20
	h2PingInterval              = 30 * time.Second // ping a silent connection after this
	h2PingTimeout               = 15 * time.Second // and close it if the ping is not answered
	h2WriteTimeout              = 30 * time.Second // default bound on a write making no progress
	sniffTimeout                = 10 * time.Second // default bound on the TLS handshake / preface
)

// alpn is what a TLS listener offers: HTTP/2 first, as every browser and curl prefer it.
var alpn = []string{http2.NextProtoTLS, "http/1.1"}

// h2Preface is what an HTTP/2 client with prior knowledge sends first (RFC 9113 §3.4).
var h2Preface = []byte(http2.ClientPreface)

// protoMux sits between the accept loop and fasthttp when a listener also speaks HTTP/2.
// Each accepted connection is classified in its own goroutine, bounded by the head timeout,
// so a client that sends nothing never stalls Accept: a TLS connection by its ALPN result,
// a plaintext one by whether its first bytes are the HTTP/2 preface (h2c with prior
// knowledge). HTTP/1.1 connections go on to fasthttp through Accept; HTTP/2 ones are served
// here by x/net/http2, whose handler is the same engine (proxy.Handler.ServeHTTP).
type protoMux struct {
	inner   net.Listener
	tls     *tls.Config // nil: plaintext
	timeout time.Duration
	log     zerolog.Logger
	opts    *Options

	h1   chan net.Conn
	done chan struct{}

	h2   *http2.Server
	base *http.Server // carries MaxHeaderBytes and the shutdown hook to the h2 server

	maxConns int

	mu      sync.Mutex
	h2conns map[net.Conn]struct{}
	wg      sync.WaitGroup
	closed  bool
	errOnce sync.Once
	err     error
}

func newProtoMux(inner net.Listener, opts *Options) *protoMux {
	timeout := opts.ReadHeaderTimeout
	if timeout <= 0 {
		timeout = sniffTimeout
	}
	writeTimeout := opts.WriteTimeout
	if writeTimeout <= 0 {
		writeTimeout = h2WriteTimeout
	}
	streams := opts.MaxConcurrentStreams
	if streams == 0 {
		streams = DefaultMaxConcurrentStreams
	}
	m := &protoMux{
		inner: inner, timeout: timeout, log: opts.Logger, opts: opts, maxConns: opts.MaxConnections,
		h1: make(chan net.Conn), done: make(chan struct{}), h2conns: make(map[net.Conn]struct{}),
	}
	if opts.TLSConfig != nil {
		cfg := opts.TLSConfig.Clone()
		cfg.NextProtos = alpn
		if get := cfg.GetConfigForClient; get != nil {
			// A per-handshake config (Connect: the current roots) replaces this one for the
			// whole handshake, ALPN included: offer h2 there too.
			cfg.GetConfigForClient = func(hello *tls.ClientHelloInfo) (*tls.Config, error) {
				c, err := get(hello)
				if err != nil || c == nil {
					return c, err
				}
				c = c.Clone()
				c.NextProtos = alpn
				return c, nil
			}
		}
		m.tls = cfg
	}
	m.h2 = &http2.Server{
		MaxConcurrentStreams:         streams,
		MaxUploadBufferPerStream:     h2StreamWindow,
		MaxUploadBufferPerConnection: h2ConnWindow,
		IdleTimeout:                  opts.IdleTimeout,
		ReadIdleTimeout:              h2PingInterval,
		PingTimeout:                  h2PingTimeout,
		// A client that stops reading (window closed, socket full) cannot hold a handler
		// and its upstream forever: the connection dies once a write makes no progress.
		WriteByteTimeout: writeTimeout,
		CountError: func(errType string) {
			m.log.Debug().Str("error", errType).Msg("http2 protocol error")
		},
	}
	m.base = &http.Server{
		Handler: opts.HTTP2Handler,
		// The header list limit (SETTINGS_MAX_HEADER_LIST_SIZE, and the bound on HEADERS +
		// CONTINUATION bytes) is the listener's max_header_bytes, as for HTTP/1.1.
		MaxHeaderBytes:    opts.MaxHeaderBytes,
		ReadHeaderTimeout: opts.ReadHeaderTimeout,
		ErrorLog:          log.New(zerologWriter{opts.Logger}, "", 0),
	}
	if err := http2.ConfigureServer(m.base, m.h2); err != nil {
		// Only fails for a TLS config with bad cipher suites, which the listener never has.
		m.log.Error().Err(err).Msg("http2 server configuration")
	}
	return m
}

// zerologWriter sends net/http's error log (malformed frames, handler panics) to debug.
type zerologWriter struct{ l zerolog.Logger }

func (w zerologWriter) Write(p []byte) (int, error) {
	w.l.Debug().Msg(string(bytes.TrimSpace(p)))
	return len(p), nil
}

// run accepts from the inner listener until it is closed.
func (m *protoMux) run() {
	defer close(m.done)
	for {
		c, err := m.inner.Accept()
		if err != nil {
			m.errOnce.Do(func() { m.err = err })
			return
		}
		// fasthttp's Concurrency counts only the HTTP/1.1 connections it serves: with HTTP/2
		// beside them, max_connections is checked here over every open connection (the
		// listener's connTable counts them from accept to close, this one included).
		if lc, ok := c.(*conn); ok && m.maxConns > 0 && lc.table != nil && lc.table.open.Load() > int64(m.maxConns) {
			_ = c.Close()
			continue
		}
		go m.classify(c)
	}
}

// classify decides the connection's protocol and hands it on.
func (m *protoMux) classify(c net.Conn) {
	if err := c.SetReadDeadline(time.Now().Add(m.timeout)); err != nil {
		_ = c.Close()
		return
	}
	if m.tls != nil {
		tc := tls.Server(c, m.tls)
		ctx, cancel := context.WithTimeout(context.Background(), m.timeout)
		err := tc.HandshakeContext(ctx)
		cancel()
		if err != nil || tc.SetReadDeadline(time.Time{}) != nil {
			_ = tc.Close()
			return
		}
		if tc.ConnectionState().NegotiatedProtocol == http2.NextProtoTLS {
			m.serveH2(tc)
			return
		}
		m.deliver(tc)
		return
	}
	lc, _ := c.(*conn)
	buf := make([]byte, len(h2Preface))
	n := 0
	isH2 := false
	for {
		k, err := c.Read(buf[n:])
		n += k
		if !bytes.Equal(buf[:n], h2Preface[:n]) {
			break // not the preface: HTTP/1.x (or garbage, for fasthttp to answer 400)
		}
		if n == len(buf) {
			isH2 = true
			break
		}
		if err != nil {
			_ = c.Close() // gone or silent before it said which protocol: nothing to answer
			return
		}
	}
	if err := c.SetReadDeadline(time.Time{}); err != nil {
		_ = c.Close()
		return
	}
	if lc != nil {
		lc.pre = buf[:n] // read again by whoever serves the connection
	} else {
		c = &prefixConn{Conn: c, pre: buf[:n]}
	}
	if isH2 {
		m.serveH2(c)
		return
	}
	m.deliver(c)
}

// deliver hands an HTTP/1.x connection to fasthttp, or closes it if the listener is closing.
func (m *protoMux) deliver(c net.Conn) {
	select {
	case m.h1 <- c:
	case <-m.done:
		_ = c.Close()
	}
}

// serveH2 serves one HTTP/2 connection until it ends.
func (m *protoMux) serveH2(c net.Conn) {
	m.mu.Lock()
	if m.closed {
		m.mu.Unlock()
		_ = c.Close()
		return
	}
	m.h2conns[c] = struct{}{}
	m.wg.Add(1)
	m.mu.Unlock()
	if m.opts.Connections != nil {
		m.opts.Connections.Inc()
	}
	if m.opts.Accepted != nil {
		m.opts.Accepted.Inc()
	}
	defer func() {
		if m.opts.Connections != nil {
			m.opts.Connections.Dec()
		}
		_ = c.Close()
		m.mu.Lock()
		delete(m.h2conns, c)
		m.mu.Unlock()
		m.wg.Done()
	}()
	m.h2.ServeConn(c, &http2.ServeConnOpts{BaseConfig: m.base, Handler: m.base.Handler,
		Context: context.WithValue(context.Background(), connKey{}, c)})
}

// connKey is the context key under which an HTTP/2 request carries its connection, so the
// handler can see the peer's address and certificate as it does on HTTP/1.1.
type connKey struct{}

// ConnFromContext returns the connection an HTTP/2 request arrived on (nil if none).
func ConnFromContext(ctx context.Context) net.Conn {
	c, _ := ctx.Value(connKey{}).(net.Conn)
	return c
}

// Accept implements net.Listener for fasthttp: the next HTTP/1.x connection.
func (m *protoMux) Accept() (net.Conn, error) {
	select {
	case c := <-m.h1:
		return c, nil
	case <-m.done:
		return nil, m.err
	}
}

// Close closes the inner listener; run then ends and Accept returns its error.
func (m *protoMux) Close() error { return m.inner.Close() }

// Addr implements net.Listener.
func (m *protoMux) Addr() net.Addr { return m.inner.Addr() }

// shutdown sends GOAWAY on every HTTP/2 connection, lets their streams finish until ctx ends,
// then closes what is left.
func (m *protoMux) shutdown(ctx context.Context) error {
	m.mu.Lock()
	m.closed = true
	m.mu.Unlock()
	_ = m.base.Shutdown(ctx) // runs the h2 server's graceful-shutdown hook: GOAWAY everywhere
	finished := make(chan struct{})
	go func() { m.wg.Wait(); close(finished) }()
	select {
	case <-finished:
		return nil
	case <-ctx.Done():
	}
	m.mu.Lock()
	for c := range m.h2conns {
		_ = c.Close()
	}
	m.mu.Unlock()
	<-finished
	return ctx.Err()
}

// prefixConn replays bytes already read from a connection this package did not wrap.
type prefixConn struct {
	net.Conn
	pre []byte
}

func (p *prefixConn) Read(b []byte) (int, error) {
	if len(p.pre) > 0 {
		n := copy(b, p.pre)
		p.pre = p.pre[n:]
		return n, nil
	}
	return p.Conn.Read(b)
}
