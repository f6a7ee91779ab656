// Package fault owns fault injection: a filter that delays and/or aborts a percentage of a
// route's requests, optionally only those carrying a header, so teams can rehearse slow and
// failing dependencies on real traffic (Envoy's HTTP fault filter, in the filter chain).
//
//	request ─▶ header gate? ──no──▶ continue
//	              │yes
//	              ▼
//	         delay (percent) ── would pass the route deadline? ─▶ sleep to it, 504 fault_delay_timeout
//	              │
//	              ▼
//	         abort (percent) ─▶ Status, fault_abort (the upstream is never contacted)
//	              │
//	              ▼
//	          continue
//
// The delay blocks the request's own goroutine (fasthttp runs one per connection), which is the
// behaviour being simulated: a slow dependency holds a worker. It never outlives the request's
// deadline, so an injected delay cannot keep a connection past the route timeout.
package fault
