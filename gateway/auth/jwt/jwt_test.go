package jwt

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/MicahParks/jwkset"
	gojwt "github.com/golang-jwt/jwt/v5"
	"github.com/valyala/fasthttp"

	"github.com/meshgate/meshgate/gateway/filter"
)

var testNow = time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)

// jwksServer serves a JWK Set over TLS on loopback (as New requires https) and counts fetches,
// so tests can prove the cache is used and unknown kids refresh exactly once. Its Client()
// trusts the test CA.
type jwksServer struct {
	*httptest.Server
	hits atomic.Int64
	mu   sync.Mutex
	keys map[string]any // kid → public key
}

func newJWKS(t *testing.T, keys map[string]any) *jwksServer {
	t.Helper()
	s := &jwksServer{keys: keys}
	s.Server = httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s.hits.Add(1)
		s.mu.Lock()
		defer s.mu.Unlock()
		st := jwkset.NewMemoryStorage()
		for kid, k := range s.keys {
			j, err := jwkset.NewJWKFromKey(k, jwkset.JWKOptions{Metadata: jwkset.JWKMetadataOptions{KID: kid}})
			if err != nil {
				http.Error(w, err.Error(), 500)
				return
			}
			if err := st.KeyWrite(r.Context(), j); err != nil {
				http.Error(w, err.Error(), 500)
				return
			}
		}
		b, err := st.JSONPublic(r.Context())
		if err != nil {
			http.Error(w, err.Error(), 500)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write(b)
	}))
	t.Cleanup(s.Close)
	return s
}

func (s *jwksServer) add(kid string, key any) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.keys[kid] = key
}

type fixture struct {
	rsa, rsaOther *rsa.PrivateKey
	ec            *ecdsa.PrivateKey
	jwks          *jwksServer
}

func newFixture(t *testing.T) *fixture {
	t.Helper()
	fx := &fixture{rsa: rsaKey(t), rsaOther: rsaKey(t)}
	ec, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	fx.ec = ec
	fx.jwks = newJWKS(t, map[string]any{"rs1": &fx.rsa.PublicKey, "ec1": &fx.ec.PublicKey})
	return fx
}

func rsaKey(t testing.TB) *rsa.PrivateKey {
	t.Helper()
	k, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func pubPEM(t testing.TB, pub any) []byte {
	t.Helper()
	der, err := x509.MarshalPKIXPublicKey(pub)
	if err != nil {
		t.Fatal(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der})
}

func sign(t testing.TB, m gojwt.SigningMethod, key any, kid string, c gojwt.MapClaims) string {
	t.Helper()
	tok := gojwt.NewWithClaims(m, c)
	if kid != "" {
		tok.Header["kid"] = kid
	}
	s, err := tok.SignedString(key)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func goodClaims() gojwt.MapClaims {
	return gojwt.MapClaims{
		"iss": "https://idp.test", "aud": []string{"other", "orders"}, "sub": "alice",
		"exp": testNow.Add(time.Hour).Unix(), "iat": testNow.Add(-time.Minute).Unix(),
		"email": "alice@example.test", "tier": "gold", "groups": []string{"ops", "dev"},
	}

}

func with(c gojwt.MapClaims, k string, v any) gojwt.MapClaims {
	c[k] = v
	if v == nil {
		delete(c, k)
	}
	return c
}

func baseOptions(fx *fixture) Options {
	return Options{
		Name:       "test",
		JWKSURLs:   []string{fx.jwks.URL},
		HTTPClient: fx.jwks.Client(),
		Issuer:     "https://idp.test",
		// any-of: the token lists "other" and "orders"
		Audiences: []string{"orders", "billing"},
		Claims:    []RequiredClaim{{Name: "email"}, {Name: "tier", Values: []string{"gold", "silver"}}},
		Forward:   []ForwardClaim{{Claim: "email", Header: "X-User-Email"}, {Claim: "groups", Header: "X-User-Groups"}, {Claim: "exp", Header: "X-Token-Exp"}},
		Now:       func() time.Time { return testNow },
	}
}

func newFilter(t testing.TB, o Options) *Filter {
	t.Helper()
	f, err := New(o)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = f.Close() })
	return f
}

