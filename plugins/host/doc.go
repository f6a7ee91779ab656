// Package host runs meshgate's out-of-process plugins and makes each one a filter. It owns
// the plugin processes (start with a verified checksum, configure, watch, restart, stop), the
// per-call policy around them (deadline, breaker, failure policy), their metrics and status,
// and the translation between a fasthttp request and the gRPC contract in plugins/proto. The
// assembly in gateway/ translates conf.Plugin into Options; this package does not import conf.
//
//	Manager (one per meshgate process; survives reloads)
//	 ├─ Ensure(Options) ─▶ Plugin "apikey" ─ cur (atomic.Pointer[live]) ──▶ instance (pid 4242)
//	 │                      │                    process, sdk.Client,
//	 │                      │                    breaker, in-flight count
//	 │                      ├─ watch: Exited() ─▶ live{inst: nil} ─▶ restart (backoff)
//	 │                      └─ Request / Response (filter.Filter, filter.ResponseFilter)
//	 ├─ Retain(names) ─▶ stop the others
//	 └─ Statuses() ─▶ /plugins
//
//	request ─▶ Plugin.Request: load cur ─▶ no process? failure policy, at once
//	                             │
//	           pooled RequestPhase (only the parts the plugin asked for, pointing into the
//	           request's own buffers) ─▶ breaker.Execute ─▶ sdk.Client.OnRequest (a frame on
//	           the process's socketpair, or a pooled gRPC stream for a plugin that does not
//	           serve the socket; deadline = min(timeout, request deadline))
//	                             │
//	           decision checked, then applied: header edits, path, consumer ─▶ continue
//	                                            or the plugin's own response ─▶ Written
//
// Why a Plugin outlives its processes: the filters of every route hold the *Plugin, not a
// process, so a restart or a binary change swaps the process under them (cur) without a
// reload. A swap stores the new state first and then waits for the old process's in-flight
// calls before stopping it; a call registers itself before re-checking cur (see acquire), so
// none is sent to a process being stopped and none is dropped.
//
// Why a socketpair per process: a call on a gRPC stream pays HTTP/2 framing, TLS records and
// several goroutine hand-offs on each side; on a unix socket only the two processes share, a
// call is one write and one read of the same protobuf message, framed with a call id so many
// are in flight at once. go-plugin still launches the process, checks its checksum, performs
// the handshake and carries Describe and Configure. The child end is passed at exec
// (ExtraFiles) and our copy of it closed right after, so the child's exit is what closes the
// socket and fails the calls waiting on it, at once, like a broken gRPC connection. The plugin
// claims the socket in Describe; one that does not is called over gRPC (the fallback), and the
// two transports classify failures identically so the policy around them does not change.
//
// Why requests never wait for a process: while one is down, restarting, or its breaker is
// open, calls fail at once and the failure policy answers (closed: 503 plugin_unavailable or
// plugin_timeout; open: continue). Restarts run in the background with exponential backoff
// and re-send the configuration. The breaker ignores calls that failed because the process
// was gone, so it does not stay open after a restart.
//
// Why the host checks decisions: a plugin is code we do not control, in any language. A
// decision with a header that is not a token, a value with CR or LF, a framing header
// (Content-Length, Transfer-Encoding, Connection...), a path with a query, or a status that is
// not final is refused whole and counts as the plugin failing.
//
// Hot path: one atomic load for the state, two atomic adds for the in-flight count, pooled
// messages, metric children bound when the plugin is created; no lock of ours. The plugin's
// stderr and log lines are re-logged through zerolog with plugin=<name>.
package host
