package route

import (
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/valyala/fasthttp"
)

func ptr(b bool) *bool { return &b }

func to(svc string) []Target { return []Target{{Service: svc, Weight: 1}} }

// reqSpec describes a test request; host and path are passed to Match as the caller would.
type reqSpec struct {
	method  string
	host    string
	path    string
	headers [][2]string
	query   string
}

func buildReq(tb testing.TB, rs reqSpec) *fasthttp.Request {
	tb.Helper()
	req := &fasthttp.Request{}
	uri := rs.path
	if uri == "" {
		uri = "/"
	}
	if rs.query != "" {
		uri += "?" + rs.query
	}
	req.SetRequestURI(uri)
	if rs.method != "" {
		req.Header.SetMethod(rs.method)
	}
	for _, h := range rs.headers {
		req.Header.Add(h[0], h[1])
	}
	return req
}

func mustNew(tb testing.TB, specs ...Spec) *Table {
	tb.Helper()
	for i := range specs {
		if specs[i].Targets == nil {
			specs[i].Targets = to("svc-" + specs[i].Name)
		}
	}
	tbl, err := New(Options{Routes: specs})
	if err != nil {
		tb.Fatalf("New: %v", err)
	}
	return tbl
}

func matchName(tb testing.TB, tbl *Table, rs reqSpec) string {
	tb.Helper()
	req := buildReq(tb, rs)
	r := tbl.Match(req, []byte(rs.host), []byte(rs.path))
	if r == nil {
		return ""
	}
	return r.Name
}

