// Package consul is a discovery.Source backed by Consul's health endpoint: one blocking query
// per watched service (passing instances only), never a whole-catalog scan, with the last
// applied set of each service kept on disk (discovery/snapshot) so a restart during a Consul
// outage serves at once.
//
//	Watch(ctx₁, "api", fn₁) ─┐                       ┌─▶ fn₁, fn₂  (only when the set changed)
//	Watch(ctx₂, "api", fn₂) ─┼─▶ watch{api, subset} ─┤
//	      (joins; gets the   │   one loop goroutine: └─▶ snapshot.SaveSelected (every applied set)
//	       current set now)  │   GET /v1/health/service/<name>?passing=1&tag=…&index=N&wait=5m
//	                         │   ├─ ok: index bookkeeping, meta filter, Set, deliver if changed
//	                         │   └─ error: keep the set, jittered backoff 50ms → 30s, index = 0
//	snapshot.LoadSelected ───┘   (on the first Watch of a key: delivered at once, Source "snapshot")
//
// # Sharing and lifetime
//
// Watches are keyed by (routed service, subset). A second Watch for the same key joins the
// running loop and is handed the current set synchronously, so a config reload — which
// re-watches every service under a new generation context before cancelling the old one —
// never restarts a blocking query. The loop ends when the last subscriber's ctx ends, or at
// Close. No ctx is stored: each loop owns a cancel func.
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
// Registrar registers one service instance with the local agent (an HTTP check the agent runs,
// or a TTL check the Registrar passes itself) and takes it out in the order a graceful shutdown
// needs:
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
