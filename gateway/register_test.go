package gateway

import (
	"context"
	"fmt"
	"maps"
	"net"
	"net/http"
	"slices"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/consul/api"

	"github.com/meshgate/meshgate/conf"
	"github.com/meshgate/meshgate/internal/consuldev"
)

func registerEdgeConfig(origin, consulAddr string) string {
	return fmt.Sprintf(`
admin: { address: 127.0.0.1:0 }
listeners:
  - name: public
    address: 127.0.0.1:0
routes:
  - name: all
    match: { path_prefix: / }
    to: [ { service: origin } ]
discovery:
  static:
    origin: [ %s ]
  consul:
    address: %s
    register:
      name: edge
      tags: [ edge, public ]
      meta: { version: "1" }
      check: http            # every 2s (the default)
      drain_wait: 10s
# ready_delay keeps serving a while after Consul stopped reporting us, so the order the test
# asserts does not depend on how fast two goroutines get scheduled. It is short next to the
# check interval: without the maintenance step the HTTP check would almost always still pass
# when the listener closes (the test then fails), as /ready's 503 is only seen at the next run.
shutdown: { ready_delay: 150ms, drain_timeout: 5s }
access_log: { output: "off" }
`, origin, consulAddr)
}

// drainObservation is what an outside client saw during shutdown.
type drainObservation struct {
	mu             sync.Mutex
	notPassingAt   time.Time // health endpoint first stopped listing the instance
	listenerDownAt time.Time // first request that could not connect
	servedAfter    int       // requests answered 200 after notPassingAt
	healthErr      error
}

// watchHealth follows /v1/health/service/<name>?passing with blocking queries, as a caller's
// discovery would, until the instance id is no longer listed.
func (o *drainObservation) watchHealth(ctx context.Context, client *api.Client, name, id string) {
	var index uint64
	for ctx.Err() == nil {
		q := (&api.QueryOptions{WaitIndex: index, WaitTime: 5 * time.Second}).WithContext(ctx)
		entries, meta, err := client.Health().Service(name, "", true, q)
		if err != nil {
			o.mu.Lock()
			o.healthErr = err
			o.mu.Unlock()
			return
		}
		listed := slices.ContainsFunc(entries, func(e *api.ServiceEntry) bool { return e.Service.ID == id })
		if !listed {
			o.mu.Lock()
			o.notPassingAt = time.Now()
			o.mu.Unlock()
			return
		}
		index = meta.LastIndex
	}
}

// probeListener sends requests on fresh connections until one cannot connect.
func (o *drainObservation) probeListener(ctx context.Context, url string) {
	client := &http.Client{Transport: &http.Transport{DisableKeepAlives: true}, Timeout: 2 * time.Second}
	defer client.CloseIdleConnections()
	for ctx.Err() == nil {
		resp, err := client.Get(url)
		now := time.Now()
		if err != nil {
			o.mu.Lock()
			o.listenerDownAt = now
			o.mu.Unlock()
			return
		}
		resp.Body.Close()
		o.mu.Lock()
		if resp.StatusCode == http.StatusOK && !o.notPassingAt.IsZero() && o.notPassingAt.Before(now) {
			o.servedAfter++
		}
		o.mu.Unlock()
		time.Sleep(2 * time.Millisecond) // pacing only; the order is asserted from timestamps
	}
}

