package conf

import (
	"testing"
	"time"
)

func TestRegistrationDefaults(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name     string
		listener string
		register string // the register block, one line
		want     Registration
	}{
		{
			name:     "from the first listener",
			listener: "10.0.0.5:8080",
			register: "{ name: edge }",
			want: Registration{Name: "edge", ID: "edge-10.0.0.5-8080", Address: "10.0.0.5", Port: 8080,
				Check: "http", CheckInterval: Duration(2 * time.Second), DeregisterAfter: Duration(time.Minute),
				DrainWait: Duration(10 * time.Second)},
		},
		{
			name:     "wildcard listener leaves the address to consul",
			listener: "0.0.0.0:8080",
			register: "{ name: edge, check: ttl }",
			want: Registration{Name: "edge", ID: "edge-8080", Port: 8080,
				Check: "ttl", CheckInterval: Duration(2 * time.Second), DeregisterAfter: Duration(time.Minute),
				DrainWait: Duration(10 * time.Second)},
		},
		{
			name:     "port 0 leaves port and id to start-up",
			listener: "127.0.0.1:0",
			register: "{ name: edge }",
			want: Registration{Name: "edge", Address: "127.0.0.1",
				Check: "http", CheckInterval: Duration(2 * time.Second), DeregisterAfter: Duration(time.Minute),
				DrainWait: Duration(10 * time.Second)},
		},
		{
			name:     "explicit values win",
			listener: "127.0.0.1:8080",
			register: "{ name: edge, id: e1, address: edge.internal, port: 443, check_interval: 5s, deregister_after: 2m, drain_wait: 1s }",
			want: Registration{Name: "edge", ID: "e1", Address: "edge.internal", Port: 443,
				Check: "http", CheckInterval: Duration(5 * time.Second), DeregisterAfter: Duration(2 * time.Minute),
				DrainWait: Duration(time.Second)},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			c, err := parse("test.yaml", []byte(`listeners:
  - address: `+tt.listener+`
routes:
  - { name: r, to: [ { service: api } ] }
discovery:
  consul:
    register: `+tt.register+"\n"), testEnv)
			if err != nil {
				t.Fatal(err)
			}
			got := *c.Discovery.Consul.Register
			if got.Name != tt.want.Name || got.ID != tt.want.ID || got.Address != tt.want.Address ||
				got.Port != tt.want.Port || got.Check != tt.want.Check || got.CheckInterval != tt.want.CheckInterval ||
				got.DeregisterAfter != tt.want.DeregisterAfter || got.DrainWait != tt.want.DrainWait {
				t.Fatalf("register = %+v\nwant       %+v", got, tt.want)
			}
			// Defaults are idempotent and the effective config re-parses to the same values.
			c.Defaults()
			if again := *c.Discovery.Consul.Register; again.ID != got.ID || again.Port != got.Port {
				t.Fatalf("second Defaults changed register: %+v", again)
			}
			out, err := Marshal(c)
			if err != nil {
				t.Fatal(err)
			}
			if _, err := parse("effective.yaml", out, nil); err != nil {
				t.Fatalf("effective config does not re-parse: %v\n%s", err, out)
			}
		})
	}
}

func TestRegistrationErrors(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		yaml string // appended to consulBase (line 8 onward)
		want []wantErr
	}{
		{
			name: "identity",
			yaml: `  consul:
    register:
      name: "bad name"
      id: "a/b"
      address: "10.0.0.1:80"
      port: 70000
`,
			want: []wantErr{
				{10, "discovery.consul.register.name", `invalid service name "bad name"`},
				{11, "discovery.consul.register.id", `invalid id "a/b"`},
				{12, "discovery.consul.register.address", "a host or IP without a port"},
				{13, "discovery.consul.register.port", "must be 0..65535"},
			},
		},
		{
			name: "missing name",
			yaml: `  consul:
    register: { port: 8080 }
`,
			want: []wantErr{{9, "discovery.consul.register.name", "name is required"}},
		},
		{
			name: "tags and meta",
			yaml: `  consul:
    register:
      name: edge
      tags: [ "", ok ]
      meta: { "bad key": x, consul-version: "1" }
`,
			want: []wantErr{
				{11, "discovery.consul.register.tags[0]", "tag must not be empty"},
				{12, "discovery.consul.register.meta", `invalid meta key "bad key"`},
				{12, "discovery.consul.register.meta", `meta key "consul-version": the consul- prefix is reserved`},
			},
		},
		{
			name: "check and timings",
			yaml: `  consul:
    register:
      name: edge
      check: tcp
      check_interval: 100ms
      deregister_after: 30s
      drain_wait: -1s
`,
			want: []wantErr{
				{11, "discovery.consul.register.check", `"tcp" is not one of http, ttl`},
				{12, "discovery.consul.register.check_interval", "must be at least 1s"},
				{13, "discovery.consul.register.deregister_after", "must be at least 1m0s (Consul's minimum"},
				{14, "discovery.consul.register.drain_wait", "must not be negative"},
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			checkErrors(t, consulBase+tt.yaml, tt.want)
		})
	}
}

func TestRegistrationValid(t *testing.T) {
	t.Parallel()
	c := mustParse(t, consulBase+`  consul:
    register:
      name: edge
      address: "::1"
      tags: [ edge, v1 ]
      meta: { version: "1", zone_a: eu-1 }
      check: ttl
      check_interval: 1s
      deregister_after: 90s
`)
	r := c.Discovery.Consul.Register
	if r.Address != "::1" || r.Port != 8080 || r.ID != "edge-::1-8080" || r.Check != "ttl" {
		t.Fatalf("register = %+v", r)
	}
}