func TestMatchPrecedence(t *testing.T) {
	t.Parallel()
	get := func(host, path string) reqSpec { return reqSpec{method: "GET", host: host, path: path} }
	tests := []struct {
		name   string
		routes []Spec
		req    reqSpec
		want   string // "" = no match
	}{
		{
			name:   "higher priority wins over file order",
			routes: []Spec{{Name: "low", PathPrefix: "/"}, {Name: "high", Priority: 10, PathPrefix: "/"}},
			req:    get("a.com", "/x"),
			want:   "high",
		},
		{
			name:   "equal priority keeps file order",
			routes: []Spec{{Name: "first", PathPrefix: "/"}, {Name: "second", PathPrefix: "/"}},
			req:    get("a.com", "/x"),
			want:   "first",
		},
		{
			name:   "negative priority goes last",
			routes: []Spec{{Name: "neg", Priority: -1, PathPrefix: "/"}, {Name: "zero", PathPrefix: "/x"}},
			req:    get("a.com", "/x"),
			want:   "zero",
		},
		{
			name:   "no most-specific magic: earlier prefix shadows later exact",
			routes: []Spec{{Name: "prefix", PathPrefix: "/api"}, {Name: "exact", Path: "/api/users"}},
			req:    get("", "/api/users"),
			want:   "prefix",
		},
		{
			name:   "exact listed first wins",
			routes: []Spec{{Name: "exact", Path: "/api/users"}, {Name: "prefix", PathPrefix: "/api"}},
			req:    get("", "/api/users"),
			want:   "exact",
		},
		{
			name:   "exact does not match longer path",
			routes: []Spec{{Name: "exact", Path: "/api"}, {Name: "prefix", PathPrefix: "/api"}},
			req:    get("", "/api/x"),
			want:   "prefix",
		},
		{
			name:   "prefix is segment-agnostic",
			routes: []Spec{{Name: "prefix", PathPrefix: "/api"}},
			req:    get("", "/apix"),
			want:   "prefix",
		},
		{
			name:   "prefix needs the whole prefix",
			routes: []Spec{{Name: "prefix", PathPrefix: "/api"}},
			req:    get("", "/ap"),
			want:   "",
		},
		{
			name:   "regex anchored: partial match is not enough",
			routes: []Spec{{Name: "re", PathRegex: `/users/\d+`}},
			req:    get("", "/users/12/extra"),
			want:   "",
		},
		{
			name:   "regex anchored: full match",
			routes: []Spec{{Name: "re", PathRegex: `/users/\d+`}, {Name: "all", PathPrefix: "/"}},
			req:    get("", "/users/12"),
			want:   "re",
		},
		{
			name:   "regex alternation anchored as a group",
			routes: []Spec{{Name: "re", PathRegex: `/a|/b`}},
			req:    get("", "/a/zzz"),
			want:   "",
		},
		{
			name:   "exact host",
			routes: []Spec{{Name: "a", Hosts: []string{"a.com"}}, {Name: "b", Hosts: []string{"b.com"}}},
			req:    get("b.com", "/"),
			want:   "b",
		},
		{
			name:   "spec host is lower-cased",
			routes: []Spec{{Name: "a", Hosts: []string{"A.COM"}}},
			req:    get("a.com", "/"),
			want:   "a",
		},
		{
			name:   "wildcard host matches subdomain",
			routes: []Spec{{Name: "w", Hosts: []string{"*.example.com"}}},
			req:    get("api.example.com", "/"),
			want:   "w",
		},
		{
			name:   "wildcard host matches deeper subdomain",
			routes: []Spec{{Name: "w", Hosts: []string{"*.example.com"}}},
			req:    get("a.b.example.com", "/"),
			want:   "w",
		},
		{
			name:   "wildcard host does not match apex",
			routes: []Spec{{Name: "w", Hosts: []string{"*.example.com"}}},
			req:    get("example.com", "/"),
			want:   "",
		},
		{
			name:   "wildcard host does not match empty label",
			routes: []Spec{{Name: "w", Hosts: []string{"*.example.com"}}},
			req:    get(".example.com", "/"),
			want:   "",
		},
		{
			name:   "wildcard host does not match lookalike",
			routes: []Spec{{Name: "w", Hosts: []string{"*.example.com"}}},
			req:    get("badexample.com", "/"),
			want:   "",
		},
		{
			name: "wildcard earlier in file beats exact host later (host index keeps order)",
			routes: []Spec{
				{Name: "wild", Hosts: []string{"*.example.com"}},
				{Name: "exact", Hosts: []string{"api.example.com"}},
			},
			req:  get("api.example.com", "/"),
			want: "wild",
		},
		{
			name: "exact host earlier beats catch-all later",
			routes: []Spec{
				{Name: "exact", Hosts: []string{"api.example.com"}, PathPrefix: "/v1"},
				{Name: "all", PathPrefix: "/"},
				{Name: "exact2", Hosts: []string{"api.example.com"}},
			},
			req:  get("api.example.com", "/v2"),
			want: "all",
		},
		{
			name: "mixed exact and wildcard hosts on one route",
			routes: []Spec{
				{Name: "mixed", Hosts: []string{"a.com", "*.b.com"}},
			},
			req:  get("x.b.com", "/"),
			want: "mixed",
		},
		{
			name:   "empty host matches only host-agnostic routes",
			routes: []Spec{{Name: "hosted", Hosts: []string{"a.com"}}, {Name: "any"}},
			req:    get("", "/"),
			want:   "any",
		},
		{
			name:   "empty host and only hosted routes: 404",
			routes: []Spec{{Name: "hosted", Hosts: []string{"a.com"}}, {Name: "wild", Hosts: []string{"*.a.com"}}},
			req:    get("", "/"),
			want:   "",
		},
		{
			name:   "method match",
			routes: []Spec{{Name: "post", Methods: []string{"POST"}}, {Name: "get", Methods: []string{"GET", "HEAD"}}},
			req:    reqSpec{method: "HEAD", path: "/"},
			want:   "get",
		},
		{
			name:   "method mismatch falls through to 404",
			routes: []Spec{{Name: "get", Methods: []string{"GET"}}},
			req:    reqSpec{method: "DELETE", path: "/"},
			want:   "",
		},
		{
			name:   "non-standard method",
			routes: []Spec{{Name: "get", Methods: []string{"GET"}}, {Name: "purge", Methods: []string{"PURGE"}}},
			req:    reqSpec{method: "PURGE", path: "/"},
			want:   "purge",
		},
		{
			name:   "unknown method does not match other unknown method",
			routes: []Spec{{Name: "purge", Methods: []string{"PURGE"}}},
			req:    reqSpec{method: "BREW", path: "/"},
			want:   "",
		},
		{
			name:   "methods are case-sensitive",
			routes: []Spec{{Name: "lower", Methods: []string{"get"}}},
			req:    reqSpec{method: "GET", path: "/"},
			want:   "",
		},
		{
			name:   "a lower-case method a route names exactly",
			routes: []Spec{{Name: "upper", Methods: []string{"GET"}}, {Name: "lower", Methods: []string{"m-search"}}},
			req:    reqSpec{method: "m-search", path: "/"},
			want:   "lower",
		},
		{
			name: "header exact",
			routes: []Spec{
				{Name: "canary", Headers: []ValueMatch{{Name: "x-canary", Exact: "1"}}},
				{Name: "stable"},
			},
			req:  reqSpec{path: "/", headers: [][2]string{{"X-Canary", "1"}}},
			want: "canary",
		},
		{
			name: "header exact mismatch",
			routes: []Spec{
				{Name: "canary", Headers: []ValueMatch{{Name: "X-CANARY", Exact: "1"}}},
				{Name: "stable"},
			},
			req:  reqSpec{path: "/", headers: [][2]string{{"x-canary", "2"}}},
			want: "stable",
		},
		{
			name: "header exact is case-sensitive in the value",
			routes: []Spec{
				{Name: "canary", Headers: []ValueMatch{{Name: "X-Env", Exact: "prod"}}},
			},
			req:  reqSpec{path: "/", headers: [][2]string{{"x-env", "PROD"}}},
			want: "",
		},
		{
			name: "special header (User-Agent) exact",
			routes: []Spec{
				{Name: "bot", Headers: []ValueMatch{{Name: "user-agent", Exact: "bot/1"}}},
			},
			req:  reqSpec{path: "/", headers: [][2]string{{"User-Agent", "bot/1"}}},
			want: "bot",
		},
		{
			name: "header regex",
			routes: []Spec{
				{Name: "re", Headers: []ValueMatch{{Name: "X-Version", Regex: `v[0-9]+`}}},
				{Name: "other"},
			},
			req:  reqSpec{path: "/", headers: [][2]string{{"X-Version", "v12"}}},
			want: "re",
		},
		{
			name: "header regex anchored",
			routes: []Spec{
				{Name: "re", Headers: []ValueMatch{{Name: "X-Version", Regex: `v[0-9]+`}}},
				{Name: "other"},
			},
			req:  reqSpec{path: "/", headers: [][2]string{{"X-Version", "v12beta"}}},
			want: "other",
		},
		{
			name: "header regex needs the header even if regex matches empty",
			routes: []Spec{
				{Name: "re", Headers: []ValueMatch{{Name: "X-Version", Regex: `.*`}}},
			},
			req:  reqSpec{path: "/"},
			want: "",
		},
		{
			name: "header present",
			routes: []Spec{
				{Name: "auth", Headers: []ValueMatch{{Name: "authorization", Present: ptr(true)}}},
				{Name: "anon"},
			},
			req:  reqSpec{path: "/", headers: [][2]string{{"Authorization", "Bearer x"}}},
			want: "auth",
		},
		{
			name: "header present but missing",
			routes: []Spec{
				{Name: "auth", Headers: []ValueMatch{{Name: "authorization", Present: ptr(true)}}},
				{Name: "anon"},
			},
			req:  reqSpec{path: "/"},
			want: "anon",
		},
		{
			name: "header absent",
			routes: []Spec{
				{Name: "noauth", Headers: []ValueMatch{{Name: "Authorization", Present: ptr(false)}}},
				{Name: "rest"},
			},
			req:  reqSpec{path: "/"},
			want: "noauth",
		},
		{
			name: "header absent but present",
			routes: []Spec{
				{Name: "noauth", Headers: []ValueMatch{{Name: "Authorization", Present: ptr(false)}}},
				{Name: "rest"},
			},
			req:  reqSpec{path: "/", headers: [][2]string{{"authorization", "x"}}},
			want: "rest",
		},
		{
			name: "every header condition must hold",
			routes: []Spec{
				{Name: "both", Headers: []ValueMatch{{Name: "A", Exact: "1"}, {Name: "B", Exact: "2"}}},
				{Name: "rest"},
			},
			req:  reqSpec{path: "/", headers: [][2]string{{"A", "1"}, {"B", "3"}}},
			want: "rest",
		},
		{
			name: "query exact",
			routes: []Spec{
				{Name: "v2", Query: []ValueMatch{{Name: "version", Exact: "2"}}},
				{Name: "rest"},
			},
			req:  reqSpec{path: "/", query: "a=b&version=2"},
			want: "v2",
		},
		{
			name: "query exact is URL-decoded",
			routes: []Spec{
				{Name: "sp", Query: []ValueMatch{{Name: "q", Exact: "a b"}}},
			},
			req:  reqSpec{path: "/", query: "q=a%20b"},
			want: "sp",
		},
		{
			name: "query name is case-sensitive",
			routes: []Spec{
				{Name: "v2", Query: []ValueMatch{{Name: "version", Exact: "2"}}},
				{Name: "rest"},
			},
			req:  reqSpec{path: "/", query: "Version=2"},
			want: "rest",
		},
		{
			name: "query present without value",
			routes: []Spec{
				{Name: "debug", Query: []ValueMatch{{Name: "debug", Present: ptr(true)}}},
				{Name: "rest"},
			},
			req:  reqSpec{path: "/", query: "debug"},
			want: "debug",
		},
		{
			name: "query present missing",
			routes: []Spec{
				{Name: "debug", Query: []ValueMatch{{Name: "debug", Present: ptr(true)}}},
				{Name: "rest"},
			},
			req:  reqSpec{path: "/", query: "x=1"},
			want: "rest",
		},
		{
			name: "query absent",
			routes: []Spec{
				{Name: "nodebug", Query: []ValueMatch{{Name: "debug", Present: ptr(false)}}},
			},
			req:  reqSpec{path: "/", query: "debug=1"},
			want: "",
		},
		{
			name: "query regex",
			routes: []Spec{
				{Name: "num", Query: []ValueMatch{{Name: "id", Regex: `[0-9]+`}}},
			},
			req:  reqSpec{path: "/", query: "id=42"},
			want: "num",
		},
		{
			name: "all conditions together",
			routes: []Spec{
				{
					Name: "full", Priority: 5, Hosts: []string{"*.example.com"}, PathPrefix: "/api",
					Methods: []string{"POST"}, Headers: []ValueMatch{{Name: "X-Tenant", Exact: "t1"}},
					Query: []ValueMatch{{Name: "dry", Present: ptr(false)}},
				},
				{Name: "fallback", Priority: 5},
			},
			req: reqSpec{
				method: "POST", host: "eu.example.com", path: "/api/orders",
				headers: [][2]string{{"x-tenant", "t1"}},
			},
			want: "full",
		},
		{
			name:   "no routes",
			routes: nil,
			req:    get("a.com", "/"),
			want:   "",
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			tbl := mustNew(t, tc.routes...)
			if got := matchName(t, tbl, tc.req); got != tc.want {
				t.Errorf("Match = %q, want %q", got, tc.want)
			}
		})
	}
}

