package cors

import (
	"bytes"
	"errors"
	"fmt"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/valyala/fasthttp"

	"github.com/meshgate/meshgate/gateway/filter"
)

// Reason codes rendered in the error body and the access log.
const (
	ReasonDenied    = "cors_denied"    // preflight refused
	ReasonPreflight = "cors_preflight" // preflight answered at the edge (status 204)
)

// Header names, precomputed so the hot path never builds strings.
const (
	hOrigin           = "Origin"
	hVary             = "Vary"
	hRequestMethod    = "Access-Control-Request-Method"
	hRequestHeaders   = "Access-Control-Request-Headers"
	hAllowOrigin      = "Access-Control-Allow-Origin"
	hAllowMethods     = "Access-Control-Allow-Methods"
	hAllowHeaders     = "Access-Control-Allow-Headers"
	hAllowCredentials = "Access-Control-Allow-Credentials"
	hExposeHeaders    = "Access-Control-Expose-Headers"
	hMaxAge           = "Access-Control-Max-Age"
	preflightVary     = "Origin, Access-Control-Request-Method, Access-Control-Request-Headers"
)

// maxOrigin bounds the Origin header we consider; real origins are scheme://host:port and far
// shorter, and the bound lets matching lowercase into a stack buffer.
const maxOrigin = 320

// ErrWildcardCredentials is returned by New for AllowOrigins "*" with AllowCredentials.
var ErrWildcardCredentials = errors.New(`cors: allow_origins "*" cannot be combined with allow_credentials; list the origins`)

// Options configures one CORS policy.
type Options struct {
	Name string // policy name, for error messages
	// AllowOrigins lists exact origins ("https://app.mesh.test"), "*" (any origin), or subdomain
	// wildcards ("https://*.mesh.test"). Required.
	AllowOrigins []string
	// AllowMethods a preflight may ask for; default GET, HEAD, POST. The CORS-safelisted GET,
	// HEAD and POST always pass, as browsers never need permission for them.
	AllowMethods []string
	// AllowHeaders a preflight may ask for, case-insensitive; "*" allows any requested header
	// (they are echoed back, which also works with credentials, unlike a literal "*").
	AllowHeaders []string
	// ExposeHeaders lists response headers a page may read beyond the safelisted ones.
	ExposeHeaders []string
	// AllowCredentials lets pages send cookies and Authorization and read the response.
	AllowCredentials bool
	// MaxAge lets browsers cache a preflight answer; 0 sends no Access-Control-Max-Age.
	MaxAge time.Duration
}

// Policy is a CORS policy: a request filter that answers preflights and a response filter that
// labels actual responses. Immutable after New; safe for concurrent use.
type Policy struct {
	anyOrigin   bool
	credentials bool
	reflectHdrs bool
	exact       map[string]struct{}
	wild        []wildcard
	methods     []string
	headers     [][]byte // lowercase
	// Joined header values, built once.
	allowMethods, allowHeaders, exposeHeaders, maxAge string
}

var (
	_ filter.Filter         = (*Policy)(nil)
	_ filter.ResponseFilter = (*Policy)(nil)
)

// wildcard matches scheme + "://" + one or more labels + suffix (".mesh.test[:port]").
type wildcard struct{ scheme, suffix []byte }

func (w wildcard) match(origin []byte) bool {
	if len(origin) <= len(w.scheme)+len(w.suffix) || !bytes.HasPrefix(origin, w.scheme) || !bytes.HasSuffix(origin, w.suffix) {
		return false
	}
	host := origin[len(w.scheme) : len(origin)-len(w.suffix)]
	if host[0] == '.' || host[len(host)-1] == '.' || host[0] == '-' {
		return false
	}
	for _, c := range host {
		if (c < 'a' || c > 'z') && (c < '0' || c > '9') && c != '-' && c != '.' {
			return false
		}
	}
	return true
}

