package gateway

import (
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"encoding/pem"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"testing"
	"time"

	gojwt "github.com/golang-jwt/jwt/v5"
)

// TestAuthPoliciesEndToEnd: JWT and API-key policies on a real edge. The authenticated consumer
// reaches the upstream in the identity header (a client-sent one is dropped), feeds a
// rate limit keyed by identity, and bad tokens get their statuses.
func TestAuthPoliciesEndToEnd(t *testing.T) {
	t.Parallel()
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	der, _ := x509.MarshalPKIXPublicKey(&key.PublicKey)
	dir := t.TempDir()
	pubFile := filepath.Join(dir, "pub.pem")
	if err := os.WriteFile(pubFile, pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256([]byte("bob-key"))
	keysFile := filepath.Join(dir, "keys")
	if err := os.WriteFile(keysFile, []byte("bob:"+hex.EncodeToString(sum[:])+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	up, seen := startUpstream(t, "origin", nil)
	yaml := fmt.Sprintf(`
admin: { address: 127.0.0.1:0 }
access_log: { output: "off" }
listeners: [ { name: public, address: 127.0.0.1:0 } ]
routes:
  - { name: jwt, match: { path_prefix: /jwt/ }, to: [ { service: origin } ], policies: [ token, per-user ] }
  - { name: key, match: { path_prefix: /key/ }, to: [ { service: origin } ], policies: [ keys ] }
discovery: { static: { origin: [ %s ] } }
policies:
  token: { jwt: { public_key_files: [ %s ], issuer: https://issuer.test, audiences: [ api ], forward_claims: { tenant: X-Tenant } } }
  per-user: { rate_limit: { requests: 2, per: 1h, key: identity } }
  keys: { api_key: { file: %s } }
`, hostport(up), pubFile, keysFile)
	e := startEdge(t, yaml)

	token := func(m gojwt.SigningMethod, k any, claims gojwt.MapClaims) string {
		s, err := gojwt.NewWithClaims(m, claims).SignedString(k)
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	good := gojwt.MapClaims{"iss": "https://issuer.test", "aud": "api", "sub": "alice", "tenant": "t1",
		"exp": time.Now().Add(time.Hour).Unix()}
	call := func(path, tok string, extra map[string]string) int {
		h := map[string]string{}
		if tok != "" {
			h["Authorization"] = "Bearer " + tok
		}
		for k, v := range extra {
			h[k] = v
		}
		resp, _ := get(t, e.url+path, h)
		return resp.StatusCode
	}

	if code := call("/jwt/a", token(gojwt.SigningMethodRS256, key, good), map[string]string{"X-Meshgate-Identity": "root", "X-Tenant": "evil"}); code != 200 {
		t.Fatalf("valid token: %d", code)
	}
	r, _ := seen.last(t)
	if r.Header.Get("X-Meshgate-Identity") != "alice" || r.Header.Get("X-Tenant") != "t1" {
		t.Fatalf("upstream saw identity %q tenant %q", r.Header.Get("X-Meshgate-Identity"), r.Header.Get("X-Tenant"))
	}
	// The rate limit is per identity: alice has one request left, bob (another sub) has two.
	bob := gojwt.MapClaims{}
	for k, v := range good {
		bob[k] = v
	}
	bob["sub"] = "bob"
	if code := call("/jwt/b", token(gojwt.SigningMethodRS256, key, good), nil); code != 200 {
		t.Fatalf("alice's second: %d", code)
	}
	if code := call("/jwt/c", token(gojwt.SigningMethodRS256, key, good), nil); code != http.StatusTooManyRequests {
		t.Fatalf("alice's third: %d, want 429", code)
	}
	if code := call("/jwt/d", token(gojwt.SigningMethodRS256, key, bob), nil); code != 200 {
		t.Fatalf("bob's first: %d", code)
	}

	expired := gojwt.MapClaims{"iss": "https://issuer.test", "aud": "api", "sub": "x", "exp": time.Now().Add(-time.Hour).Unix()}
	wrongAud := gojwt.MapClaims{"iss": "https://issuer.test", "aud": "other", "sub": "x", "exp": time.Now().Add(time.Hour).Unix()}
	pubPEM, _ := os.ReadFile(pubFile)
	for name, tc := range map[string]struct {
		tok  string
		want int
	}{
		"missing":              {"", 401},
		"malformed":            {"not.a.jwt", 401},
		"expired":              {token(gojwt.SigningMethodRS256, key, expired), 401},
		"wrong audience":       {token(gojwt.SigningMethodRS256, key, wrongAud), 401},
		"alg none":             {token(gojwt.SigningMethodNone, gojwt.UnsafeAllowNoneSignatureType, good), 401},
		"HS256 with RS pubkey": {token(gojwt.SigningMethodHS256, pubPEM, good), 401},
	} {
		if code := call("/jwt/x", tc.tok, nil); code != tc.want {
			t.Errorf("%s: %d, want %d", name, code, tc.want)
		}
	}

	// API key: consumer bob becomes the identity; the key itself is not forwarded.
	if code := call("/key/x", "", map[string]string{"X-Api-Key": "bob-key"}); code != 200 {
		t.Fatalf("api key: %d", code)
	}
	if r, _ = seen.last(t); r.Header.Get("X-Meshgate-Identity") != "bob" || r.Header.Get("X-Api-Key") != "" {
		t.Fatalf("upstream saw identity %q, key %q", r.Header.Get("X-Meshgate-Identity"), r.Header.Get("X-Api-Key"))
	}
	if code := call("/key/x", "", map[string]string{"X-Api-Key": "wrong"}); code != 401 {
		t.Fatalf("wrong api key: %d", code)
	}
}