func TestNilTable(t *testing.T) {
	t.Parallel()
	var tbl *Table
	if r := tbl.Match(&fasthttp.Request{}, nil, []byte("/")); r != nil {
		t.Fatalf("nil table matched %q", r.Name)
	}
	if tbl.Len() != 0 || tbl.Routes() != nil {
		t.Fatal("nil table not empty")
	}
}

func TestRoutesPrecedenceOrderAndKeys(t *testing.T) {
	t.Parallel()
	tbl := mustNew(t,
		Spec{Name: "a", Key: 100},
		Spec{Name: "b", Key: 101, Priority: 3},
		Spec{Name: "c", Key: 102},
		Spec{Name: "d", Key: 103, Priority: 3},
		Spec{Name: "e", Key: 104, Priority: -2},
	)
	var got []string
	for i, r := range tbl.Routes() {
		got = append(got, fmt.Sprintf("%s:%d", r.Name, r.Key))
		if r.Index != i {
			t.Errorf("route %s Index = %d, want %d", r.Name, r.Index, i)
		}
	}
	want := "b:101 d:103 a:100 c:102 e:104"
	if s := strings.Join(got, " "); s != want {
		t.Fatalf("Routes() = %s, want %s", s, want)
	}
	if tbl.Len() != 5 {
		t.Fatalf("Len = %d", tbl.Len())
	}
	// The returned slice is a copy: reordering it must not change the table.
	rs := tbl.Routes()
	rs[0], rs[1] = rs[1], rs[0]
	if tbl.Routes()[0].Name != "b" {
		t.Fatal("Routes() exposes the table's slice")
	}
}

