package jwt

import (
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	gojwt "github.com/golang-jwt/jwt/v5"
	"github.com/valyala/fasthttp"

	"github.com/meshgate/meshgate/gateway/filter"
)

// header is one request header line; repeated names are separate lines, as a client sent them.
type header struct{ name, value string }

// requestLines runs f on a request built from header lines in order (fasthttp keeps repeated
// lines of a name apart, which map-based helpers cannot express).
func requestLines(f filter.Filter, lines ...header) (filter.Verdict, *fasthttp.RequestCtx, *filter.Request) {
	var ctx fasthttp.RequestCtx
	ctx.Request.SetRequestURI("/orders")
	for _, l := range lines {
		ctx.Request.Header.Add(l.name, l.value)
	}
	r := &filter.Request{Ctx: &ctx, Route: "r", Identity: make([]byte, 0, 64)}
	return f.Request(r), &ctx, r
}

func staticFilter(t *testing.T, k any, strip bool) *Filter {
	t.Helper()
	return newFilter(t, Options{
		PublicKeys:  []PublicKey{{KID: "rs1", PEM: pubPEM(t, k)}},
		TokenHeader: "X-Token", TokenCookie: "session", StripToken: strip,
		Now: func() time.Time { return testNow },
	})
}

// TestMoreThanOneTokenRefused: every way of carrying two tokens is a 400, whichever is valid,
// because the upstream might read the other one.
func TestMoreThanOneTokenRefused(t *testing.T) {
	t.Parallel()
	k := rsaKey(t)
	f := staticFilter(t, &k.PublicKey, true)
	good := sign(t, gojwt.SigningMethodRS256, k, "rs1", goodClaims())
	forged := strings.Split(good, ".")[0] + ".eyJzdWIiOiJyb290In0.x"
	cases := []struct {
		name  string
		lines []header
	}{
		{"two Authorization lines", []header{{"Authorization", "Bearer " + good}, {"Authorization", "Bearer " + forged}}},
		{"Authorization lines Bearer then Basic", []header{{"Authorization", "Bearer " + good}, {"Authorization", "Basic YTpi"}}},
		{"joined Authorization lines", []header{{"Authorization", "Bearer " + good + ", Bearer " + forged}}},
		{"joined, Basic first", []header{{"Authorization", "Basic YTpi, Bearer " + good}}},
		{"comma in the bearer value", []header{{"Authorization", "Bearer " + good + "," + forged}}},
		{"two tokens in one value", []header{{"Authorization", "Bearer " + good + " " + forged}}},
		{"Authorization and the cookie", []header{{"Authorization", "Bearer " + good}, {"Cookie", "session=" + forged}}},
		{"Authorization and the token header", []header{{"Authorization", "Bearer " + good}, {"X-Token", forged}}},
		{"two token header lines", []header{{"X-Token", good}, {"X-Token", forged}}},
		{"comma in the token header", []header{{"X-Token", good + ", " + forged}}},
		{"token header and the cookie", []header{{"X-Token", good}, {"Cookie", "session=" + forged}}},
		{"the cookie twice", []header{{"Cookie", "session=" + good + "; session=" + forged}}},
		{"the cookie in two lines", []header{{"Cookie", "session=" + good}, {"Cookie", "a=b; session=" + forged}}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			v, ctx, r := requestLines(f, tc.lines...)
			if v.Status != 400 || v.Reason != ReasonMultipleTokens {
				t.Fatalf("got %d %q, want 400 %q", v.Status, v.Reason, ReasonMultipleTokens)
			}
			if www := string(ctx.Response.Header.Peek("WWW-Authenticate")); !strings.Contains(www, `error="invalid_request"`) {
				t.Errorf("WWW-Authenticate = %q, want invalid_request (RFC 6750 §3.1)", www)
			}
			if len(r.Identity) != 0 {
				t.Errorf("identity %q on a refused request", r.Identity)
			}
		})
	}
	// One token and another scheme, or one token in any single source, still passes.
	for name, lines := range map[string][]header{
		"Basic for the upstream, token in the cookie": {{"Authorization", "Basic YTpi"}, {"Cookie", "a=1; session=" + good}},
		"token header only":                           {{"X-Token", "Bearer " + good}},
		"Authorization only":                          {{"Authorization", "Bearer " + good}},
	} {
		if v, _, r := requestLines(f, lines...); v.Status != 0 || string(r.Identity) != "alice" {
			t.Errorf("%s: verdict %+v identity %q", name, v, r.Identity)
		}
	}
}