func request(f filter.Filter, hdr map[string]string) (filter.Verdict, *fasthttp.RequestCtx, *filter.Request) {
	var ctx fasthttp.RequestCtx
	ctx.Request.SetRequestURI("/orders")
	for k, v := range hdr {
		ctx.Request.Header.Set(k, v)
	}
	r := &filter.Request{Ctx: &ctx, Route: "r", Identity: make([]byte, 0, 64)}
	return f.Request(r), &ctx, r
}

// TestBadInputs is the table the closing note quotes: each bad token and its status.
func TestBadInputs(t *testing.T) {
	t.Parallel()
	fx := newFixture(t)
	f := newFilter(t, baseOptions(fx))
	rs := gojwt.SigningMethodRS256
	hour := time.Hour

	noneTok := sign(t, gojwt.SigningMethodNone, gojwt.UnsafeAllowNoneSignatureType, "rs1", goodClaims())
	hsConfusion := sign(t, gojwt.SigningMethodHS256, pubPEM(t, &fx.rsa.PublicKey), "rs1", goodClaims())
	good := sign(t, rs, fx.rsa, "rs1", goodClaims())
	parts := strings.Split(good, ".")
	tampered := parts[0] + "." + parts[1] + "." + strings.Repeat("A", len(parts[2]))

	cases := []struct {
		name, auth string
		status     int
		reason     string
		challenge  string // substring of WWW-Authenticate
	}{
		{"valid RS256", "Bearer " + good, 0, "", ""},
		{"valid ES256", "Bearer " + sign(t, gojwt.SigningMethodES256, fx.ec, "ec1", goodClaims()), 0, "", ""},
		{"expired within leeway", "Bearer " + sign(t, rs, fx.rsa, "rs1", with(goodClaims(), "exp", testNow.Add(-10*time.Second).Unix())), 0, "", ""},
		{"expired", "Bearer " + sign(t, rs, fx.rsa, "rs1", with(goodClaims(), "exp", testNow.Add(-hour).Unix())), 401, ReasonExpired, `error="invalid_token"`},
		{"not yet valid (nbf)", "Bearer " + sign(t, rs, fx.rsa, "rs1", with(goodClaims(), "nbf", testNow.Add(hour).Unix())), 401, ReasonNotYetValid, `error="invalid_token"`},
		{"no exp", "Bearer " + sign(t, rs, fx.rsa, "rs1", with(goodClaims(), "exp", nil)), 401, ReasonNoExpiry, `error="invalid_token"`},
		{"wrong issuer", "Bearer " + sign(t, rs, fx.rsa, "rs1", with(goodClaims(), "iss", "https://evil.test")), 401, ReasonBadIssuer, `error="invalid_token"`},
		{"wrong audience", "Bearer " + sign(t, rs, fx.rsa, "rs1", with(goodClaims(), "aud", "payments")), 401, ReasonBadAudience, `error="invalid_token"`},
		{"alg none", "Bearer " + noneTok, 401, ReasonBadAlgorithm, `error="invalid_token"`},
		{"HS256 signed with the RS public key", "Bearer " + hsConfusion, 401, ReasonBadAlgorithm, `error="invalid_token"`},
		{"unknown kid", "Bearer " + sign(t, rs, fx.rsa, "nope", goodClaims()), 401, ReasonUnknownKey, `error="invalid_token"`},
		{"malformed", "Bearer not.a.jwt", 401, ReasonMalformed, `error="invalid_token"`},
		{"malformed two segments", "Bearer abc.def", 401, ReasonMalformed, `error="invalid_token"`},
		{"bad signature (other key, same kid)", "Bearer " + sign(t, rs, fx.rsaOther, "rs1", goodClaims()), 401, ReasonBadSignature, `error="invalid_token"`},
		{"tampered signature", "Bearer " + tampered, 401, ReasonBadSignature, `error="invalid_token"`},
		{"missing token", "", 401, ReasonMissing, `Bearer realm="meshgate"`},
		{"basic auth is no bearer token", "Basic YWxpY2U6c2VjcmV0", 401, ReasonMissing, `Bearer realm="meshgate"`},
		{"missing required claim", "Bearer " + sign(t, rs, fx.rsa, "rs1", with(goodClaims(), "email", nil)), 403, ReasonClaimMissing, `error="insufficient_scope"`},
		{"required claim value mismatch", "Bearer " + sign(t, rs, fx.rsa, "rs1", with(goodClaims(), "tier", "free")), 403, ReasonClaimMismatch, `error="insufficient_scope"`},
		{"no identity claim", "Bearer " + sign(t, rs, fx.rsa, "rs1", with(goodClaims(), "sub", nil)), 401, ReasonNoIdentity, `error="invalid_token"`},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			hdr := map[string]string{"X-User-Email": "forged@evil.test", "X-Token-Exp": "99999999999"}
			if tc.auth != "" {
				hdr["Authorization"] = tc.auth
			}
			v, ctx, r := request(f, hdr)
			if v.Status != tc.status || v.Reason != tc.reason {
				t.Fatalf("got %d %q, want %d %q", v.Status, v.Reason, tc.status, tc.reason)
			}
			www := string(ctx.Response.Header.Peek("WWW-Authenticate"))
			if tc.status == 0 {
				if www != "" {
					t.Errorf("accepted request carries WWW-Authenticate %q", www)
				}
				if string(r.Identity) != "alice" {
					t.Errorf("identity = %q, want alice", r.Identity)
				}
				return
			}
			if !strings.Contains(www, tc.challenge) {
				t.Errorf("WWW-Authenticate = %q, want it to contain %q", www, tc.challenge)
			}
			if tc.reason == ReasonMissing && strings.Contains(www, "error=") {
				t.Errorf("a request without a token gets no error code (RFC 6750 §3.1), got %q", www)
			}
			if len(r.Identity) != 0 {
				t.Errorf("rejected request has identity %q", r.Identity)
			}
			if got := ctx.Request.Header.Peek("X-User-Email"); len(got) != 0 {
				t.Errorf("forged forwarded header survived: %q", got)
			}
		})
	}
}