func TestOptionsNotRetained(t *testing.T) {
	t.Parallel()
	specs := []Spec{{
		Name: "r", Hosts: []string{"a.com"}, Methods: []string{"GET"},
		Headers: []ValueMatch{{Name: "X", Present: ptr(true)}},
		Targets: []Target{{Service: "s", Weight: 1}},
	}}
	tbl, err := New(Options{Routes: specs})
	if err != nil {
		t.Fatal(err)
	}
	specs[0].Hosts[0] = "b.com"
	specs[0].Methods[0] = "POST"
	*specs[0].Headers[0].Present = false
	specs[0].Targets[0].Service = "changed"
	r := tbl.Routes()[0]
	if r.Spec.Hosts[0] != "a.com" || r.Spec.Methods[0] != "GET" || !*r.Spec.Headers[0].Present ||
		r.Targets[0].Service != "s" || r.Spec.Targets[0].Service != "s" {
		t.Fatalf("route shares memory with Options: %+v", r.Spec)
	}
	if got := matchName(t, tbl, reqSpec{method: "GET", host: "a.com", path: "/", headers: [][2]string{{"X", "1"}}}); got != "r" {
		t.Fatalf("Match after mutating Options = %q", got)
	}
}

func TestNewErrors(t *testing.T) {
	t.Parallel()
	tgt := to("s")
	tests := []struct {
		name string
		spec Spec
		want string // substring
	}{
		{"bad path regex", Spec{Name: "x", PathRegex: "(", Targets: tgt}, `route "x": path_regex: compile "("`},
		{"bad header regex", Spec{Name: "h", Headers: []ValueMatch{{Name: "A"}, {Name: "B", Regex: "[z-a]"}}, Targets: tgt}, `route "h": headers[0]: "A": exactly one of`},
		{"bad header regex 2", Spec{Name: "h", Headers: []ValueMatch{{Name: "B", Regex: "[z-a]"}}, Targets: tgt}, `route "h": headers[0].regex: compile "[z-a]"`},
		{"bad query regex", Spec{Name: "q", Query: []ValueMatch{{Name: "B", Regex: "a**"}}, Targets: tgt}, `route "q": query[0].regex:`},
		{"two value kinds", Spec{Name: "q", Query: []ValueMatch{{Name: "B", Exact: "1", Present: ptr(true)}}, Targets: tgt}, `route "q": query[0]: "B": exactly one of exact, regex, present`},
		{"empty value name", Spec{Name: "q", Headers: []ValueMatch{{Exact: "1"}}, Targets: tgt}, `route "q": headers[0].name: empty name`},
		{"two path kinds", Spec{Name: "p", Path: "/a", PathPrefix: "/", Targets: tgt}, `route "p": match: at most one of path, path_prefix, path_regex`},
		{"bare star host", Spec{Name: "w", Hosts: []string{"*"}, Targets: tgt}, `route "w": hosts[0]: "*": wildcard`},
		{"mid star host", Spec{Name: "w", Hosts: []string{"a.com", "a.*.com"}, Targets: tgt}, `route "w": hosts[1]: "a.*.com": wildcard`},
		{"star dot only", Spec{Name: "w", Hosts: []string{"*."}, Targets: tgt}, `route "w": hosts[0]`},
		{"empty host", Spec{Name: "w", Hosts: []string{""}, Targets: tgt}, `route "w": hosts[0]: empty host`},
		{"empty method", Spec{Name: "m", Methods: []string{""}, Targets: tgt}, `route "m": methods[0]: empty method`},
		{"no targets", Spec{Name: "t"}, `route "t": targets: at least one target`},
		{"negative weight", Spec{Name: "t", Targets: []Target{{Service: "a", Weight: 1}, {Service: "b", Weight: -1}}}, `route "t": targets[1].weight: negative weight -1`},
		{"all zero weights", Spec{Name: "t", Targets: []Target{{Service: "a"}, {Service: "b"}}}, `route "t": targets: every target has weight 0`},
		{"empty service", Spec{Name: "t", Targets: []Target{{Weight: 1}}}, `route "t": targets[0].service: empty service`},
		{"weight overflow", Spec{Name: "t", Targets: []Target{{Service: "a", Weight: 1 << 31}, {Service: "b", Weight: 1 << 31}}}, `route "t": targets[1].weight: total weight exceeds`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			// A valid route first proves the error names the failing route, not the first one.
			tbl, err := New(Options{Routes: []Spec{{Name: "ok", Targets: tgt}, tc.spec}})
			if err == nil {
				t.Fatalf("New succeeded (%d routes), want error containing %q", tbl.Len(), tc.want)
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error %q does not contain %q", err, tc.want)
			}
			var se *SpecError
			if !errors.As(err, &se) || se.Route != tc.spec.Name {
				t.Fatalf("error %v is not a *SpecError for %q", err, tc.spec.Name)
			}
		})
	}
}

