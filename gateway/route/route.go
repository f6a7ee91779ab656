package route

import (
	"bytes"
	"cmp"
	"errors"
	"fmt"
	"math"
	"regexp"
	"slices"
	"strings"
	"time"

	"github.com/valyala/fasthttp"
)

// Options is everything needed to compile one route table. The edge assembly builds it from conf.
type Options struct {
	Routes []Spec
}

// Spec is one route as the route package sees it (already validated by conf, but New re-checks
// what it compiles, e.g. regexes, and returns an error naming the route).
type Spec struct {
	Name     string
	Key      int // caller's identifier, returned untouched as Route.Key (e.g. index into per-config state)
	Priority int // higher first; ties keep the order of Options.Routes

	Hosts      []string // exact "api.example.com" or wildcard "*.example.com"; lower-case; empty = any
	Path       string   // exact
	PathPrefix string   // segment-agnostic prefix ("/api" matches "/api" and "/apix" and "/api/x")
	PathRegex  string   // RE2, anchored to the whole path
	Methods    []string // case-sensitive, as written; empty = any
	Headers    []ValueMatch
	Query      []ValueMatch

	RewritePrefix string // replaces PathPrefix in the forwarded path when set ("" = no rewrite)
	Targets       []Target
	Timeout       time.Duration
}

// ValueMatch matches a header or query parameter: exactly one of Exact, Regex, Present is used.
type ValueMatch struct {
	Name    string
	Exact   string
	Regex   string // RE2, anchored
	Present *bool  // true: must be present; false: must be absent
}

// Target is one weighted destination service of a route.
type Target struct {
	Service string
	Weight  int
}

// SpecError reports a route that cannot be compiled. Field uses the config's spelling
// ("path_regex", "headers[1].regex", "hosts[0]") so the message points at what to fix.
type SpecError struct {
	Route string
	Field string
	Err   error
}

func (e *SpecError) Error() string {
	return fmt.Sprintf("route %q: %s: %v", e.Route, e.Field, e.Err)
}

func (e *SpecError) Unwrap() error { return e.Err }

// maxTotalWeight keeps the cumulative sums far from overflow and the modulo bias of
// PickTarget negligible (at most 2^32 / 2^64).
const maxTotalWeight = math.MaxUint32

// Route is one compiled route. It is read-only after New: the hot path reads it from many
// goroutines without locks.
type Route struct {
	Name     string
	Key      int
	Priority int
	// Index is the route's position in precedence order (0 = tried first).
	Index   int
	Spec    Spec // deep copy of the input; callers must not modify it
	Targets []Target
	Timeout time.Duration

	// compiled form, see match.go
	anyHost    bool
	exactHosts [][]byte
	wildHosts  [][]byte // ".example.com" suffixes from "*.example.com"

	anyMethod  bool
	methodMask uint16
	methods    [][]byte // every configured method; consulted only for methods outside the mask

	pathKind pathKind
	path     []byte
	pathRe   *regexp.Regexp

	headers []valueMatcher
	query   []valueMatcher

	rewrite       bool
	prefix        []byte
	rewritePrefix []byte

	cumWeights  []uint64
	totalWeight uint64
}

// Table is an immutable, compiled set of routes. Build a new one per config and swap it in
// atomically; never mutate one that is in use.
type Table struct {
	routes []*Route
	// byHost holds, per exact host, the indexes of routes whose hosts are all exact; generic
	// holds every other route (no hosts or any wildcard). Both are ascending, so merging them
	// visits candidates in exactly the linear precedence order.
	byHost  map[string][]int32
	generic []int32
}

// New compiles opts into a Table. It returns a *SpecError naming the first route that cannot be
// compiled; opts is not retained.
func New(opts Options) (*Table, error) {
	if len(opts.Routes) > math.MaxInt32 {
		return nil, errors.New("too many routes")
	}
	routes := make([]*Route, 0, len(opts.Routes))
	for i := range opts.Routes {
		r, err := compile(cloneSpec(opts.Routes[i]))
		if err != nil {
			return nil, err
		}
		routes = append(routes, r)
	}
	// Stable, so equal priorities keep file order: this is the documented precedence.
	slices.SortStableFunc(routes, func(a, b *Route) int { return cmp.Compare(b.Priority, a.Priority) })

	t := &Table{routes: routes, byHost: make(map[string][]int32)}
	for i, r := range routes {
		r.Index = i
		if r.anyHost || len(r.wildHosts) > 0 {
			t.generic = append(t.generic, int32(i))
			continue
		}
		for _, h := range r.exactHosts {
			l := t.byHost[string(h)]
			// A route listing the same host twice must still be visited once.
			if n := len(l); n > 0 && l[n-1] == int32(i) {
				continue
			}
			t.byHost[string(h)] = append(l, int32(i))
		}
	}
	return t, nil
}

