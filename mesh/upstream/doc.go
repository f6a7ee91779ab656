// Package upstream owns clusters: the set of hosts of one service, the balancer over them, the
// per-host transport (a fasthttp.HostClient each) and the retry loop.
//
//	discovery.Set ──▶ Manager.apply ──▶ Cluster.state (atomic.Pointer: hosts + picker)
//	                                          │
//	request ──▶ Cluster.Do ──▶ picker.Pick ──▶ Host.client.Do ──▶ classify error ──▶ retry?
//
// Hosts are keyed by (cluster, address) and survive config reloads and endpoint updates, so
// their keep-alive connections, in-flight counts and latency estimates are not reset by a
// reload. The request path takes no locks: it loads the cluster's current state once per
// attempt.
//
// Retry rules (why): a request is only re-sent when doing so cannot duplicate a side effect the
// client did not ask for. A connect failure never reached the upstream, so any method may be
// retried on another host. A reset before the first response byte, a timeout, or a retryable
// status may have been processed upstream, so only idempotent methods are retried for those.
// A streamed request body cannot be replayed, so such requests are tried once.
package upstream
