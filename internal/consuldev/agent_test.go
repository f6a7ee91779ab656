package consuldev_test

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/hashicorp/consul/api"

	"github.com/meshgate/meshgate/internal/consuldev"
)

// eventually polls f until it returns nil or the deadline passes; Consul applies some writes
// (catalog sync of check status) asynchronously, so reads are retried rather than slept on.
func eventually(t *testing.T, timeout time.Duration, f func() error) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		err := f()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("not true after %s: %v", timeout, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func opts(t *testing.T) *api.QueryOptions {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	t.Cleanup(cancel)
	return (&api.QueryOptions{}).WithContext(ctx)
}

func wopts(t *testing.T) *api.WriteOptions {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	t.Cleanup(cancel)
	return (&api.WriteOptions{}).WithContext(ctx)
}

// TestAgentLifecycle drives one real agent through what discovery tests need: KV, a service
// with a TTL check going passing, an outage (Kill) and a recovery (Restart on the same address).
// The steps share the agent and depend on each other's order, so they are not parallel.
func TestAgentLifecycle(t *testing.T) {
	t.Parallel()
	a := consuldev.Start(t)

	if a.HTTPAddr == "" || a.HTTPAddr == "127.0.0.1:8500" {
		t.Fatalf("HTTPAddr = %q, want a run-time loopback port", a.HTTPAddr)
	}
	client, err := api.NewClient(&api.Config{Address: a.HTTPAddr})
	if err != nil {
		t.Fatal(err)
	}

	t.Run("agent self reports our ports and node", func(t *testing.T) {
		self, err := client.Agent().Self()
		if err != nil {
			t.Fatal(err)
		}
		if got := self["Config"]["NodeName"]; got != a.NodeName {
			t.Fatalf("NodeName = %v, want %q", got, a.NodeName)
		}
		leader, err := client.Status().Leader()
		if err != nil || leader == "" {
			t.Fatalf("leader = %q, %v", leader, err)
		}
		want := fmt.Sprintf("127.0.0.1:%d", a.Ports.Server)
		if leader != want {
			t.Fatalf("leader = %q, want the agent's own server port %q", leader, want)
		}
	})

	t.Run("kv put and get", func(t *testing.T) {
		if _, err := client.KV().Put(&api.KVPair{Key: "meshgate/smoke", Value: []byte("hello")}, wopts(t)); err != nil {
			t.Fatal(err)
		}
		pair, _, err := client.KV().Get("meshgate/smoke", opts(t))
		if err != nil {
			t.Fatal(err)
		}
		if pair == nil || string(pair.Value) != "hello" {
			t.Fatalf("Get = %+v, want value hello", pair)
		}
	})

	t.Run("service with ttl check turns passing", func(t *testing.T) {
		reg := &api.AgentServiceRegistration{
			ID: "web-1", Name: "web", Address: "127.0.0.1", Port: 18080,
			Check: &api.AgentServiceCheck{CheckID: "web-1-ttl", TTL: "30s"},
		}
		if err := client.Agent().ServiceRegister(reg); err != nil {
			t.Fatal(err)
		}
		// A TTL check starts critical, so a passing-only query must not see the instance yet.
		entries, _, err := client.Health().Service("web", "", true, opts(t))
		if err != nil {
			t.Fatal(err)
		}
		if len(entries) != 0 {
			t.Fatalf("passing instances before the TTL pass = %d, want 0", len(entries))
		}
		if err := client.Agent().UpdateTTL("web-1-ttl", "ok", api.HealthPassing); err != nil {
			t.Fatal(err)
		}
		eventually(t, 10*time.Second, func() error {
			entries, _, err := client.Health().Service("web", "", true, opts(t))
			if err != nil {
				return err
			}
			if len(entries) != 1 {
				return fmt.Errorf("passing instances = %d, want 1", len(entries))
			}
			e := entries[0]
			if e.Service.ID != "web-1" || e.Service.Port != 18080 || e.Checks.AggregatedStatus() != api.HealthPassing {
				return fmt.Errorf("entry = %s:%d status %s", e.Service.ID, e.Service.Port, e.Checks.AggregatedStatus())
			}
			return nil
		})
	})

	// The mesh code depends on these agent Connect endpoints (deprecated upstream, present in
	// 1.16); dev mode enables Connect with the built-in CA.
	t.Run("connect ca roots and leaf", func(t *testing.T) {
		roots, _, err := client.Agent().ConnectCARoots(opts(t))
		if err != nil {
			t.Fatal(err)
		}
		if len(roots.Roots) == 0 || roots.ActiveRootID == "" {
			t.Fatalf("CA roots = %+v, want an active root", roots)
		}
		leaf, _, err := client.Agent().ConnectCALeaf("web", opts(t))
		if err != nil {
			t.Fatal(err)
		}
		if leaf.Service != "web" || leaf.CertPEM == "" || leaf.PrivateKeyPEM == "" {
			t.Fatalf("leaf = service %q, cert %d bytes, key %d bytes", leaf.Service, len(leaf.CertPEM), len(leaf.PrivateKeyPEM))
		}
	})

	t.Run("kill makes the API fail", func(t *testing.T) {
		a.Kill()
		if a.Running() {
			t.Fatal("Running() = true after Kill")
		}
		if _, err := client.Agent().Self(); err == nil {
			t.Fatal("Agent().Self() succeeded against a killed agent")
		}
		if _, _, err := client.KV().Get("meshgate/smoke", opts(t)); err == nil {
			t.Fatal("KV().Get succeeded against a killed agent")
		}
		a.Kill() // idempotent
	})

	t.Run("restart answers on the same address", func(t *testing.T) {
		addr := a.HTTPAddr
		a.Restart(t)
		if a.HTTPAddr != addr {
			t.Fatalf("HTTPAddr changed across Restart: %q → %q", addr, a.HTTPAddr)
		}
		if !a.Running() {
			t.Fatal("Running() = false after Restart")
		}
		leader, err := client.Status().Leader()
		if err != nil || leader == "" {
			t.Fatalf("leader after restart = %q, %v", leader, err)
		}
		// The old client keeps working: it has only an address, no session with the agent.
		if _, err := client.KV().Put(&api.KVPair{Key: "meshgate/after", Value: []byte("again")}, wopts(t)); err != nil {
			t.Fatal(err)
		}
		pair, _, err := client.KV().Get("meshgate/after", opts(t))
		if err != nil || pair == nil || string(pair.Value) != "again" {
			t.Fatalf("Get after restart = %+v, %v", pair, err)
		}
	})

	t.Run("stop is graceful and idempotent", func(t *testing.T) {
		a.Stop()
		if a.Running() {
			t.Fatal("Running() = true after Stop")
		}
		a.Stop()
		_, err := client.Agent().Self()
		if err == nil {
			t.Fatal("Agent().Self() succeeded against a stopped agent")
		}
		if errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("Self() timed out instead of failing fast: %v", err)
		}
	})
}