func TestSingleZeroWeightTargetDefaultsToOne(t *testing.T) {
	t.Parallel()
	tbl := mustNew(t, Spec{Name: "r", Targets: []Target{{Service: "only"}}})
	r := tbl.Routes()[0]
	for n := range uint64(10) {
		if got := r.PickTarget(n); got != 0 {
			t.Fatalf("PickTarget(%d) = %d", n, got)
		}
	}
	if r.Targets[0].Weight != 1 {
		t.Fatalf("effective weight = %d, want 1", r.Targets[0].Weight)
	}
}

func TestPickTargetDistribution(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		weights []int
	}{
		{"single", []int{5}},
		{"90/10", []int{90, 10}},
		{"equal three", []int{1, 1, 1}},
		{"zero weight first", []int{0, 3, 1}},
		{"zero weight middle", []int{2, 0, 5}},
		{"zero weight last", []int{7, 0}},
		{"uneven", []int{1, 2, 3, 4}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			var targets []Target
			total := 0
			for i, w := range tc.weights {
				targets = append(targets, Target{Service: fmt.Sprint("s", i), Weight: w})
				total += w
			}
			r := mustNew(t, Spec{Name: "r", Targets: targets}).Routes()[0]
			const rounds = 37
			counts := make([]int, len(targets))
			// Sweep a window that does not start at 0, and a window near the top of uint64,
			// to show the mapping is exact for every residue rather than for small n only.
			starts := []uint64{12345, ^uint64(0) - uint64(total*rounds) + 1}
			for _, start := range starts {
				for k := range uint64(total * rounds) {
					counts[r.PickTarget(start+k)]++
				}
			}
			for i, w := range tc.weights {
				if want := w * rounds * len(starts); counts[i] != want {
					t.Errorf("target %d (weight %d) chosen %d times, want %d", i, w, counts[i], want)
				}
			}
		})
	}
}

