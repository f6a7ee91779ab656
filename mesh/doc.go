// Package mesh is how meshgate reaches a service well, shared by the edge and sidecar modes.
//
//	gateway (edge) ─┐                 ┌─ mesh/lb        balancers over lb.Host
//	sidecar outbound┼─▶ mesh/upstream ┼─ transport      one client per host
//	                │   (Cluster.Do)  ├─ retry policy   idempotency-aware, deadline-bounded
//	                │                 └─ resilience     outlier detection, per-host breakers,
//	                │                                   retry budget, max_in_flight
//	                ├── discovery.Source feeds endpoint sets into upstream.Manager
//	                └── mesh/identity   Connect leaf and roots: mTLS for connect listeners and
//	                    mesh/intentions Connect clusters; intentions evaluated per request
//
// The subpackages own the pieces; this package only documents how they fit. Because both modes
// reach services through the same packages, they get the same balancing, resilience and
// Connect identity.
package mesh
