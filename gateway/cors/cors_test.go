package cors

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/valyala/fasthttp"

	"github.com/meshgate/meshgate/gateway/filter"
)

func newPolicy(t *testing.T, o Options) *Policy {
	t.Helper()
	o.Name = "p"
	p, err := New(o)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func request(method string, hdr ...string) *filter.Request {
	ctx := &fasthttp.RequestCtx{}
	ctx.Request.Header.SetMethod(method)
	ctx.Request.SetRequestURI("/x")
	for i := 0; i+1 < len(hdr); i += 2 {
		ctx.Request.Header.Add(hdr[i], hdr[i+1])
	}
	return &filter.Request{Ctx: ctx, Route: "r"}
}

func preflight(origin, method, headers string) *filter.Request {
	h := []string{hOrigin, origin, hRequestMethod, method}
	if headers != "" {
		h = append(h, hRequestHeaders, headers)
	}
	return request(fasthttp.MethodOptions, h...)
}

func hasCORSHeaders(h *fasthttp.ResponseHeader) bool {
	for k := range h.All() {
		if strings.HasPrefix(strings.ToLower(string(k)), "access-control-") {
			return true
		}
	}
	return false
}

func TestOriginMatching(t *testing.T) {
	t.Parallel()
	p := newPolicy(t, Options{AllowOrigins: []string{"https://app.mesh.test", "http://localhost:3000", "https://*.apps.mesh.test", "https://*.ports.mesh.test:8443"}})
	for origin, want := range map[string]bool{
		"https://app.mesh.test":             true,
		"HTTPS://App.Mesh.Test":             true, // origins compare case-insensitively
		"http://localhost:3000":             true,
		"https://a.apps.mesh.test":          true,
		"https://a.b-c.apps.mesh.test":      true,  // any depth
		"https://apps.mesh.test":            false, // never the apex
		"https://.apps.mesh.test":           false,
		"https://a..apps.mesh.test":         false,
		"https://evil.test/.apps.mesh.test": false,
		"https://a_b.apps.mesh.test":        false,
		"http://a.apps.mesh.test":           false, // scheme is part of the origin
		"https://a.apps.mesh.test:8443":     false, // so is the port
		"https://a.ports.mesh.test:8443":    true,
		"https://a.ports.mesh.test":         false,
		"https://app.mesh.test.evil.test":   false,
		"https://evilapp.mesh.test":         false,
		"http://app.mesh.test":              false,
		"http://localhost:3001":             false,
		"null":                              false,
		"":                                  false,
		"https://" + strings.Repeat("a", maxOrigin) + ".apps.mesh.test": false,
	} {
		if got := p.Allowed([]byte(origin)); got != want {
			t.Errorf("Allowed(%q) = %v, want %v", origin, got, want)
		}
	}
	anyOrigin := newPolicy(t, Options{AllowOrigins: []string{"*"}})
	if !anyOrigin.Allowed([]byte("https://whatever.test")) {
		t.Error(`"*" rejected an origin`)
	}
}

func TestPreflight(t *testing.T) {
	t.Parallel()
	opts := Options{
		AllowOrigins:     []string{"https://app.mesh.test", "https://*.mesh.test"},
		AllowMethods:     []string{"GET", "put", "DELETE"},
		AllowHeaders:     []string{"Authorization", "X-Request-Id"},
		ExposeHeaders:    []string{"X-Trace"},
		AllowCredentials: true,
		MaxAge:           10 * time.Minute,
	}
	tests := []struct {
		name    string
		policy  Options
		req     *filter.Request
		verdict filter.Verdict
		headers map[string]string // expected response headers ("" = absent)
	}{
		{
			name: "allowed origin, method and headers", policy: opts,
			req:     preflight("https://app.mesh.test", "PUT", "authorization, x-request-id"),
			verdict: filter.Verdict{Status: 204, Reason: ReasonPreflight, Written: true},
			headers: map[string]string{
				hAllowOrigin: "https://app.mesh.test", hAllowCredentials: "true",
				hAllowMethods: "GET, PUT, DELETE", hAllowHeaders: "Authorization, X-Request-Id",
				hMaxAge: "600", hVary: preflightVary, hExposeHeaders: "",
			},
		},
		{
			name: "wildcard subdomain echoes the exact origin", policy: opts,
			req:     preflight("https://shop.mesh.test", "DELETE", ""),
			verdict: filter.Verdict{Status: 204, Reason: ReasonPreflight, Written: true},
			headers: map[string]string{hAllowOrigin: "https://shop.mesh.test", hAllowCredentials: "true"},
		},
		{
			name: "safelisted method needs no listing", policy: opts,
			req:     preflight("https://app.mesh.test", "POST", "x-request-id"),
			verdict: filter.Verdict{Status: 204, Reason: ReasonPreflight, Written: true},
		},
		{
			name: "disallowed origin", policy: opts,
			req:     preflight("https://evil.test", "GET", ""),
			verdict: filter.Verdict{Status: 403, Reason: ReasonDenied},
		},
		{
			name: "disallowed method", policy: opts,
			req:     preflight("https://app.mesh.test", "PATCH", ""),
			verdict: filter.Verdict{Status: 403, Reason: ReasonDenied},
		},
		{
			name: "method names are case-sensitive", policy: opts,
			req:     preflight("https://app.mesh.test", "put", ""),
			verdict: filter.Verdict{Status: 403, Reason: ReasonDenied},
		},
		{
			name: "disallowed header", policy: opts,
			req:     preflight("https://app.mesh.test", "GET", "authorization, x-admin"),
			verdict: filter.Verdict{Status: 403, Reason: ReasonDenied},
		},
		{
			name:    "any origin without credentials answers *",
			policy:  Options{AllowOrigins: []string{"*"}, AllowHeaders: []string{"*"}},
			req:     preflight("https://any.test", "GET", "x-one, x-two"),
			verdict: filter.Verdict{Status: 204, Reason: ReasonPreflight, Written: true},
			headers: map[string]string{
				hAllowOrigin: "*", hAllowCredentials: "", hAllowHeaders: "x-one, x-two",
				hAllowMethods: "GET, HEAD, POST", hMaxAge: "",
			},
		},
		{
			name: "OPTIONS without Access-Control-Request-Method is not a preflight", policy: opts,
			req:     request(fasthttp.MethodOptions, hOrigin, "https://evil.test"),
			verdict: filter.Verdict{},
		},
		{
			name: "OPTIONS without Origin is not a preflight", policy: opts,
			req:     request(fasthttp.MethodOptions, hRequestMethod, "GET"),
			verdict: filter.Verdict{},
		},
		{
			name: "actual request from a disallowed origin continues", policy: opts,
			req:     request(fasthttp.MethodGet, hOrigin, "https://evil.test"),
			verdict: filter.Verdict{},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			p := newPolicy(t, tt.policy)
			if got := p.Request(tt.req); got != tt.verdict {
				t.Fatalf("verdict %+v, want %+v", got, tt.verdict)
			}
			h := &tt.req.Ctx.Response.Header
			if tt.verdict.Status != 204 && hasCORSHeaders(h) {
				t.Fatalf("CORS headers on a non-preflight answer:\n%s", h.String())
			}
			if tt.verdict.Written && tt.req.Ctx.Response.StatusCode() != 204 {
				t.Fatalf("written status %d", tt.req.Ctx.Response.StatusCode())
			}
			for k, want := range tt.headers {
				if got := string(h.Peek(k)); got != want {
					t.Errorf("%s = %q, want %q", k, got, want)
				}
			}
		})
	}
}

