package hmac

import (
	"testing"
	"time"

	"github.com/meshgate/meshgate/gateway/filter"
	"github.com/meshgate/meshgate/gateway/ratelimit/redistest"
	"github.com/meshgate/meshgate/internal/await"
)

// TestRedisReplaySharedBetweenInstances: two filters (two gateway instances, each with its own
// local cache) on one real Redis: a request accepted by one is a replay at the other. With
// Redis down the check cannot run and the request is refused with 503, without burning the
// signature; once Redis is back the same request is accepted.
func TestRedisReplaySharedBetweenInstances(t *testing.T) {
	t.Parallel()
	srv := redistest.Start(t)
	instance := func() *Filter {
		store := NewRedisReplay(RedisOptions{Address: srv.Addr, Timeout: time.Second})
		t.Cleanup(func() { _ = store.Close() })
		f, err := New(Options{Name: "signed", Secrets: map[string][]byte{"client-one": secret}, SignedHeaders: []string{"host"},
			Store: store, Now: func() time.Time { return testNow }})
		if err != nil {
			t.Fatal(err)
		}
		return f
	}
	a, b := instance(), instance()
	if v, _ := run(a, good().build()); v.Status != 0 {
		t.Fatalf("first, at a: %+v", v)
	}
	if v, _ := run(b, good().build()); v.Status != 401 || v.Reason != ReasonReplayed {
		t.Fatalf("replay at b: %+v, want 401 %s", v, ReasonReplayed)
	}

	s := good()
	s.date = testNow.Add(time.Second) // another signature
	srv.Stop()
	if v, _ := run(a, s.build()); v.Status != 503 || v.Reason != ReasonStoreDown {
		t.Fatalf("redis down: %+v, want 503 %s", v, ReasonStoreDown)
	}
	srv.Start()
	// A pooled connection from before the restart may fail once more (503, nothing recorded).
	var last filter.Verdict
	await.Until(t, 10*time.Second, "redis to answer again", func() bool {
		last, _ = run(a, s.build())
		return last.Status != 503
	})
	if last.Status != 0 {
		t.Fatalf("after redis came back, the refused request's signature must still be usable: %+v", last)
	}
	if v, _ := run(b, s.build()); v.Reason != ReasonReplayed {
		t.Fatalf("and then a replay at b: %+v", v)
	}
}
