package upstream

import (
	"crypto/tls"
	"io"
	"net"
	"time"

	"github.com/valyala/fasthttp"
)

// Transport is one host's HTTP exchanges: the only part of a cluster that knows a wire
// protocol. The balancer, outlier detection, breakers, retries, the retry budget and the
// deadline header see a try only as an error and a response, so a second protocol (HTTP/2,
// gRPC) is a second Transport and touches none of them.
type Transport interface {
	// Do sends req to the host and fills resp, giving up at deadline (zero: no deadline). It
	// must not keep req or resp after it returns, except for the response body, which it
	// delivers either whole in resp (a short one) or as a stream (resp.SetBodyStream) that the
	// caller consumes or closes: the gateway copies or streams a body from there, so a large
	// one is bounded without being held whole. Its error is either a sentinel of this package wrapped
	// with %w (ErrConnect, ErrReset, ErrTimeout, ErrOverflow, ErrResponseTooLarge,
	// ErrProtocol), when the transport knows what went wrong, or an error from the network
	// stack that Cluster.Do classifies (see classify). ErrConnect must mean nothing was sent:
	// it is what lets any method be retried on another host.
	//
	// start is when the try began: the cluster's reading of the clock, which it takes anyway
	// for the try's duration, so a transport need not read the clock again (a reading costs
	// about 45 ns here, and a request takes a dozen).
	Do(req *fasthttp.Request, resp *fasthttp.Response, deadline, start time.Time) error
	// ConnsCount is the number of open connections, for the admin /clusters page.
	ConnsCount() int
	// CloseIdleConnections is called when the cluster stops using the transport (the host is
	// gone, its transport settings changed, or the cluster was dropped). Connections of
	// requests still in flight close when those requests end.
	CloseIdleConnections()
}

// NewTransportFunc builds the transport to one host address with its cluster's options (TLS,
// timeouts, connection limit), which it must not modify. It is called again for every host
// whose transport settings change (see Options.transportKey), under the cluster's rebuild
// lock and never on the request path, and must not fail: settings are validated before a
// cluster is built.
type NewTransportFunc func(addr string, opts *Options) Transport

var _ Transport = (*http1Transport)(nil)

// http1Transport is HTTP/1.1 on a pool of our own (pool.go): the transport of every cluster
// whose protocol is HTTP/1.1.
type http1Transport struct {
	addr           string
	connectTimeout time.Duration
	tls            *tls.Config // this host's own clone (hostTLSConfig); nil: plain TCP
	pool           *connPool
	shared         *http1Shared
}

// newHTTP1Transport builds addr's transport. shared is the Manager's, for every host.
func newHTTP1Transport(addr string, opts *Options, shared *http1Shared) *http1Transport {
	t := &http1Transport{addr: addr, connectTimeout: opts.ConnectTimeout, tls: hostTLSConfig(opts.TLS, addr), shared: shared}
	if t.connectTimeout <= 0 {
		t.connectTimeout = 2 * time.Second
	}
	t.pool = newConnPool(t.dial, opts.MaxConnsPerHost, opts.IdleTimeout)
	return t
}

// dial connects to the host. timeout is what is left of the request's deadline (0: none); the
// connect timeout caps it so a black-holed host fails fast and the retry can go elsewhere.
func (t *http1Transport) dial(timeout time.Duration) (net.Conn, error) {
	if timeout <= 0 || timeout > t.connectTimeout {
		timeout = t.connectTimeout
	}
	if t.tls == nil {
		return t.shared.dialer.DialTimeout(t.addr, timeout)
	}
	return dialTLS(&t.shared.dialer, t.addr, timeout, t.tls)
}

// Do implements Transport. now is the try's start, a moment ago.
func (t *http1Transport) Do(req *fasthttp.Request, resp *fasthttp.Response, deadline, now time.Time) error {
	var timeout time.Duration
	if !deadline.IsZero() {
		if timeout = deadline.Sub(now); timeout <= 0 {
			return fasthttp.ErrTimeout
		}
	}
	err := t.exchange(req, resp, deadline, timeout, now)
	if err == io.EOF { //nolint:errorlint // fasthttp's own mapping: nothing came back at all
		err = fasthttp.ErrConnectionClosed
	}
	return err
}

// ConnsCount implements Transport.
func (t *http1Transport) ConnsCount() int { return t.pool.count() }

// CloseIdleConnections implements Transport.
func (t *http1Transport) CloseIdleConnections() { t.pool.closeIdle() }

// hostTLSConfig is cfg for one host: a clone, so the caller's config is never written to,
// with ServerName naming the host unless the config decides verification itself.
func hostTLSConfig(cfg *tls.Config, addr string) *tls.Config {
	if cfg == nil {
		return nil
	}
	c := cfg.Clone()
	if c.ServerName == "" && !c.InsecureSkipVerify {
		host, _, err := net.SplitHostPort(addr)
		if err != nil {
			host = addr
		}
		c.ServerName = host
	}
	return c
}

// handshakeError marks a failed TLS handshake inside the dial, so classify can call it a
// connect failure whatever the TLS stack returned.
type handshakeError struct{ err error }

func (e *handshakeError) Error() string { return "tls handshake: " + e.err.Error() }
func (e *handshakeError) Unwrap() error { return e.err }

// dialTLS connects and completes the handshake within timeout. Doing the handshake here
// rather than leaving it to fasthttp (which, without a write timeout, handshakes lazily on the
// first write) makes a bad certificate a dial error: the request was never sent, so it is a
// connect failure and may be retried elsewhere.
func dialTLS(dialer *fasthttp.TCPDialer, addr string, timeout time.Duration, cfg *tls.Config) (net.Conn, error) {
	deadline := time.Now().Add(timeout)
	raw, err := dialer.DialTimeout(addr, timeout)
	if err != nil {
		return nil, err
	}
	conn := tls.Client(raw, cfg)
	if err := conn.SetDeadline(deadline); err != nil {
		_ = raw.Close()
		return nil, &handshakeError{err}
	}
	if err := conn.Handshake(); err != nil {
		_ = raw.Close()
		return nil, &handshakeError{err}
	}
	if err := conn.SetDeadline(time.Time{}); err != nil {
		_ = raw.Close()
		return nil, &handshakeError{err}
	}
	return conn, nil
}
