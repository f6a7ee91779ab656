package conf

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// testEnv is the environment the table tests see; Parse's os.LookupEnv is never consulted.
func testEnv(k string) (string, bool) {
	v, ok := map[string]string{"PORT": "8081", "ADDR": "127.0.0.1:9902"}[k]
	return v, ok
}

type wantErr struct {
	line int
	path string
	msg  string // substring
}

func TestParseErrors(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		yaml string
		want []wantErr
	}{
		{
			name: "unknown key reports line and path",
			yaml: `admin:
  address: 127.0.0.1:9901
listeners:
  - name: public
    address: 127.0.0.1:8080
routes:
  - name: all
    match: { path_prefix: /, bogus: 1 }
    to: [ { service: origin } ]
    retires: 3
discovery:
  static:
    origin: [ 127.0.0.1:9000 ]
`,
			want: []wantErr{
				{8, "routes[0].match.bogus", `unknown key "bogus"`},
				{10, "routes[0].retires", `unknown key "retires"`},
			},
		},
		{
			name: "unknown top-level key on line 7",
			yaml: `admin:
  address: 127.0.0.1:9901
listeners:
  - address: 127.0.0.1:8080
routes: []
discovery: {}
listners: []
`,
			want: []wantErr{{7, "listners", `unknown key "listners"`}},
		},
		{
			name: "duplicate keys",
			yaml: `listeners:
  - address: 127.0.0.1:8080
    address: 127.0.0.1:8081
listeners: []
`,
			want: []wantErr{
				{3, "listeners[0].address", `duplicate key "address" (first defined at line 2)`},
				{4, "listeners", `duplicate key "listeners" (first defined at line 1)`},
			},
		},
		{
			name: "wrong types",
			yaml: `listeners:
  - address: 127.0.0.1:8080
    max_connections: many
    trusted_proxies: 10.0.0.0/8
    read_timeout: 5
    max_body_bytes: 10 megs
routes:
  - name: a
    to: { service: origin }
discovery:
  static:
    origin: [ 127.0.0.1:9000 ]
`,
			want: []wantErr{
				{3, "listeners[0].max_connections", `expected an integer, got "many"`},
				{4, "listeners[0].trusted_proxies", `expected a list`},
				{5, "listeners[0].read_timeout", `a number needs a unit, e.g. "5s"`},
				{6, "listeners[0].max_body_bytes", "invalid size `10 megs`"},
				{9, "routes[0].to", `expected a list, got a mapping`},
			},
		},
		{
			name: "semantic errors in routes",
			yaml: `listeners:
  - name: public
    address: 127.0.0.1:8080
routes:
  - name: a
    match:
      path: api
      path_regex: "("
    to: [ { service: origin } ]
  - name: a
    match:
      hosts: [ "api.*.com", ok.example.com ]
      methods: [ "GE T" ]
      headers:
        - { name: X_Ok, exact: a, present: true }
        - { name: "bad header", regex: "[" }
      query:
        - { exact: v }
    to: [ { service: missing }, { service: origin, weight: -1 } ]
    listeners: [ public, nope ]
    rewrite: { path_prefix: /v2 }
  - match: { path_prefix: / }
discovery:
  static:
    origin: [ 127.0.0.1:9000 ]
`,
			want: []wantErr{
				{6, "routes[0].match", "at most one of path, path_prefix, path_regex"},
				{7, "routes[0].match.path", `must start with "/"`},
				{8, "routes[0].match.path_regex", "invalid regex"},
				{10, "routes[1].name", `duplicate route name "a" (also routes[0])`},
				{12, "routes[1].match.hosts[0]", "wildcard is only allowed as a leading"},
				{13, "routes[1].match.methods[0]", "not a valid HTTP method"},
				{15, "routes[1].match.headers[0]", "exactly one of exact, regex, present"},
				{16, "routes[1].match.headers[1].name", "not a valid header name"},
				{16, "routes[1].match.headers[1].regex", "invalid regex"},
				{18, "routes[1].match.query[0].name", "query parameter name is required"},
				{19, "routes[1].to[0].service", "service missing is not in discovery.static"},
				{19, "routes[1].to[1].weight", "must not be negative"},
				{19, "routes[1].to", "at least one target needs a weight above 0"},
				{20, "routes[1].listeners[1]", `no listener named "nope"`},
				{21, "routes[1].rewrite.path_prefix", "requires match.path_prefix"},
				{22, "routes[2].name", "route name is required"},
				{22, "routes[2].to", "at least one target"},
			},
		},
		{
			name: "services, discovery, listeners, admin, log",
			yaml: `admin: { address: localhost }
listeners:
  - name: a
    address: 127.0.0.1:99999
    trusted_proxies: [ 10.0.0.0/8, 192.168.1.1, not-an-ip ]
  - name: a
    address: 127.0.0.1:8081
    idle_timeout: -1s
routes:
  - name: r
    to: [ { service: api } ]
services:
  api:
    load_balancer: { policy: ring_hash, hash: { header: X-User, source_ip: true } }
    retry: { attempts: 11, on: [ reset, 404, "5xx", "503" ] }
    tls: { server_name: api }
  web:
    load_balancer: { policy: fastest, hash: { cookie: c } }
  ring:
    load_balancer: { policy: ring_hash }
discovery:
  static:
    api: [ "127.0.0.1:9000 weight=2", "127.0.0.1:9000", "host-only", "127.0.0.1:1 w=2" ]
    empty: []
log: { level: verbose, format: xml }
access_log: { buffer_size: -1 }
`,
			want: []wantErr{
				{1, "admin.address", `invalid address "localhost"`},
				{4, "listeners[0].address", "port must be a number 0..65535"},
				{5, "listeners[0].trusted_proxies[2]", `"not-an-ip" is not a CIDR`},
				{6, "listeners[1].name", `duplicate listener name "a"`},
				{8, "listeners[1].idle_timeout", "must not be negative"},
				{14, "services.api.load_balancer.hash", "exactly one of header, cookie, source_ip"},
				{15, "services.api.retry.attempts", "must be 1..10"},
				{15, "services.api.retry.on[1]", `"404" is not one of`},
				{16, "services.api.tls", "upstream tls is not supported yet"},
				{18, "services.web.load_balancer.policy", `"fastest" is not one of round_robin`},
				{18, "services.web.load_balancer.hash", "only valid with policy ring_hash"},
				{20, "services.ring.load_balancer.hash", "ring_hash requires hash"},
				{23, "discovery.static.api[1]", "duplicate endpoint 127.0.0.1:9000"},
				{23, "discovery.static.api[2]", `invalid address "host-only"`},
				{23, "discovery.static.api[3]", `want "weight=N"`},
				{24, "discovery.static.empty", "at least one endpoint"},
				{25, "log.level", `"verbose" is not one of debug, info, warn, error`},
				{25, "log.format", `"xml" is not one of json, console`},
				{26, "access_log.buffer_size", "must not be negative"},
			},
		},
		{
			name: "missing listeners points at the file start",
			yaml: "# nothing but a comment\nadmin: {}\n",
			want: []wantErr{{2, "listeners", "at least one listener is required"}},
		},
		{
			name: "empty file",
			yaml: "",
			want: []wantErr{{1, "listeners", "at least one listener is required"}},
		},
		{
			name: "not a mapping",
			yaml: "- a\n- b\n",
			want: []wantErr{{1, "", "expected a mapping, got a sequence"}},
		},
		{
			name: "syntax error",
			yaml: "listeners:\n  - address: [\n",
			want: []wantErr{{2, "", "did not find expected"}},
		},
		{
			name: "two documents",
			yaml: "listeners: [ { address: 127.0.0.1:1 } ]\n---\nadmin: {}\n",
			want: []wantErr{{2, "", "only one YAML document"}},
		},
		{
			name: "unset env var names variable, line and path",
			yaml: "listeners:\n  - name: a\n    address: 127.0.0.1:${NOPE}\n  - address: ${ALSO_NOPE}\n",
			want: []wantErr{
				{3, "listeners[0].address", "environment variable NOPE is not set"},
				{4, "listeners[1].address", "environment variable ALSO_NOPE is not set"},
			},
		},
		{
			name: "decode error suppresses follow-on validation noise",
			yaml: "listeners: [ { address: 127.0.0.1:1 } ]\nroutes:\n  - name: r\n    to: nope\n",
			want: []wantErr{{4, "routes[0].to", "expected a list"}},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			c, err := parse("test.yaml", []byte(tt.yaml), testEnv)
			if err == nil {
				t.Fatalf("no error; config %+v", c)
			}
			if c != nil {
				t.Fatal("config returned alongside errors")
			}
			es, ok := AsErrors(err)
			if !ok {
				t.Fatalf("error %T is not Errors: %v", err, err)
			}
			for _, w := range tt.want {
				if !hasErr(es, w) {
					t.Errorf("missing error %d %q %q in:\n%v", w.line, w.path, w.msg, err)
				}
				// The rendered form is what users see.
				prefix := fmt.Sprintf("test.yaml:%d: ", w.line)
				if w.path != "" {
					prefix += w.path + ": "
				}
				if !strings.Contains(err.Error(), prefix) {
					t.Errorf("rendered errors lack %q:\n%v", prefix, err)
				}
			}
			if len(es) != len(tt.want) {
				t.Errorf("got %d errors, want %d:\n%v", len(es), len(tt.want), err)
			}
			for i := 1; i < len(es); i++ {
				if es[i].Line < es[i-1].Line {
					t.Errorf("errors not in line order:\n%v", err)
				}
			}
		})
	}
}