func TestForwardsClaimsAndStripsInjected(t *testing.T) {
	t.Parallel()
	fx := newFixture(t)
	o := baseOptions(fx)
	o.StripToken = true
	f := newFilter(t, o)
	tok := sign(t, gojwt.SigningMethodRS256, fx.rsa, "rs1", goodClaims())
	v, ctx, r := request(f, map[string]string{"Authorization": "Bearer " + tok, "X-User-Email": "forged@evil.test", "X-User-Groups": "admin"})
	if v.Status != 0 {
		t.Fatalf("verdict %+v", v)
	}
	h := &ctx.Request.Header
	for name, want := range map[string]string{
		"X-User-Email":  "alice@example.test",
		"X-User-Groups": "ops,dev",
		"X-Token-Exp":   "1772370000",
		"Authorization": "",
	} {
		if got := string(h.Peek(name)); got != want {
			t.Errorf("%s = %q, want %q", name, got, want)
		}
	}
	if string(r.Identity) != "alice" {
		t.Errorf("identity %q", r.Identity)
	}
}

func TestJWKSCachedAndUnknownKIDRefreshedOnce(t *testing.T) {
	t.Parallel()
	fx := newFixture(t)
	f := newFilter(t, baseOptions(fx))
	base := fx.jwks.hits.Load() // the initial fetch
	if base != 1 {
		t.Fatalf("initial fetches = %d, want 1", base)
	}
	good := "Bearer " + sign(t, gojwt.SigningMethodRS256, fx.rsa, "rs1", goodClaims())
	for range 20 {
		if v, _, _ := request(f, map[string]string{"Authorization": good}); v.Status != 0 {
			t.Fatalf("verdict %+v", v)
		}
	}
	if got := fx.jwks.hits.Load(); got != base {
		t.Fatalf("valid tokens refetched the JWKS: %d fetches", got)
	}
	unknown := "Bearer " + sign(t, gojwt.SigningMethodRS256, fx.rsa, "rotated", goodClaims())
	for range 5 {
		if v, _, _ := request(f, map[string]string{"Authorization": unknown}); v.Reason != ReasonUnknownKey {
			t.Fatalf("verdict %+v", v)
		}
	}
	if got := fx.jwks.hits.Load(); got != base+1 {
		t.Fatalf("unknown kid caused %d fetches, want exactly 1 (rate-limited)", got-base)
	}
}

