package conf

import (
	"errors"
	"strings"
	"testing"
	"time"
)

const pluginSum = "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08"

func TestPluginsParseAndRedact(t *testing.T) {
	t.Parallel()
	c, err := parse("p.yaml", []byte(`
listeners: [ { address: 127.0.0.1:0 } ]
plugins:
  auth:
    path: ./bin/apikey
    sha256: `+pluginSum+`
    config: { keys: { alice: secret } }
policies:
  auth: { plugin: auth }
routes: [ { name: r, to: [ { service: x } ], policies: [ auth ] } ]
discovery: { static: { x: [ 127.0.0.1:1 ] } }
`), testEnv)
	if err != nil {
		t.Fatal(err)
	}
	p := c.Plugins["auth"]
	if p.Timeout.D() != 50*time.Millisecond || p.FailurePolicy != "" || p.Procs != 1 {
		t.Fatalf("defaults: %+v", p)
	}
	out, err := Marshal(Redacted(c))
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(string(out), "secret") || !strings.Contains(string(out), redactedValue) {
		t.Fatalf("plugin config not redacted:\n%s", out)
	}
	if c.Plugins["auth"].Config.(map[string]any)["keys"] == nil {
		t.Fatal("Redacted modified the original")
	}
}

func TestPluginErrors(t *testing.T) {
	t.Parallel()
	_, err := parse("p.yaml", []byte(`
listeners: [ { address: 127.0.0.1:0 } ]
plugins:
  a: { sha256: nothex, timeout: -1s, failure_policy: maybe, procs: 2000 }
policies:
  x: { plugin: missing }
routes: [ { name: r, to: [ { service: x } ] } ]
discovery: { static: { x: [ 127.0.0.1:1 ] } }
`), testEnv)
	var es Errors
	if !errors.As(err, &es) {
		t.Fatalf("want Errors, got %v", err)
	}
	checkErrs(t, es, []wantErr{
		{4, "plugins.a.path", "executable is required"},
		{4, "plugins.a.sha256", "64 hex digits"},
		{4, "plugins.a.timeout", "must be positive"},
		{4, "plugins.a.failure_policy", `"maybe" is not one of closed, open`},
		{4, "plugins.a.procs", "must be 1..1024 (got 2000)"},
		{6, "policies.x.plugin", `no plugin named "missing"`},
	}, "p.yaml")
}