func compile(s Spec) (*Route, error) {
	fail := func(field string, err error) (*Route, error) {
		return nil, &SpecError{Route: s.Name, Field: field, Err: err}
	}
	r := &Route{
		Name:     s.Name,
		Key:      s.Key,
		Priority: s.Priority,
		Spec:     s,
		Targets:  slices.Clone(s.Targets),
		Timeout:  s.Timeout,
	}

	r.anyHost = len(s.Hosts) == 0
	for i, h := range s.Hosts {
		field := fmt.Sprintf("hosts[%d]", i)
		h = strings.ToLower(h)
		switch {
		case h == "":
			return fail(field, errors.New("empty host"))
		case strings.HasPrefix(h, "*."):
			suffix := h[1:]
			if len(suffix) < 2 || strings.Contains(suffix, "*") {
				return fail(field, fmt.Errorf("%q: wildcard must look like \"*.example.com\"", h))
			}
			r.wildHosts = append(r.wildHosts, []byte(suffix))
		case strings.Contains(h, "*"):
			return fail(field, fmt.Errorf("%q: wildcard must look like \"*.example.com\"", h))
		default:
			r.exactHosts = append(r.exactHosts, []byte(h))
		}
	}

	r.anyMethod = len(s.Methods) == 0
	for i, m := range s.Methods {
		// Kept as written: methods are case-sensitive (RFC 9110 §9.1), and the engine refuses
		// one that is not all upper-case unless a route names it exactly.
		if m == "" {
			return fail(fmt.Sprintf("methods[%d]", i), errors.New("empty method"))
		}
		r.methods = append(r.methods, []byte(m))
		r.methodMask |= methodBit([]byte(m))
	}

	n := 0
	for _, p := range []string{s.Path, s.PathPrefix, s.PathRegex} {
		if p != "" {
			n++
		}
	}
	if n > 1 {
		return fail("match", errors.New("at most one of path, path_prefix, path_regex may be set"))
	}
	switch {
	case s.Path != "":
		r.pathKind, r.path = pathExact, []byte(s.Path)
	case s.PathPrefix != "":
		r.pathKind, r.path = pathPrefix, []byte(s.PathPrefix)
	case s.PathRegex != "":
		re, err := anchored(s.PathRegex)
		if err != nil {
			return fail("path_regex", err)
		}
		r.pathKind, r.pathRe = pathRegex, re
	}

	var (
		field string
		err   error
	)
	if r.headers, field, err = compileValues(s.Headers, "headers", true); err != nil {
		return fail(field, err)
	}
	if r.query, field, err = compileValues(s.Query, "query", false); err != nil {
		return fail(field, err)
	}

	if s.RewritePrefix != "" {
		r.rewrite = true
		r.prefix = []byte(s.PathPrefix)
		r.rewritePrefix = []byte(s.RewritePrefix)
	}

	if len(s.Targets) == 0 {
		return fail("targets", errors.New("at least one target is required"))
	}
	// conf documents "weight defaults to 1 when only one target": honour it here too, so an
	// assembly that forgets the default does not produce a route that can never be served.
	if len(s.Targets) == 1 && s.Targets[0].Weight == 0 {
		r.Targets[0].Weight = 1
	}
	r.cumWeights = make([]uint64, len(r.Targets))
	for i, tg := range r.Targets {
		if tg.Service == "" {
			return fail(fmt.Sprintf("targets[%d].service", i), errors.New("empty service"))
		}
		if tg.Weight < 0 {
			return fail(fmt.Sprintf("targets[%d].weight", i), fmt.Errorf("negative weight %d", tg.Weight))
		}
		r.totalWeight += uint64(tg.Weight)
		if r.totalWeight > maxTotalWeight {
			return fail(fmt.Sprintf("targets[%d].weight", i), fmt.Errorf("total weight exceeds %d", uint64(maxTotalWeight)))
		}
		r.cumWeights[i] = r.totalWeight
	}
	if r.totalWeight == 0 {
		return fail("targets", errors.New("every target has weight 0"))
	}
	return r, nil
}

