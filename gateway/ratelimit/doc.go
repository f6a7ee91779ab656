// Package ratelimit owns request rate limits: per-instance GCRA buckets and cluster-wide limits
// shared through Redis, exposed as filter.Filter values built by a Manager that outlives config
// reloads.
//
//	          Manager (one per process; survives reloads)
//	          ├── policy "api"  ─▶ store: 64 shards × map[key]*atomic TAT   (local state)
//	          ├── policy "login" ─▶ store …
//	          └── redis conn (shared by cluster policies; replaced when redis: changes)
//
//	request ─▶ Filter.Request ─▶ key (client_ip | route | identity | header:X)
//	                               │ local:   CAS on the key's TAT, no lock, no allocation
//	                               │ cluster: one EVALSHA (GCRA in Lua, Redis's clock)
//	                               │          └─ Redis failing ─▶ local | open | closed
//	                               ▼
//	                        allow, or 429 + Retry-After + RateLimit-* headers
//
// Why GCRA: a token bucket reduces to one number per key, the "theoretical arrival time" (TAT)
// of the next request. Allowing a request is a compare-and-swap on that number, so buckets need
// neither a mutex nor a refill timer, and a bucket whose TAT is in the past is exactly a full
// bucket: evicting it loses nothing. That is what keeps the key table bounded cheaply.
//
// Memory bound: each policy keeps at most Options.MaxKeys keys (default 100 000, rounded up to a
// multiple of the shard count). When a shard is full, inserting a new key first drops every idle
// key of that shard (TAT in the past: lossless); if none is idle it drops the key closest to
// idle, which makes that one client's limit briefly more permissive rather than growing memory.
//
// Reloads: Manager.Filter returns a new Filter for each generation, but the bucket store is
// keyed by policy name and reused while the policy's local parameters (requests, per, burst,
// key) are unchanged, so a reload does not hand every client a fresh burst.
package ratelimit
