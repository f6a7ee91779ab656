package gateway

import (
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/MicahParks/jwkset"
	gojwt "github.com/golang-jwt/jwt/v5"

	"github.com/meshgate/meshgate/conf"
)

// jwtKey is an RSA key with its public half in a PEM file, and a signer of test tokens.
type jwtKey struct {
	key     *rsa.PrivateKey
	pubFile string
}

func newJWTKey(t *testing.T) *jwtKey {
	t.Helper()
	k, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	der, _ := x509.MarshalPKIXPublicKey(&k.PublicKey)
	f := filepath.Join(t.TempDir(), "pub.pem")
	if err := os.WriteFile(f, pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	return &jwtKey{key: k, pubFile: f}
}

func (k *jwtKey) token(t *testing.T, kid, sub string) string {
	t.Helper()
	tok := gojwt.NewWithClaims(gojwt.SigningMethodRS256, gojwt.MapClaims{"sub": sub, "exp": time.Now().Add(time.Hour).Unix()})
	if kid != "" {
		tok.Header["kid"] = kid
	}
	s, err := tok.SignedString(k.key)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// rawStatus reads the status code and reason of a raw HTTP response ("" when none arrived).
func rawStatus(resp string) (int, string) {
	var code int
	if _, err := fmt.Sscanf(resp, "HTTP/1.1 %d", &code); err != nil {
		return 0, ""
	}
	return code, resp
}

// TestJWTMultipleTokensRefusedEndToEnd: raw requests carrying two tokens get 400
// jwt_multiple_tokens and never reach the upstream, in every form: repeated Authorization
// lines (as fasthttp keeps them), one joined comma-separated line (as the engine will pass
// them once it joins repeated lines), the header and the cookie together.
func TestJWTMultipleTokensRefusedEndToEnd(t *testing.T) {
	t.Parallel()
	k := newJWTKey(t)
	up, seen := startUpstream(t, "origin", nil)
	e := startEdge(t, policyConfig(hostport(up), `
  - { name: all, match: { path_prefix: / }, to: [ { service: origin } ], policies: [ token ] }`, fmt.Sprintf(`
  token: { jwt: { public_key_files: [ %s ], cookie: session } }`, k.pubFile), ""))
	good, forged := k.token(t, "", "alice"), k.token(t, "", "root")
	head := "GET /x HTTP/1.1\r\nHost: api.test\r\nConnection: close\r\n"
	for name, lines := range map[string]string{
		"two Authorization lines": "Authorization: Bearer " + good + "\r\nAuthorization: Bearer " + forged + "\r\n",
		"joined Authorization":    "Authorization: Bearer " + good + ", Bearer " + forged + "\r\n",
		"header and cookie":       "Authorization: Bearer " + good + "\r\nCookie: session=" + forged + "\r\n",
		"the cookie twice":        "Cookie: session=" + good + "; session=" + forged + "\r\n",
	} {
		t.Run(name, func(t *testing.T) {
			resp := raw(t, e.addr, head+lines+"\r\n")
			if code, _ := rawStatus(resp); code != 400 || !strings.Contains(resp, "jwt_multiple_tokens") {
				t.Fatalf("got %q, want 400 jwt_multiple_tokens", resp)
			}
		})
	}
	if n := requests(seen); n != 0 {
		t.Fatalf("%d requests with two tokens reached the upstream", n)
	}
	if code, resp := rawStatus(raw(t, e.addr, head+"Authorization: Bearer "+good+"\r\n\r\n")); code != 200 {
		t.Fatalf("one token: %q", resp)
	}
}

// TestJWTStripTokenEndToEnd: what the upstream receives. By default the verified token is
// removed (the Authorization header, or only the token's cookie, other cookies kept);
// strip_token: false forwards it.
func TestJWTStripTokenEndToEnd(t *testing.T) {
	t.Parallel()
	k := newJWTKey(t)
	up, seen := startUpstream(t, "origin", nil)
	e := startEdge(t, policyConfig(hostport(up), `
  - { name: strip, match: { path_prefix: /strip }, to: [ { service: origin } ], policies: [ token ] }
  - { name: keep, match: { path_prefix: /keep }, to: [ { service: origin } ], policies: [ keep ] }`, fmt.Sprintf(`
  token: { jwt: { public_key_files: [ %[1]s ], cookie: session } }
  keep: { jwt: { public_key_files: [ %[1]s ], cookie: session, strip_token: false } }`, k.pubFile), ""))
	tok := k.token(t, "", "alice")
	for _, tc := range []struct {
		path, hdr, value  string
		wantAuth, wantCke string
	}{
		{"/strip", "Authorization", "Bearer " + tok, "", "a=1"},
		{"/strip", "Cookie", "a=1; session=" + tok + "; b=2", "", "a=1; b=2"},
		{"/keep", "Authorization", "Bearer " + tok, "Bearer " + tok, "a=1"},
		{"/keep", "Cookie", "a=1; session=" + tok, "", "a=1; session=" + tok},
	} {
		hdr := map[string]string{tc.hdr: tc.value}
		if tc.hdr != "Cookie" {
			hdr["Cookie"] = "a=1"
		}
		if resp, body := get(t, e.url+tc.path, hdr); resp.StatusCode != 200 {
			t.Fatalf("%s %s: %d %s", tc.path, tc.hdr, resp.StatusCode, body)
		}
		r, _ := seen.last(t)
		if got := strings.Join(r.Header.Values("Authorization"), "|"); got != tc.wantAuth {
			t.Errorf("%s %s: upstream Authorization %q, want %q", tc.path, tc.hdr, got, tc.wantAuth)
		}
		if got := strings.Join(r.Header.Values("Cookie"), "|"); got != tc.wantCke {
			t.Errorf("%s %s: upstream Cookie %q, want %q", tc.path, tc.hdr, got, tc.wantCke)
		}
	}
}

// idp serves a JWK Set over TLS on loopback and counts fetches per path.
type idp struct {
	srv    *httptest.Server
	caFile string // the server's certificate, for jwks_ca_file
	mu     sync.Mutex
	hits   map[string]*atomic.Int64
}

func startIDP(t *testing.T, kid string, k *jwtKey) *idp {
	t.Helper()
	d := &idp{hits: map[string]*atomic.Int64{}}
	d.srv = httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		d.counter(r.URL.Path).Add(1)
		j, err := jwkset.NewJWKFromKey(&k.key.PublicKey, jwkset.JWKOptions{Metadata: jwkset.JWKMetadataOptions{KID: kid}})
		if err != nil {
			http.Error(w, err.Error(), 500)
			return
		}
		st := jwkset.NewMemoryStorage()
		_ = st.KeyWrite(r.Context(), j)
		b, _ := st.JSONPublic(r.Context())
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write(b)
	}))
	t.Cleanup(d.srv.Close)
	d.caFile = filepath.Join(t.TempDir(), "ca.pem")
	if err := os.WriteFile(d.caFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: d.srv.Certificate().Raw}), 0o600); err != nil {
		t.Fatal(err)
	}
	return d
}

