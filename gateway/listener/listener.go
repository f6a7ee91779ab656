package listener

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"sync"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/rs/zerolog"
	"github.com/valyala/fasthttp"
)

// Options configures one listener.
type Options struct {
	Name              string
	Address           string
	ReadHeaderTimeout time.Duration // the request head must arrive within this (slowloris)
	ReadTimeout       time.Duration // head and body
	WriteTimeout      time.Duration
	IdleTimeout       time.Duration
	MaxHeaderBytes    int // larger heads get 431
	StreamThreshold   int // bodies larger than this are streamed to the handler
	MaxConnections    int
	// MaxConnectionsPerIP caps one client address's open connections (IPv6 per /64); beyond
	// it a new connection is closed at once. Addresses in PerIPExempt (the trusted proxies,
	// whose clients all share their address) are not counted. 0: no cap.
	MaxConnectionsPerIP int
	PerIPExempt         []netip.Prefix
	PerIPRefused        prometheus.Counter // connections closed by the cap; optional
	Handler             fasthttp.RequestHandler
	ErrorHandler        func(*fasthttp.RequestCtx, error) // renders parse errors (400/408/413/431)
	Logger              zerolog.Logger
	Connections         prometheus.Gauge // active downstream connections; optional
	Accepted            prometheus.Counter
	AcceptErrors        prometheus.Counter // accept failures we backed off from; optional
	// TLSConfig, when set, makes the listener serve TLS (it must carry a certificate or
	// GetCertificate/GetConfigForClient). The handshake runs lazily on the connection's first
	// read inside fasthttp's per-connection goroutine, so a failed handshake (plaintext client,
	// missing client certificate) closes that connection only and never stalls Accept.
	TLSConfig *tls.Config
	// HTTP2Handler, when set, makes the listener speak HTTP/2 beside HTTP/1.1 on the same
	// port: ALPN h2 on TLS, prior knowledge (h2c) in plaintext. Nil: HTTP/1.1 only, and the
	// connection path is exactly fasthttp's.
	HTTP2Handler http.Handler
	// MaxConcurrentStreams bounds an HTTP/2 connection's open streams (0: 100).
	MaxConcurrentStreams uint32
}

// Listener is a bound, not yet serving, downstream listener.
type Listener struct {
	opts  Options
	srv   *fasthttp.Server
	ln    *backoffListener
	serve net.Listener // ln, ln wrapped in TLS, or the HTTP/2 demultiplexer
	mux   *protoMux    // nil: HTTP/1.1 only
}

// New binds opts.Address so bind errors surface before anything starts serving.
func New(opts Options) (*Listener, error) {
	if opts.Handler == nil {
		return nil, errors.New("listener: handler is required")
	}
	ln, err := net.Listen("tcp", opts.Address)
	if err != nil {
		return nil, fmt.Errorf("listener %q: %w", opts.Name, err)
	}
	bl := &backoffListener{Listener: ln, done: make(chan struct{}), log: opts.Logger, errs: opts.AcceptErrors,
		limits: newIPLimits(opts.MaxConnectionsPerIP, opts.PerIPExempt, opts.PerIPRefused),
		table:  newConnTable(opts.MaxConnections, opts.Connections),
		slack:  deadlineSlack(opts.ReadHeaderTimeout, opts.ReadTimeout, opts.WriteTimeout, opts.IdleTimeout)}
	// TLS wraps the backoff listener rather than the socket, so EMFILE backoff still applies
	// and tls.listener.Close reaches the idempotent backoffListener.Close.
	var serve net.Listener = bl
	var mux *protoMux
	switch {
	case opts.HTTP2Handler != nil:
		// The demultiplexer does the TLS handshake itself: the protocol is known only after it.
		mux = newProtoMux(bl, &opts)
		serve = mux
	case opts.TLSConfig != nil:
		serve = tls.NewListener(bl, opts.TLSConfig)
	}
	readTimeout := opts.ReadTimeout
	errorHandler := opts.ErrorHandler
	if errorHandler != nil {
		// fasthttp closes the connection after a parse error, often with the body unread:
		// close gently so the client reads the 4xx first.
		errorHandler = func(ctx *fasthttp.RequestCtx, err error) {
			opts.ErrorHandler(ctx, err)
			Linger(ctx.Conn())
		}
	}
	srv := &fasthttp.Server{
		Name:    "",
		Handler: opts.Handler,
		// ErrorHandler answers what fasthttp itself rejects; it then closes the connection.
		ErrorHandler: errorHandler,
		// ReadTimeout covers the head only; HeaderReceived extends it for the body, so a slow
		// client cannot hold a connection by trickling header bytes.
		ReadTimeout: opts.ReadHeaderTimeout,
		HeaderReceived: func(*fasthttp.RequestHeader) fasthttp.RequestConfig {
			return fasthttp.RequestConfig{ReadTimeout: readTimeout}
		},
		WriteTimeout: opts.WriteTimeout,
		IdleTimeout:  opts.IdleTimeout,
		// The handler reads the request's time once (RequestCtx.Time) and uses it for its
		// access log, metrics and deadline: without this the server read the clock too.
		LazyRequestTime: true,
		ReadBufferSize:  opts.MaxHeaderBytes,
		// With streaming on, MaxRequestBodySize is the buffering threshold, not a limit: larger
		// bodies are handed over as a stream and the handler enforces max_body_bytes.
		MaxRequestBodySize:           opts.StreamThreshold,
		StreamRequestBody:            true,
		DisablePreParseMultipartForm: true, // a proxy forwards multipart bodies, never parses them
		Concurrency:                  opts.MaxConnections,
		NoDefaultServerHeader:        true,
		NoDefaultContentType:         true,
		SecureErrorLogMessage:        true, // parse-error logs would otherwise print raw Authorization headers
		CloseOnShutdown:              true,
		Logger:                       zlog{opts.Logger},
		ConnState: func(nc net.Conn, st fasthttp.ConnState) {
			// Each metric is optional on its own: a missing gauge must not silence the counter.
			switch st {
			case fasthttp.StateNew:
				if opts.Connections != nil {
					opts.Connections.Inc()
				}
				if opts.Accepted != nil {
					opts.Accepted.Inc()
				}
			case fasthttp.StateClosed:
				if opts.Connections != nil {
					opts.Connections.Dec()
				}
			case fasthttp.StateHijacked:
				// Still open (an upgraded session): the gauge is given back when it closes.
				if c := ownConn(nc); c != nil && c.table != nil {
					c.table.hijacked(c)
				} else if opts.Connections != nil {
					opts.Connections.Dec()
				}
			}
		},
	}
	return &Listener{opts: opts, srv: srv, ln: bl, serve: serve, mux: mux}, nil
}

