package proxy

import (
	"bytes"
	"net/netip"

	"github.com/valyala/fasthttp"

	"github.com/meshgate/meshgate/gateway/route"
	"github.com/meshgate/meshgate/mesh/tracing"
	"github.com/meshgate/meshgate/mesh/upstream"
)

// The trust model on the request path (docs/security.md). Every input the gateway acts on has
// an owner, and the owner decides who may change it:
//
//   - The client (anyone who can open a connection) owns its method, target, body and the
//     end-to-end headers it sends; it never owns the headers below.
//   - A configured proxy hop (listeners[].trusted_proxies, by socket address) may tell us the
//     client's address, scheme and host, and pass a request id and a deadline budget.
//   - A named mesh peer (listeners[].trusted_peers, by its Connect identity, on connect
//     listeners) may do the same; any other peer is judged by its own identity and socket
//     address, though its request id is kept (it authenticated, and ids only correlate logs).
//   - Filters and plugins may set any header but the ones the gateway owns.
//
// The gateway owns X-Forwarded-For/-Proto/-Host (and the Forwarded, X-Real-Ip and
// X-Forwarded-Port spellings upstreams also read), X-Request-Id, the budget header and the
// identity header. Every line of them a caller sent is removed before filters run, and exactly
// one value, the gateway's, goes upstream.

const (
	hdrForwarded      = "Forwarded"
	hdrXRealIP        = "X-Real-Ip"
	hdrXForwardedPort = "X-Forwarded-Port"
)

// trust is how much of the owned inputs a request's sender may set.
type trust uint8

const (
	trustNone trust = iota // a client: its owned headers are dropped
	trustHop               // a configured proxy hop (trusted_proxies)
	trustPeer              // a named mesh peer (trusted_peers) on a connect listener
)

// headerScan summarises one pass over the request's header names.
type headerScan uint8

const (
	scanHopByHop headerScan = 1 << iota // a hop-by-hop field (or Connection) is present
	scanOwned                           // a field the gateway owns is present
	scanRepeated                        // some name may occur more than once
	scanBadName                         // a name is not an RFC 9110 token, or has '_'
	scanUpgrade                         // Upgrade is present: maybe a WebSocket handshake (websocket.go)
	scanTrace                           // a trace context field (traceparent, tracestate, b3) is present
)

// tchar is RFC 9110 §5.6.2's token alphabet, less '_': Envoy and nginx refuse underscores in
// names because "X_User" and "X-User" are the same variable to CGI-style backends, which lets a
// client smuggle a header the gateway thinks it controls.
var tchar = func() (t [256]bool) {
	for c := '0'; c <= '9'; c++ {
		t[c] = true
	}
	for c := 'a'; c <= 'z'; c++ {
		t[c], t[c-'a'+'A'] = true, true
	}
	for _, c := range "!#$%&'*+-.^`|~" {
		t[c] = true
	}
	return t
}()

func validFieldName(k []byte) bool {
	if len(k) == 0 {
		return false
	}
	for _, c := range k {
		if !tchar[c] {
			return false
		}
	}
	return true
}

// scanHeaders makes the one pass over the names that every request pays for; the common
// request (no hop-by-hop, owned or repeated fields) needs nothing else. fasthttp normalises
// incoming names ("x-forwarded-for" → "X-Forwarded-For"), so one exact comparison per name
// suffices; names with spaces, which it leaves alone, already fail validFieldName.
func (h *Handler) scanHeaders(hd *fasthttp.RequestHeader) headerScan {
	var flags headerScan
	var seen uint64 // a 64-bit Bloom filter of names: a collision means "maybe repeated"
	for k := range hd.All() {
		if !validFieldName(k) {
			return scanBadName
		}
		switch string(k) {
		case "Connection", "Keep-Alive", "Proxy-Connection", "Proxy-Authenticate", "Proxy-Authorization",
			"Te", "Trailer", "Transfer-Encoding":
			flags |= scanHopByHop
		case "Upgrade":
			flags |= scanHopByHop | scanUpgrade
		case hdrXForwardedFor, hdrXForwardedProto, hdrXForwardedHost, hdrXRequestID, upstream.BudgetHeader,
			hdrForwarded, hdrXRealIP, hdrXForwardedPort:
			flags |= scanOwned
		case tracing.HeaderTraceparent, tracing.HeaderTracestate, tracing.HeaderB3, tracing.HeaderB3TraceID,
			tracing.HeaderB3SpanID, tracing.HeaderB3ParentID, tracing.HeaderB3Sampled, tracing.HeaderB3Flags:
			flags |= scanTrace
		default:
			if len(h.identityName) > 0 && bytes.Equal(k, h.identityName) {
				flags |= scanOwned
			}
		}
		bit := uint64(1) << ((uint(len(k))*7 + uint(k[0]) + uint(k[len(k)-1])*3) & 63)
		if seen&bit != 0 {
			flags |= scanRepeated
		}
		seen |= bit
	}
	return flags
}