func TestKeyRotationPickedUpOnUnknownKID(t *testing.T) {
	t.Parallel()
	fx := newFixture(t)
	f := newFilter(t, baseOptions(fx))
	next := rsaKey(t)
	fx.jwks.add("rs2", &next.PublicKey)
	tok := "Bearer " + sign(t, gojwt.SigningMethodRS256, next, "rs2", goodClaims())
	if v, _, _ := request(f, map[string]string{"Authorization": tok}); v.Status != 0 {
		t.Fatalf("token signed with a freshly published key: %+v", v)
	}
}

func TestStaticPEMAndTokenSources(t *testing.T) {
	t.Parallel()
	k := rsaKey(t)
	o := Options{
		PublicKeys:  []PublicKey{{KID: "", PEM: pubPEM(t, &k.PublicKey)}},
		TokenHeader: "X-Token", TokenCookie: "session",
		IdentityClaim: "client_id",
		Now:           func() time.Time { return testNow },
	}
	f := newFilter(t, o)
	tok := sign(t, gojwt.SigningMethodRS256, k, "", gojwt.MapClaims{"client_id": "svc-a", "exp": testNow.Add(time.Hour).Unix()})
	for name, hdr := range map[string]map[string]string{
		"header raw":    {"X-Token": tok},
		"header bearer": {"X-Token": "Bearer " + tok},
		"cookie":        {"Cookie": "a=b; session=" + tok},
	} {
		v, _, r := request(f, hdr)
		if v.Status != 0 || string(r.Identity) != "svc-a" {
			t.Errorf("%s: verdict %+v identity %q", name, v, r.Identity)
		}
	}
}

func TestSharedSecretOnlyHS(t *testing.T) {
	t.Parallel()
	secret := []byte("0123456789abcdef0123456789abcdef")
	f := newFilter(t, Options{Secret: secret, Now: func() time.Time { return testNow }})
	c := gojwt.MapClaims{"sub": "bob", "exp": testNow.Add(time.Hour).Unix()}
	if v, _, _ := request(f, map[string]string{"Authorization": "Bearer " + sign(t, gojwt.SigningMethodHS256, secret, "", c)}); v.Status != 0 {
		t.Fatalf("HS256 with the secret: %+v", v)
	}
	k := rsaKey(t)
	if v, _, _ := request(f, map[string]string{"Authorization": "Bearer " + sign(t, gojwt.SigningMethodRS256, k, "", c)}); v.Reason != ReasonBadAlgorithm {
		t.Fatalf("RS256 on a secret policy: %+v", v)
	}
}

