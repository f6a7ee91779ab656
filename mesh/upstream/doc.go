// Package upstream owns clusters: the set of hosts of one service, the balancer over them, the
// per-host transport, the retry loop, and the resilience around it: outlier detection, circuit
// breakers, the retry budget, the in-flight limit and the deadline budget sent upstream.
//
//	discovery.Set ──▶ Manager.apply ──▶ Cluster.state (atomic.Pointer: hosts + picker)
//	                                          │
//	request ──▶ Cluster.Do: in-flight limit ─▶ sweep ejections ─▶ picker.Pick (skips Down)
//	              ▲                                                    │
//	              │                     breaker.allow / report (open: pick another host)
//	              │                                                    │
//	   backoff + retry budget ◀── retry? ◀── outlier/breaker ◀── Host.transport.Do (+budget header)
//	                                                                   │
//	                                           Transport: http1Transport (exchange on the
//	                                                      host's connPool)
//	                                                      or ManagerOptions.NewTransport's
//
//	Manager goroutine: logs events (ejections, returns, panic, breaker changes) and sweeps
//	ejections every second; events arrive on a non-blocking channel.
//
// The wire protocol lives behind one seam, Transport (transport.go): Do one exchange with a
// deadline (given the try's start, so the transport reads no clock), count connections, close
// idle ones. Everything above it sees a try only as an error
// (one of the sentinels, which a transport may return itself or leave to classify) and a
// response, so adding a protocol (HTTP/2, gRPC) means adding a Transport and choosing it in
// ManagerOptions.NewTransport, with no change to the balancer, outlier detection, breakers or
// retries. Options.Protocol picks it: http2Transport (h2transport.go; HTTP/2 and gRPC over
// x/net/http2, h2c or h2 by ALPN, full duplex, trailers through TrailerSource, the client's
// context through ContextTransport) or http1Transport: HTTP/1.1 written and read by exchange
// (roundtrip.go) on the host's own connection pool (pool.go), built with the cluster's TLS,
// timeouts and connection limit, dialling through the Manager's shared TCPDialer and taking
// its buffers from pools the Manager's hosts share: an idle host holds its idle connections
// and a stopped timer, no goroutine and no buffers. A host's transport is rebuilt only when those settings change
// (Options.transportKey), and the old one's idle connections are closed.
//
// Hosts are keyed by (cluster, address) and survive config reloads and endpoint updates, so
// their keep-alive connections, in-flight counts and latency estimates are not reset by a
// reload. Their resilience state (ejection, error streak, breaker) belongs to the address and
// survives even a transport change. The request path takes no locks of ours: it loads the
// cluster's state once per attempt, counts with atomics, and only TryLocks the mutex that
// serialises ejection changes (a request that loses the race goes on; the next failure tries
// again). Breakers are atomics too (breaker.go): a lock is taken only to change state.
//
// Down flags (what every balancer skips) are owned by outlier detection: Down = ejected and
// the cluster not in panic. They are recomputed under the ejection mutex whenever an ejection
// starts or ends and after every rebuild.
//
// TLS (Options.TLS) is per cluster: each host's transport gets its own clone of the config,
// and the handshake is completed inside the dial, so a peer that fails it (untrusted
// certificate, wrong service identity) is ErrConnect: nothing was sent, so it is retried on
// another host for any method. The HTTP/1.1 transport sets the request URI's scheme to match,
// since fasthttp refuses a request whose scheme disagrees with the client.
//
// Upgrades (upgrade.go): Cluster.Upgrade carries an HTTP/1.1 protocol upgrade (WebSocket). The
// connection leaves HTTP after the 101, so it is dialled for the upgrade and never pooled; host
// choice, breakers, outlier detection, the TLS config and connect-failure retries are the
// cluster's, as for Do.
//
// Retry rules (why): a request is only re-sent when doing so cannot duplicate a side effect the
// client did not ask for. A connect failure never reached the upstream, so any method may be
// retried on another host. A reset before the first response byte, a timeout, or a retryable
// status may have been processed upstream, so only idempotent methods are retried for those.
// A streamed request body cannot be replayed, so such requests are tried once, unless a
// BodyRecorder (Call.Recorder, replay.go: the gateway's HTTP/2 bodies) saw all of it end within
// its bound by the time the answer came: then the retry sends the recorded bytes. Every retry
// also needs the cluster's retry budget and waits a jittered backoff that must end before the
// deadline, so retries cannot multiply load during an outage.
//
// Tracing: when Call.Trace is a recording server span (mesh/tracing), send records each try as
// a client span under it (host, attempt, status or error) and writes that span into the try's
// trace headers, so the upstream's own spans hang under the try that reached it. An unrecorded
// or absent span costs one nil-or-bool check.
package upstream
