package conf

import (
	"testing"
	"time"
)

// consulBase is lines 1-7 of every consul test config: a route to a service that is not in
// static, which is valid only because discovery.consul is set. The consul block starts on line 8.
const consulBase = `listeners:
  - address: 127.0.0.1:8080
routes:
  - name: api
    to: [ { service: api }, { service: origin } ]
discovery:
  static: { origin: [ 127.0.0.1:9000 ] }
`

func TestConsulDefaults(t *testing.T) {
	t.Parallel()
	c, err := parse("test.yaml", []byte(consulBase+`  consul: { snapshot_dir: /var/lib/meshgate }
`), testEnv)
	if err != nil {
		t.Fatal(err)
	}
	got := c.Discovery.Consul
	if got.Address != "127.0.0.1:8500" || got.Scheme != "http" || got.Wait.D() != 5*time.Minute ||
		got.SnapshotDir != "/var/lib/meshgate" {
		t.Fatalf("consul = %+v", got)
	}
	out, err := Marshal(c)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := parse("effective.yaml", out, nil); err != nil {
		t.Fatalf("effective config does not re-parse: %v\n%s", err, out)
	}
}

func TestConsulMakesStaticOptional(t *testing.T) {
	t.Parallel()
	// Without consul the same routes are an error.
	checkErrors(t, consulBase, []wantErr{{5, "routes[0].to[0].service", "service api is not in discovery.static"}})
}

func TestConsulErrors(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		yaml string // appended to consulBase (line 8 onward)
		want []wantErr
	}{
		{
			name: "connection",
			yaml: `  consul:
    address: localhost
    scheme: ftp
    datacenter: "dc 1"
    wait: 11m
`,
			want: []wantErr{
				{9, "discovery.consul.address", `invalid address "localhost": want host:port`},
				{10, "discovery.consul.scheme", `"ftp" is not one of http, https`},
				{11, "discovery.consul.datacenter", `invalid datacenter "dc 1"`},
				{12, "discovery.consul.wait", "must be 0..10m0s"},
			},
		},
		{
			name: "address without host, negative wait",
			yaml: `  consul: { address: ":8500", wait: -1s }
`,
			want: []wantErr{
				{8, "discovery.consul.address", "host is required"},
				{8, "discovery.consul.wait", "must be 0..10m0s"},
			},
		},
		{
			name: "tls",
			yaml: `  consul:
    tls: { cert_file: /c.pem }
`,
			want: []wantErr{
				{9, "discovery.consul.tls", "tls requires scheme: https"},
				{9, "discovery.consul.tls", "cert_file and key_file must be set together"},
			},
		},
		{
			name: "services",
			yaml: `  consul:
    services:
      origin: { tags: [ v1 ] }
      api: { name: "bad name", tags: [ "" ], meta: { "": x } }
      -bad: {}
`,
			want: []wantErr{
				{10, "discovery.consul.services.origin", "listed in discovery.static, which wins"},
				{11, "discovery.consul.services.api.name", `invalid consul service name "bad name"`},
				{11, "discovery.consul.services.api.tags[0]", "tag must not be empty"},
				{11, "discovery.consul.services.api.meta", "meta key must not be empty"},
				{12, "discovery.consul.services.-bad", `invalid service name "-bad"`},
			},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			checkErrors(t, consulBase+tc.yaml, tc.want)
		})
	}
}

func TestConsulValid(t *testing.T) {
	t.Parallel()
	_, err := parse("test.yaml", []byte(consulBase+`  consul:
    address: consul.service.internal:8501
    scheme: https
    datacenter: dc1
    token_file: /run/secrets/consul-token
    wait: 10m
    tls: { ca_file: /ca.pem, cert_file: /c.pem, key_file: /k.pem, server_name: consul.internal }
    services:
      api: { name: api-v2, tags: [ v2, canary ], meta: { zone: a } }
`), testEnv)
	if err != nil {
		t.Fatal(err)
	}
}

// Connect over plain http is allowed only to a loopback agent: the token and the leaf key
// would otherwise cross the network in clear.
func TestConnectNeedsHTTPSOrLoopback(t *testing.T) {
	t.Parallel()
	edge := func(consul string) string {
		return `listeners: [ { address: 127.0.0.1:8080 } ]
identity: { service: edge, connect: true }
discovery:
  consul:
` + consul
	}
	sidecar := func(consul string) string {
		return `discovery:
  consul:
` + consul + `sidecar:
  service: { name: web, port: 8080 }
  inbound: { address: 127.0.0.1:21000 }
`
	}
	const msg = "is not a loopback address: Connect (identity.connect, or a sidecar) over plain http"
	for _, ok := range []string{
		edge("    address: 127.0.0.1:8500\n"),
		edge("    address: 127.0.0.53:8500\n"),
		edge("    address: localhost:8500\n"),
		edge("    address: \"[::1]:8500\"\n"),
		edge("    address: consul.service.consul:8501\n    scheme: https\n"),
		sidecar("    address: 127.0.0.1:8500\n"),
		// Without Connect plain http elsewhere stays allowed (the token is the user's call).
		`listeners: [ { address: 127.0.0.1:8080 } ]
discovery: { consul: { address: 10.0.0.5:8500 } }
`,
		sidecar("    address: 10.0.0.5:8500\n") + "  connect: false\n",
	} {
		mustParse(t, ok)
	}
	checkErrors(t, edge("    address: 10.0.0.5:8500\n"), []wantErr{{5, "discovery.consul.address", msg}})
	checkErrors(t, edge("    address: consul.service.consul:8500\n    scheme: http\n"), []wantErr{{5, "discovery.consul.address", msg}})
	checkErrors(t, sidecar("    address: 192.0.2.10:8500\n"), []wantErr{{3, "discovery.consul.address", msg}})
}

func TestIdentityMaxSnapshotAge(t *testing.T) {
	t.Parallel()
	cfg := func(identity, consul string) string {
		return `listeners: [ { address: 127.0.0.1:8080 } ]
identity: { service: edge, connect: true` + identity + ` }
discovery:
  consul: { address: 127.0.0.1:8500` + consul + ` }
`
	}
	if got := mustParse(t, cfg("", "")).Identity.MaxSnapshotAge.D(); got != 24*time.Hour {
		t.Errorf("default max_snapshot_age = %s, want 24h", got)
	}
	if got := mustParse(t, cfg(", max_snapshot_age: -1s", "")).Identity.MaxSnapshotAge.D(); got != -time.Second {
		t.Errorf("max_snapshot_age -1s = %s (disabled)", got)
	}
	mustParse(t, cfg(", max_snapshot_age: 2m", ", wait: 1m"))
	// The sidecar's implicit identity gets the default too.
	sc := mustParse(t, `discovery: { consul: { address: 127.0.0.1:8500 } }
sidecar:
  service: { name: web, port: 8080 }
  inbound: { address: 127.0.0.1:21000 }
`).Expanded()
	if got := sc.Identity.MaxSnapshotAge.D(); got != 24*time.Hour {
		t.Errorf("sidecar max_snapshot_age = %s, want 24h", got)
	}
	checkErrors(t, cfg(", max_snapshot_age: 9m", ""), []wantErr{
		{2, "identity.max_snapshot_age", "9m0s is less than twice discovery.consul.wait (5m0s)"},
	})
}
