package headers

import (
	"errors"
	"strings"
	"testing"

	"github.com/valyala/fasthttp"

	"github.com/meshgate/meshgate/gateway/filter"
)

func newTransformer(t *testing.T, o Options) *Transformer {
	t.Helper()
	o.Name = "p"
	tr, err := New(o)
	if err != nil {
		t.Fatal(err)
	}
	return tr
}

// request builds a request the way the listener parses one off the wire.
func request(t *testing.T, raw string) *filter.Request {
	t.Helper()
	ctx := &fasthttp.RequestCtx{}
	if err := ctx.Request.Read(bufioReader(raw)); err != nil {
		t.Fatal(err)
	}
	return &filter.Request{Ctx: ctx, Route: "r"}
}

func values(all func(string) [][]byte, name string) string {
	var out []string
	for _, v := range all(name) {
		out = append(out, string(v))
	}
	return strings.Join(out, "|")
}

func TestRequestHeaders(t *testing.T) {
	t.Parallel()
	tr := newTransformer(t, Options{Request: Transform{
		Remove: []string{"x-internal", "X-Env"},
		Set:    []Header{{"X-Env", "prod"}, {"X-Gateway", "meshgate"}, {"Accept", "application/json"}},
		Add:    []Header{{"X-Tag", "a"}, {"X-Tag", "b"}, {"X-Env", "canary"}},
	}})
	r := request(t, "GET /x HTTP/1.1\r\nHost: svc.mesh.test\r\nX-Internal: 1\r\nX-Internal: 2\r\n"+
		"X-Env: dev\r\nAccept: text/html\r\nAccept: */*\r\nX-Tag: c\r\n\r\n")
	if v := tr.Request(r); v != (filter.Verdict{}) {
		t.Fatalf("verdict %+v", v)
	}
	h := &r.Ctx.Request.Header
	for name, want := range map[string]string{
		"X-Internal": "",
		"X-Env":      "prod|canary", // remove, then set, then add
		"X-Gateway":  "meshgate",
		"Accept":     "application/json",
		"X-Tag":      "c|a|b",
		"Host":       "svc.mesh.test",
	} {
		if got := values(h.PeekAll, name); got != want {
			t.Errorf("%s = %q, want %q", name, got, want)
		}
	}
	if got := string(r.Ctx.Request.URI().Path()); got != "/x" {
		t.Errorf("path changed to %q without a rewrite", got)
	}
}

func TestResponseHeaders(t *testing.T) {
	t.Parallel()
	tr := newTransformer(t, Options{Response: Transform{
		Remove: []string{"Server", "X-Powered-By", "Set-Cookie"},
		Set:    []Header{{"Strict-Transport-Security", "max-age=31536000"}, {"Cache-Control", "no-store"}},
		Add:    []Header{{"Set-Cookie", "edge=1; Path=/"}, {"Link", "</a>; rel=preload"}},
	}})
	resp := &fasthttp.Response{}
	resp.Header.Set("Server", "upstream/1.0")
	resp.Header.Set("X-Powered-By", "php")
	resp.Header.Set("Cache-Control", "public")
	resp.Header.Add("Set-Cookie", "session=secret")
	resp.Header.Add("Link", "</b>; rel=preload")
	tr.Response(&filter.Request{Ctx: &fasthttp.RequestCtx{}}, resp)
	h := &resp.Header
	for name, want := range map[string]string{
		"Server":                    "",
		"X-Powered-By":              "",
		"Strict-Transport-Security": "max-age=31536000",
		"Cache-Control":             "no-store",
		"Set-Cookie":                "edge=1; Path=/",
		"Link":                      "</b>; rel=preload|</a>; rel=preload",
	} {
		if got := values(h.PeekAll, name); got != want {
			t.Errorf("%s = %q, want %q", name, got, want)
		}
	}
}

