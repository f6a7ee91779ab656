package intentions

import (
	"bytes"
	"cmp"
	"fmt"
	"regexp"
	"slices"
	"strings"
)

// Origins of a rule set, shown on the admin API.
const (
	OriginSource   = "source"
	OriginSnapshot = "snapshot"
)

// Labels of decisions made before any intention is looked at.
const labelNoSource = "no source identity"

// ruleSet is one compiled answer. It is immutable once built: Authorize reads it through an
// atomic pointer, so an update is a pointer swap and requests never take a lock.
type ruleSet struct {
	version    uint64
	origin     string
	intentions []Intention // evaluation order, for the admin view and the snapshot

	// exact maps a source name to the rule that decides for it: its own intention, or a
	// wildcard one of higher precedence (an exact destination outranks an exact source).
	exact map[string]*rule
	// wildcard decides for every source not in exact; nil means the default.
	wildcard *rule
	deflt    Decision
}

type rule struct {
	l7       bool
	decision Decision // L4 intentions
	perms    []permission
	noMatch  Decision // L7 intentions whose permissions all miss: the default, per Consul
}

type pathKind uint8

const (
	pathAny pathKind = iota
	pathExact
	pathPrefix
	pathRegex
)

type permission struct {
	decision Decision
	// never marks an allow permission that needs a JWT we cannot verify.
	never   bool
	path    pathKind
	pathStr string
	pathRe  *regexp.Regexp
	methods []string
	headers []headerMatcher
}

// headerSource says where a header value comes from: Envoy exposes the method, path and
// authority as pseudo-headers, and Consul passes header names through to Envoy unchanged.
type headerSource uint8

const (
	fromHeader headerSource = iota
	fromMethod
	fromPath
)

type headerOp uint8

const (
	opExact headerOp = iota
	opPrefix
	opSuffix
	opContains
	opRegex
	opPresent
)

type headerMatcher struct {
	src    headerSource
	name   string // for fromHeader: the name passed to Peek
	op     headerOp
	value  string
	bvalue []byte // value, for the case-insensitive byte comparisons
	re     *regexp.Regexp
	invert bool
	fold   bool
}

// compile turns one answer into a rule set. It fails only on a regular expression that does
// not compile; the caller then keeps the rules in use, as Envoy keeps its config when it
// rejects (NACKs) an update Consul sends it.
func compile(list []Intention, defaultAllow bool, version uint64, origin string) (*ruleSet, error) {
	var sorted []Intention // nil when empty, so equal answers compare equal
	if len(list) > 0 {
		sorted = slices.Clone(list)
		slices.SortStableFunc(sorted, comparePrecedence)
	}

	deflt := Decision{Allow: defaultAllow, Intention: LabelDefaultDeny}
	if defaultAllow {
		deflt.Intention = LabelDefaultAllow
	}
	rs := &ruleSet{version: version, origin: origin, intentions: sorted, deflt: deflt}
	for i := range sorted {
		ix := &sorted[i]
		if !appliesToLocalSource(ix) {
			continue
		}
		r, err := compileRule(ix, deflt)
		if err != nil {
			return nil, fmt.Errorf("intention %s: %w", ixLabel(ix), err)
		}
		if ix.SourceName == Wildcard {
			if rs.wildcard == nil {
				rs.wildcard = r
			}
			continue
		}
		if rs.exact == nil {
			rs.exact = make(map[string]*rule)
		}
		if _, seen := rs.exact[ix.SourceName]; !seen {
			// A wildcard seen earlier has higher precedence and already decides for this name.
			rs.exact[ix.SourceName] = cmp.Or(rs.wildcard, r)
		}
	}
	return rs, nil
}

// appliesToLocalSource reports whether ix can match a caller identified by mesh/identity:
// a Consul service in the default partition and namespace of this cluster, not a peer.
// This is Consul's connect.IntentionMatch for match type "source" with that caller.
func appliesToLocalSource(ix *Intention) bool {
	if ix.SourceType != "" && ix.SourceType != "consul" {
		return false
	}
	if ix.SourcePeer != "" || ix.SourceSamenessGroup != "" {
		return false
	}
	if cmp.Or(ix.SourcePartition, defaultTenancy) != defaultTenancy {
		return false
	}
	ns := cmp.Or(ix.SourceNamespace, defaultTenancy)
	return ns == Wildcard || ns == defaultTenancy
}

