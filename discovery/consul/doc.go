// Package consul is a discovery.Source backed by Consul's health endpoints: one blocking query
// per watched service (passing instances only, or the passing Connect endpoints), never a
// whole-catalog scan, plus one on the service-defaults entries for the services' protocols,
// with the last applied set of each service kept on disk (discovery/snapshot) so a restart
// during a Consul outage serves at once. It also registers
// meshgate — or a sidecar's app and the sidecar as its connect-proxy — with the local agent.
//
//	Watch(ctx₁, "api", fn₁) ─┐                       ┌─▶ fn₁, fn₂  (only when the set changed)
//	Watch(ctx₂, "api", fn₂) ─┼─▶ watch{api, subset} ─┤
//	      (joins; gets the   │   one loop goroutine: └─▶ snapshot.SaveSelected (every applied set)
//	       current set now)  │   GET /v1/health/service/<name>?passing=1&tag=…&index=N&wait=5m
//	                         │   (Connect subset: /v1/health/connect/<name>?passing=1&…)
//	                         │   ├─ ok: index bookkeeping, meta filter, Set, deliver if changed
//	                         │   └─ error: keep the set, jittered backoff 50ms → 30s, index = 0
//	snapshot.LoadSelected ───┘   (on the first Watch of a key: delivered at once, Source "snapshot")
//	                              Set.Protocol ◀── one loop for all: GET /v1/config/service-defaults?index=M
//	                              (a protocol change re-delivers the current endpoints with it)
//
// # Sharing and lifetime
//
// Watches are keyed by (routed service, subset). A second Watch for the same key joins the
// running loop and is handed the current set synchronously, so a config reload — which
// re-watches every service under a new generation context before cancelling the old one —
// never restarts a blocking query. The loop ends when the last subscriber's ctx ends, or at
// Close. No ctx is stored: each loop owns a cancel func.
//
// # Connect endpoints
//
// A Subset with Connect selects where a Connect (mTLS) caller dials the service: the passing
// connect-proxy instances whose destination it is — Consul's own sidecars or meshgate's — and
// its passing Connect-native instances, never the app's own port. It is an ordinary watch in
// every other way (shared, snapshotted, counted, in Health) under its own key: the plain and
// the Connect watch of one service are two loops with two sets. Its selector carries
// "connect":true (a plain selector is unchanged), its snapshot lives in SnapshotKindConnect so
// it does not overwrite the plain one, and metrics, logs and Health name it "connect:<routed>".
// Tags are matched here rather than by Consul, whose connect endpoint ignores them.
//
// # Failure semantics
//
// A failed or timed-out query never replaces the endpoint set: subscribers keep what they had
// (from Consul or from the snapshot). A successful answer with no instances is a real answer and
// is delivered (and saved) as an empty set. After a failure the next query is non-blocking
// (index 0), so a restarted agent — whose raft index starts over — is caught up at once.
//
// Health reports degraded while any watched service is served only from its snapshot, or its
// last query failed; the edge shows that in /ready's body (still 200: serving the last known
// good set is the point) and in meshgate_discovery_degraded.
//
// # Registration
//
// Registrar registers one service instance with the local agent — with an HTTP or TCP check
// the agent runs, or a TTL check the Registrar passes itself, optionally plus an alias check
// mirroring another local instance — and takes it out in the order a graceful shutdown needs.
// The sidecar runs two: one for its app (TCP check on the app's port, so Consul sees the app
// only while it listens) and one for itself as the app's connect-proxy (Instance.Proxy: the
// mTLS inbound address, destination and upstreams; its /ready check plus an alias of the app,
// so callers also stop picking it while the app fails). It takes the proxy out first, then the
// app. For a proxy, WaitNotPassing follows the destination's Connect endpoints, where callers
// find it. Each Registrar:
//
//	Run(ctx): Register ─(agent down: jittered backoff, never fails)─▶ registered
//	          ├─ TTL: pass every TTL/3 (critical while not ready or in maintenance)
//	          └─ every Resync: GET /v1/agent/service/<id>; 404 (or an "unknown check" TTL update):
//	             the agent lost us ─▶ Register again (maintenance re-applied)
//	shutdown: Maintenance(on) ─▶ WaitNotPassing (blocking query, bounded) ─▶ caller drains
//	          ─▶ stop Run ─▶ Deregister
//
// Agent writes are serialised, and Deregister latches: no retry can register the instance
// again afterwards.
//
// # Upstream protocols
//
// Every Set also carries the service's Protocol from its service-defaults config entry
// (http → discovery.ProtocolHTTP1, http2, grpc; tcp, unknown values — warned once — and no
// entry leave it ""). One blocking query on /v1/config/service-defaults follows every entry
// while any service watch runs, registered as the watch "config:service-defaults" (Close,
// Synced, Health and the query metrics cover it; the watches gauge does not), with the same index, backoff and failure
// rules (protocol.go). A set reads the entry of its Consul name (Subset.Name), so subsets and
// the Connect watch of a service share it. When an answer changes a service's protocol, each
// of its watches delivers its current endpoints again with the new Protocol (and saves them):
// subscribers need no second callback, and never hold endpoints and a protocol from different
// moments. Until the first answer a set keeps its snapshot's protocol; a failed query keeps the
// last answer's. The Protocol is Consul's word only: meshgate's own config takes precedence,
// applied by the consumer.
//
// # KV documents
//
// WatchKV follows every key under a prefix with one blocking query on
// /v1/kv/<prefix>/?recurse and delivers all documents whenever a key or value changed, with the
// same index, backoff and failure rules as the health watches (kv.go). The source cannot tell a
// valid document from an invalid one, so the consumer saves the set it accepted with SaveKV;
// WatchKV delivers that set first at the next start. The loop is registered as the watch
// "kv:<prefix>", so Close, Synced, Health and the query metrics cover it.
//
// This package imports nothing internal but discovery and discovery/snapshot.
package consul