func TestRewritePath(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name, prefix, rewrite, path, want string
		rewrites                          bool
	}{
		{"api to root, exact prefix", "/api", "/", "/api", "/", true},
		{"api to root keeps rest without double slash", "/api", "/", "/api/v1/x", "/v1/x", true},
		{"trailing-slash prefix to root", "/api/", "/", "/api/x", "/x", true},
		{"to internal", "/api", "/internal", "/api/x", "/internal/x", true},
		{"to internal exact", "/api", "/internal", "/api", "/internal", true},
		{"to internal with trailing slash", "/api", "/internal/", "/api/x", "/internal/x", true},
		{"segment-agnostic prefix is replaced literally", "/api", "/v2", "/apix", "/v2x", true},
		{"path not under prefix is untouched", "/api", "/", "/other", "/other", true},
		{"no rewrite configured", "/api", "", "/api/x", "/api/x", false},
		{"root prefix prepends", "/", "/svc/", "/a/b", "/svc/a/b", true},
		{"empty prefix prepends", "", "/internal", "/x", "/internal/x", true},
		{"query-looking bytes are just path bytes", "/api", "/", "/api/%3Fq", "/%3Fq", true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			spec := Spec{Name: "r", RewritePrefix: tc.rewrite, Targets: to("s")}
			if tc.prefix != "" {
				spec.PathPrefix = tc.prefix
			}
			r := mustNew(t, spec).Routes()[0]
			if r.Rewrites() != tc.rewrites {
				t.Errorf("Rewrites() = %v, want %v", r.Rewrites(), tc.rewrites)
			}
			dst := []byte("keep:")
			got := r.RewritePath(dst, []byte(tc.path))
			if string(got) != "keep:"+tc.want {
				t.Errorf("RewritePath(%q) = %q, want %q", tc.path, got, "keep:"+tc.want)
			}
		})
	}
}