func compileRule(ix *Intention, deflt Decision) (*rule, error) {
	label := ixLabel(ix)
	if ix.RequiresJWT {
		// Consul ANDs the JWT into who the source is; unable to check it, the only safe reading
		// is that this source is not allowed.
		return &rule{decision: Decision{Intention: label + " requires JWT (unsupported), deny"}}, nil
	}
	if len(ix.Permissions) == 0 {
		allow := ix.Action == ActionAllow
		return &rule{decision: Decision{Allow: allow, Intention: label + " " + actionWord(allow)}}, nil
	}
	r := &rule{
		l7:      true,
		perms:   make([]permission, 0, len(ix.Permissions)),
		noMatch: Decision{Allow: deflt.Allow, Intention: label + " no permission matched, " + deflt.Intention},
	}
	for i := range ix.Permissions {
		p, err := compilePermission(&ix.Permissions[i])
		if err != nil {
			return nil, fmt.Errorf("permission %d: %w", i+1, err)
		}
		p.decision.Intention = fmt.Sprintf("%s permission %d %s", label, i+1, actionWord(p.decision.Allow))
		r.perms = append(r.perms, p)
	}
	return r, nil
}

func compilePermission(src *Permission) (permission, error) {
	p := permission{decision: Decision{Allow: src.Action == ActionAllow}}
	p.never = src.RequiresJWT && p.decision.Allow
	h := src.HTTP
	if h == nil {
		return p, nil
	}
	// Consul's validation allows only one path field; its xDS generator checks them in this
	// order, so a malformed entry behaves here as it would in Envoy.
	switch {
	case h.PathExact != "":
		p.path, p.pathStr = pathExact, h.PathExact
	case h.PathPrefix != "":
		p.path, p.pathStr = pathPrefix, h.PathPrefix
	case h.PathRegex != "":
		re, err := compileFull(h.PathRegex)
		if err != nil {
			return p, fmt.Errorf("path regex: %w", err)
		}
		p.path, p.pathStr, p.pathRe = pathRegex, h.PathRegex, re
	}
	for _, m := range h.Methods {
		p.methods = append(p.methods, strings.ToUpper(m))
	}
	for i := range h.Header {
		hm, ok, err := compileHeader(&h.Header[i])
		if err != nil {
			return p, fmt.Errorf("header %q: %w", h.Header[i].Name, err)
		}
		if ok {
			p.headers = append(p.headers, hm)
		}
	}
	return p, nil
}

func compileHeader(h *HeaderMatch) (headerMatcher, bool, error) {
	hm := headerMatcher{name: h.Name, invert: h.Invert, fold: h.IgnoreCase}
	switch strings.ToLower(h.Name) {
	case ":method":
		hm.src = fromMethod
	case ":path":
		hm.src = fromPath
	case ":authority":
		hm.name = "Host"
	}
	// The same precedence as Consul's xDS generator (agent/xds/rbac.go convertPermission).
	switch {
	case h.Exact != "":
		hm.op, hm.value = opExact, h.Exact
	case h.Regex != "":
		re, err := compileFull(h.Regex)
		if err != nil {
			return hm, false, err
		}
		hm.op, hm.value, hm.re = opRegex, h.Regex, re
	case h.Prefix != "":
		hm.op, hm.value = opPrefix, h.Prefix
	case h.Suffix != "":
		hm.op, hm.value = opSuffix, h.Suffix
	case h.Contains != "":
		hm.op, hm.value = opContains, h.Contains
	case h.Present:
		hm.op = opPresent
	default:
		return hm, false, nil
	}
	hm.bvalue = []byte(hm.value)
	return hm, true, nil
}

// compileFull anchors re: Envoy's safe_regex matchers must match the whole value.
func compileFull(re string) (*regexp.Regexp, error) {
	return regexp.Compile(`^(?:` + re + `)$`)
}