// hasRepeated is the exact check behind scanHeaders' Bloom filter, which says "maybe" for
// names that merely share a hash (User-Agent and Grpc-Timeout do, so every gRPC call with a
// deadline would take the allocating join): the names compared pairwise, without allocating.
// Past 32 fields it answers yes and leaves the decision to joinRepeated.
func hasRepeated(hd *fasthttp.RequestHeader) bool {
	var buf [32][]byte
	names := buf[:0]
	for k := range hd.All() {
		for _, n := range names {
			if bytes.Equal(n, k) {
				return true
			}
		}
		if len(names) == len(buf) {
			return true
		}
		names = append(names, k)
	}
	return false
}

// joinRepeated turns every repeated field into one line, its values joined with ", " in order
// (RFC 9110 §5.3), so that whatever reads a field (a policy, routing, the owned-header logic,
// the upstream) sees all of it and the same thing. Rare, so it may allocate.
func joinRepeated(hd *fasthttp.RequestHeader) {
	type kv struct{ k, v []byte }
	var all []kv
	for k, v := range hd.All() {
		all = append(all, kv{append([]byte(nil), k...), append([]byte(nil), v...)})
	}
	for i := range all {
		if all[i].k == nil {
			continue
		}
		joined, n := all[i].v, 1
		for j := i + 1; j < len(all); j++ {
			if all[j].k != nil && bytes.Equal(all[j].k, all[i].k) {
				joined = append(append(joined, ", "...), all[j].v...)
				all[j].k = nil
				n++
			}
		}
		if n > 1 {
			hd.DelBytes(all[i].k)
			hd.SetBytesKV(all[i].k, joined)
		}
	}
}

// stripHopByHop removes the hop-by-hop fields from the incoming request before any filter
// runs, so a client's "Connection: X-Edge-Auth" cannot delete what a policy adds later. A
// Connection token may not nominate a field the gateway owns or needs for framing and routing.
// fasthttp decided keep-alive before the handler ran, so removing Connection does not change
// the client connection's fate.
func (h *Handler) stripHopByHop(hd *fasthttp.RequestHeader, buf []byte) []byte {
	// Connection's value points into the header, which DelBytes rearranges: work on a copy.
	buf = append(buf[:0], hd.Peek(hdrConnection)...)
	for v := buf; len(v) > 0; {
		var tok []byte
		if i := bytes.IndexByte(v, ','); i >= 0 {
			tok, v = v[:i], v[i+1:]
		} else {
			tok, v = v, nil
		}
		if tok = bytes.TrimSpace(tok); len(tok) > 0 && !h.protectedName(tok) {
			hd.DelBytes(tok)
		}
	}
	for _, k := range hopByHop {
		hd.Del(k)
	}
	return buf
}

// protectedName reports whether name (any case) is a field Connection may not nominate.
func (h *Handler) protectedName(name []byte) bool {
	for _, p := range [...]string{fasthttp.HeaderHost, fasthttp.HeaderContentLength, fasthttp.HeaderContentType,
		hdrXForwardedFor, hdrXForwardedProto, hdrXForwardedHost, hdrXRequestID, upstream.BudgetHeader,
		hdrForwarded, hdrXRealIP, hdrXForwardedPort} {
		if bytes.EqualFold(name, []byte(p)) {
			return true
		}
	}
	return len(h.identityName) > 0 && bytes.EqualFold(name, h.identityName)
}

