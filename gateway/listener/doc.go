// Package listener owns the downstream side of a connection: the fasthttp server with
// edge-safe limits, an accept loop that survives file-descriptor exhaustion, connection
// accounting and graceful shutdown.
//
//	net.Listener ─▶ backoffListener (EMFILE/ENFILE: wait, retry) ─▶ [tls.NewListener] ─▶ fasthttp.Server
//	                                                                                     │ limits: head 10s, 431, 413
//	                                                                                     ▼
//	                                                                          proxy.Handler.Serve
//
// With HTTP/2 on (Options.HTTP2Handler), a demultiplexer (http2.go) sits where tls.NewListener
// is: each connection is classified in its own goroutine within the head timeout (the TLS
// handshake's ALPN, or the plaintext HTTP/2 preface); HTTP/1.x connections go on to fasthttp,
// HTTP/2 ones are served by x/net/http2 with proxy.Handler.ServeHTTP, and Shutdown drains both.
//
// Why the wrapper: fasthttp's accept loop returns for good on any non-temporary Accept error,
// and EMFILE is not temporary to it, so one burst of connections past the fd limit would stop
// the listener forever. The wrapper sleeps with backoff instead, and keeps serving the
// connections it already has.
//
// TLS (Options.TLSConfig) sits above the backoff so resource exhaustion is still survived.
// tls.Conn handshakes lazily on the first read, which happens in fasthttp's per-connection
// goroutine: a plaintext client or a rejected client certificate only closes that connection.
//
// # TLS termination
//
// Certificates (certs.go) serves certificate files by SNI: an exact DNS SAN, then a wildcard SAN
// one label up, then the first file as the default. Its TLSConfig sets TLS 1.2 as the minimum
// and is what the edge assembly passes as Options.TLSConfig; Connect listeners keep passing
// their own mTLS config. Watch stats the files on a ticker and, when they change, loads the
// whole set and swaps one atomic pointer that GetCertificate reads: handshakes never block on a
// reload, established connections keep their certificate, and a bad, mismatched, expired or
// missing file is logged and leaves the previous set in use (validate, then swap).
//
// # Upgraded connections
//
// A WebSocket session is hijacked from fasthttp, which then forgets it: its Concurrency
// (max_connections) and its shutdown wait no longer see the connection. Each listener's
// connTable (upgraded.go) keeps counting it: the connections gauge is given back when the
// hijacked connection closes, not when fasthttp lets go of it; while upgraded sessions are open,
// Accept closes a connection that would pass max_connections; and Shutdown, after fasthttp's own
// drain, waits for the sessions until its context ends and then closes their sockets. The
// request engine reports a session with Upgraded (the table is found from the connection, as
// Linger finds its conn, so there is no global registry).
//
// RedirectHandler is the handler for a plain listener beside a TLS one: 308 to https://host
// with the path and query kept, so methods and bodies survive the redirect.
package listener
