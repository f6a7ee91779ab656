package conf

import (
	"errors"
	"fmt"
	"os"
	"slices"
	"strings"
	"testing"
)

// fragBase is the file config fragments are merged into: static only, so a route to a service
// outside discovery.static is invalid.
const fragBase = `
listeners:
  - name: public
    address: 127.0.0.1:8080
routes:
  - name: site
    priority: 10
    match: { path_prefix: / }
    to: [ { service: origin } ]
policies:
  slow: { fault: { delay: { duration: 1s, percent: 1 } } }
discovery:
  static:
    origin: [ 127.0.0.1:9000 ]
    api: [ 127.0.0.1:9001 ]
    billing: [ 127.0.0.1:9002 ]
`

func mustBase(t *testing.T, text string) *Config {
	t.Helper()
	c, err := parse("base.yaml", []byte(text), nil)
	if err != nil {
		t.Fatalf("base: %v", err)
	}
	return c
}

func TestParseFragment(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name   string
		doc    string
		want   []wantErr // empty: valid
		routes int
	}{
		{name: "empty document", doc: "", routes: 0},
		{name: "comments only", doc: "# nothing yet\n", routes: 0},
		{name: "routes policies services", routes: 1, doc: `
routes:
  - name: api
    match: { path_prefix: /api/ }
    to: [ { service: api } ]
    policies: [ api-limit ]
policies:
  api-limit: { rate_limit: { requests: 10 } }
services:
  api: { load_balancer: { policy: least_request } }
`},
		{name: "no env expansion", routes: 1, doc: `
routes:
  - name: api
    match: { path: "/${HOME}" }
    to: [ { service: api } ]
`},
		{name: "syntax error has a line", doc: "routes:\n  - name: a\n\t- name: b\n",
			want: []wantErr{{2, "", "found a tab character"}}}, // yaml.v3 reports the line before
		{name: "file-only top-level key", doc: "listeners: []\nroutes: []\n",
			want: []wantErr{{1, "listeners", `key "listeners" is not allowed here: a document may only set routes, policies, services`}}},
		{name: "unknown nested key", doc: "routes:\n  - name: a\n    match: { path_prefix: /, bogus: 1 }\n    to: [ { service: api } ]\n",
			want: []wantErr{{3, "routes[0].match.bogus", `unknown key "bogus"`}}},
		{name: "wrong type", doc: "routes:\n  - name: a\n    priority: high\n    to: [ { service: api } ]\n",
			want: []wantErr{{3, "routes[0].priority", `expected an integer, got "high"`}}},
		{name: "duplicate key", doc: "routes: []\nroutes: []\n",
			want: []wantErr{{2, "routes", `duplicate key "routes"`}}},
		{name: "second document", doc: "routes: []\n---\nroutes: []\n",
			want: []wantErr{{0, "", "only one YAML document"}}},
		{name: "not a mapping", doc: "- a\n- b\n",
			want: []wantErr{{1, "", "expected a mapping, got a sequence"}}},
		{name: "scalar document", doc: "hello\n",
			want: []wantErr{{1, "", `expected a mapping, got "hello"`}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			f, err := ParseFragment("kv/doc", []byte(tt.doc))
			if len(tt.want) == 0 {
				if err != nil {
					t.Fatalf("unexpected error: %v", err)
				}
				if len(f.Routes) != tt.routes || f.Name != "kv/doc" {
					t.Fatalf("fragment %+v, want %d routes named kv/doc", f, tt.routes)
				}
				return
			}
			if err == nil {
				t.Fatalf("want errors %v, got none", tt.want)
			}
			es, ok := AsErrors(err)
			if !ok {
				t.Fatalf("error %T is not Errors: %v", err, err)
			}
			checkErrs(t, es, tt.want, "kv/doc")
		})
	}
}