func hasErr(es Errors, w wantErr) bool {
	for _, e := range es {
		if e.Line == w.line && e.Path == w.path && strings.Contains(e.Msg, w.msg) && e.File == "test.yaml" {
			return true
		}
	}
	return false
}

func TestParseExpandsEnv(t *testing.T) {
	t.Parallel()
	c, err := parse("test.yaml", []byte(`admin: { address: "${ADDR}" }
listeners:
  - address: 127.0.0.1:${PORT}
    read_timeout: ${READ:-5s}
routes:
  - name: r
    match: { path_regex: "^/a$$b$" }
    to: [ { service: origin } ]
discovery: { static: { origin: [ "127.0.0.1:${UP_PORT:-9000}" ] } }
`), testEnv)
	if err != nil {
		t.Fatal(err)
	}
	if c.Admin.Address != "127.0.0.1:9902" || c.Listeners[0].Address != "127.0.0.1:8081" {
		t.Fatalf("addresses not expanded: %q %q", c.Admin.Address, c.Listeners[0].Address)
	}
	if c.Listeners[0].ReadTimeout.D().String() != "5s" {
		t.Fatalf("read_timeout = %v", c.Listeners[0].ReadTimeout)
	}
	if got := c.Routes[0].Match.PathRegex; got != "^/a$b$" {
		t.Fatalf("path_regex = %q", got)
	}
	if got := c.Discovery.Static["origin"][0]; got != "127.0.0.1:9000" {
		t.Fatalf("static = %q", got)
	}
}

