package proxy

import (
	"bytes"
	"math/rand/v2"
	"net/netip"

	"github.com/valyala/fasthttp"
)

// Header names as constants: the request path never builds them from strings.
const (
	hdrXForwardedFor   = "X-Forwarded-For"
	hdrXForwardedProto = "X-Forwarded-Proto"
	hdrXForwardedHost  = "X-Forwarded-Host"
	hdrXRequestID      = "X-Request-Id"
	hdrConnection      = "Connection"
)

// The same names as bytes, for SetCanonical: the names are canonical already, and SetBytesV
// would normalise a copy of the name on every call (1% of the edge's CPU for five fields).
var (
	keyXForwardedFor   = []byte(hdrXForwardedFor)
	keyXForwardedProto = []byte(hdrXForwardedProto)
	keyXForwardedHost  = []byte(hdrXForwardedHost)
	keyXRequestID      = []byte(hdrXRequestID)
	valHTTP, valHTTPS  = []byte("http"), []byte("https")
)

// hopByHop are the RFC 9110 §7.6.1 connection-specific fields plus the de-facto ones that
// proxies must not forward.
var hopByHop = [...]string{
	"Connection", "Keep-Alive", "Proxy-Connection", "Proxy-Authenticate", "Proxy-Authorization",
	"Te", "Trailer", "Transfer-Encoding", "Upgrade",
}

// stripResponseHopByHop removes hop-by-hop fields and every field named in Connection from an
// upstream response. One pass over the headers decides whether any deletion is needed at all:
// most responses carry none, and each Del normalizes its key and rescans every header.
func stripResponseHopByHop(h *fasthttp.ResponseHeader) {
	if !anyHopByHop(h.All()) {
		return
	}
	if conn := h.Peek(hdrConnection); len(conn) > 0 {
		forEachToken(conn, func(tok []byte) { h.DelBytes(tok) })
	}
	for _, k := range hopByHop {
		h.Del(k)
	}
}

// anyHopByHop reports whether a header set names a hop-by-hop field (or Connection, which may
// name more). fasthttp keeps Connection: close/keep-alive as a flag, not a field, so the common
// keep-alive request has nothing here.
func anyHopByHop(all func(yield func(k, v []byte) bool)) bool {
	for k := range all {
		for _, hk := range hopByHop {
			if len(k) == len(hk) && bytes.EqualFold(k, []byte(hk)) {
				return true
			}
		}
	}
	return false
}

// forEachToken calls fn for each comma-separated, trimmed, non-empty token of v.
func forEachToken(v []byte, fn func([]byte)) {
	for len(v) > 0 {
		i := bytes.IndexByte(v, ',')
		var tok []byte
		if i < 0 {
			tok, v = v, nil
		} else {
			tok, v = v[:i], v[i+1:]
		}
		tok = bytes.TrimSpace(tok)
		if len(tok) > 0 {
			fn(tok)
		}
	}
}

// trusted reports whether addr is one of the configured proxy hops.
func trusted(addr netip.Addr, nets []netip.Prefix) bool {
	for _, p := range nets {
		if p.Contains(addr) {
			return true
		}
	}
	return false
}

// clientAddr finds the real client behind trusted proxy hops: the rightmost X-Forwarded-For
// entry that is not itself a trusted hop, walking left only while every hop so far is trusted
// (each trusted hop appended the address it saw). Entries left of the first untrusted one were
// written by the client and are never believed. from is the offset in xff where the entries
// worth forwarding begin (the client's own entry), -1 when none is (the client is remote).
func clientAddr(remote netip.Addr, xff []byte, nets []netip.Prefix) (client netip.Addr, from int) {
	if !trusted(remote, nets) || len(xff) == 0 {
		return remote, -1
	}
	client, from = remote, -1
	rest := xff
	for len(rest) > 0 {
		i := bytes.LastIndexByte(rest, ',')
		entry := bytes.TrimSpace(rest[i+1:])
		a, ok := parseAddr(entry)
		if !ok {
			return client, from // garbage from a client: the last hop we trust saw the client
		}
		client, from = a.Unmap(), i+1
		if i < 0 {
			from = 0
		}
		if !trusted(client, nets) {
			return client, from
		}
		if i < 0 {
			break
		}
		rest = rest[:i]
	}
	return client, from
}