// checkErrs asserts each wanted error is present (by substring, and by line/path when given)
// and that every error names the document.
func checkErrs(t *testing.T, es Errors, want []wantErr, file string) {
	t.Helper()
	for _, e := range es {
		if e.File != file || !strings.HasPrefix(e.Error(), file+":") {
			t.Errorf("error %q does not name %s", e.Error(), file)
		}
	}
	for _, w := range want {
		found := slices.ContainsFunc(es, func(e Error) bool {
			return strings.Contains(e.Msg, w.msg) && (w.path == "" || e.Path == w.path) && (w.line == 0 || e.Line == w.line)
		})
		if !found {
			t.Errorf("missing error %+v in:\n%v", w, es)
		}
	}
	if len(es) != len(want) {
		t.Errorf("got %d errors, want %d:\n%v", len(es), len(want), es)
	}
}

func TestMerge(t *testing.T) {
	t.Parallel()
	good := `
routes:
  - name: api
    priority: 5
    match: { path_prefix: /api/ }
    to: [ { service: api } ]
    policies: [ slow, api-limit ]
policies:
  api-limit: { rate_limit: { requests: 10 } }
services:
  api: { request_timeout: 3s, load_balancer: { policy: least_request } }
`
	tests := []struct {
		name       string
		frags      []NamedFragment
		wantRoutes []string             // effective route names, in order
		rejected   map[string][]wantErr // by document name
	}{
		{
			name:       "no fragments is the base",
			wantRoutes: []string{"site"},
		},
		{
			name:       "valid document appended after file routes",
			frags:      []NamedFragment{{"kv/api", []byte(good)}},
			wantRoutes: []string{"site", "api"},
		},
		{
			name: "documents merge in name order",
			frags: []NamedFragment{
				{"kv/b", []byte("routes: [ { name: b, match: { path: /b }, to: [ { service: billing } ] } ]\n")},
				{"kv/a", []byte("routes: [ { name: a, match: { path: /a }, to: [ { service: billing } ] } ]\n")},
			},
			wantRoutes: []string{"site", "a", "b"},
		},
		{
			name: "route to a service not in static",
			frags: []NamedFragment{{"kv/bad", []byte(`routes:
  - name: x
    match: { path_prefix: /x/ }
    to: [ { service: nowhere } ]
`)}},
			wantRoutes: []string{"site"},
			rejected:   map[string][]wantErr{"kv/bad": {{4, "routes[0].to[0].service", "service nowhere is not in discovery.static"}}},
		},
		{
			name: "unknown policy",
			frags: []NamedFragment{{"kv/bad", []byte(`routes:
  - name: x
    match: { path_prefix: /x/ }
    to: [ { service: api } ]
    policies: [ nope ]
`)}},
			wantRoutes: []string{"site"},
			rejected:   map[string][]wantErr{"kv/bad": {{5, "routes[0].policies[0]", `no policy named "nope"`}}},
		},
		{
			name:       "invalid service name is reported once, at the route",
			frags:      []NamedFragment{{"kv/bad", []byte("routes:\n  - name: x\n    match: { path: /x }\n    to: [ { service: \"no such\" } ]\n")}},
			wantRoutes: []string{"site"},
			rejected:   map[string][]wantErr{"kv/bad": {{4, "routes[0].to[0].service", `invalid service name "no such"`}}},
		},
		{
			name:       "route name collides with the file",
			frags:      []NamedFragment{{"kv/dup", []byte("routes:\n  - name: site\n    match: { path: /s }\n    to: [ { service: api } ]\n")}},
			wantRoutes: []string{"site"},
			rejected:   map[string][]wantErr{"kv/dup": {{2, "routes[0].name", `route "site" is already defined by the config file`}}},
		},
		{
			name:       "policy name collides with the file",
			frags:      []NamedFragment{{"kv/dup", []byte("policies:\n  slow: { fault: { abort: { status: 503, percent: 1 } } }\n")}},
			wantRoutes: []string{"site"},
			rejected:   map[string][]wantErr{"kv/dup": {{2, "policies.slow", `policy "slow" is already defined by the config file`}}},
		},
		{
			name:       "service used by a file route counts as defined",
			frags:      []NamedFragment{{"kv/dup", []byte("services:\n  origin: { connect_timeout: 1s }\n")}},
			wantRoutes: []string{"site"},
			rejected:   map[string][]wantErr{"kv/dup": {{2, "services.origin", `service "origin" is already defined by the config file`}}},
		},
		{
			name: "collision between documents rejects the later one",
			frags: []NamedFragment{
				{"kv/a", []byte(good)},
				{"kv/b", []byte("routes:\n  - name: api\n    match: { path: /other }\n    to: [ { service: billing } ]\n")},
			},
			wantRoutes: []string{"site", "api"},
			rejected:   map[string][]wantErr{"kv/b": {{2, "routes[0].name", `route "api" is already defined by document "kv/a"`}}},
		},
		{
			// The file's top priority is 10: a document route above it could shadow the file.
			name: "route outranking the file rejects its document",
			frags: []NamedFragment{
				{"kv/a", []byte("routes: [ { name: a, priority: 10, match: { path: /a }, to: [ { service: billing } ] } ]\n")},
				{"kv/b", []byte("routes:\n  - { name: b, match: { path: /b }, to: [ { service: billing } ] }\n  - { name: c, priority: 11, match: { path: /c }, to: [ { service: billing } ] }\n")},
			},
			wantRoutes: []string{"site", "a"},
			rejected:   map[string][]wantErr{"kv/b": {{3, "routes[1].priority", "priority 11 is above 10, the most a document route may have"}}},
		},
		{
			name:       "duplicate route inside a document",
			frags:      []NamedFragment{{"kv/d", []byte("routes:\n  - { name: r, match: { path: /1 }, to: [ { service: api } ] }\n  - { name: r, match: { path: /2 }, to: [ { service: api } ] }\n")}},
			wantRoutes: []string{"site"},
			rejected:   map[string][]wantErr{"kv/d": {{3, "routes[1].name", `duplicate route name "r" (also routes[0])`}}},
		},
		{
			name: "one bad document does not block the others",
			frags: []NamedFragment{
				{"kv/a", []byte("routes: [ { name: a, match: { path: /a }, to: [ { service: billing } ] } ]\n")},
				{"kv/b", []byte("routes: [ { name: b, match: { path: b }, to: [ { service: billing } ] } ]\n")},
				{"kv/c", []byte("listeners: []\n")},
			},
			wantRoutes: []string{"site", "a"},
			rejected: map[string][]wantErr{
				"kv/b": {{1, "routes[0].match.path", `must start with "/"`}},
				"kv/c": {{1, "listeners", "not allowed here"}},
			},
		},
		{
			name: "a service defined in one document applies to another's routes",
			frags: []NamedFragment{
				{"kv/a", []byte("routes: [ { name: a, match: { path: /a }, to: [ { service: billing } ] } ]\n")},
				{"kv/b", []byte("services:\n  billing: { load_balancer: { policy: ring_hash } }\n")},
			},
			wantRoutes: []string{"site", "a"},
			rejected:   map[string][]wantErr{"kv/b": {{2, "services.billing.load_balancer.hash", "ring_hash requires hash"}}},
		},
		{
			name:       "syntax error names the document and line",
			frags:      []NamedFragment{{"kv/s", []byte("routes:\n  - name: a\n  bad indent: [\n")}},
			wantRoutes: []string{"site"},
			rejected:   map[string][]wantErr{"kv/s": {{0, "", ""}}},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			base := mustBase(t, fragBase)
			before, _ := Marshal(base)
			got, errs := Merge(base, tt.frags)
			if got == nil {
				t.Fatal("Merge returned a nil config")
			}
			if err := got.Validate(); err != nil {
				t.Fatalf("merged config is invalid: %v", err)
			}
			var names []string
			for _, r := range got.Routes {
				names = append(names, r.Name)
			}
			if !slices.Equal(names, tt.wantRoutes) {
				t.Errorf("routes = %v, want %v", names, tt.wantRoutes)
			}
			if after, _ := Marshal(base); string(after) != string(before) {
				t.Error("Merge modified base")
			}
			if len(errs) != len(tt.rejected) {
				t.Fatalf("got %d rejected documents, want %d: %v", len(errs), len(tt.rejected), errs)
			}
			for _, err := range errs {
				var fe *FragmentError
				if !errors.As(err, &fe) {
					t.Fatalf("error %T is not a *FragmentError: %v", err, err)
				}
				want, ok := tt.rejected[fe.Name]
				if !ok {
					t.Errorf("document %s rejected unexpectedly: %v", fe.Name, err)
					continue
				}
				if want[0].msg == "" { // only "rejected, naming the document and a line"
					if len(fe.Errors) == 0 || fe.Errors[0].Line == 0 || !strings.HasPrefix(err.Error(), fe.Name+":") {
						t.Errorf("error %q lacks the document name or a line", err)
					}
					continue
				}
				checkErrs(t, fe.Errors, want, fe.Name)
			}
		})
	}
}

