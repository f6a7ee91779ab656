// Package ipfilter owns IP allow/deny policies: a filter that admits or rejects a request by the
// client address the proxy trusted, before any other work is spent on it.
//
//	filter.Request.ClientIP ─▶ unmap (::ffff:a.b.c.d → a.b.c.d)
//	                              │
//	                              ▼
//	                   in deny ranges? ──yes──▶ 403 ip_denied
//	                              │no
//	                              ▼
//	             allow list set and not in it? ──yes──▶ 403 ip_denied
//	                              │
//	                              ▼
//	                          continue
//
// Why ClientIP and never a header: the proxy resolves X-Forwarded-For only through the configured
// trusted proxy hops (gateway/proxy clientAddr), so ClientIP is the address of the first hop we do
// not trust. A client that writes its own X-Forwarded-For cannot move itself into an allow list or
// out of a deny list; this package therefore never reads request headers.
//
// Why ranges and binary search: CIDR lists come from config and can be long (cloud egress
// ranges, blocklists). New turns them into sorted, merged [first, last] address ranges per
// family, so a lookup is O(log n) comparisons of fixed-size values, takes no lock and allocates
// nothing. IPv4 and IPv4-mapped IPv6 prefixes share one table, as do the addresses, so
// "10.0.0.0/8" also matches a client seen on a dual-stack socket as ::ffff:10.1.2.3.
package ipfilter