func TestNewRejects(t *testing.T) {
	t.Parallel()
	k := rsaKey(t)
	pemKey := []PublicKey{{PEM: pubPEM(t, &k.PublicKey)}}
	cases := []struct {
		name string
		o    Options
		want error
		sub  string
	}{
		{"no keys", Options{}, ErrNoKeys, ""},
		{"secret and keys", Options{Secret: []byte("s"), PublicKeys: pemKey}, ErrSecretAndKeys, ""},
		{"alg none", Options{PublicKeys: pemKey, Algorithms: []string{"RS256", "none"}}, ErrAlgorithm, `"none"`},
		{"HS with public keys", Options{PublicKeys: pemKey, Algorithms: []string{"HS256"}}, ErrAlgorithm, "HS256"},
		{"RS with secret", Options{Secret: []byte("s"), Algorithms: []string{"RS256"}}, ErrAlgorithm, "RS256"},
		{"unknown alg", Options{PublicKeys: pemKey, Algorithms: []string{"XY999"}}, ErrAlgorithm, "XY999"},
		{"bad PEM", Options{PublicKeys: []PublicKey{{KID: "k", PEM: []byte("nope")}}}, nil, "no PEM block"},
		{"forward header with underscore", Options{PublicKeys: pemKey, Forward: []ForwardClaim{{Claim: "sub", Header: "X_User"}}}, nil, "X_User"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			f, err := New(tc.o)
			if err == nil {
				_ = f.Close()
				t.Fatal("New accepted invalid options")
			}
			if tc.want != nil && !errors.Is(err, tc.want) {
				t.Errorf("err = %v, want %v", err, tc.want)
			}
			if !strings.Contains(err.Error(), tc.sub) {
				t.Errorf("err = %v, want substring %q", err, tc.sub)
			}
		})
	}
}

// TestJWTAllocBudget pins the allocations of one RS256 verification. golang-jwt decodes into a
// map and base64-decodes each segment, so zero is not reachable without forking it; the budget
// catches regressions in our part (key lookup must not refetch or re-parse keys).
func TestJWTAllocBudget(t *testing.T) {
	if raceEnabled {
		t.Skip("allocation counts are meaningless under -race")
	}
	fx := newFixture(t)
	o := baseOptions(fx)
	o.CacheTTL = -1 // the full verification's cost; the cached path is TestCachedTokenAllocs
	f := newFilter(t, o)
	var ctx fasthttp.RequestCtx
	ctx.Request.Header.Set("Authorization", "Bearer "+sign(t, gojwt.SigningMethodRS256, fx.rsa, "rs1", goodClaims()))
	r := &filter.Request{Ctx: &ctx, Identity: make([]byte, 0, 64)}
	n := testing.AllocsPerRun(200, func() {
		r.Identity = r.Identity[:0]
		if v := f.Request(r); v.Status != 0 {
			t.Fatalf("verdict %+v", v)
		}
	})
	const budget = 130
	t.Logf("allocs per verified request: %.0f", n)
	if n > budget {
		t.Errorf("RS256 verification allocates %.0f times, budget %d", n, budget)
	}
}

// BenchmarkJWT is RS256 verification through the filter with the JWKS key cached.
func BenchmarkJWT(b *testing.B) {
	k := rsaKey(b)
	srv := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		j, _ := jwkset.NewJWKFromKey(&k.PublicKey, jwkset.JWKOptions{Metadata: jwkset.JWKMetadataOptions{KID: "rs1"}})
		st := jwkset.NewMemoryStorage()
		_ = st.KeyWrite(r.Context(), j)
		out, _ := st.JSONPublic(r.Context())
		_, _ = w.Write(out)
	}))
	defer srv.Close()
	f, err := New(Options{JWKSURLs: []string{srv.URL}, HTTPClient: srv.Client(), Issuer: "https://idp.test", Audiences: []string{"orders"},
		Forward: []ForwardClaim{{Claim: "email", Header: "X-User-Email"}}, Now: func() time.Time { return testNow },
		CacheTTL: -1}) // every request verified: the cache's hit path is BenchmarkJWTCached
	if err != nil {
		b.Fatal(err)
	}
	defer f.Close()
	tok := sign(b, gojwt.SigningMethodRS256, k, "rs1", goodClaims())
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		var ctx fasthttp.RequestCtx
		r := &filter.Request{Ctx: &ctx, Identity: make([]byte, 0, 64)}
		for pb.Next() {
			ctx.Request.Header.Set("Authorization", "Bearer "+tok)
			r.Identity = r.Identity[:0]
			if v := f.Request(r); v.Status != 0 {
				b.Fatalf("verdict %+v", v)
			}
		}
	})
}