// A document's routes come after the file's, and a service it defines sets their defaults.
func TestMergeContent(t *testing.T) {
	t.Parallel()
	base := mustBase(t, fragBase)
	got, errs := Merge(base, []NamedFragment{{"kv/api", []byte(`
routes:
  - name: api
    match: { path_prefix: /api/, methods: [ GET ] }
    to: [ { service: api } ]
    policies: [ slow, api-limit ]
policies:
  api-limit: { rate_limit: { requests: 10 } }
services:
  api: { request_timeout: 3s, load_balancer: { policy: least_request } }
`)}})
	if len(errs) > 0 {
		t.Fatal(errs)
	}
	r := got.Routes[1]
	if r.Timeout.D().String() != "3s" || r.Match.Methods[0] != "GET" || r.To[0].Weight != 1 {
		t.Errorf("defaults not applied to the document's route: %+v", r)
	}
	if got.Services["api"].LoadBalancer.Policy != "least_request" || got.Policies["api-limit"].RateLimit.Burst != 10 {
		t.Errorf("document services/policies not merged with defaults: %+v %+v", got.Services["api"], got.Policies["api-limit"])
	}
	if _, ok := base.Policies["api-limit"]; ok {
		t.Error("base gained the document's policy")
	}
}

func TestMergeNilBase(t *testing.T) {
	t.Parallel()
	if c, errs := Merge(nil, nil); c != nil || len(errs) != 1 {
		t.Fatalf("Merge(nil) = %v, %v", c, errs)
	}
}