// comparePrecedence is Consul's IntentionPrecedenceSorter (agent/structs/intention.go):
// higher precedence first, then a fixed lexicographic tie-break so the order is stable.
func comparePrecedence(a, b Intention) int {
	return cmp.Or(
		cmp.Compare(b.Precedence, a.Precedence),
		strings.Compare(a.SourceSamenessGroup, b.SourceSamenessGroup),
		strings.Compare(a.SourcePeer, b.SourcePeer),
		strings.Compare(a.SourcePartition, b.SourcePartition),
		strings.Compare(a.SourceNamespace, b.SourceNamespace),
		strings.Compare(a.SourceName, b.SourceName),
		strings.Compare(a.DestinationPartition, b.DestinationPartition),
		strings.Compare(a.DestinationNamespace, b.DestinationNamespace),
		strings.Compare(a.DestinationName, b.DestinationName),
	)
}

func ixLabel(ix *Intention) string {
	return qualified(ix.SourceNamespace, ix.SourceName) + "→" + qualified(ix.DestinationNamespace, ix.DestinationName)
}

func qualified(ns, name string) string {
	if ns == "" || ns == defaultTenancy {
		return name
	}
	return ns + "/" + name
}

func actionWord(allow bool) string {
	if allow {
		return string(ActionAllow)
	}
	return string(ActionDeny)
}

// authorize is the hot path: a map lookup, then for L7 rules a scan of the permissions.
// Nothing here allocates (asserted by TestAuthorizeAllocs).
func (rs *ruleSet) authorize(source string, method, rawPath []byte, h HeaderGetter) Decision {
	if source == "" {
		return Decision{Intention: labelNoSource}
	}
	r := rs.exact[source]
	if r == nil {
		r = rs.wildcard
		if r == nil {
			return rs.deflt
		}
	}
	if !r.l7 {
		return r.decision
	}
	// Envoy's url_path matcher sees the path without the query string.
	path := rawPath
	if i := bytes.IndexByte(path, '?'); i >= 0 {
		path = path[:i]
	}
	for i := range r.perms {
		if r.perms[i].matches(method, path, rawPath, h) {
			return r.perms[i].decision
		}
	}
	return r.noMatch
}

func (p *permission) matches(method, path, rawPath []byte, h HeaderGetter) bool {
	if p.never {
		return false
	}
	switch p.path {
	case pathExact:
		if string(path) != p.pathStr {
			return false
		}
	case pathPrefix:
		if len(path) < len(p.pathStr) || string(path[:len(p.pathStr)]) != p.pathStr {
			return false
		}
	case pathRegex:
		if !p.pathRe.Match(path) {
			return false
		}
	}
	if len(p.methods) > 0 && !containsMethod(p.methods, method) {
		return false
	}
	for i := range p.headers {
		hm := &p.headers[i]
		var v []byte
		switch hm.src {
		case fromMethod:
			v = method
		case fromPath:
			v = rawPath
		default:
			if h != nil {
				v = h.Peek(hm.name)
			}
		}
		if !hm.matches(v) {
			return false
		}
	}
	return true
}

// matches follows Envoy's HeaderUtility::matchHeaders: an absent header (nil) matches only
// an inverted Present; every value matcher fails on it, inverted or not.
func (hm *headerMatcher) matches(v []byte) bool {
	if v == nil {
		return hm.op == opPresent && hm.invert
	}
	var m bool
	switch hm.op {
	case opExact:
		if hm.fold {
			m = bytes.EqualFold(v, hm.bvalue)
		} else {
			m = string(v) == hm.value
		}
	case opPrefix:
		n := len(hm.bvalue)
		m = len(v) >= n && equal(v[:n], hm, hm.fold)
	case opSuffix:
		n := len(hm.bvalue)
		m = len(v) >= n && equal(v[len(v)-n:], hm, hm.fold)
	case opContains:
		if hm.fold {
			m = containsFold(v, hm.bvalue)
		} else {
			m = bytes.Contains(v, hm.bvalue)
		}
	case opRegex:
		m = hm.re.Match(v)
	case opPresent:
		m = true
	}
	return m != hm.invert
}

func containsMethod(methods []string, method []byte) bool {
	for _, m := range methods {
		if string(method) == m {
			return true
		}
	}
	return false
}

func equal(v []byte, hm *headerMatcher, fold bool) bool {
	if fold {
		return bytes.EqualFold(v, hm.bvalue)
	}
	return string(v) == hm.value
}

func containsFold(v, sub []byte) bool {
	for i := 0; i+len(sub) <= len(v); i++ {
		if bytes.EqualFold(v[i:i+len(sub)], sub) {
			return true
		}
	}
	return false
}
