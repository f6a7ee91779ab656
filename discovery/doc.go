// Package discovery owns the endpoint model and the latest-value watch API through which every
// source of endpoints (static config, Consul, the on-disk snapshot) feeds the upstream clusters.
//
//	discovery/static ─┐
//	discovery/consul ─┼─▶ Source.Watch(ctx, service, fn) ─▶ mesh/upstream.Manager ─▶ lb pickers
//	snapshot         ─┘        (latest value wins; fn never blocks the producer)
//
// A Source delivers whole sets, never deltas: a consumer that missed an update loses nothing
// because the next delivery carries the complete state. An empty Set is a real answer ("the
// service has no instances"); a failed query is not delivered at all, so a registry outage can
// never turn into "zero instances".
//
// A Set also carries the registry's word on the service's protocol (Set.Protocol, "" when it
// has none; only discovery/consul fills it, from service-defaults). It rides on the same
// delivery as the endpoints, so a protocol change is simply a new Set; the consumer lets its
// own config override it.
//
// This package imports nothing internal.
package discovery
