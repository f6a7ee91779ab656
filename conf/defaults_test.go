package conf

import (
	"slices"
	"testing"
	"time"
)

func mustParse(t *testing.T, text string) *Config {
	t.Helper()
	c, err := parse("test.yaml", []byte(text), testEnv)
	if err != nil {
		t.Fatalf("parse: %v", err)
	}
	return c
}

func TestDefaults(t *testing.T) {
	t.Parallel()
	c := mustParse(t, `listeners:
  - address: 127.0.0.1:8080
  - address: 127.0.0.1:8081
    read_timeout: 5s
routes:
  - name: a
    match: { methods: [ GET, POST ], hosts: [ API.Example.com ] }
    to: [ { service: origin } ]
  - name: b
    to: [ { service: slow } ]
  - name: c
    timeout: 1s
    to: [ { service: slow } ]
  - name: split
    to: [ { service: origin }, { service: slow } ]
  - name: canary
    to: [ { service: origin, weight: 9 }, { service: slow } ]
    retry: { attempts: 3 }
services:
  slow: { request_timeout: 40s, retry: { on: [ 5xx ] } }
  unused: {}
discovery:
  static:
    origin: [ 127.0.0.1:9000 ]
    slow: [ 127.0.0.1:9001 ]
`)
	if c.Admin.Address != "127.0.0.1:9901" {
		t.Errorf("admin.address = %q", c.Admin.Address)
	}
	l0, l1 := c.Listeners[0], c.Listeners[1]
	if l0.Name != "listener-0" || l1.Name != "listener-1" {
		t.Errorf("listener names = %q %q", l0.Name, l1.Name)
	}
	if l0.ReadHeaderTimeout.D() != 10*time.Second || l0.ReadTimeout.D() != 60*time.Second ||
		l0.WriteTimeout.D() != 60*time.Second || l0.IdleTimeout.D() != 60*time.Second {
		t.Errorf("listener timeouts = %+v", l0)
	}
	if l1.ReadTimeout.D() != 5*time.Second {
		t.Errorf("explicit read_timeout overwritten: %v", l1.ReadTimeout)
	}
	if l0.MaxHeaderBytes != 16<<10 || l0.MaxBodyBytes != 10<<20 || l0.MaxConnections != 10000 || l0.StreamThreshold != 64<<10 {
		t.Errorf("listener limits = %+v", l0)
	}

	r := c.Routes
	if !slices.Equal(r[0].Match.Methods, []string{"GET", "POST"}) || r[0].Match.Hosts[0] != "api.example.com" {
		t.Errorf("match not normalised: %+v", r[0].Match)
	}
	if r[0].Timeout.D() != 15*time.Second {
		t.Errorf("route a timeout = %v, want 15s", r[0].Timeout)
	}
	if r[1].Timeout.D() != 40*time.Second {
		t.Errorf("route b timeout = %v, want service request_timeout 40s", r[1].Timeout)
	}
	if r[2].Timeout.D() != time.Second {
		t.Errorf("route c timeout = %v, want explicit 1s", r[2].Timeout)
	}
	if r[3].To[0].Weight != 1 || r[3].To[1].Weight != 1 {
		t.Errorf("unweighted split = %+v, want 1/1", r[3].To)
	}
	if r[4].To[0].Weight != 9 || r[4].To[1].Weight != 0 {
		t.Errorf("weighted split = %+v, want 9/0", r[4].To)
	}
	if r[0].Retry != nil {
		t.Errorf("route retry should stay nil (service policy applies)")
	}
	if got := r[4].Retry; got.Attempts != 3 || !slices.Equal(got.On, []string{"connect-failure", "reset"}) {
		t.Errorf("route retry = %+v", got)
	}

	if _, ok := c.Services["origin"]; !ok {
		t.Fatalf("referenced service origin not added: %v", c.Services)
	}
	for _, name := range []string{"origin", "slow", "unused"} {
		s := c.Services[name]
		if s.LoadBalancer.Policy != "round_robin" || s.ConnectTimeout.D() != 2*time.Second ||
			s.IdleTimeout.D() != 30*time.Second || s.MaxConnsPerHost != 1024 || s.MaxResponseBytes != 64<<20 {
			t.Errorf("service %s = %+v", name, s)
		}
		if s.Retry == nil || s.Retry.Attempts != 2 {
			t.Errorf("service %s retry = %+v", name, s.Retry)
		}
	}
	if got := c.Services["origin"].Retry.On; !slices.Equal(got, []string{"connect-failure", "reset"}) {
		t.Errorf("default retry.on = %v", got)
	}
	if got := c.Services["slow"].Retry.On; !slices.Equal(got, []string{"5xx"}) {
		t.Errorf("explicit retry.on overwritten: %v", got)
	}
	if c.AccessLog.Output != "stdout" || c.AccessLog.BufferSize != 8192 {
		t.Errorf("access_log = %+v", c.AccessLog)
	}
	if c.Log.Level != "info" || c.Log.Format != "json" {
		t.Errorf("log = %+v", c.Log)
	}
	if c.Shutdown.DrainTimeout.D() != 30*time.Second || c.Shutdown.ReadyDelay != 0 {
		t.Errorf("shutdown = %+v", c.Shutdown)
	}
}

func TestDefaultsIdempotentAndUnshared(t *testing.T) {
	t.Parallel()
	c := mustParse(t, "listeners: [ { address: 127.0.0.1:1 } ]\nroutes: [ { name: r, to: [ { service: a } ] } ]\nservices: { b: {} }\ndiscovery: { static: { a: [ 127.0.0.1:2 ] } }\n")
	before, err := Marshal(c)
	if err != nil {
		t.Fatal(err)
	}
	c.Defaults()
	after, _ := Marshal(c)
	if string(before) != string(after) {
		t.Fatalf("Defaults not idempotent:\n%s\n---\n%s", before, after)
	}
	// Default slices must not alias each other: one service's policy edit must not leak.
	c.Services["a"].Retry.On[0] = "5xx"
	if c.Services["b"].Retry.On[0] != "connect-failure" {
		t.Fatal("default retry.on slices are shared between services")
	}
}

func TestValidateHandBuilt(t *testing.T) {
	t.Parallel()
	c := &Config{Listeners: []Listener{{Address: "127.0.0.1:0"}}}
	c.Defaults()
	if err := c.Validate(); err != nil {
		t.Fatalf("valid config rejected: %v", err)
	}
	c.Log.Level = "loud"
	es, ok := AsErrors(c.Validate())
	if !ok || len(es) != 1 || es[0].Path != "log.level" || es[0].Line != 0 {
		t.Fatalf("Validate() = %v", es)
	}
}
