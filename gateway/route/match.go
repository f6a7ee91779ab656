package route

import (
	"bytes"
	"regexp"

	"github.com/valyala/fasthttp"
)

type pathKind uint8

const (
	pathAny pathKind = iota
	pathExact
	pathPrefix
	pathRegex
)

type valueKind uint8

const (
	valueExact valueKind = iota
	valueRegex
	valuePresent
	valueAbsent
)

type valueMatcher struct {
	name  []byte // canonical header name, or the raw query parameter name
	kind  valueKind
	exact []byte
	re    *regexp.Regexp
}

// Bits for the common methods let a route reject a request with one AND instead of comparing
// byte slices; anything else falls back to comparing against Route.methods.
const (
	mGet uint16 = 1 << iota
	mHead
	mPost
	mPut
	mDelete
	mConnect
	mOptions
	mTrace
	mPatch
	mOther
)

func methodBit(m []byte) uint16 {
	switch string(m) { // no allocation: the compiler recognises the conversion in a switch
	case "GET":
		return mGet
	case "HEAD":
		return mHead
	case "POST":
		return mPost
	case "PUT":
		return mPut
	case "DELETE":
		return mDelete
	case "CONNECT":
		return mConnect
	case "OPTIONS":
		return mOptions
	case "TRACE":
		return mTrace
	case "PATCH":
		return mPatch
	}
	return mOther
}

// Match returns the first route, in precedence order, whose every condition holds for req, or
// nil when none does. host must be the canonical lower-case host without port and path the
// normalised path: the caller computes both once per request, and Match never looks at
// req.Host() so that routing agrees with whatever authority the listener decided is canonical.
func (t *Table) Match(req *fasthttp.Request, host, path []byte) *Route {
	if t == nil {
		return nil
	}
	method := req.Header.Method()
	mbit := methodBit(method)
	exact := t.byHost[string(host)] // map index with string(b) does not allocate
	generic := t.generic
	i, j := 0, 0
	for i < len(exact) || j < len(generic) {
		var r *Route
		hostKnown := false
		if j >= len(generic) || (i < len(exact) && exact[i] < generic[j]) {
			r, hostKnown = t.routes[exact[i]], true
			i++
		} else {
			r = t.routes[generic[j]]
			j++
		}
		if r.matches(req, host, path, method, mbit, hostKnown) {
			return r
		}
	}
	return nil
}

// matches checks the cheapest conditions first so most non-matching routes are rejected
// before any header or query lookup.
func (r *Route) matches(req *fasthttp.Request, host, path, method []byte, mbit uint16, hostKnown bool) bool {
	if !r.anyMethod && !r.methodOK(method, mbit) {
		return false
	}
	if !hostKnown && !r.hostOK(host) {
		return false
	}
	switch r.pathKind {
	case pathExact:
		if !bytes.Equal(path, r.path) {
			return false
		}
	case pathPrefix:
		if !hasPrefix(path, r.path) {
			return false
		}
	case pathRegex:
		if !r.pathRe.Match(path) {
			return false
		}
	}
	for k := range r.headers {
		m := &r.headers[k]
		// PeekCanonical: the name was normalised at compile time, as fasthttp normalises
		// incoming names, so the lookup is case-insensitive without per-request copying.
		if !m.matchValue(req.Header.PeekCanonical(m.name), false) {
			return false
		}
	}
	if len(r.query) > 0 {
		// Parsing the query string costs, so only routes that ask for it pay.
		args := req.URI().QueryArgs()
		for k := range r.query {
			m := &r.query[k]
			if !m.matchValue(args.PeekBytes(m.name), args.HasBytes(m.name)) {
				return false
			}
		}
	}
	return true
}

func (r *Route) methodOK(method []byte, mbit uint16) bool {
	if mbit != mOther {
		return r.methodMask&mbit != 0
	}
	if r.methodMask&mOther == 0 {
		return false
	}
	for _, m := range r.methods {
		if bytes.Equal(m, method) {
			return true
		}
	}
	return false
}

func (r *Route) hostOK(host []byte) bool {
	if r.anyHost {
		return true
	}
	for _, h := range r.exactHosts {
		if bytes.Equal(h, host) {
			return true
		}
	}
	for _, s := range r.wildHosts {
		// len > len(s): "*.example.com" needs at least one more label, so it never matches
		// "example.com" (which lacks the dot) nor ".example.com" (empty label).
		if len(host) > len(s) && bytes.HasSuffix(host, s) {
			return true
		}
	}
	return false
}

// matchValue applies m to v. For headers, fasthttp cannot reliably tell an empty value from a
// missing header, so an empty header value counts as absent; for query parameters present says
// whether the name occurred at all ("?debug" is present with an empty value).
func (m *valueMatcher) matchValue(v []byte, present bool) bool {
	present = present || len(v) > 0
	switch m.kind {
	case valuePresent:
		return present
	case valueAbsent:
		return !present
	case valueRegex:
		return present && m.re.Match(v)
	default:
		return present && bytes.Equal(v, m.exact)
	}
}

func hasPrefix(b, prefix []byte) bool {
	return len(b) >= len(prefix) && bytes.Equal(b[:len(prefix)], prefix)
}
