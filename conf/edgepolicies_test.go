package conf

import "testing"

// jwtBase is lines 1-10 of every JWT test config; the policy under test starts on line 11.
const jwtBase = `listeners:
  - address: 127.0.0.1:8080
routes:
  - name: api
    match: { path_prefix: / }
    to: [ { service: origin } ]
    policies: [ token ]
discovery:
  static: { origin: [ 127.0.0.1:9000 ] }
policies:
`

func TestJWTStripTokenDefault(t *testing.T) {
	t.Parallel()
	for yaml, want := range map[string]bool{
		"  token: { jwt: { jwks_url: https://idp.test/jwks } }\n":                     true,
		"  token: { jwt: { jwks_url: https://idp.test/jwks, strip_token: true } }\n":  true,
		"  token: { jwt: { jwks_url: https://idp.test/jwks, strip_token: false } }\n": false,
	} {
		c, err := parse("test.yaml", []byte(jwtBase+yaml), testEnv)
		if err != nil {
			t.Fatalf("%s: %v", yaml, err)
		}
		j := c.Policies["token"].JWT
		if j.StripToken == nil || *j.StripToken != want || j.Strips() != want {
			t.Errorf("%s: strip_token = %v, want %v", yaml, j.StripToken, want)
		}
		// The effective config shows the default and re-parses to the same value.
		out, err := Marshal(c)
		if err != nil {
			t.Fatal(err)
		}
		c2, err := parse("effective.yaml", out, nil)
		if err != nil || c2.Policies["token"].JWT.Strips() != want {
			t.Errorf("%s: effective config round trip: %v\n%s", yaml, err, out)
		}
	}
}

// TestJWKSURLMustBeHTTPS: plain http is refused with its path and line unless the opt-out is
// set; the opt-out and the CA file only go with a URL they apply to.
func TestJWKSURLMustBeHTTPS(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		yaml string
		want []wantErr
	}{
		{"plain http", "  token:\n    jwt:\n      jwks_url: http://idp.test/jwks\n",
			[]wantErr{{13, "policies.token.jwt.jwks_url", "must be https://"}}},
		{"not a URL", "  token:\n    jwt:\n      jwks_url: idp.test/jwks\n",
			[]wantErr{{13, "policies.token.jwt.jwks_url", "want an https:// URL"}}},
		{"other scheme, even with the opt-out", "  token:\n    jwt:\n      insecure_http_jwks: true\n      jwks_url: ftp://idp.test/jwks\n",
			[]wantErr{{14, "policies.token.jwt.jwks_url", "want an https:// URL"}}},
		{"CA file for plain http", "  token:\n    jwt:\n      jwks_url: http://127.0.0.1:9/jwks\n      insecure_http_jwks: true\n      jwks_ca_file: /ca.pem\n",
			[]wantErr{{15, "policies.token.jwt.jwks_ca_file", "is for an https:// jwks_url"}}},
		{"opt-out and CA file without a URL", "  token:\n    jwt:\n      public_key_files: [ /k.pem ]\n      insecure_http_jwks: true\n      jwks_ca_file: /ca.pem\n",
			[]wantErr{
				{14, "policies.token.jwt.insecure_http_jwks", "is only for jwks_url"},
				{15, "policies.token.jwt.jwks_ca_file", "is only for jwks_url"},
			}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			checkErrors(t, jwtBase+tt.yaml, tt.want)
		})
	}
	for _, ok := range []string{
		"  token: { jwt: { jwks_url: https://idp.test/jwks, jwks_ca_file: /ca.pem } }\n",
		"  token: { jwt: { jwks_url: http://127.0.0.1:8081/jwks, insecure_http_jwks: true } }\n",
	} {
		if _, err := parse("test.yaml", []byte(jwtBase+ok), testEnv); err != nil {
			t.Errorf("%s: %v", ok, err)
		}
	}
}

// hmacBase is lines 1-10 of every HMAC test config; the policy under test starts on line 11.
const hmacBase = `listeners:
  - address: 127.0.0.1:8080
routes:
  - name: api
    match: { path_prefix: / }
    to: [ { service: origin } ]
    policies: [ signed ]
discovery:
  static: { origin: [ 127.0.0.1:9000 ] }
policies:
`

func TestHMACReplayStore(t *testing.T) {
	t.Parallel()
	c, err := parse("test.yaml", []byte(hmacBase+"  signed: { hmac: { secrets_file: /s } }\n"), testEnv)
	if err != nil {
		t.Fatal(err)
	}
	if got := c.Policies["signed"].HMAC.Replay; got != HMACReplayMemory {
		t.Errorf("replay default = %q, want memory", got)
	}
	if _, err := parse("test.yaml", []byte(hmacBase+"  signed: { hmac: { secrets_file: /s, replay: redis } }\nredis: { address: 127.0.0.1:6379 }\n"), testEnv); err != nil {
		t.Errorf("redis replay with a redis block: %v", err)
	}
	checkErrors(t, hmacBase+"  signed:\n    hmac:\n      secrets_file: /s\n      replay: redis\n",
		[]wantErr{{14, "policies.signed.hmac.replay", "needs the top-level redis block"}})
	checkErrors(t, hmacBase+"  signed:\n    hmac:\n      secrets_file: /s\n      replay: disk\n",
		[]wantErr{{14, "policies.signed.hmac.replay", `"disk" is not one of memory, redis`}})
}

// A policy cannot set a header the gateway owns: its value would be overwritten, so the config
// says so instead of silently losing it.
func TestPoliciesCannotSetOwnedHeaders(t *testing.T) {
	t.Parallel()
	checkErrors(t, hmacBase+"  signed:\n    headers:\n      request: { set: { X-Forwarded-For: 1.2.3.4 }, add: { x-request-id: a } }\n      response: { set: { X-Request-Id: kept } }\n",
		[]wantErr{
			{13, "policies.signed.headers.request.X-Forwarded-For", "is set by the gateway itself"},
			{13, "policies.signed.headers.request.x-request-id", "is set by the gateway itself"},
		})
	checkErrors(t, jwtBase+"  token:\n    jwt:\n      jwks_url: https://idp.test/jwks\n      forward_claims: { sub: X-Real-Ip }\n",
		[]wantErr{{14, "policies.token.jwt.forward_claims.sub", "is set by the gateway itself"}})
}

// Trust settings: no catch-all trusted proxy, trusted_peers only where peers have identities.
func TestTrustSettingsValidated(t *testing.T) {
	t.Parallel()
	base := "routes:\n  - name: r\n    to: [ { service: s } ]\ndiscovery: { static: { s: [ 127.0.0.1:9000 ] } }\nlisteners:\n"
	checkErrors(t, base+"  - address: 127.0.0.1:8080\n    trusted_proxies: [ 0.0.0.0/0, \"::/0\" ]\n    trusted_peers: [ edge ]\n    max_connections_per_ip: -2\n",
		[]wantErr{
			{7, "listeners[0].trusted_proxies[0]", "trusts every address"},
			{7, "listeners[0].trusted_proxies[1]", "trusts every address"},
			{8, "listeners[0].trusted_peers", "only a connect listener"},
			{9, "listeners[0].max_connections_per_ip", "or -1 for no cap"},
		})
}
