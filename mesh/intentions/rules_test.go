package intentions

import (
	"strings"
	"testing"
)

func TestEvaluate(t *testing.T) {
	t.Parallel()
	type check struct {
		src   string
		req   request
		allow bool
		label string // the Decision's Intention
	}
	tests := []struct {
		name         string
		list         []Intention
		defaultAllow bool
		checks       []check
	}{
		{
			name: "no intentions, default deny",
			checks: []check{
				{"web", get("/"), false, LabelDefaultDeny},
			},
		},
		{
			name: "no intentions, default allow", defaultAllow: true,
			checks: []check{
				{"web", get("/"), true, LabelDefaultAllow},
			},
		},
		{
			name: "exact source outranks wildcard, whatever the input order",
			list: []Intention{l4("*", ActionDeny), l4("web", ActionAllow)},
			checks: []check{
				{"web", get("/"), true, "web→api allow"},
				{"db", get("/"), false, "*→api deny"},
			},
		},
		{
			name: "exact deny over wildcard allow", defaultAllow: true,
			list: []Intention{l4("web", ActionDeny), l4("*", ActionAllow)},
			checks: []check{
				{"web", get("/"), false, "web→api deny"},
				{"db", get("/"), true, "*→api allow"},
			},
		},
		{
			name: "L4 deny wins even with default allow", defaultAllow: true,
			list: []Intention{l4("web", ActionDeny)},
			checks: []check{
				{"web", get("/"), false, "web→api deny"},
				{"db", get("/"), true, LabelDefaultAllow},
			},
		},
		{
			name: "unknown action is deny",
			list: []Intention{l4("web", "maybe")},
			checks: []check{
				{"web", get("/"), false, "web→api deny"},
			},
		},
		{
			name: "exact destination outranks exact source on a wildcard destination",
			list: []Intention{
				with(l4("web", ActionAllow), toAnyDestination), // precedence 6
				l4("*", ActionDeny),                            // * → api deny (precedence 8)
			},
			defaultAllow: true,
			checks: []check{
				{"web", get("/"), false, "*→api deny"},
				{"db", get("/"), false, "*→api deny"},
			},
		},
		{
			name: "wildcard-destination intention applies when nothing closer does",
			list: []Intention{with(l4("web", ActionAllow), toAnyDestination)},
			checks: []check{
				{"web", get("/"), true, "web→* allow"},
				{"db", get("/"), false, LabelDefaultDeny},
			},
		},
		{
			name: "other tenancies and peers never match a local caller", defaultAllow: true,
			list: []Intention{
				with(l4("web", ActionAllow), func(ix *Intention) { ix.SourcePeer = "east" }),
				with(l4("web", ActionAllow), func(ix *Intention) { ix.SourceNamespace = "team" }),
				with(l4("web", ActionAllow), func(ix *Intention) { ix.SourcePartition = "p1" }),
				with(l4("web", ActionAllow), func(ix *Intention) { ix.SourceSamenessGroup = "g" }),
				with(l4("web", ActionAllow), func(ix *Intention) { ix.SourceType = "external" }),
				with(l4("*", ActionDeny), func(ix *Intention) { ix.SourceNamespace = Wildcard; ix.Precedence = 7 }),
			},
			checks: []check{
				{"web", get("/"), false, "*/*→api deny"},
			},
		},
		{
			name: "empty namespace and partition mean default",
			list: []Intention{{SourceName: "web", DestinationName: "api", Action: ActionAllow, Precedence: 9}},
			checks: []check{
				{"web", get("/"), true, "web→api allow"},
			},
		},
		{
			name: "empty source identity is denied", defaultAllow: true,
			list: []Intention{l4("*", ActionAllow)},
			checks: []check{
				{"", get("/"), false, labelNoSource},
			},
		},
		{
			name: "L7 path exact",
			list: []Intention{l7("web", allowHTTP(HTTPMatch{PathExact: "/health"}))},
			checks: []check{
				{"web", get("/health"), true, "web→api permission 1 allow"},
				{"web", get("/health?verbose=1"), true, "web→api permission 1 allow"},
				{"web", get("/health/x"), false, "web→api no permission matched, default deny"},
				{"web", get("/HEALTH"), false, "web→api no permission matched, default deny"},
			},
		},
		{
			name: "L7 path prefix is byte-wise, not segment-wise",
			list: []Intention{l7("web", allowHTTP(HTTPMatch{PathPrefix: "/public"}))},
			checks: []check{
				{"web", get("/public"), true, "web→api permission 1 allow"},
				{"web", get("/public/a/b"), true, "web→api permission 1 allow"},
				{"web", get("/publication"), true, "web→api permission 1 allow"},
				{"web", get("/pub"), false, "web→api no permission matched, default deny"},
				{"web", get("/admin?x=/public"), false, "web→api no permission matched, default deny"},
			},
		},
		{
			name: "L7 path regex must match the whole path",
			list: []Intention{l7("web", allowHTTP(HTTPMatch{PathRegex: "/v[0-9]+/items"}))},
			checks: []check{
				{"web", get("/v12/items"), true, "web→api permission 1 allow"},
				{"web", get("/v12/items/7"), false, "web→api no permission matched, default deny"},
				{"web", get("/x/v1/items"), false, "web→api no permission matched, default deny"},
			},
		},
		{
			name: "L7 methods",
			list: []Intention{l7("web", allowHTTP(HTTPMatch{PathPrefix: "/", Methods: []string{"GET", "head"}}))},
			checks: []check{
				{"web", get("/a"), true, "web→api permission 1 allow"},
				{"web", request{method: "HEAD", path: "/a"}, true, "web→api permission 1 allow"},
				{"web", request{method: "POST", path: "/a"}, false, "web→api no permission matched, default deny"},
			},
		},
		{
			name: "L7 first matching permission wins",
			list: []Intention{l7("web",
				denyHTTP(HTTPMatch{PathExact: "/billing/refund"}),
				allowHTTP(HTTPMatch{PathPrefix: "/billing/"}),
			)},
			defaultAllow: true,
			checks: []check{
				{"web", get("/billing/refund"), false, "web→api permission 1 deny"},
				{"web", get("/billing/view"), true, "web→api permission 2 allow"},
				// No permission matches: the default decides, as Consul documents.
				{"web", get("/other"), true, "web→api no permission matched, default allow"},
			},
		},
		{
			name:         "L7 permission without HTTP matches everything",
			list:         []Intention{l7("web", Permission{Action: ActionDeny})},
			defaultAllow: true,
			checks: []check{
				{"web", get("/anything"), false, "web→api permission 1 deny"},
			},
		},
		{
			name: "L7 for one source, L4 for the wildcard",
			list: []Intention{
				l7("web", allowHTTP(HTTPMatch{PathPrefix: "/public"})),
				l4("*", ActionAllow),
			},
			checks: []check{
				{"web", get("/public/x"), true, "web→api permission 1 allow"},
				// web's own intention decided; the wildcard allow is never consulted.
				{"web", get("/admin"), false, "web→api no permission matched, default deny"},
				{"db", get("/admin"), true, "*→api allow"},
			},
		},
		{
			name: "L7 headers: exact, prefix, suffix, contains, regex, all must hold",
			list: []Intention{l7("web", allowHTTP(HTTPMatch{Header: []HeaderMatch{
				{Name: "X-Env", Exact: "prod"},
				{Name: "X-Ver", Prefix: "v2"},
				{Name: "X-Zone", Suffix: "-a"},
				{Name: "X-Team", Contains: "pay"},
				{Name: "X-Id", Regex: "[0-9]+"},
			}}))},
			checks: []check{
				{"web", request{method: "GET", path: "/", headers: map[string]string{
					"X-Env": "prod", "X-Ver": "v2.1", "X-Zone": "eu-a", "X-Team": "payments", "X-Id": "42"}},
					true, "web→api permission 1 allow"},
				{"web", request{method: "GET", path: "/", headers: map[string]string{
					"X-Env": "prod", "X-Ver": "v2.1", "X-Zone": "eu-a", "X-Team": "payments", "X-Id": "42a"}},
					false, "web→api no permission matched, default deny"},
				{"web", request{method: "GET", path: "/", headers: map[string]string{
					"X-Env": "Prod", "X-Ver": "v2.1", "X-Zone": "eu-a", "X-Team": "payments", "X-Id": "42"}},
					false, "web→api no permission matched, default deny"},
				{"web", request{method: "GET", path: "/", headers: map[string]string{
					"X-Env": "prod", "X-Ver": "v2.1", "X-Zone": "eu-a", "X-Id": "42"}},
					false, "web→api no permission matched, default deny"},
			},
		},
		{
			name: "L7 header ignore case",
			list: []Intention{l7("web", allowHTTP(HTTPMatch{Header: []HeaderMatch{
				{Name: "X-Env", Exact: "PROD", IgnoreCase: true},
				{Name: "X-Team", Contains: "PAY", IgnoreCase: true},
			}}))},
			checks: []check{
				{"web", request{method: "GET", path: "/", headers: map[string]string{"X-Env": "prod", "X-Team": "apple-pay"}},
					true, "web→api permission 1 allow"},
				{"web", request{method: "GET", path: "/", headers: map[string]string{"X-Env": "prod", "X-Team": "apple"}},
					false, "web→api no permission matched, default deny"},
			},
		},
		{
			name: "L7 header present and inverted present",
			list: []Intention{l7("web",
				denyHTTP(HTTPMatch{Header: []HeaderMatch{{Name: "X-Debug", Present: true}}}),
				allowHTTP(HTTPMatch{Header: []HeaderMatch{{Name: "Authorization", Present: true, Invert: true}}}),
			)},
			checks: []check{
				{"web", request{method: "GET", path: "/", headers: map[string]string{"X-Debug": "1"}}, false, "web→api permission 1 deny"},
				{"web", get("/"), true, "web→api permission 2 allow"},
				{"web", request{method: "GET", path: "/", headers: map[string]string{"Authorization": "x"}},
					false, "web→api no permission matched, default deny"},
			},
		},
		{
			name: "L7 inverted value match never matches an absent header (Envoy)",
			list: []Intention{l7("web", allowHTTP(HTTPMatch{Header: []HeaderMatch{{Name: "X-Env", Exact: "prod", Invert: true}}}))},
			checks: []check{
				{"web", request{method: "GET", path: "/", headers: map[string]string{"X-Env": "dev"}}, true, "web→api permission 1 allow"},
				{"web", request{method: "GET", path: "/", headers: map[string]string{"X-Env": "prod"}},
					false, "web→api no permission matched, default deny"},
				{"web", get("/"), false, "web→api no permission matched, default deny"},
			},
		},
		{
			name: "L7 header entry without a criterion is ignored",
			list: []Intention{l7("web", allowHTTP(HTTPMatch{PathExact: "/", Header: []HeaderMatch{{Name: "X-Any", Invert: true}}}))},
			checks: []check{
				{"web", get("/"), true, "web→api permission 1 allow"},
			},
		},
		{
			name: "L7 pseudo-headers",
			list: []Intention{l7("web", allowHTTP(HTTPMatch{Header: []HeaderMatch{
				{Name: ":authority", Suffix: ".internal"},
				{Name: ":method", Exact: "PUT"},
				{Name: ":path", Regex: `/x\?.*`},
			}}))},
			checks: []check{
				{"web", request{method: "PUT", path: "/x?a=1", headers: map[string]string{"Host": "api.internal"}}, true, "web→api permission 1 allow"},
				{"web", request{method: "PUT", path: "/x", headers: map[string]string{"Host": "api.internal"}},
					false, "web→api no permission matched, default deny"},
				{"web", request{method: "PUT", path: "/x?a=1", headers: map[string]string{"Host": "api.example"}},
					false, "web→api no permission matched, default deny"},
			},
		},
		{
			name: "JWT: allow intention that needs a token denies", defaultAllow: true,
			list: []Intention{with(l4("web", ActionAllow), func(ix *Intention) { ix.RequiresJWT = true })},
			checks: []check{
				{"web", get("/"), false, "web→api requires JWT (unsupported), deny"},
			},
		},
		{
			name: "JWT: allow permission that needs a token never matches, deny permission still does",
			list: []Intention{l7("web",
				Permission{Action: ActionDeny, HTTP: &HTTPMatch{PathPrefix: "/admin"}, RequiresJWT: true},
				Permission{Action: ActionAllow, HTTP: &HTTPMatch{PathPrefix: "/"}, RequiresJWT: true},
			)},
			checks: []check{
				{"web", get("/admin"), false, "web→api permission 1 deny"},
				{"web", get("/public"), false, "web→api no permission matched, default deny"},
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			rs := mustCompile(t, tt.list, tt.defaultAllow)
			for _, c := range tt.checks {
				h := c.req.header()
				got := rs.authorize(c.src, h.Method(), h.RequestURI(), h)
				if got.Allow != c.allow || got.Intention != c.label {
					t.Errorf("%s %s %s%v = %+v; want allow=%v by %q",
						c.src, c.req.method, c.req.path, c.req.headers, got, c.allow, c.label)
				}
			}
		})
	}
}