// validRequestID accepts ids a client or an upstream proxy sent if they are short and plain, so
// they cannot break log formats or headers downstream.
func validRequestID(id []byte) bool {
	if len(id) == 0 || len(id) > 128 {
		return false
	}
	for _, c := range id {
		switch {
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9', c == '-', c == '_', c == '.', c == ':':
		default:
			return false
		}
	}
	return true
}

const hexDigits = "0123456789abcdef"

// appendRequestID appends 32 random hex digits (128 bits). math/rand/v2's global source is
// per-thread ChaCha8: unguessable enough for correlation ids, and lock-free.
func appendRequestID(dst []byte) []byte {
	for range 2 {
		v := rand.Uint64()
		for i := 0; i < 16; i++ {
			dst = append(dst, hexDigits[v&0xf])
			v >>= 4
		}
	}
	return dst
}

// appendQuotedPath percent-encodes what may not appear raw in a request-target path, so a
// decoded '?', '#', space or control byte from the client cannot change the upstream's view
// of the request line.
func appendQuotedPath(dst, path []byte) []byte {
	for _, c := range path {
		if pathSafe(c) {
			dst = append(dst, c)
			continue
		}
		dst = append(dst, '%', hexUpper[c>>4], hexUpper[c&0xf])
	}
	return dst
}

const hexUpper = "0123456789ABCDEF"

func pathSafe(c byte) bool {
	switch {
	case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9':
		return true
	}
	switch c {
	case '-', '.', '_', '~', '!', '$', '&', '\'', '(', ')', '*', '+', ',', ';', '=', ':', '@', '/':
		return true
	}
	return false
}

// canonicalHost is the request's authority without port, lower-case. For an absolute-form
// request-target fasthttp's URI takes the target's authority (RFC 9112 §3.2.2), so routing and
// the forwarded Host agree even when a client sends a different Host header.
func canonicalHost(host []byte) []byte {
	if len(host) > 0 && host[0] == '[' {
		if i := bytes.IndexByte(host, ']'); i > 0 {
			return host[:i+1]
		}
		return host
	}
	if i := bytes.LastIndexByte(host, ':'); i >= 0 {
		return host[:i]
	}
	return host
}

// badFraming catches what fasthttp accepts but an edge should not:
//   - Content-Length alongside Transfer-Encoding: chunked. RFC 9112 §6.3 lets a server pick
//     chunked and close, but disagreeing framing is the request-smuggling primitive, and Envoy
//     and nginx refuse it; so do we.
//   - A request-target with a broken percent-escape ("/%zz"): fasthttp decodes leniently, and
//     what a lenient upstream makes of it may differ from what we routed on.
//
// Both checks cost nothing for the common request: the first only runs for chunked bodies, the
// second only when the target contains '%'.
func badFraming(h *fasthttp.RequestHeader) (bool, string) {
	if h.ContentLength() == -1 && hasFieldName(h.RawHeaders(), "content-length") {
		return true, ReasonBadRequest
	}
	uri := h.RequestURI()
	for i := bytes.IndexByte(uri, '%'); i >= 0; {
		if i+2 >= len(uri) || !isHex(uri[i+1]) || !isHex(uri[i+2]) {
			return true, ReasonBadRequest
		}
		next := bytes.IndexByte(uri[i+3:], '%')
		if next < 0 {
			break
		}
		i += 3 + next
	}
	return false, ""
}

func isHex(c byte) bool {
	return c >= '0' && c <= '9' || c >= 'a' && c <= 'f' || c >= 'A' && c <= 'F'
}

// hasFieldName reports whether the raw header block has a field called name (lower-case).
func hasFieldName(raw []byte, name string) bool {
	for len(raw) > 0 {
		line := raw
		if i := bytes.IndexByte(raw, '\n'); i >= 0 {
			line, raw = raw[:i], raw[i+1:]
		} else {
			raw = nil
		}
		if c := bytes.IndexByte(line, ':'); c == len(name) && bytes.EqualFold(line[:c], []byte(name)) {
			return true
		}
	}
	return false
}