func TestAllocs(t *testing.T) {
	// Not parallel: AllocsPerRun measures process-wide allocations.
	tbl := mustNew(t,
		Spec{Name: "other-host", Hosts: []string{"b.example.com"}, PathPrefix: "/"},
		Spec{Name: "wild", Hosts: []string{"*.internal"}, PathPrefix: "/"},
		Spec{Name: "typical", Hosts: []string{"api.example.com"}, PathPrefix: "/api", Methods: []string{"GET", "POST"},
			Headers:       []ValueMatch{{Name: "x-env", Exact: "prod"}, {Name: "Authorization", Present: ptr(true)}},
			RewritePrefix: "/", Targets: []Target{{Service: "a", Weight: 9}, {Service: "b", Weight: 1}}},
		Spec{Name: "regex", PathRegex: `/users/[0-9]+`, Headers: []ValueMatch{{Name: "X-Version", Regex: `v[0-9]+`}}},
		Spec{Name: "query", PathPrefix: "/q", Query: []ValueMatch{{Name: "v", Exact: "2"}, {Name: "debug", Present: ptr(false)}}},
	)
	cases := []struct {
		name string
		rs   reqSpec
		want string
	}{
		{"typical", reqSpec{method: "POST", host: "api.example.com", path: "/api/v1/orders",
			headers: [][2]string{{"X-Env", "prod"}, {"Authorization", "Bearer t"}}}, "typical"},
		{"miss", reqSpec{method: "GET", host: "nowhere.com", path: "/zzz"}, ""},
		{"regex", reqSpec{method: "GET", host: "nowhere.com", path: "/users/42", headers: [][2]string{{"X-Version", "v3"}}}, "regex"},
		{"query", reqSpec{method: "GET", host: "nowhere.com", path: "/q", query: "v=2"}, "query"},
	}
	for _, tc := range cases {
		req := buildReq(t, tc.rs)
		host, path := []byte(tc.rs.host), []byte(tc.rs.path)
		var got *Route
		allocs := testing.AllocsPerRun(200, func() { got = tbl.Match(req, host, path) })
		name := ""
		if got != nil {
			name = got.Name
		}
		if name != tc.want {
			t.Fatalf("%s: Match = %q, want %q", tc.name, name, tc.want)
		}
		t.Logf("%s: Match allocs/op = %v", tc.name, allocs)
		if allocs != 0 {
			t.Errorf("%s: Match allocates %v times per call, want 0", tc.name, allocs)
		}
	}

	r := tbl.Routes()[2]
	dst := make([]byte, 0, 64)
	path := []byte("/api/v1/orders")
	allocs := testing.AllocsPerRun(200, func() { dst = r.RewritePath(dst[:0], path) })
	if allocs != 0 || string(dst) != "/v1/orders" {
		t.Errorf("RewritePath = %q with %v allocs, want \"/v1/orders\" with 0", dst, allocs)
	}
	var idx int
	allocs = testing.AllocsPerRun(200, func() { idx = r.PickTarget(123456789) })
	if allocs != 0 || idx < 0 {
		t.Errorf("PickTarget allocs = %v (idx %d), want 0", allocs, idx)
	}
}