func TestResponse(t *testing.T) {
	t.Parallel()
	creds := Options{AllowOrigins: []string{"https://*.mesh.test"}, ExposeHeaders: []string{"X-Trace", "X-Page"}, AllowCredentials: true}
	tests := []struct {
		name     string
		policy   Options
		origin   string
		upstream []string // upstream response headers, name/value pairs
		want     map[string]string
		vary     []string
	}{
		{
			name: "allowed origin is echoed with credentials", policy: creds, origin: "https://a.mesh.test",
			want: map[string]string{hAllowOrigin: "https://a.mesh.test", hAllowCredentials: "true", hExposeHeaders: "X-Trace, X-Page"},
			vary: []string{"Origin"},
		},
		{
			name: "disallowed origin gets no CORS headers, upstream's are removed", policy: creds, origin: "https://evil.test",
			upstream: []string{hAllowOrigin, "*", hAllowCredentials, "true", hExposeHeaders, "X-Secret"},
			want:     map[string]string{hAllowOrigin: "", hAllowCredentials: "", hExposeHeaders: ""},
			vary:     []string{"Origin"},
		},
		{
			name: "no Origin still varies on it", policy: creds,
			want: map[string]string{hAllowOrigin: ""}, vary: []string{"Origin"},
		},
		{
			name: "existing Vary is kept and Origin added once", policy: creds, origin: "https://a.mesh.test",
			upstream: []string{hVary, "Accept-Encoding"},
			want:     map[string]string{hAllowOrigin: "https://a.mesh.test"},
			vary:     []string{"Accept-Encoding", "Origin"},
		},
		{
			name: "Vary already naming Origin is left alone", policy: creds, origin: "https://a.mesh.test",
			upstream: []string{hVary, "accept, origin"},
			vary:     []string{"accept, origin"},
		},
		{
			name: "upstream's Allow-Origin is replaced, not duplicated", policy: creds, origin: "https://a.mesh.test",
			upstream: []string{hAllowOrigin, "https://other.test"},
			want:     map[string]string{hAllowOrigin: "https://a.mesh.test"},
			vary:     []string{"Origin"},
		},
		{
			name:   "any origin without credentials sends * and no Vary",
			policy: Options{AllowOrigins: []string{"*"}}, origin: "https://any.test",
			want: map[string]string{hAllowOrigin: "*", hAllowCredentials: ""},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			p := newPolicy(t, tt.policy)
			var r *filter.Request
			if tt.origin != "" {
				r = request(fasthttp.MethodGet, hOrigin, tt.origin)
			} else {
				r = request(fasthttp.MethodGet)
			}
			resp := &fasthttp.Response{}
			for i := 0; i+1 < len(tt.upstream); i += 2 {
				resp.Header.Add(tt.upstream[i], tt.upstream[i+1])
			}
			p.Response(r, resp)
			for k, want := range tt.want {
				if got := resp.Header.PeekAll(k); len(got) > 1 || (want == "" && len(got) != 0) || (want != "" && (len(got) != 1 || string(got[0]) != want)) {
					t.Errorf("%s = %q, want %q", k, got, want)
				}
			}
			var vary []string
			for _, v := range resp.Header.PeekAll(hVary) {
				vary = append(vary, string(v))
			}
			if strings.Join(vary, "|") != strings.Join(tt.vary, "|") {
				t.Errorf("Vary = %q, want %q", vary, tt.vary)
			}
			// Never "*" together with credentials.
			if string(resp.Header.Peek(hAllowOrigin)) == "*" && len(resp.Header.Peek(hAllowCredentials)) > 0 {
				t.Error(`"*" sent with Allow-Credentials`)
			}
		})
	}
}

