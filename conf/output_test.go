package conf

import (
	"os"
	"strings"
	"testing"
)

func TestSummary(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name, yaml, want string
	}{
		{"static example", "", "valid: 1 listener, 1 route, 1 service (static)"},
		{"plural", `listeners: [ { address: 127.0.0.1:1 }, { address: 127.0.0.1:2 } ]
routes:
  - { name: a, to: [ { service: x } ] }
  - { name: b, to: [ { service: y } ] }
  - { name: c, to: [ { service: x } ] }
discovery: { static: { x: [ 127.0.0.1:3 ], y: [ 127.0.0.1:4 ] } }
`, "valid: 2 listeners, 3 routes, 2 services (static)"},
		{"no routes", "listeners: [ { address: 127.0.0.1:1 } ]\n", "valid: 1 listener, 0 routes, 0 services"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			var c *Config
			if tt.yaml == "" {
				var err error
				if c, err = Load("examples/static.yaml"); err != nil {
					t.Fatal(err)
				}
			} else {
				c = mustParse(t, tt.yaml)
			}
			if got := Summary(c); got != tt.want {
				t.Fatalf("Summary = %q, want %q", got, tt.want)
			}
		})
	}
}

func TestRedactedIsDeepCopy(t *testing.T) {
	t.Parallel()
	data, err := os.ReadFile("examples/full.yaml")
	if err != nil {
		t.Fatal(err)
	}
	c := mustParse(t, string(data))
	orig, _ := Marshal(c)

	r := Redacted(c)
	if r == c {
		t.Fatal("Redacted returned the same pointer")
	}
	red, _ := Marshal(r)
	if string(red) != string(orig) {
		t.Fatalf("redacted copy differs (no field is secret yet):\n%s", red)
	}
	// Scribble over everything reachable in the copy; the original must not change.
	r.Listeners[0].TrustedProxies[0] = "x"
	r.Routes[0].Match.Hosts[0] = "x"
	r.Routes[0].Match.Methods[0] = "x"
	*r.Routes[0].Match.Headers[1].Present = true
	r.Routes[0].Match.Query[0].Exact = "x"
	r.Routes[0].To[0].Weight = 1234
	r.Routes[0].Listeners[0] = "x"
	r.Routes[0].Retry.On[0] = "x"
	r.Services["users"].LoadBalancer.Hash.Header = "x"
	r.Services["api"].Retry.On[0] = "x"
	r.Discovery.Static["api"][0] = "x"
	r.Services["new"] = Service{}
	if after, _ := Marshal(c); string(after) != string(orig) {
		t.Fatalf("mutating the redacted copy changed the original:\n%s", after)
	}
	if Redacted(nil) != nil {
		t.Fatal("Redacted(nil) != nil")
	}
}

func TestMarshalRoundTrip(t *testing.T) {
	t.Parallel()
	data, err := os.ReadFile("examples/full.yaml")
	if err != nil {
		t.Fatal(err)
	}
	c := mustParse(t, string(data))
	out, err := Marshal(c)
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"read_timeout: 1m0s", "max_body_bytes: 10485760", "timeout: 5s"} {
		if !strings.Contains(string(out), want) {
			t.Errorf("marshalled config lacks %q", want)
		}
	}
	c2, err := parse("again.yaml", out, nil)
	if err != nil {
		t.Fatalf("marshalled config does not re-parse: %v\n%s", err, out)
	}
	out2, _ := Marshal(c2)
	if string(out) != string(out2) {
		t.Fatalf("round trip changed the config:\n%s\n---\n%s", out, out2)
	}
}