// TestEdgeRegistersAndDrainsThroughConsul runs a Server with discovery.consul.register against a
// real agent: the instance appears with its tags, meta, address and bound port and passes its
// HTTP check on /ready; at shutdown a client following Consul sees it leave the passing set
// while the listener still answers, the listener closes after that, and then the service is
// gone from the agent and the catalog.
func TestEdgeRegistersAndDrainsThroughConsul(t *testing.T) {
	t.Parallel()
	agent := consuldev.Start(t)
	client, err := api.NewClient(&api.Config{Address: agent.HTTPAddr})
	if err != nil {
		t.Fatal(err)
	}
	origin, _ := startUpstream(t, "origin", nil)
	e := startEdge(t, registerEdgeConfig(hostport(origin), agent.HTTPAddr))
	_, port, _ := net.SplitHostPort(e.addr)
	p, _ := strconv.Atoi(port)
	id := conf.RegistrationID("edge", "127.0.0.1", p)

	waitFor(t, "registration in the agent", func() bool {
		_, _, err := client.Agent().Service(id, nil)
		return err == nil
	})
	svc, _, err := client.Agent().Service(id, nil)
	if err != nil {
		t.Fatal(err)
	}
	if svc.Service != "edge" || svc.Address != "127.0.0.1" || svc.Port != p ||
		!slices.Equal(svc.Tags, []string{"edge", "public"}) || !maps.Equal(svc.Meta, map[string]string{"version": "1"}) {
		t.Fatalf("registered %+v", svc)
	}
	checks, err := client.Agent().Checks()
	if err != nil {
		t.Fatal(err)
	}
	if c := checks["service:"+id]; c == nil || c.Type != "http" {
		t.Fatalf("check = %+v, want an http check", c)
	}
	// The HTTP check's first run is staggered within its interval; give it a few.
	deadline := time.Now().Add(15 * time.Second)
	for {
		entries, _, err := client.Health().Service("edge", "public", true, nil)
		if err != nil {
			t.Fatal(err)
		}
		if len(entries) == 1 && entries[0].Service.ID == id {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("edge not passing in consul after 15s: %+v", entries)
		}
		time.Sleep(50 * time.Millisecond)
	}

	obs := &drainObservation{}
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	var wg sync.WaitGroup
	wg.Add(2)
	go func() { defer wg.Done(); obs.watchHealth(ctx, client, "edge", id) }()
	go func() { defer wg.Done(); obs.probeListener(ctx, e.url+"/") }()
	// The probe must be serving before shutdown starts, or "down" could mean "not yet up".
	waitFor(t, "first probe", func() bool {
		resp, err := http.Get(e.url + "/")
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusOK
	})

	shutdownAt := time.Now()
	e.stop(t) // cancels Run's ctx and waits for Run to return
	stoppedAt := time.Now()
	wg.Wait()

	obs.mu.Lock()
	defer obs.mu.Unlock()
	if obs.healthErr != nil {
		t.Fatalf("health watch: %v", obs.healthErr)
	}
	if obs.notPassingAt.IsZero() || obs.listenerDownAt.IsZero() {
		t.Fatalf("observed not passing at %v, listener down at %v", obs.notPassingAt, obs.listenerDownAt)
	}
	t.Logf("shutdown → not passing %s, → listener down %s, → Run returned %s; %d requests served while not passing",
		obs.notPassingAt.Sub(shutdownAt).Round(time.Millisecond), obs.listenerDownAt.Sub(shutdownAt).Round(time.Millisecond),
		stoppedAt.Sub(shutdownAt).Round(time.Millisecond), obs.servedAfter)
	if obs.notPassingAt.Before(shutdownAt) {
		t.Fatalf("instance left the passing set before shutdown began")
	}
	if !obs.notPassingAt.Before(obs.listenerDownAt) {
		t.Fatalf("listener stopped accepting (%s) before consul stopped reporting the instance as passing (%s)",
			obs.listenerDownAt.Format(time.StampMicro), obs.notPassingAt.Format(time.StampMicro))
	}
	if obs.servedAfter == 0 {
		t.Fatal("no request was served after consul stopped reporting the instance: callers would have been cut off")
	}

	// Deregistration happens before Run returns.
	if _, _, err := client.Agent().Service(id, nil); err == nil {
		t.Fatal("agent still has the service after Run returned")
	}
	waitFor(t, "service gone from the catalog", func() bool {
		cs, _, err := client.Catalog().Service("edge", "", nil)
		return err == nil && len(cs) == 0
	})
}

// TestRegistrationReadyURL: a wildcard admin address is probed on loopback.
func TestRegistrationReadyURL(t *testing.T) {
	t.Parallel()
	tests := []struct {
		addr net.Addr
		want string
	}{
		{&net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 9901}, "http://127.0.0.1:9901/ready"},
		{&net.TCPAddr{IP: net.IPv4zero, Port: 9901}, "http://127.0.0.1:9901/ready"},
		{&net.TCPAddr{IP: net.IPv6unspecified, Port: 9901}, "http://[::1]:9901/ready"},
		{&net.TCPAddr{IP: net.ParseIP("10.1.2.3"), Port: 80}, "http://10.1.2.3:80/ready"},
	}
	for _, tt := range tests {
		if got := readyURL(tt.addr); got != tt.want {
			t.Errorf("readyURL(%s) = %q, want %q", tt.addr, got, tt.want)
		}
	}
}

// TestSameRegistration: register is applied once per process, so a reload warns exactly when
// the register block differs (added, removed, or any field changed).
func TestSameRegistration(t *testing.T) {
	t.Parallel()
	base := conf.Registration{Name: "edge", Tags: []string{"a"}, Meta: map[string]string{"k": "v"}, Check: "http"}
	tags, meta, check := base, base, base
	tags.Tags = []string{"b"}
	meta.Meta = map[string]string{"k": "w"}
	check.Check = "ttl"
	same := base
	same.Tags = []string{"a"}
	tests := []struct {
		name string
		a, b *conf.Registration
		want bool
	}{
		{"both off", nil, nil, true},
		{"added", nil, &base, false},
		{"removed", &base, nil, false},
		{"equal copies", &base, &same, true},
		{"tags", &base, &tags, false},
		{"meta", &base, &meta, false},
		{"check", &base, &check, false},
	}
	for _, tt := range tests {
		if got := sameRegistration(tt.a, tt.b); got != tt.want {
			t.Errorf("%s: sameRegistration = %v, want %v", tt.name, got, tt.want)
		}
	}
}
