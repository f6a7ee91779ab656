// Package snapshot owns meshgate's on-disk last-known-good store: the endpoint sets (and, for
// the KV watcher, raw documents) that were last applied from Consul, so a meshgate that starts
// while Consul is unreachable can serve at once instead of answering 503 until Consul returns.
//
//	discovery/consul ──Save(set)──▶ DIR/services/<escaped service>.json   (temp + fsync + rename)
//	                 ◀─Load(svc)───┘
//	KV watcher      ──SaveDoc(kind, name, data)──▶ DIR/<kind>/<escaped name>
//
// Writes are atomic (a reader sees the old file or the new one, never half of either) and
// durable (the file and its directory are fsynced), because the snapshot is only ever read after
// a crash or a restart, exactly when a torn write would hurt. Reads never fail hard: a missing,
// unreadable or corrupt file is logged and reported as "no snapshot", since starting without a
// snapshot is always safe and refusing to start is not.
//
// A set is stored with an optional selector (for Consul: the service name, tags and meta it was
// selected by). Loading with a different selector reports no snapshot, so a config change that
// narrows a subset never serves the old, wider subset from disk. Sets that must coexist with
// another set of the same service (Consul's Connect endpoints next to the plain instances) go
// to a directory of their own with SaveSelectedIn / LoadSelectedIn. A set's Protocol is stored
// with its endpoints (omitted when unset, so older files still load).
//
// This package imports nothing internal but discovery.
package snapshot