func TestCompileRejectsBadRegex(t *testing.T) {
	t.Parallel()
	for _, list := range [][]Intention{
		{l7("web", allowHTTP(HTTPMatch{PathRegex: "/(unclosed"}))},
		{l7("web", allowHTTP(HTTPMatch{Header: []HeaderMatch{{Name: "X", Regex: "a**"}}}))},
	} {
		if _, err := compile(list, false, 1, OriginSource); err == nil || !strings.Contains(err.Error(), "web→api") {
			t.Errorf("compile = %v; want an error naming the intention", err)
		}
	}
}

// TestAuthorizeNilHeaders: a caller without headers sees every header as absent.
func TestAuthorizeNilHeaders(t *testing.T) {
	t.Parallel()
	rs := mustCompile(t, []Intention{l7("web",
		allowHTTP(HTTPMatch{Header: []HeaderMatch{{Name: "X-A", Present: true, Invert: true}}}))}, false)
	if d := rs.authorize("web", []byte("GET"), []byte("/"), nil); !d.Allow {
		t.Fatalf("nil headers: %+v; want the inverted Present to allow", d)
	}
}

// TestAuthorizeAllocs holds the hot path to zero allocations for the common cases.
func TestAuthorizeAllocs(t *testing.T) {
	a := newAuthorizer(t, Options{Source: newFakeSource()})
	rs := mustCompile(t, []Intention{
		l4("web", ActionAllow),
		l4("db", ActionDeny),
		l7("batch",
			denyHTTP(HTTPMatch{PathRegex: "/admin/.*"}),
			allowHTTP(HTTPMatch{PathPrefix: "/public", Methods: []string{"GET", "HEAD"}}),
			allowHTTP(HTTPMatch{PathExact: "/hook", Header: []HeaderMatch{{Name: "X-Sig", Present: true}}}),
		),
	}, false)
	a.rules.Store(rs)
	cases := []struct {
		name, src string
		req       request
		allow     bool
	}{
		{"L4 allow", "web", get("/x"), true},
		{"L4 deny", "db", get("/x"), false},
		{"default", "other", get("/x"), false},
		{"path prefix", "batch", get("/public/a?b=c"), true},
		{"path regex", "batch", get("/admin/users"), false},
		{"header present", "batch", request{method: "POST", path: "/hook", headers: map[string]string{"X-Sig": "s"}}, true},
		{"no permission", "batch", request{method: "POST", path: "/public/a"}, false},
	}
	for _, c := range cases {
		h := c.req.header()
		method, path := h.Method(), h.RequestURI()
		var d Decision
		allocs := testing.AllocsPerRun(200, func() { d = a.Authorize(Caller{Service: c.src}, method, path, h) })
		if allocs != 0 {
			t.Errorf("%s: %v allocs per Authorize; want 0", c.name, allocs)
		}
		if d.Allow != c.allow {
			t.Errorf("%s: %+v; want allow=%v", c.name, d, c.allow)
		}
	}
}

func BenchmarkAuthorize(b *testing.B) {
	a, err := New(Options{Source: newFakeSource(), Destination: "api"})
	if err != nil {
		b.Fatal(err)
	}
	list := []Intention{
		l4("web", ActionAllow),
		l4("db", ActionDeny),
		l7("batch",
			denyHTTP(HTTPMatch{PathRegex: "/admin/.*"}),
			allowHTTP(HTTPMatch{PathPrefix: "/public", Methods: []string{"GET", "HEAD"}}),
		),
	}
	for i := range 50 { // a realistic number of unrelated sources
		list = append(list, l4("svc"+strings.Repeat("x", i), ActionAllow))
	}
	a.rules.Store(mustCompile(b, list, false))
	for _, bc := range []struct {
		name, src string
		req       request
	}{
		{"L4", "web", get("/x")},
		{"PathPrefix", "batch", get("/public/items?page=2")},
		{"PathRegex", "batch", get("/admin/users")},
		{"Default", "unknown", get("/x")},
	} {
		h := bc.req.header()
		method, path := h.Method(), h.RequestURI()
		b.Run(bc.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				a.Authorize(Caller{Service: bc.src}, method, path, h)
			}
		})
	}
}