func TestParseUsesProcessEnv(t *testing.T) {
	// Not parallel: t.Setenv.
	t.Setenv("MESHGATE_TEST_PORT", "8099")
	c, err := Parse("env.yaml", []byte("listeners: [ { address: \"127.0.0.1:${MESHGATE_TEST_PORT}\" } ]\n"))
	if err != nil {
		t.Fatal(err)
	}
	if c.Listeners[0].Address != "127.0.0.1:8099" {
		t.Fatalf("address = %q", c.Listeners[0].Address)
	}
}

func TestLoad(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	p := filepath.Join(dir, "meshgate.yaml")
	if err := os.WriteFile(p, []byte("listeners: [ { address: 127.0.0.1:1, bogus: 1 } ]\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	_, err := Load(p)
	if want := p + ":1: listeners[0].bogus: unknown key"; err == nil || !strings.Contains(err.Error(), want) {
		t.Fatalf("err = %v, want %q", err, want)
	}
	_, err = Load(filepath.Join(dir, "missing.yaml"))
	if !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("err = %v, want ErrNotExist", err)
	}
	if _, ok := AsErrors(err); ok {
		t.Fatal("a read error is not a config error")
	}
}

func TestErrorsAs(t *testing.T) {
	t.Parallel()
	_, err := parse("f.yaml", []byte("admin: { address: x }\nlisteners: [ { address: 127.0.0.1:1 } ]\n"), testEnv)
	wrapped := fmt.Errorf("reload: %w", err)
	var es Errors
	if !errors.As(wrapped, &es) || len(es) != 1 {
		t.Fatalf("errors.As Errors failed on %v", wrapped)
	}
	var one Error
	if !errors.As(wrapped, &one) || one.Path != "admin.address" || one.Line != 1 {
		t.Fatalf("errors.As Error = %+v", one)
	}
	if got, want := one.Error(), `f.yaml:1: admin.address: invalid address "x": want host:port`; got != want {
		t.Fatalf("Error() = %q, want %q", got, want)
	}
}

func TestErrorFormat(t *testing.T) {
	t.Parallel()
	tests := []struct {
		e    Error
		want string
	}{
		{Error{"a.yaml", 7, "routes[1].match.path_regex", "bad"}, "a.yaml:7: routes[1].match.path_regex: bad"},
		{Error{"a.yaml", 3, "", "bad"}, "a.yaml:3: bad"},
		{Error{"", 0, "log.level", "bad"}, "log.level: bad"},
		{Error{"a.yaml", 0, "", "bad"}, "a.yaml: bad"},
	}
	for _, tt := range tests {
		if got := tt.e.Error(); got != tt.want {
			t.Errorf("got %q, want %q", got, tt.want)
		}
	}
	if got := (Errors{{Msg: "a"}, {Msg: "b"}}).Error(); got != "a\nb" {
		t.Errorf("Errors.Error() = %q", got)
	}
}

func TestParseMergeKeysAndAnchors(t *testing.T) {
	t.Parallel()
	_, err := parse("m.yaml", []byte(`listeners: [ { address: 127.0.0.1:1 } ]
routes:
  - name: r
    to: [ { service: a } ]
svc: &base
  load_balancer: { policy: nope }
`), testEnv)
	// "svc" is unknown, so the anchor trick is rejected rather than silently ignored.
	es, _ := AsErrors(err)
	if !hasErrLoose(es, 5, "svc") {
		t.Fatalf("want unknown key svc at line 5, got %v", err)
	}

	_, err = parse("m.yaml", []byte(`listeners: [ { address: 127.0.0.1:1 } ]
routes:
  - name: r
    to: [ { service: a } ]
services:
  a: &base
    load_balancer: { policy: nope }
  b:
    <<: *base
discovery: { static: { a: [ 127.0.0.1:2 ] } }
`), testEnv)
	es, _ = AsErrors(err)
	if !hasErrLoose(es, 7, "services.a.load_balancer.policy") || !hasErrLoose(es, 7, "services.b.load_balancer.policy") {
		t.Fatalf("merged key not located at its source line:\n%v", err)
	}
}

func hasErrLoose(es Errors, line int, path string) bool {
	for _, e := range es {
		if e.Line == line && e.Path == path {
			return true
		}
	}
	return false
}

func TestParseStatic(t *testing.T) {
	t.Parallel()
	tests := []struct {
		in         string
		addr       string
		weight     int
		wantErrSub string
	}{
		{in: "127.0.0.1:9000", addr: "127.0.0.1:9000", weight: 1},
		{in: "  api.internal:80   weight=5 ", addr: "api.internal:80", weight: 5},
		{in: "[::1]:443 weight=2", addr: "[::1]:443", weight: 2},
		{in: "127.0.0.1:9000 weight=0", wantErrSub: "weight=N"},
		{in: "127.0.0.1:9000 weight=x", wantErrSub: "weight=N"},
		{in: "127.0.0.1:9000 w=1", wantErrSub: "weight=N"},
		{in: "127.0.0.1:9000 weight=1 extra", wantErrSub: "want"},
		{in: "127.0.0.1", wantErrSub: "want host:port"},
		{in: ":9000", wantErrSub: "host is required"},
		{in: "127.0.0.1:0", wantErrSub: "port must be a number 1..65535"},
		{in: "127.0.0.1:http", wantErrSub: "port must be a number"},
		{in: "", wantErrSub: "invalid endpoint"},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			t.Parallel()
			addr, w, err := ParseStatic(tt.in)
			if tt.wantErrSub != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErrSub) {
					t.Fatalf("err = %v, want containing %q", err, tt.wantErrSub)
				}
				return
			}
			if err != nil || addr != tt.addr || w != tt.weight {
				t.Fatalf("got %q %d %v, want %q %d", addr, w, err, tt.addr, tt.weight)
			}
		})
	}
}