func TestNewErrors(t *testing.T) {
	t.Parallel()
	if _, err := New(Options{Name: "p", AllowOrigins: []string{"*"}, AllowCredentials: true}); !errors.Is(err, ErrWildcardCredentials) {
		t.Errorf("* with credentials: %v", err)
	}
	for _, tt := range []struct {
		opts Options
		want string
	}{
		{Options{}, "allow_origins is required"},
		{Options{AllowOrigins: []string{"app.mesh.test"}}, "want scheme://host[:port]"},
		{Options{AllowOrigins: []string{"https://app.mesh.test/path"}}, "want scheme://host[:port]"},
		{Options{AllowOrigins: []string{"https://*."}}, "needs a domain"},
		{Options{AllowOrigins: []string{"https://a.*.mesh.test"}}, "only allowed as the first label"},
		{Options{AllowOrigins: []string{"https://*.*.mesh.test"}}, "needs a domain"},
		{Options{AllowOrigins: []string{"*"}, AllowMethods: []string{"GE T"}}, "invalid method"},
		{Options{AllowOrigins: []string{"*"}, AllowHeaders: []string{"X:Y"}}, "invalid allow header"},
		{Options{AllowOrigins: []string{"*"}, ExposeHeaders: []string{""}}, "invalid expose header"},
		{Options{AllowOrigins: []string{"*"}, MaxAge: -time.Second}, "max_age"},
	} {
		tt.opts.Name = "p"
		if _, err := New(tt.opts); err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("New(%+v) = %v, want %q", tt.opts, err, tt.want)
		}
	}
}

func TestAllocations(t *testing.T) {
	if raceEnabled {
		t.Skip("the race detector allocates")
	}
	p := newPolicy(t, Options{
		AllowOrigins:     []string{"https://app.mesh.test", "https://*.mesh.test"},
		AllowMethods:     []string{"PUT"},
		AllowHeaders:     []string{"Authorization", "X-Request-Id"},
		ExposeHeaders:    []string{"X-Trace"},
		AllowCredentials: true,
		MaxAge:           time.Minute,
	})
	pre := preflight("https://Shop.mesh.test", "PUT", "authorization, x-request-id")
	if n := testing.AllocsPerRun(1000, func() {
		pre.Ctx.Response.Reset()
		p.Request(pre)
	}); n != 0 {
		t.Errorf("preflight: %v allocs, want 0", n)
	}
	denied := preflight("https://evil.test", "PUT", "")
	if n := testing.AllocsPerRun(1000, func() { p.Request(denied) }); n != 0 {
		t.Errorf("denied preflight: %v allocs, want 0", n)
	}
	actual := request(fasthttp.MethodGet, hOrigin, "https://app.mesh.test")
	resp := &fasthttp.Response{}
	if n := testing.AllocsPerRun(1000, func() {
		resp.Reset()
		resp.Header.Set(hVary, "Accept-Encoding")
		resp.Header.Set(hAllowOrigin, "*")
		p.Request(actual)
		p.Response(actual, resp)
	}); n != 0 {
		t.Errorf("actual request: %v allocs, want 0", n)
	}
}

func BenchmarkActualRequest(b *testing.B) {
	p, err := New(Options{Name: "p", AllowOrigins: []string{"https://app.mesh.test", "https://*.mesh.test"}, AllowCredentials: true, ExposeHeaders: []string{"X-Trace"}})
	if err != nil {
		b.Fatal(err)
	}
	r := request(fasthttp.MethodGet, hOrigin, "https://shop.mesh.test")
	resp := &fasthttp.Response{}
	b.ReportAllocs()
	for b.Loop() {
		resp.Reset()
		p.Request(r)
		p.Response(r, resp)
	}
}