// New validates opts and precomputes every header value.
func New(opts Options) (*Policy, error) {
	p := &Policy{credentials: opts.AllowCredentials, exact: map[string]struct{}{}}
	if len(opts.AllowOrigins) == 0 {
		return nil, fmt.Errorf("cors: policy %q: allow_origins is required", opts.Name)
	}
	for _, o := range opts.AllowOrigins {
		if o == "*" {
			p.anyOrigin = true
			continue
		}
		lo, w, err := parseOrigin(o)
		if err != nil {
			return nil, fmt.Errorf("cors: policy %q: %w", opts.Name, err)
		}
		if w != nil {
			p.wild = append(p.wild, *w)
		} else {
			p.exact[lo] = struct{}{}
		}
	}
	if p.anyOrigin && p.credentials {
		return nil, fmt.Errorf("policy %q: %w", opts.Name, ErrWildcardCredentials)
	}
	methods := opts.AllowMethods
	if len(methods) == 0 {
		methods = []string{fasthttp.MethodGet, fasthttp.MethodHead, fasthttp.MethodPost}
	}
	for _, m := range methods {
		m = strings.ToUpper(strings.TrimSpace(m))
		if !isToken(m) {
			return nil, fmt.Errorf("cors: policy %q: invalid method %q", opts.Name, m)
		}
		p.methods = append(p.methods, m)
	}
	p.allowMethods = strings.Join(p.methods, ", ")
	var hdrs []string
	for _, h := range opts.AllowHeaders {
		h = strings.TrimSpace(h)
		if h == "*" {
			p.reflectHdrs = true
			continue
		}
		if !isToken(h) {
			return nil, fmt.Errorf("cors: policy %q: invalid allow header %q", opts.Name, h)
		}
		p.headers = append(p.headers, []byte(strings.ToLower(h)))
		hdrs = append(hdrs, h)
	}
	p.allowHeaders = strings.Join(hdrs, ", ")
	for _, h := range opts.ExposeHeaders {
		if !isToken(strings.TrimSpace(h)) {
			return nil, fmt.Errorf("cors: policy %q: invalid expose header %q", opts.Name, h)
		}
	}
	p.exposeHeaders = strings.Join(opts.ExposeHeaders, ", ")
	switch {
	case opts.MaxAge < 0:
		return nil, fmt.Errorf("cors: policy %q: max_age must not be negative", opts.Name)
	case opts.MaxAge > 0:
		p.maxAge = strconv.FormatInt(int64(opts.MaxAge/time.Second), 10)
	}
	return p, nil
}

// parseOrigin checks that o is scheme://host[:port] and returns it lowercased, or the wildcard
// it describes.
func parseOrigin(o string) (string, *wildcard, error) {
	lo := strings.ToLower(o)
	scheme, rest, ok := strings.Cut(lo, "://")
	if !ok || scheme == "" || rest == "" || strings.ContainsAny(rest, "/?#@ ") {
		return "", nil, fmt.Errorf("origin %q: want scheme://host[:port]", o)
	}
	if host, ok := strings.CutPrefix(rest, "*."); ok {
		if host == "" || strings.Contains(host, "*") {
			return "", nil, fmt.Errorf("origin %q: a wildcard needs a domain after \"*.\"", o)
		}
		if _, err := url.Parse(scheme + "://x." + host); err != nil {
			return "", nil, fmt.Errorf("origin %q: %w", o, err)
		}
		return "", &wildcard{scheme: []byte(scheme + "://"), suffix: []byte("." + host)}, nil
	}
	if strings.Contains(rest, "*") {
		return "", nil, fmt.Errorf("origin %q: \"*\" is only allowed as the first label", o)
	}
	if _, err := url.Parse(lo); err != nil {
		return "", nil, fmt.Errorf("origin %q: %w", o, err)
	}
	return lo, nil, nil
}

// Allowed reports whether a page from origin may read responses under this policy.
func (p *Policy) Allowed(origin []byte) bool {
	if len(origin) == 0 || len(origin) > maxOrigin {
		return false
	}
	if p.anyOrigin {
		return true
	}
	var buf [maxOrigin]byte
	lo := buf[:len(origin)]
	for i, c := range origin {
		if 'A' <= c && c <= 'Z' {
			c += 'a' - 'A'
		}
		lo[i] = c
	}
	if _, ok := p.exact[string(lo)]; ok { // map index with a conversion does not allocate
		return true
	}
	for _, w := range p.wild {
		if w.match(lo) {
			return true
		}
	}
	return false
}