func (d *idp) counter(path string) *atomic.Int64 {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.hits[path] == nil {
		d.hits[path] = &atomic.Int64{}
	}
	return d.hits[path]
}

// TestJWKSCarriedAcrossReloads: an https JWKS (trusted through jwks_ca_file) is fetched once at
// start; a reload that keeps the URL fetches nothing and keeps verifying; a reload to another
// URL fetches it before the swap; the key set no policy uses any more stops refreshing.
func TestJWKSCarriedAcrossReloads(t *testing.T) {
	t.Parallel()
	k := newJWTKey(t)
	d := startIDP(t, "k1", k)
	up, _ := startUpstream(t, "origin", nil)
	cfg := func(route, path, refresh string) string {
		return policyConfig(hostport(up), fmt.Sprintf(`
  - { name: %s, match: { path_prefix: / }, to: [ { service: origin } ], policies: [ token ] }`, route), fmt.Sprintf(`
  token: { jwt: { jwks_url: "%s%s", jwks_ca_file: %s, refresh_interval: %s } }`, d.srv.URL, path, d.caFile, refresh), "")
	}
	e := startEdge(t, cfg("v1", "/v1", "1h"))
	reload := func(text string) {
		t.Helper()
		c, err := conf.Parse("test.yaml", []byte(text))
		if err != nil {
			t.Fatal(err)
		}
		if err := e.edge.Reload(c); err != nil {
			t.Fatal(err)
		}
	}
	tok := "Bearer " + k.token(t, "k1", "alice")
	ok := func(when string) {
		t.Helper()
		if resp, body := get(t, e.url+"/", map[string]string{"Authorization": tok}); resp.StatusCode != 200 {
			t.Fatalf("%s: %d %s", when, resp.StatusCode, body)
		}
	}
	ok("at start")
	if n := d.counter("/v1").Load(); n != 1 {
		t.Fatalf("start fetched the JWKS %d times, want 1", n)
	}

	reload(cfg("v1-renamed", "/v1", "1h"))
	if n := d.counter("/v1").Load(); n != 1 {
		t.Fatalf("a reload keeping jwks_url fetched it again (%d fetches), want none", n)
	}
	ok("after a reload keeping the URL")

	// Another URL: fetched synchronously by the reload, so the first request verifies. It
	// refreshes every 100ms, to prove below that it stops once unused.
	reload(cfg("v2", "/v2", "100ms"))
	if n := d.counter("/v2").Load(); n < 1 {
		t.Fatal("a reload to a new jwks_url did not fetch it before the swap")
	}
	ok("after a reload to a new URL")
	waitFor(t, "the /v2 key set to refresh in the background", func() bool { return d.counter("/v2").Load() >= 3 })

	reload(cfg("v3", "/v3", "100ms"))
	stopped := d.counter("/v2").Load()
	// /v3 refreshing three times spans well over one /v2 period: had /v2 kept running, it
	// would have refreshed meanwhile too (one in-flight refresh may land after the swap).
	waitFor(t, "the /v3 key set to refresh three times", func() bool { return d.counter("/v3").Load() >= 4 })
	if n := d.counter("/v2").Load(); n > stopped+1 {
		t.Fatalf("the replaced key set kept refreshing: %d fetches after the swap", n-stopped)
	}
	ok("after the second URL change")
}