func TestKVPrefixValidation(t *testing.T) {
	t.Parallel()
	tests := []struct {
		prefix string
		want   string // substring; "" = valid
	}{
		{"meshgate/routes", ""},
		{"meshgate/routes/", ""},
		{"meshgate", ""},
		{"/", "not the whole KV store"},
		{"/meshgate", `must not start with "/"`},
		{"a//b", "empty path segment"},
		{"a b", "spaces or control characters"},
	}
	for _, tt := range tests {
		t.Run(tt.prefix, func(t *testing.T) {
			t.Parallel()
			text := strings.Replace(fragBase, "discovery:\n", "discovery:\n  consul: { kv_prefix: \""+tt.prefix+"\" }\n", 1)
			_, err := parse("f.yaml", []byte(text), nil)
			switch {
			case tt.want == "" && err != nil:
				t.Fatalf("unexpected error: %v", err)
			case tt.want != "" && (err == nil || !strings.Contains(err.Error(), tt.want) || !strings.Contains(err.Error(), "discovery.consul.kv_prefix")):
				t.Fatalf("error %v, want one at discovery.consul.kv_prefix containing %q", err, tt.want)
			}
		})
	}
}

// FuzzMerge checks that no document makes ParseFragment or Merge panic, that every rejection
// is a *FragmentError naming the document, and that the merged config is always valid.
func FuzzMerge(f *testing.F) {
	for _, seed := range []string{
		"",
		"routes: [ { name: a, match: { path: /a }, to: [ { service: api } ] } ]\n",
		"policies:\n  p: { rate_limit: { requests: 1 } }\nservices:\n  api: { load_balancer: { policy: ring_hash, hash: { header: X } } }\n",
		"routes: [ { name: site, to: [ { service: api } ] } ]\n",
		"listeners: []\n",
		"routes:\n  - name: [\n",
	} {
		f.Add([]byte(seed))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		base := mustBase(t, fragBase)
		c, errs := Merge(base, []NamedFragment{{"kv/fuzz", data}})
		if c == nil {
			t.Fatal("nil config")
		}
		if err := c.Validate(); err != nil {
			t.Fatalf("merged config invalid: %v", err)
		}
		for _, err := range errs {
			var fe *FragmentError
			if !errors.As(err, &fe) || fe.Name != "kv/fuzz" || len(fe.Errors) == 0 {
				t.Fatalf("bad rejection %T %v", err, err)
			}
		}
	})
}

