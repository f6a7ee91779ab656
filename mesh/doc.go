// Package mesh is how meshgate reaches a service well, shared by the edge and sidecar modes.
//
//	gateway (edge) ─┐                 ┌─ mesh/lb        balancers over lb.Host
//	sidecar outbound┼─▶ mesh/upstream ┼─ transport      fasthttp HostClient per host
//	                │   (Cluster.Do)  └─ retry policy   idempotency-aware, deadline-bounded
//	                └── discovery.Source feeds endpoint sets into upstream.Manager
//
// The subpackages own the pieces; this package only documents how they fit. Later milestones
// add outlier detection, circuit breakers, retry budgets and Connect identity here, so that
// both modes get them alike.
package mesh
