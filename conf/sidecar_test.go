package conf

import (
	"errors"
	"os"
	"slices"
	"testing"
)

func TestSidecarMinimalExpands(t *testing.T) {
	t.Parallel()
	b, err := os.ReadFile("examples/sidecar.yaml")
	if err != nil {
		t.Fatal(err)
	}
	c, err := parse("sidecar.yaml", b, testEnv)
	if err != nil {
		t.Fatal(err)
	}
	if c.Sidecar.Service.ID != "web-127.0.0.1-8080" || !c.Sidecar.ConnectEnabled() || !c.Sidecar.Service.Registers() {
		t.Fatalf("defaults: %+v", c.Sidecar)
	}
	x := c.Expanded()
	if err := x.Validate(); err != nil {
		t.Fatalf("expanded config is invalid: %v", err)
	}
	if x.Identity == nil || x.Identity.Service != "web" || !x.Identity.Connect || x.Identity.IntentionsDefault != "deny" {
		t.Fatalf("identity: %+v", x.Identity)
	}
	var names []string
	for _, l := range x.Listeners {
		names = append(names, l.Name)
	}
	if !slices.Equal(names, []string{"inbound", "upstream-api"}) || !x.Listeners[0].Connect || x.Listeners[1].Connect {
		t.Fatalf("listeners: %+v", x.Listeners)
	}
	if got := x.Discovery.Static["local-web"]; !slices.Equal(got, []string{"127.0.0.1:8080"}) {
		t.Fatalf("local app: %v", got)
	}
	if r := x.Routes[0]; r.Name != "inbound" || r.To[0].Service != "local-web" || !slices.Equal(r.Listeners, []string{"inbound"}) {
		t.Fatalf("inbound route: %+v", r)
	}
	if r := x.Routes[1]; r.To[0].Service != "api" || !slices.Equal(r.Listeners, []string{"upstream-api"}) || r.Timeout == 0 {
		t.Fatalf("upstream route: %+v", r)
	}
	if c.Listeners != nil || c.Identity != nil {
		t.Fatal("Expanded modified its receiver")
	}
}

func TestSidecarUserRoutesStayOnUserListeners(t *testing.T) {
	t.Parallel()
	c, err := parse("s.yaml", []byte(`
listeners: [ { name: extra, address: 127.0.0.1:0 } ]
routes: [ { name: r, to: [ { service: x } ] } ]
discovery: { consul: {} }
sidecar:
  connect: false
  service: { name: web, port: 8080 }
  inbound: { address: 127.0.0.1:0 }
`), testEnv)
	if err != nil {
		t.Fatal(err)
	}
	x := c.Expanded()
	if err := x.Validate(); err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(x.Routes[0].Listeners, []string{"extra"}) {
		t.Fatalf("user route listeners = %v, want [extra]", x.Routes[0].Listeners)
	}
	if x.Identity.Connect || x.Listeners[1].Connect {
		t.Fatal("plaintext mode must not enable connect")
	}
}

func TestSidecarErrors(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		yaml string
		want []wantErr
	}{
		{
			name: "service and inbound",
			yaml: `discovery: { consul: {} }
sidecar:
  service: { name: "bad name", port: 0, address: "1.2.3.4:80", meta: { "consul-x": y } }
  inbound: { address: "nope", policies: [ missing ] }
`,
			want: []wantErr{
				{3, "sidecar.service.name", `invalid service name "bad name"`},
				{3, "sidecar.service.port", "port is required"},
				{3, "sidecar.service.address", "without a port"},
				{3, "sidecar.service.meta", "consul- prefix is reserved"},
				{4, "sidecar.inbound.address", ""},
				{4, "sidecar.inbound.policies[0]", `no policy named "missing"`},
			},
		},
		{
			name: "upstreams",
			yaml: `discovery: { consul: {} }
sidecar:
  service: { name: web, port: 8080 }
  inbound: { address: 127.0.0.1:21000 }
  upstreams:
    - { service: api, bind: 127.0.0.1:10001 }
    - { service: api, bind: 127.0.0.1:10001 }
    - { service: db, bind: 127.0.0.1:21000 }
    - { bind: 127.0.0.1:10003 }
`,
			want: []wantErr{
				{7, "sidecar.upstreams[1].service", `duplicate upstream "api"`},
				{7, "sidecar.upstreams[1].bind", "also sidecar.upstreams[0].bind"},
				{8, "sidecar.upstreams[2].bind", "also sidecar.inbound.address"},
				{9, "sidecar.upstreams[3].service", "service name is required"},
			},
		},
		{
			name: "needs consul, own registration and identity",
			yaml: `identity: { service: other, connect: false, intentions_default: maybe }
sidecar:
  service: { name: web, port: 8080 }
  inbound: { address: 127.0.0.1:21000 }
`,
			want: []wantErr{
				{2, "sidecar", "needs discovery.consul"},
				{1, "identity.service", `identity is its app's service "web"`},
				{1, "identity.connect", "must match sidecar.connect"},
				{1, "identity.intentions_default", `"maybe" is not one of deny, allow`},
			},
		},
		{
			name: "connect listener without identity",
			yaml: `listeners: [ { address: 127.0.0.1:0, connect: true } ]
routes: [ { name: r, to: [ { service: x } ] } ]
discovery: { static: { x: [ 127.0.0.1:1 ] } }
`,
			want: []wantErr{{1, "listeners[0].connect", "needs identity"}},
		},
		{
			name: "identity connect needs consul",
			yaml: `identity: { service: edge, connect: true }
listeners: [ { address: 127.0.0.1:0 } ]
routes: [ { name: r, to: [ { service: x } ] } ]
discovery: { static: { x: [ 127.0.0.1:1 ] } }
`,
			want: []wantErr{{1, "identity.connect", "needs discovery.consul"}},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			_, err := parse("s.yaml", []byte(tt.yaml), testEnv)
			var es Errors
			if !errors.As(err, &es) {
				t.Fatalf("want Errors, got %v", err)
			}
			checkErrs(t, es, tt.want, "s.yaml")
		})
	}
}