func TestRedactedBlanksConsulTokenAndCopies(t *testing.T) {
	t.Parallel()
	c, err := Parse("c.yaml", []byte(`
listeners: [ { name: public, address: 127.0.0.1:8080 } ]
routes: [ { name: r, match: { path_prefix: / }, to: [ { service: api } ] } ]
discovery:
  consul:
    address: 127.0.0.1:8500
    token: s3cret-token
    services: { api: { tags: [ v2 ] } }
`))
	if err != nil {
		t.Fatal(err)
	}
	r := Redacted(c)
	out, err := Marshal(r)
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(string(out), "s3cret-token") {
		t.Fatalf("token visible in redacted config:\n%s", out)
	}
	if c.Discovery.Consul.Token != "s3cret-token" {
		t.Error("Redacted changed the original")
	}
	r.Discovery.Consul.Services["api"].Tags[0] = "mutated"
	if c.Discovery.Consul.Services["api"].Tags[0] != "v2" {
		t.Error("Redacted shares subset tags with the original")
	}
}

func TestRedactedHidesSecrets(t *testing.T) {
	t.Parallel()
	// Every value below that contains "SECRET" can carry a credential; none may reach /config,
	// while the names around them (which say what is configured) must.
	c, err := Parse("c.yaml", []byte(`
listeners: [ { name: public, address: 127.0.0.1:8080 } ]
routes: [ { name: r, match: { path_prefix: / }, to: [ { service: api } ], policies: [ inject, auth, plug ] } ]
discovery:
  consul:
    address: SECRETtoken@127.0.0.1:8500
    token: SECRET-consul-token
redis:
  address: SECRETredis@127.0.0.1:6379
policies:
  inject:
    headers:
      request:
        set: { Authorization: "Bearer SECRET-upstream-key" }
        add: { X-Api-Key: SECRET-api-key }
        remove: [ Cookie ]
      response:
        set: { X-Debug-Token: SECRET-response }
  auth:
    jwt:
      jwks_url: https://user:SECRET-pass@idp.example.com/keys?access_token=SECRET-query#SECRET-frag
  plug:
    plugin: vault
plugins:
  vault:
    path: /usr/lib/meshgate/vault
    sha256: 0000000000000000000000000000000000000000000000000000000000000000
    args: [ --token, SECRET-plugin-arg ]
    config: { key: SECRET-plugin-config }
`))
	if err != nil {
		t.Fatal(err)
	}
	before, _ := Marshal(c)
	out, err := Marshal(Redacted(c))
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(string(out), "SECRET") {
		t.Fatalf("a secret is visible in the redacted config:\n%s", out)
	}
	for _, want := range []string{
		"address: (redacted)@127.0.0.1:8500",
		"address: (redacted)@127.0.0.1:6379",
		"Authorization: (redacted)",
		"X-Api-Key: (redacted)",
		"X-Debug-Token: (redacted)",
		"- Cookie",
		"jwks_url: https://(redacted)@idp.example.com/keys?(redacted)",
		"path: /usr/lib/meshgate/vault",
		"args:\n            - (redacted)\n            - (redacted)\n",
		"config: (redacted)",
		"token: (redacted)",
	} {
		if !strings.Contains(string(out), want) {
			t.Errorf("redacted config lacks %q:\n%s", want, out)
		}
	}
	if after, _ := Marshal(c); string(after) != string(before) {
		t.Fatalf("Redacted changed the original:\n%s", after)
	}
}

func TestRedactAddress(t *testing.T) {
	t.Parallel()
	for in, want := range map[string]string{
		"":                               "",
		"127.0.0.1:8500":                 "127.0.0.1:8500",
		"https://idp.example.com/keys":   "https://idp.example.com/keys",
		"https://idp.example.com?x=1":    "https://idp.example.com?(redacted)",
		"https://u:p@h:1/a/b?q=1":        "https://(redacted)@h:1/a/b?(redacted)",
		"redis://:pw@h:6379/0":           "redis://(redacted)@h:6379/0",
		"https://h/p#frag":               "https://h/p?(redacted)",
		"tok@h:8500":                     "(redacted)@h:8500",
		"https://h/path@with-at?x=a@b":   "https://h/path@with-at?(redacted)",
		"unix:///var/run/consul.sock?x=": "unix:///var/run/consul.sock?(redacted)",
	} {
		if got := redactAddress(in); got != want {
			t.Errorf("redactAddress(%q) = %q, want %q", in, got, want)
		}
	}
}