// Request answers preflights; every other request continues unchanged.
func (p *Policy) Request(r *filter.Request) filter.Verdict {
	req := &r.Ctx.Request
	if !req.Header.IsOptions() {
		return filter.Verdict{}
	}
	origin := req.Header.Peek(hOrigin)
	method := req.Header.Peek(hRequestMethod)
	if len(origin) == 0 || len(method) == 0 {
		return filter.Verdict{} // a plain OPTIONS request: the upstream's business
	}
	reqHeaders := req.Header.Peek(hRequestHeaders)
	if !p.Allowed(origin) || !p.methodAllowed(method) || !p.headersAllowed(reqHeaders) {
		return filter.Verdict{Status: fasthttp.StatusForbidden, Reason: ReasonDenied}
	}
	resp := &r.Ctx.Response
	resp.ResetBody()
	resp.SetStatusCode(fasthttp.StatusNoContent)
	h := &resp.Header
	p.setAllowOrigin(h, origin)
	h.Set(hVary, preflightVary)
	h.Set(hAllowMethods, p.allowMethods)
	switch {
	case p.reflectHdrs && len(reqHeaders) > 0:
		h.SetBytesV(hAllowHeaders, reqHeaders)
	case p.allowHeaders != "":
		h.Set(hAllowHeaders, p.allowHeaders)
	}
	if p.maxAge != "" {
		h.Set(hMaxAge, p.maxAge)
	}
	return filter.Verdict{Status: fasthttp.StatusNoContent, Reason: ReasonPreflight, Written: true}
}

// Response labels an upstream response for the browser.
func (p *Policy) Response(r *filter.Request, resp *fasthttp.Response) {
	h := &resp.Header
	h.Del(hAllowOrigin)
	h.Del(hAllowCredentials)
	h.Del(hExposeHeaders)
	if !p.anyOrigin || p.credentials {
		// The answer depends on Origin (present or not), so shared caches must key on it.
		addVaryOrigin(h)
	}
	origin := r.Ctx.Request.Header.Peek(hOrigin)
	if !p.Allowed(origin) {
		return
	}
	p.setAllowOrigin(h, origin)
	if p.exposeHeaders != "" {
		h.Set(hExposeHeaders, p.exposeHeaders)
	}
}

// setAllowOrigin writes "*" when that is both allowed and enough, else echoes the origin.
func (p *Policy) setAllowOrigin(h *fasthttp.ResponseHeader, origin []byte) {
	if p.anyOrigin && !p.credentials {
		h.Set(hAllowOrigin, "*")
		return
	}
	h.SetBytesV(hAllowOrigin, origin)
	if p.credentials {
		h.Set(hAllowCredentials, "true")
	}
}

func (p *Policy) methodAllowed(m []byte) bool {
	switch string(m) {
	case fasthttp.MethodGet, fasthttp.MethodHead, fasthttp.MethodPost:
		return true
	}
	for _, a := range p.methods {
		if string(m) == a {
			return true
		}
	}
	return false
}

// headersAllowed checks every name in an Access-Control-Request-Headers list.
func (p *Policy) headersAllowed(list []byte) bool {
	if p.reflectHdrs {
		return true
	}
	ok := true
	forEachToken(list, func(name []byte) {
		if !ok {
			return
		}
		found := false
		for _, a := range p.headers {
			if bytes.EqualFold(name, a) {
				found = true
				break
			}
		}
		ok = found
	})
	return ok
}

// addVaryOrigin adds Origin to Vary unless an existing Vary already names it (or "*").
func addVaryOrigin(h *fasthttp.ResponseHeader) {
	for k, v := range h.All() {
		if !bytes.EqualFold(k, []byte(hVary)) {
			continue
		}
		found := false
		forEachToken(v, func(tok []byte) {
			found = found || bytes.EqualFold(tok, []byte(hOrigin)) || string(tok) == "*"
		})
		if found {
			return
		}
	}
	h.Add(hVary, hOrigin)
}

// forEachToken calls fn with each trimmed, non-empty element of a comma-separated list.
func forEachToken(v []byte, fn func([]byte)) {
	for len(v) > 0 {
		var tok []byte
		if i := bytes.IndexByte(v, ','); i >= 0 {
			tok, v = v[:i], v[i+1:]
		} else {
			tok, v = v, nil
		}
		if tok = bytes.TrimSpace(tok); len(tok) > 0 {
			fn(tok)
		}
	}
}

// isToken reports whether s is a non-empty RFC 9110 token (header and method names).
func isToken(s string) bool {
	if s == "" {
		return false
	}
	for i := range len(s) {
		c := s[i]
		if c <= ' ' || c >= 0x7f || strings.IndexByte(`"(),/:;<=>?@[\]{}`, c) >= 0 {
			return false
		}
	}
	return true
}
