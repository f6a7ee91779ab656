// Package lb owns load balancing: the per-endpoint Host counters and the policies that choose
// a Host for each request. It imports nothing internal; mesh/upstream builds a Picker for each
// endpoint set and calls it once per attempt.
//
//	discovery set ──▶ upstream.Manager ──▶ Policy.NewPicker(hosts)   (per endpoint change)
//	                                              │ immutable Picker
//	request ──▶ upstream.Cluster ──▶ Picker.Pick(hash, exclude) ──▶ index ──▶ Host
//	                                       ▲                                   │
//	                                       └── Host.Begin / Host.End ◀─────────┘
//	                                           (in-flight, EWMA latency, Down)
//
// NewPicker does all the allocation and precomputation; Pick is lock-free and allocation-free
// (asserted by tests) because it runs on every request. Hosts outlive pickers, so their
// counters survive endpoint changes and reloads.
//
// # Policies and when to choose each
//
//   - round_robin (default): hosts take turns in proportion to their weights, from a
//     precomputed interleaved schedule and one atomic counter. Predictable and fair when
//     hosts are alike and requests cost about the same.
//   - random: a weighted random draw. No shared counter, so no cache-line contention; with
//     many balancers (a fleet of sidecars) it spreads as evenly as round robin without them
//     synchronising on the same host.
//   - least_request: power of two choices on in-flight requests divided by weight. Choose it
//     when request cost varies a lot (long polls, mixed cheap and expensive calls): busy hosts
//     get fewer new requests.
//   - p2c_ewma: power of two choices on EWMA latency × (in-flight+1). It sends work to the
//     instance that answers fastest now, so a host that turns slow sheds load within a few
//     requests. Choose it for latency-sensitive services on uneven hardware or noisy
//     neighbours. Hosts with no latency sample yet are explored, not starved.
//   - ring_hash: consistent hashing (Ketama ring, xxhash64) on a request key from a header, a
//     cookie or the client IP. Choose it for cache affinity or sticky sessions; it ignores
//     load, and removing one of N hosts remaps only about 1/N of the keys.
//
// # Down hosts, exclude and panic mode
//
// Every picker skips Down hosts and the excluded index (the host a retry already tried). If
// the excluded host is the only one up it is returned again: a retry on a healthy host beats
// one on a host believed down. If every host is Down the picker behaves as if none were (panic
// mode, as in Envoy): health information that condemns a whole cluster is more likely wrong
// than the cluster is, and trying beats failing every request. Down is read on every Pick, so
// flipping it needs no new picker.
package lb