// forwarded is what a trusted sender told us, copied out of the request before its owned
// fields are removed. It lives in the pooled scratch.
type forwarded struct {
	chain  []byte // the X-Forwarded-For entries we keep, from the client rightward
	proto  []byte // X-Forwarded-Proto as sent ("http" or "https"), if trusted and valid
	host   []byte // X-Forwarded-Host as sent, if trusted and valid
	budget []byte // X-Meshgate-Budget-Ms as sent, if trusted
}

// reset empties f, keeping its buffers.
func (f *forwarded) reset() {
	f.chain, f.proto, f.host, f.budget = f.chain[:0], f.proto[:0], f.host[:0], f.budget[:0]
}

// takeOwned resolves the client address from what the sender may tell us, copies the trusted
// owned values into f and removes every owned field from the request. The request id is read
// by the caller before this runs.
func (h *Handler) takeOwned(hd *fasthttp.RequestHeader, level trust, remote netip.Addr, f *forwarded) netip.Addr {
	client := remote
	f.reset()
	if level != trustNone {
		xff := hd.Peek(hdrXForwardedFor)
		var from int
		if level == trustPeer {
			client, from = leftmostAddr(remote, xff)
		} else {
			client, from = clientAddr(remote, xff, h.opts.TrustedProxies)
		}
		if from >= 0 {
			f.chain = append(f.chain, bytes.TrimSpace(xff[from:])...)
		}
		if p := hd.Peek(hdrXForwardedProto); bytes.EqualFold(p, strHTTP) || bytes.EqualFold(p, strHTTPS) {
			f.proto = appendLower(f.proto, p)
		}
		if fh := hd.Peek(hdrXForwardedHost); validHostValue(fh) {
			f.host = append(f.host, fh...)
		}
		f.budget = append(f.budget, hd.Peek(upstream.BudgetHeader)...)
	}
	for _, k := range [...]string{hdrXForwardedFor, hdrXForwardedProto, hdrXForwardedHost, hdrXRequestID,
		upstream.BudgetHeader, hdrForwarded, hdrXRealIP, hdrXForwardedPort} {
		hd.Del(k)
	}
	if len(h.identityName) > 0 {
		hd.DelBytes(h.identityName)
	}
	return client
}

var (
	strHTTP  = []byte("http")
	strHTTPS = []byte("https")
)

func appendLower(dst, s []byte) []byte {
	for _, c := range s {
		if c >= 'A' && c <= 'Z' {
			c += 'a' - 'A'
		}
		dst = append(dst, c)
	}
	return dst
}

// validHostValue accepts one authority (a host with an optional port) and nothing that could
// be a list or break a header: the characters of reg-name, IPv4, bracketed IPv6 and a port.
func validHostValue(v []byte) bool {
	if len(v) == 0 || len(v) > 255 {
		return false
	}
	for _, c := range v {
		switch {
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9':
		case c == '-', c == '.', c == ':', c == '[', c == ']', c == '_', c == '~':
		default:
			return false
		}
	}
	return true
}

// leftmostAddr is the client a trusted peer reports: a meshgate hop sends X-Forwarded-For
// starting with the client it resolved itself (it drops whatever its own clients wrote), so
// the leftmost entry is that client. from is the offset of the chain to keep, -1 for none.
func leftmostAddr(remote netip.Addr, xff []byte) (netip.Addr, int) {
	if len(xff) == 0 {
		return remote, -1
	}
	first := xff
	if i := bytes.IndexByte(xff, ','); i >= 0 {
		first = xff[:i]
	}
	a, ok := parseAddr(bytes.TrimSpace(first))
	if !ok {
		return remote, -1
	}
	return a.Unmap(), 0
}

