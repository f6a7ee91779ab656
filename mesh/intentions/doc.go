// Package intentions owns authorisation on a sidecar's inbound listener: it evaluates Consul
// intentions, L4 and L7, locally for the one destination service the sidecar fronts.
//
//	Consul agent (blocking query)                Authorizer
//	/v1/connect/intentions/match ──┐   Run: watch loop (index, jittered backoff)
//	  ?by=destination&name=web     │        │ compile once per answer (sort, regexes)
//	         ConsulSource ─────────┴──────► ▼
//	         (fake in tests)          atomic.Pointer[ruleSet] ◄── Snapshot (optional,
//	                                        │                      survives restarts in outages)
//	inbound request ── peer SPIFFE ID ──►  Authorize(caller, method, path, headers) → Decision
//	                   (mesh/identity)      lock-free, allocation-free
//
// Why local evaluation: the agent's /v1/agent/connect/authorize is L4-only and deprecated
// upstream, and a round trip per request is too slow anyway. The match endpoint returns the
// whole rule list for the destination, L7 Permissions included, and is a real blocking query
// on Consul 1.16 (it wakes only when an intention for this destination changes), so a change
// is enforced about as fast as Consul commits it.
//
// # Semantics (Consul's, cited)
//
// Source matching follows connect.IntentionMatch and the decision follows
// state.IntentionDecision (agent/consul/state/intention.go): intentions are sorted by
// Precedence, highest first (structs.IntentionPrecedenceSorter; an exact destination outranks
// a wildcard one, then an exact source outranks "*"), and the FIRST intention whose source
// matches the caller decides; later ones are never consulted. The caller is a Consul service
// in partition and namespace "default" of this cluster, so intentions naming a peer, a
// sameness group, another partition or another namespace never match it; "*" matches any name
// and a "*" namespace any namespace.
//
//   - No intention matches: Options.DefaultAllow (Consul uses its ACL default policy: allow
//     when ACLs are off, deny with default_policy=deny).
//   - An L4 intention (no Permissions): its Action; anything but "allow" is deny.
//   - An L7 intention: its Permissions in order; the first whose HTTP match holds decides.
//     When none matches, the DEFAULT decides (not deny): the service-intentions docs say
//     "traffic that fails to match any of the provided permissions in this intention will be
//     subject to the default intention behavior", and agent/xds/rbac.go implements it by
//     dropping the permissions whose action equals the default and letting Envoy's RBAC
//     default answer. With DefaultAllow=false, the usual production setting, that is deny.
//
// A permission's HTTP match is the AND of its parts, as Envoy RBAC evaluates what
// agent/xds/rbac.go generates: PathExact / PathPrefix (byte-wise, case-sensitive) or PathRegex
// (RE2, anchored: it must match the whole path), all on the path without its query; Methods
// (any of them, exact); and every Header entry. A header entry uses the first of Exact, Regex,
// Prefix, Suffix, Contains, Present that is set (Consul's order) and ignores an entry with
// none. Following Envoy's HeaderUtility::matchHeaders, an ABSENT header matches nothing,
// inverted or not, except an inverted Present; Invert flips the result for a header that is
// there. The pseudo-headers ":method", ":path" (with query) and ":authority" (Host) read the
// request line. fasthttp's Peek returns only the first of repeated headers, where Envoy joins
// them with commas.
//
// # Deliberate differences, all failing closed
//
//   - Before any rules are loaded every request is denied ("intentions not loaded").
//   - A caller whose SPIFFE ID names a partition or namespace other than "default" (Consul
//     Enterprise) is denied ("caller outside default/default") whatever the intentions say:
//     the rules are compiled for default/default callers, and matching by service name alone
//     would hand "team-b/web" what an intention grants "default/web".
//   - An empty source name is denied.
//   - We cannot verify JWTs: an intention whose entry requires one decides deny, and an allow
//     permission that requires one never matches (a deny permission still does).
//   - An answer with a regex Go cannot compile is rejected whole and the rules in use are
//     kept, as Envoy keeps its config when it NACKs an update. A failed query never replaces
//     the rules in use either.
//   - Consul's xDS translation (agent/xds/rbac.go) only subtracts higher-precedence intentions
//     from lower ones when their source is more specific, so for the rare mix "* → api deny"
//     plus "web → * allow" Envoy's verdict for web depends on the default. We follow
//     IntentionDecision's plain first-match, which is what Consul documents and what its
//     /v1/connect/intentions/check answers.
package intentions
