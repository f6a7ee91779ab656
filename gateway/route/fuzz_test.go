package route

import (
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/valyala/fasthttp"
)

// fuzzSpecs exercises every kind of condition, shared and duplicated hosts, mixed exact and
// wildcard host lists, and priorities that reorder the file, so the host index and merge in
// Match are checked against the plain linear definition of precedence.
func fuzzSpecs() []Spec {
	return []Spec{
		{Name: "api-exact", Hosts: []string{"api.example.com"}, Path: "/api/health"},
		{Name: "wild-api", Hosts: []string{"*.example.com"}, PathPrefix: "/api", Methods: []string{"POST"}},
		{Name: "api-prefix", Hosts: []string{"api.example.com", "API.example.com"}, PathPrefix: "/api"},
		{Name: "canary", Priority: 5, Hosts: []string{"api.example.com"}, PathPrefix: "/",
			Headers: []ValueMatch{{Name: "x-env", Exact: "canary"}}},
		{Name: "users", Priority: 5, PathRegex: `/users/[0-9]+(/.*)?`, Methods: []string{"GET", "HEAD"}},
		{Name: "auth-only", Hosts: []string{"secure.example.com", "*.secure.example.com"},
			Headers: []ValueMatch{{Name: "Authorization", Present: ptr(true)}}},
		{Name: "no-auth", Hosts: []string{"secure.example.com"},
			Headers: []ValueMatch{{Name: "authorization", Present: ptr(false)}}},
		{Name: "ver-header", Headers: []ValueMatch{{Name: "X-Env", Regex: `v[0-9]{1,3}`}}},
		{Name: "query-v2", PathPrefix: "/q", Query: []ValueMatch{{Name: "v", Exact: "2"}}},
		{Name: "query-debug", PathPrefix: "/q", Query: []ValueMatch{{Name: "debug", Present: ptr(true)},
			{Name: "id", Regex: `[a-f0-9]+`}}},
		{Name: "query-nodebug", PathPrefix: "/q", Query: []ValueMatch{{Name: "debug", Present: ptr(false)}}},
		{Name: "purge", Methods: []string{"PURGE"}, Hosts: []string{"cdn.example.org"}},
		{Name: "other-host", Hosts: []string{"b.example.org"}, PathPrefix: "/"},
		{Name: "high-b", Priority: 9, Hosts: []string{"b.example.org"}, Path: "/admin"},
		{Name: "low-all", Priority: -1, PathPrefix: "/"},
		{Name: "never", Priority: -1, PathPrefix: "/"}, // shadowed by low-all: must never win
	}
}

// refMatch is the reference: the precedence rules applied literally, one route at a time, from
// the Specs rather than from anything New compiled.
func refMatch(specs []Spec, req *fasthttp.Request, host, path string) string {
	order := make([]int, len(specs))
	for i := range order {
		order[i] = i
	}
	slices.SortStableFunc(order, func(a, b int) int { return specs[b].Priority - specs[a].Priority })
	method := string(req.Header.Method())
	for _, i := range order {
		s := specs[i]
		if len(s.Hosts) > 0 && !slices.ContainsFunc(s.Hosts, func(h string) bool {
			h = strings.ToLower(h)
			if suffix, ok := strings.CutPrefix(h, "*"); ok {
				return strings.HasSuffix(host, suffix) && len(host) > len(suffix)
			}
			return h == host
		}) {
			continue
		}
		if s.Path != "" && path != s.Path {
			continue
		}
		if s.PathPrefix != "" && !strings.HasPrefix(path, s.PathPrefix) {
			continue
		}
		if s.PathRegex != "" && !regexp.MustCompile(`^(?:`+s.PathRegex+`)$`).MatchString(path) {
			continue
		}
		if len(s.Methods) > 0 && !slices.Contains(s.Methods, method) {
			continue
		}
		ok := true
		for _, h := range s.Headers {
			v := string(req.Header.Peek(h.Name))
			ok = ok && refValue(h, v, v != "")
		}
		args := req.URI().QueryArgs()
		for _, q := range s.Query {
			ok = ok && refValue(q, string(args.Peek(q.Name)), args.Has(q.Name))
		}
		if ok {
			return s.Name
		}
	}
	return ""
}

func refValue(m ValueMatch, v string, present bool) bool {
	switch {
	case m.Present != nil:
		return present == *m.Present
	case m.Regex != "":
		return present && regexp.MustCompile(`^(?:`+m.Regex+`)$`).MatchString(v)
	default:
		return present && v == m.Exact
	}
}

func FuzzMatch(f *testing.F) {
	specs := fuzzSpecs()
	for i := range specs {
		specs[i].Targets = []Target{{Service: "a", Weight: 3}, {Service: "b", Weight: 0}, {Service: "c", Weight: 1}}
		specs[i].RewritePrefix = "/r/"
	}
	tbl, err := New(Options{Routes: specs})
	if err != nil {
		f.Fatal(err)
	}
	f.Add("api.example.com", "/api/x", "GET", "canary", "", "")
	f.Add("x.secure.example.com", "/", "GET", "", "Bearer t", "")
	f.Add("", "/q", "GET", "v12", "", "debug&id=ab")
	f.Fuzz(func(t *testing.T, host, path, method, env, auth, query string) {
		req := &fasthttp.Request{}
		req.Header.SetMethod(method)
		if env != "" {
			req.Header.Set("X-Env", env)
		}
		if auth != "" {
			req.Header.Set("Authorization", auth)
		}
		req.URI().SetQueryString(query)

		got := ""
		r := tbl.Match(req, []byte(host), []byte(path))
		if r != nil {
			got = r.Name
			if i := r.PickTarget(uint64(len(host))*7919 + uint64(len(path))); i < 0 || i >= len(r.Targets) || r.Targets[i].Weight == 0 {
				t.Fatalf("PickTarget chose %d", i)
			}
			if out := r.RewritePath(nil, []byte(path)); len(out) == 0 {
				t.Fatalf("RewritePath(%q) is empty", path)
			}
		}
		if want := refMatch(specs, req, host, path); got != want {
			t.Fatalf("Match(host=%q path=%q method=%q env=%q auth=%q query=%q) = %q, reference says %q",
				host, path, method, env, auth, query, got, want)
		}
	})
}