func TestPathRewrite(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name       string
		rw         PathRewrite
		in         string // request-target as sent
		want       string // the decoded path the proxy will quote and forward
		wantTarget string // RequestURI after the rewrite, query kept ("" = skip)
	}{
		{"prefix to root", PathRewrite{Prefix: "/api", Replacement: "/"}, "/api/users?id=1", "/users", "/users?id=1"},
		{"prefix to prefix", PathRewrite{Prefix: "/v1/", Replacement: "/internal/v1/"}, "/v1/orders", "/internal/v1/orders", ""},
		{"prefix whole path becomes root", PathRewrite{Prefix: "/api", Replacement: ""}, "/api", "/", ""},
		{"prefix strip keeps the slash", PathRewrite{Prefix: "/api"}, "/api/users", "/users", ""},
		{"prefix not matching leaves path", PathRewrite{Prefix: "/api", Replacement: "/"}, "/web/api", "/web/api", ""},
		{"prefix matches the normalized path", PathRewrite{Prefix: "/api", Replacement: "/svc"}, "/x/../api//users", "/svc/users", ""},
		{"escaped percent survives exactly once", PathRewrite{Prefix: "/api", Replacement: "/"}, "/api/a%2541", "/a%41", ""},
		{"long path", PathRewrite{Prefix: "/a", Replacement: "/b"}, "/a/" + strings.Repeat("x", 1000), "/b/" + strings.Repeat("x", 1000), ""},
		{"regex with groups", PathRewrite{Regex: `^/users/([0-9]+)/orders$`, Replacement: "/orders/by-user/$1"}, "/users/42/orders?page=2", "/orders/by-user/42", "/orders/by-user/42?page=2"},
		{"regex named group", PathRewrite{Regex: `^/(?P<ver>v[0-9])/(.*)$`, Replacement: "/${2}?"}, "/v2/items", "/items?", "/items%3F"},
		{"regex every match", PathRewrite{Regex: `/old/`, Replacement: "/new/"}, "/old/a/old/b", "/new/a/new/b", ""},
		{"regex result gets a leading slash", PathRewrite{Regex: `^/strip/`, Replacement: ""}, "/strip/x", "/x", ""},
		{"regex not matching leaves path", PathRewrite{Regex: `^/users/`, Replacement: "/u/"}, "/items/1", "/items/1", ""},
		{"regex percent", PathRewrite{Regex: `^/p/`, Replacement: "/q/"}, "/p/100%25", "/q/100%", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			tr := newTransformer(t, Options{Path: tt.rw})
			r := request(t, "GET "+tt.in+" HTTP/1.1\r\nHost: h\r\n\r\n")
			tr.Request(r)
			u := r.Ctx.Request.URI()
			if got := string(u.Path()); got != tt.want {
				t.Errorf("path = %q, want %q", got, tt.want)
			}
			if tt.wantTarget != "" {
				if got := string(u.RequestURI()); got != tt.wantTarget {
					t.Errorf("request URI = %q, want %q", got, tt.wantTarget)
				}
			}
		})
	}
}

func TestNewErrors(t *testing.T) {
	t.Parallel()
	for _, name := range []string{"Content-Length", "transfer-encoding", "Connection", "Host", "Upgrade", "TE", "Keep-Alive", "Trailer", "Proxy-Connection"} {
		for _, o := range []Options{
			{Request: Transform{Set: []Header{{name, "x"}}}},
			{Request: Transform{Add: []Header{{name, "x"}}}},
			{Response: Transform{Remove: []string{name}}},
		} {
			if _, err := New(o); !errors.Is(err, ErrForbiddenHeader) {
				t.Errorf("rule on %s: err = %v, want ErrForbiddenHeader", name, err)
			}
		}
	}
	for _, tt := range []struct {
		opts Options
		want string
	}{
		{Options{Request: Transform{Set: []Header{{"", "x"}}}}, "request: empty header name"},
		{Options{Response: Transform{Set: []Header{{"X_Y", "x"}}}}, `response: header name "X_Y": invalid character '_'`},
		{Options{Request: Transform{Add: []Header{{"X:Y", "x"}}}}, "invalid character ':'"},
		{Options{Request: Transform{Set: []Header{{"X-A", "a\r\nX-B: b"}}}}, "control characters"},
		{Options{Path: PathRewrite{Prefix: "/a", Regex: "b"}}, "not both"},
		{Options{Path: PathRewrite{Prefix: "a"}}, "must start with /"},
		{Options{Path: PathRewrite{Prefix: "/a", Replacement: "b"}}, "must start with /"},
		{Options{Path: PathRewrite{Regex: "("}}, "missing closing )"},
		{Options{Path: PathRewrite{Replacement: "/b"}}, "replacement without prefix or regex"},
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
	tr := newTransformer(t, Options{
		Request: Transform{
			Remove: []string{"X-Internal"},
			Set:    []Header{{"X-Gateway", "meshgate"}},
			Add:    []Header{{"X-Tag", "a"}},
		},
		Response: Transform{
			Remove: []string{"Server"},
			Set:    []Header{{"Cache-Control", "no-store"}},
			Add:    []Header{{"X-Served-By", "edge"}},
		},
		Path: PathRewrite{Prefix: "/api", Replacement: "/"},
	})
	r := request(t, "GET /api/users/42?x=1 HTTP/1.1\r\nHost: h\r\nX-Internal: 1\r\n\r\n")
	resp := &fasthttp.Response{}
	if n := testing.AllocsPerRun(1000, func() {
		r.Ctx.Request.URI().SetPath("/api/users/42")
		// The next request arrives with fresh headers: undo the last run's Add so the header
		// list stays at its steady-state size, as it does in a pooled RequestCtx.
		r.Ctx.Request.Header.Del("X-Tag")
		r.Ctx.Request.Header.Set("X-Internal", "1")
		tr.Request(r)
		resp.Header.Del("X-Served-By")
		resp.Header.Set("Server", "x")
		tr.Response(r, resp)
	}); n != 0 {
		t.Errorf("%v allocs per request, want 0", n)
	}
}

func BenchmarkRequest(b *testing.B) {
	tr, err := New(Options{Name: "p",
		Request: Transform{Remove: []string{"X-Internal"}, Set: []Header{{"X-Gateway", "meshgate"}}},
		Path:    PathRewrite{Prefix: "/api", Replacement: "/"}})
	if err != nil {
		b.Fatal(err)
	}
	ctx := &fasthttp.RequestCtx{}
	r := &filter.Request{Ctx: ctx}
	b.ReportAllocs()
	for b.Loop() {
		ctx.Request.URI().SetPath("/api/users/42")
		tr.Request(r)
	}
}