// TestStripTokenRemovesOnlyTheToken: the verified token does not reach the upstream, from
// whichever source, on the verifying and on the cached path; nothing else is removed.
func TestStripTokenRemovesOnlyTheToken(t *testing.T) {
	t.Parallel()
	k := rsaKey(t)
	good := sign(t, gojwt.SigningMethodRS256, k, "rs1", goodClaims())
	for _, strip := range []bool{true, false} {
		f := staticFilter(t, &k.PublicKey, strip)
		for i := range 2 { // the second request is served by the verified-token cache
			// Authorization.
			v, ctx, _ := requestLines(f, header{"Authorization", "Bearer " + good}, header{"Cookie", "a=1"})
			h := &ctx.Request.Header
			if v.Status != 0 || (len(h.Peek("Authorization")) == 0) == !strip || string(h.Cookie("a")) != "1" {
				t.Errorf("strip=%v #%d Authorization: %+v, left %q, cookie a=%q", strip, i, v, h.Peek("Authorization"), h.Cookie("a"))
			}
			// Token header.
			v, ctx, _ = requestLines(f, header{"X-Token", good}, header{"X-Other", "x"})
			h = &ctx.Request.Header
			if v.Status != 0 || (len(h.Peek("X-Token")) == 0) == !strip || string(h.Peek("X-Other")) != "x" {
				t.Errorf("strip=%v #%d X-Token: %+v, left %q", strip, i, v, h.Peek("X-Token"))
			}
			// Cookie: only that cookie goes; the others and Basic auth for the upstream stay.
			v, ctx, _ = requestLines(f, header{"Authorization", "Basic YTpi"}, header{"Cookie", "a=1; session=" + good + "; b=2"})
			h = &ctx.Request.Header
			cookies := string(h.Peek("Cookie"))
			if v.Status != 0 || string(h.Peek("Authorization")) != "Basic YTpi" || string(h.Cookie("a")) != "1" ||
				string(h.Cookie("b")) != "2" || strings.Contains(cookies, "session=") == strip {
				t.Errorf("strip=%v #%d cookie: %+v, Cookie %q Authorization %q", strip, i, v, cookies, h.Peek("Authorization"))
			}
		}
	}
}

// TestJWKSRequiresHTTPS: a plain-http JWKS URL is refused unless AllowHTTP says so.
func TestJWKSRequiresHTTPS(t *testing.T) {
	t.Parallel()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		_, _ = w.Write([]byte(`{"keys":[]}`))
	}))
	t.Cleanup(srv.Close)
	if f, err := New(Options{JWKSURLs: []string{srv.URL}}); !errors.Is(err, ErrInsecureJWKS) {
		if f != nil {
			_ = f.Close()
		}
		t.Fatalf("http JWKS: err %v, want ErrInsecureJWKS", err)
	}
	if _, err := New(Options{JWKSURLs: []string{"ftp://idp.test/jwks"}, AllowHTTP: true}); !errors.Is(err, ErrInsecureJWKS) {
		t.Fatalf("ftp JWKS: %v", err)
	}
	f := newFilter(t, Options{JWKSURLs: []string{srv.URL}, AllowHTTP: true})
	if f.keys.remote == nil {
		t.Fatal("AllowHTTP: no key set")
	}
}

// TestSharedJWKSOutlivesFilters: a caller-owned JWKS serves two filters with one fetch and is
// not stopped when a filter closes (what lets the gateway carry it across reloads).
func TestSharedJWKSOutlivesFilters(t *testing.T) {
	t.Parallel()
	fx := newFixture(t)
	ks, err := NewJWKS(JWKSOptions{URLs: []string{fx.jwks.URL}, HTTPClient: fx.jwks.Client()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = ks.Close() })
	o := baseOptions(fx)
	o.JWKSURLs, o.JWKS = nil, ks
	a, err := New(o)
	if err != nil {
		t.Fatal(err)
	}
	b := newFilter(t, o)
	_ = a.Close()
	if hits := fx.jwks.hits.Load(); hits != 1 {
		t.Fatalf("two filters on one key set fetched %d times, want 1", hits)
	}
	next := rsaKey(t)
	fx.jwks.add("rs2", &next.PublicKey)
	tok := "Bearer " + sign(t, gojwt.SigningMethodRS256, next, "rs2", goodClaims())
	// The unknown-kid refresh still works after a has closed: the key set is alive.
	if v, _, _ := request(b, map[string]string{"Authorization": tok}); v.Status != 0 {
		t.Fatalf("after the other filter closed: %+v", v)
	}
	if _, err := New(Options{JWKS: ks, JWKSURLs: []string{fx.jwks.URL}}); !errors.Is(err, ErrJWKSAndURLs) {
		t.Fatalf("JWKS and JWKSURLs: %v", err)
	}
}