// compileValues returns the failing field's name alongside any error so compile can name it.
func compileValues(vs []ValueMatch, kind string, header bool) ([]valueMatcher, string, error) {
	out := make([]valueMatcher, 0, len(vs))
	for i, v := range vs {
		field := fmt.Sprintf("%s[%d]", kind, i)
		fail := func(sub string, err error) ([]valueMatcher, string, error) {
			return nil, field + sub, err
		}
		if v.Name == "" {
			return fail(".name", errors.New("empty name"))
		}
		set := 0
		if v.Exact != "" {
			set++
		}
		if v.Regex != "" {
			set++
		}
		if v.Present != nil {
			set++
		}
		if set != 1 {
			return fail("", fmt.Errorf("%q: exactly one of exact, regex, present must be set", v.Name))
		}
		m := valueMatcher{name: []byte(v.Name)}
		if header {
			// fasthttp stores header names in canonical form by default; convert once here so
			// the hot path can use PeekCanonical without re-normalising per request.
			m.name = fasthttp.AppendNormalizedHeaderKey(nil, v.Name)
		}
		switch {
		case v.Present != nil && *v.Present:
			m.kind = valuePresent
		case v.Present != nil:
			m.kind = valueAbsent
		case v.Regex != "":
			re, err := anchored(v.Regex)
			if err != nil {
				return fail(".regex", err)
			}
			m.kind, m.re = valueRegex, re
		default:
			m.kind, m.exact = valueExact, []byte(v.Exact)
		}
		out = append(out, m)
	}
	return out, "", nil
}

func anchored(expr string) (*regexp.Regexp, error) {
	re, err := regexp.Compile(`^(?:` + expr + `)$`)
	if err != nil {
		return nil, fmt.Errorf("compile %q: %w", expr, err)
	}
	return re, nil
}

// cloneSpec deep-copies s so a Route never shares slices with the caller's Options.
func cloneSpec(s Spec) Spec {
	s.Hosts = slices.Clone(s.Hosts)
	s.Methods = slices.Clone(s.Methods)
	s.Targets = slices.Clone(s.Targets)
	s.Headers = cloneValues(s.Headers)
	s.Query = cloneValues(s.Query)
	return s
}

func cloneValues(vs []ValueMatch) []ValueMatch {
	vs = slices.Clone(vs)
	for i := range vs {
		if p := vs[i].Present; p != nil {
			b := *p
			vs[i].Present = &b
		}
	}
	return vs
}

// Routes returns the routes in precedence order, for the admin /routes listing. The slice is a
// copy; the routes themselves are shared and must not be modified.
func (t *Table) Routes() []*Route {
	if t == nil {
		return nil
	}
	return slices.Clone(t.routes)
}

// NamesMethod reports whether some route lists method exactly (methods are case-sensitive;
// the engine refuses a method that is not all upper-case unless a route names it).
func (t *Table) NamesMethod(method []byte) bool {
	if t == nil {
		return false
	}
	for _, r := range t.routes {
		for _, m := range r.methods {
			if bytes.Equal(m, method) {
				return true
			}
		}
	}
	return false
}

// Len returns the number of routes.
func (t *Table) Len() int {
	if t == nil {
		return 0
	}
	return len(t.routes)
}

// PickTarget returns the index into r.Targets chosen for a uniformly random n, in proportion to
// the targets' weights; a zero-weight target is never chosen. Taking n from the caller keeps the
// choice deterministic for tests and lets the hot path use its own cheap RNG.
func (r *Route) PickTarget(n uint64) int {
	x := n % r.totalWeight
	for i, c := range r.cumWeights {
		if x < c {
			return i
		}
	}
	return len(r.cumWeights) - 1 // unreachable: x < totalWeight == last cumulative weight
}

// Rewrites reports whether RewritePath can change the path.
func (r *Route) Rewrites() bool { return r.rewrite }

// RewritePath appends the path to forward upstream to dst and returns the extended slice. When
// the route has a RewritePrefix and path starts with PathPrefix, that prefix is replaced; if the
// replacement ends in "/" and the remainder starts with "/", one slash is dropped so "/api/x"
// with prefix "/api" and rewrite "/" becomes "/x", not "//x". It allocates only if dst lacks
// capacity.
func (r *Route) RewritePath(dst, path []byte) []byte {
	if !r.rewrite || !hasPrefix(path, r.prefix) {
		return append(dst, path...)
	}
	rest := path[len(r.prefix):]
	rp := r.rewritePrefix
	if len(rp) > 0 && rp[len(rp)-1] == '/' && len(rest) > 0 && rest[0] == '/' {
		rest = rest[1:]
	}
	start := len(dst)
	dst = append(dst, rp...)
	dst = append(dst, rest...)
	if len(dst) == start {
		dst = append(dst, '/')
	}
	return dst
}