// trustLevel says what the sender of this request may set: a trusted hop (hop: its socket
// address is in trusted_proxies, on a plain listener) or, on a connect listener, a peer whose
// Connect identity is named in trusted_peers.
func (h *Handler) trustLevel(hop bool, identity []byte) trust {
	if h.opts.Connect {
		for _, p := range h.opts.TrustedPeers {
			if string(identity) == p {
				return trustPeer
			}
		}
		return trustNone
	}
	if hop {
		return trustHop
	}
	return trustNone
}

// methodOK refuses methods an upstream or a policy could read differently from us: routes and
// intentions match methods case-sensitively, so "delete" would slip past a rule for DELETE
// and reach a lenient upstream as a delete. Only a method a route names exactly passes when it
// is not all upper-case. fasthttp already refused non-token methods.
func methodOK(m []byte, t *route.Table) bool {
	for _, c := range m {
		if c >= 'a' && c <= 'z' {
			return t.NamesMethod(m)
		}
	}
	return true
}

// supportedVersion is HTTP/1.0 or HTTP/1.1: fasthttp accepts any HTTP/d.d, and forwarding
// "HTTP/1.2" or "HTTP/2.0" framing as HTTP/1.1 would guess at semantics (HTTP/2 gets its own
// path).
func supportedVersion(proto []byte) bool {
	return string(proto) == "HTTP/1.1" || string(proto) == "HTTP/1.0"
}

// hasDotSegment reports whether a path has a "." or ".." segment. fasthttp removes them from
// the request path, so only a rewrite can bring one back ("/static../x" with prefix "/static"
// rewritten to "/assets/" gives "/assets/../x"); a normalising upstream would then serve a path
// outside the rewrite target.
func hasDotSegment(p []byte) bool {
	for len(p) > 0 {
		if p[0] == '/' {
			p = p[1:]
			continue
		}
		seg := p
		if i := bytes.IndexByte(p, '/'); i >= 0 {
			seg, p = p[:i], p[i:]
		} else {
			p = nil
		}
		if string(seg) == "." || string(seg) == ".." {
			return true
		}
	}
	return false
}

// canonicalName is name as fasthttp normalises incoming field names ("x-user-id" →
// "X-User-Id"), so the hot path compares names with one bytes.Equal.
func canonicalName(name string) []byte {
	b := []byte(name)
	upper := true
	for i, c := range b {
		switch {
		case upper && c >= 'a' && c <= 'z':
			b[i] = c - ('a' - 'A')
		case !upper && c >= 'A' && c <= 'Z':
			b[i] = c + ('a' - 'A')
		}
		upper = c == '-'
	}
	return b
}

// parseAddr parses an X-Forwarded-For entry. netip.ParseAddr keeps (part of) its string for
// IPv6 zones, so converting the header bytes for it allocates; the common IPv4 entry is parsed
// here without that, anything else falls back to it.
func parseAddr(b []byte) (netip.Addr, bool) {
	var v4 [4]byte
	part, digits := 0, 0
	n := 0
	for _, c := range b {
		switch {
		case c >= '0' && c <= '9':
			if digits > 0 && n == 0 { // leading zero: ambiguous (octal to some parsers)
				return slowParseAddr(b)
			}
			n = n*10 + int(c-'0')
			digits++
			if n > 255 { // or an IPv6 group such as "270::"
				return slowParseAddr(b)
			}
		case c == '.' && digits > 0 && part < 3:
			v4[part] = byte(n)
			part, digits, n = part+1, 0, 0
		default:
			return slowParseAddr(b)
		}
	}
	if part != 3 || digits == 0 {
		return slowParseAddr(b)
	}
	v4[3] = byte(n)
	return netip.AddrFrom4(v4), true
}

func slowParseAddr(b []byte) (netip.Addr, bool) {
	a, err := netip.ParseAddr(string(b))
	return a, err == nil
}

// hostOK refuses a canonical host an upstream could split differently from us: one still
// holding a ':' outside brackets (an unbracketed IPv6 address, or "a:b:c").
func hostOK(host []byte) bool {
	return len(host) == 0 || host[0] == '[' || bytes.IndexByte(host, ':') < 0
}