// TestVerifiedTokenCache: a verified token is served from the cache with the same identity and
// forwarded claims (client copies still stripped), never beyond its exp, and failures are
// never cached.
func TestVerifiedTokenCache(t *testing.T) {
	t.Parallel()
	fx := newFixture(t)
	o := baseOptions(fx)
	now := testNow
	o.Now = func() time.Time { return now }
	f := newFilter(t, o)
	tok := "Bearer " + sign(t, gojwt.SigningMethodRS256, fx.rsa, "rs1", goodClaims())
	for i := range 2 {
		v, ctx, r := request(f, map[string]string{"Authorization": tok, "X-User-Email": "forged@evil.test"})
		if v.Status != 0 || string(r.Identity) != "alice" || string(ctx.Request.Header.Peek("X-User-Email")) != "alice@example.test" {
			t.Fatalf("request %d: %+v identity %q email %q", i, v, r.Identity, ctx.Request.Header.Peek("X-User-Email"))
		}
	}
	hits := fx.jwks.hits.Load()
	// Past exp (and the leeway) the cached entry is gone and the full check says expired.
	now = testNow.Add(time.Hour + time.Minute)
	if v, _, _ := request(f, map[string]string{"Authorization": tok}); v.Status != 401 || v.Reason != ReasonExpired {
		t.Fatalf("after exp: %+v", v)
	}
	if fx.jwks.hits.Load() != hits {
		t.Fatal("the JWKS was fetched again")
	}
	bad := "Bearer " + sign(t, gojwt.SigningMethodRS256, fx.rsaOther, "rs1", goodClaims())
	now = testNow
	for range 2 {
		if v, _, _ := request(f, map[string]string{"Authorization": bad}); v.Status != 401 {
			t.Fatalf("bad signature: %+v", v)
		}
	}
}

func TestCachedTokenAllocs(t *testing.T) {
	if raceEnabled {
		t.Skip("allocation counts are meaningless under -race")
	}
	fx := newFixture(t)
	f := newFilter(t, baseOptions(fx))
	var ctx fasthttp.RequestCtx
	ctx.Request.Header.Set("Authorization", "Bearer "+sign(t, gojwt.SigningMethodRS256, fx.rsa, "rs1", goodClaims()))
	r := &filter.Request{Ctx: &ctx, Identity: make([]byte, 0, 64)}
	f.Request(r) // verify once; later calls hit the cache
	n := testing.AllocsPerRun(200, func() {
		r.Identity = r.Identity[:0]
		if v := f.Request(r); v.Status != 0 {
			t.Fatalf("verdict %+v", v)
		}
	})
	if n != 0 {
		t.Errorf("a cached token costs %.0f allocations, want 0", n)
	}
}

// BenchmarkJWTCached is the hit path of the verified-token cache (a repeated token).
func BenchmarkJWTCached(b *testing.B) {
	k := rsaKey(b)
	f, err := New(Options{PublicKeys: []PublicKey{{KID: "rs1", PEM: pubPEM(b, &k.PublicKey)}}, Issuer: "https://idp.test",
		Audiences: []string{"orders"}, Forward: []ForwardClaim{{Claim: "email", Header: "X-User-Email"}},
		Now: func() time.Time { return testNow }})
	if err != nil {
		b.Fatal(err)
	}
	defer f.Close()
	auth := "Bearer " + sign(b, gojwt.SigningMethodRS256, k, "rs1", goodClaims())
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		var ctx fasthttp.RequestCtx
		r := &filter.Request{Ctx: &ctx, Identity: make([]byte, 0, 64)}
		for pb.Next() {
			ctx.Request.Header.Set("Authorization", auth)
			r.Identity = r.Identity[:0]
			if v := f.Request(r); v.Status != 0 {
				b.Fatalf("verdict %+v", v)
			}
		}
	})
}