// The documented KV example must merge cleanly into the example config it is written for.
func TestKVExampleMerges(t *testing.T) {
	t.Parallel()
	base, err := Load("examples/consul-kv.yaml")
	if err != nil {
		t.Fatal(err)
	}
	doc, err := os.ReadFile("examples/kv/api.yaml")
	if err != nil {
		t.Fatal(err)
	}
	c, errs := Merge(base, []NamedFragment{{"meshgate/routes/api", doc}})
	if len(errs) > 0 {
		t.Fatalf("example document rejected: %v", errs)
	}
	if len(c.Routes) != 2 || c.Routes[1].Name != "api" || c.Routes[1].Timeout.D().String() != "5s" {
		t.Fatalf("merged routes = %+v", c.Routes)
	}
}

// TestMergePriorityCap: kv_max_priority moves the cap either way; unset, it is computed from
// the file's routes (and shown in the effective config).
func TestMergePriorityCap(t *testing.T) {
	t.Parallel()
	base := func(extra string) string {
		return `
listeners: [ { address: 127.0.0.1:8080 } ]
routes:
  - { name: login, priority: 5, match: { path: /login }, to: [ { service: origin } ] }
  - { name: site, priority: -10, match: { path_prefix: / }, to: [ { service: origin } ] }
discovery:
  static: { origin: [ 127.0.0.1:9000 ] }
  consul:
    kv_prefix: meshgate/routes
` + extra
	}
	doc := func(prio int) []NamedFragment {
		return []NamedFragment{{"kv/x", fmt.Appendf(nil, "routes: [ { name: x, priority: %d, match: { path: /login }, to: [ { service: api } ] } ]\n", prio)}}
	}
	tests := []struct {
		name    string
		extra   string
		prio    int
		wantCap int
		refused bool
	}{
		{"default cap is the file's top priority", "", 5, 5, false},
		{"above the default cap", "", 6, 5, true},
		{"file lowers the cap below its catch-all", "    kv_max_priority: -11\n", -10, -11, true},
		{"file lowers the cap", "    kv_max_priority: -11\n", -20, -11, false},
		{"file allows documents to outrank it", "    kv_max_priority: 100\n", 100, 100, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			b := mustBase(t, base(tt.extra))
			if got := *b.Discovery.Consul.KVMaxPriority; got != tt.wantCap {
				t.Fatalf("kv_max_priority = %d, want %d", got, tt.wantCap)
			}
			_, errs := Merge(b, doc(tt.prio))
			if refused := len(errs) > 0; refused != tt.refused {
				t.Fatalf("refused = %v, want %v: %v", refused, tt.refused, errs)
			}
			if tt.refused && !strings.Contains(errs[0].Error(), "kv/x:1: routes[0].priority: priority") {
				t.Errorf("error = %v", errs[0])
			}
		})
	}
}