func TestInfoAndDescribe(t *testing.T) {
	t.Parallel()
	tbl := mustNew(t, Spec{
		Name: "api", Priority: 10, Hosts: []string{"api.example.com"}, PathPrefix: "/api",
		Methods: []string{"GET", "HEAD"}, Headers: []ValueMatch{{Name: "X-Env", Exact: "prod"}},
		Query: []ValueMatch{{Name: "debug", Present: ptr(false)}}, RewritePrefix: "/",
		Targets: []Target{{Service: "api-v1", Weight: 90}, {Service: "api-v2", Weight: 10}},
		Timeout: 3 * time.Second,
	})
	r := tbl.Routes()[0]
	b, err := json.Marshal(r.Info())
	if err != nil {
		t.Fatal(err)
	}
	want := `{"index":0,"name":"api","priority":10,"hosts":["api.example.com"],"path_prefix":"/api",` +
		`"methods":["GET","HEAD"],"headers":[{"name":"X-Env","exact":"prod"}],` +
		`"query":[{"name":"debug","present":false}],"rewrite_prefix":"/",` +
		`"targets":[{"service":"api-v1","weight":90},{"service":"api-v2","weight":10}],"timeout":"3s"}`
	if string(b) != want {
		t.Errorf("Info JSON =\n%s\nwant\n%s", b, want)
	}
	d := r.Describe()
	wantD := `api priority=10 hosts=api.example.com path_prefix=/api methods=GET,HEAD header:X-Env="prod" query:debug absent rewrite=/ -> api-v1:90,api-v2:10`
	if d != wantD {
		t.Errorf("Describe =\n%s\nwant\n%s", d, wantD)
	}
}

// benchTable builds 50 routes shaped like a real edge config: many hosts, prefixes per host, a
// few regexes and header/query conditions, and a catch-all at the end.
func benchTable(tb testing.TB) *Table {
	tb.Helper()
	var specs []Spec
	for i := range 10 {
		host := fmt.Sprintf("svc%d.example.com", i)
		specs = append(specs,
			Spec{Name: fmt.Sprintf("h%d-canary", i), Priority: 10, Hosts: []string{host}, PathPrefix: "/api",
				Headers: []ValueMatch{{Name: "X-Canary", Exact: "1"}}},
			Spec{Name: fmt.Sprintf("h%d-users", i), Hosts: []string{host}, PathRegex: `/users/[0-9]+`, Methods: []string{"GET"}},
			Spec{Name: fmt.Sprintf("h%d-write", i), Hosts: []string{host}, PathPrefix: "/api", Methods: []string{"POST", "PUT"}},
			Spec{Name: fmt.Sprintf("h%d-api", i), Hosts: []string{host}, PathPrefix: "/api", Methods: []string{"GET"},
				Headers: []ValueMatch{{Name: "X-Env", Exact: "prod"}}},
		)
	}
	for i := range 9 {
		specs = append(specs, Spec{Name: fmt.Sprintf("wild%d", i), Hosts: []string{fmt.Sprintf("*.tenant%d.example.net", i)},
			PathPrefix: "/", Query: []ValueMatch{{Name: "v", Exact: "2"}}})
	}
	specs = append(specs, Spec{Name: "catch-all", Priority: -1, PathPrefix: "/"})
	if len(specs) != 50 {
		tb.Fatalf("bench table has %d routes", len(specs))
	}
	return mustNew(tb, specs...)
}

func BenchmarkMatch(b *testing.B) {
	tbl := benchTable(b)
	cases := []struct {
		name string
		rs   reqSpec
		want string
	}{
		{"exact-host-prefix-header", reqSpec{method: "GET", host: "svc9.example.com", path: "/api/orders",
			headers: [][2]string{{"X-Env", "prod"}}}, "h9-api"},
		{"regex", reqSpec{method: "GET", host: "svc5.example.com", path: "/users/42"}, "h5-users"},
		{"wildcard-query", reqSpec{method: "GET", host: "a.tenant8.example.net", path: "/x", query: "v=2"}, "wild8"},
		{"catch-all", reqSpec{method: "GET", host: "unknown.org", path: "/x"}, "catch-all"},
	}
	for _, c := range cases {
		b.Run(c.name, func(b *testing.B) {
			req := buildReq(b, c.rs)
			host, path := []byte(c.rs.host), []byte(c.rs.path)
			if r := tbl.Match(req, host, path); r == nil || r.Name != c.want {
				b.Fatalf("Match = %v, want %s", r, c.want)
			}
			b.ReportAllocs()
			for b.Loop() {
				tbl.Match(req, host, path)
			}
		})
	}
}
