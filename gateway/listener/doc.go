// Package listener owns the downstream side of a connection: the fasthttp server with
// edge-safe limits, an accept loop that survives file-descriptor exhaustion, connection
// accounting and graceful shutdown.
//
//	net.Listener ─▶ backoffListener (EMFILE/ENFILE: wait, retry) ─▶ [tls.NewListener] ─▶ fasthttp.Server
//	                                                                                     │ limits: head 10s, 431, 413
//	                                                                                     ▼
//	                                                                          proxy.Handler.Serve
//
// Why the wrapper: fasthttp's accept loop returns for good on any non-temporary Accept error,
// and EMFILE is not temporary to it, so one burst of connections past the fd limit would stop
// the listener forever. The wrapper sleeps with backoff instead, and keeps serving the
// connections it already has.
//
// TLS (Options.TLSConfig) sits above the backoff so resource exhaustion is still survived.
// tls.Conn handshakes lazily on the first read, which happens in fasthttp's per-connection
// goroutine: a plaintext client or a rejected client certificate only closes that connection.
package listener