// Addr is the bound address (useful with port 0).
func (l *Listener) Addr() net.Addr { return l.ln.Addr() }

// Name is the listener's configured name.
func (l *Listener) Name() string { return l.opts.Name }

// Serve serves until Shutdown; it returns nil after a shutdown.
func (l *Listener) Serve() error {
	if l.mux != nil {
		go l.mux.run()
	}
	err := l.srv.Serve(l.serve)
	if l.ln.closed() {
		return nil
	}
	return err
}

// Shutdown stops accepting, closes idle connections and waits for in-flight requests until ctx
// ends; upgraded sessions (which fasthttp does not wait for) run until then too and are closed
// when it ends.
func (l *Listener) Shutdown(ctx context.Context) error {
	_ = l.ln.Close()
	var h2done chan error
	if l.mux != nil {
		// Both protocols drain at once, within the same deadline.
		h2done = make(chan error, 1)
		go func() { h2done <- l.mux.shutdown(ctx) }()
	}
	err := l.srv.ShutdownWithContext(ctx)
	if uerr := l.ln.table.drain(ctx); err == nil {
		err = uerr
	}
	if h2done != nil {
		err = errors.Join(err, <-h2done)
	}
	return err
}

// backoffListener retries Accept on resource exhaustion instead of failing.
type backoffListener struct {
	net.Listener
	log    zerolog.Logger
	errs   prometheus.Counter
	limits *ipLimits // nil: no per-address cap
	table  *connTable
	slack  time.Duration // how late a connection's deadline may fire (deadlineSlack)

	once      sync.Once
	done      chan struct{}
	closeOnce sync.Once
	closeErr  error
}

// maxDeadlineSlack caps how late a connection timeout may fire.
const maxDeadlineSlack = time.Second

// deadlineSlack is how late the listener's timeouts may fire: a tenth of the shortest one set,
// at most maxDeadlineSlack (a 10 s head timeout fires within 11 s). The slack is what lets a
// keep-alive connection's deadlines, each a request later than the last, share one arming of
// the socket's timer (package deadline).
func deadlineSlack(timeouts ...time.Duration) time.Duration {
	slack := maxDeadlineSlack
	for _, d := range timeouts {
		if d > 0 {
			slack = min(slack, d/10)
		}
	}
	return slack
}

func (b *backoffListener) closed() bool {
	select {
	case <-b.done:
		return true
	default:
		return false
	}
}

func (b *backoffListener) close() {
	b.once.Do(func() { close(b.done) })
}

// Close is idempotent: Shutdown closes the socket first (so no connection is accepted after
// it starts draining) and fasthttp closes it again; the second close must not be an error or
// fasthttp would stop before waiting for in-flight requests.
func (b *backoffListener) Close() error {
	b.close()
	b.closeOnce.Do(func() { b.closeErr = b.Listener.Close() })
	return b.closeErr
}

// Accept waits 5ms, doubling to 1s, while the process is out of descriptors or buffers.
// Existing connections keep being served meanwhile, and closing them frees descriptors.
func (b *backoffListener) Accept() (net.Conn, error) {
	var delay time.Duration
	for {
		c, err := b.Listener.Accept()
		if err == nil {
			if b.table.full() { // max_connections with upgraded sessions counted (upgraded.go)
				_ = c.Close()
				continue
			}
			lc, ok := b.limits.admit(c, b.slack)
			if !ok {
				_ = c.Close() // over this address's cap: refused before any byte is read
				continue
			}
			if b.table != nil {
				lc.table = b.table
				b.table.open.Add(1)
			}
			return lc, nil
		}
		if b.closed() || !retryableAccept(err) {
			return nil, err
		}
		if b.errs != nil {
			b.errs.Inc()
		}
		delay = min(max(2*delay, 5*time.Millisecond), time.Second)
		b.log.Warn().Err(err).Dur("backoff", delay).Msg("accept failed; backing off")
		t := time.NewTimer(delay)
		select {
		case <-t.C:
		case <-b.done:
			t.Stop()
			return nil, net.ErrClosed
		}
	}
}

func retryableAccept(err error) bool {
	if errors.Is(err, syscall.EMFILE) || errors.Is(err, syscall.ENFILE) ||
		errors.Is(err, syscall.ENOBUFS) || errors.Is(err, syscall.ENOMEM) ||
		errors.Is(err, syscall.ECONNABORTED) {
		return true
	}
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

// zlog adapts zerolog to fasthttp.Logger.
type zlog struct{ l zerolog.Logger }

func (z zlog) Printf(format string, args ...any) { z.l.Debug().Msgf(format, args...) }
