package ratelimit

import (
	"net"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/redis/go-redis/v9"
	"github.com/redis/go-redis/v9/maintnotifications"
	"github.com/rs/zerolog"

	"github.com/meshgate/meshgate/gateway/ratelimit/redistest"
	"github.com/meshgate/meshgate/internal/syncbuf"
)

// refusedAddr is a loopback address nothing listens on: connections are refused at once.
func refusedAddr(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	_ = l.Close()
	return addr
}

func TestRedisFailureModes(t *testing.T) {
	t.Parallel()
	tests := []struct {
		mode string
		want []int // statuses of five requests from one client, limit 2 per minute
	}{
		{OnErrorLocal, []int{0, 0, 429, 429, 429}},
		{"", []int{0, 0, 429, 429, 429}}, // the default is local
		{OnErrorOpen, []int{0, 0, 0, 0, 0}},
		{OnErrorClosed, []int{503, 503, 503, 503, 503}},
	}
	for _, tt := range tests {
		t.Run("mode="+tt.mode, func(t *testing.T) {
			t.Parallel()
			logs := &syncbuf.Buffer{}
			m, reg := newManager(t, Options{Logger: zerolog.New(logs)})
			m.SetRedis(&RedisOptions{Address: refusedAddr(t)})
			f := mustFilter(t, m, Policy{Name: "p", Requests: 2, Per: time.Minute, Cluster: true, OnRedisError: tt.mode})
			for i, want := range tt.want {
				r := request("10.0.0.1", nil)
				v := f.Request(r)
				if v.Status != want {
					t.Fatalf("request %d: status %d, want %d", i, v.Status, want)
				}
				if want == 503 && (v.Reason != ReasonUnavailable || string(r.Ctx.Response.Header.Peek("Retry-After")) != "1") {
					t.Fatalf("closed verdict %+v, Retry-After %q", v, r.Ctx.Response.Header.Peek("Retry-After"))
				}
			}
			if got := metricValue(t, reg, "meshgate_ratelimit_fallback", "policy", "p"); got != 1 {
				t.Errorf("fallback gauge = %v, want 1", got)
			}
			if got := metricValue(t, reg, "meshgate_ratelimit_redis_errors_total", "policy", "p"); got < 1 {
				t.Errorf("redis errors = %v, want ≥ 1", got)
			}
			if n := strings.Count(logs.String(), "redis unavailable"); n != 1 {
				t.Errorf("logged the failure %d times, want once:\n%s", n, logs)
			}
		})
	}
}

func TestRedisClusterLimit(t *testing.T) {
	t.Parallel()
	srv := redistest.Start(t)
	logs := &syncbuf.Buffer{}
	var ms [2]*Manager
	var fs [2]*Filter
	var reg0 *prometheus.Registry
	p := Policy{Name: "shared", Requests: 10, Per: time.Minute, Cluster: true, OnRedisError: OnErrorLocal}
	for i := range ms {
		var reg *prometheus.Registry
		ms[i], reg = newManager(t, Options{Logger: zerolog.New(logs)})
		if i == 0 {
			reg0 = reg
		}
		ms[i].SetRedis(&RedisOptions{Address: srv.Addr, Timeout: time.Second})
		fs[i] = mustFilter(t, ms[i], p)
	}
	allowedOf := func(ip string, n int) int {
		allowed := 0
		for i := range n {
			if v := fs[i%2].Request(request(ip, nil)); v.Status == 0 {
				allowed++
			} else if v.Status != 429 {
				t.Fatalf("request %d: unexpected verdict %+v", i, v)
			}
		}
		return allowed
	}

	// Two instances together allow the limit once, not twice (one more may slip in as the
	// bucket refills 1 per 6s while the test runs).
	if got := allowedOf("10.0.0.1", 30); got < 10 || got > 11 {
		t.Fatalf("two instances allowed %d of 30, want ~10 (the shared limit)", got)
	}
	r := request("10.0.0.1", nil)
	if v := fs[0].Request(r); v.Status != 429 {
		t.Fatalf("verdict %+v, want 429", v)
	}
	for _, h := range []string{"Retry-After", "RateLimit-Reset"} {
		if got := string(r.Ctx.Response.Header.Peek(h)); got == "" || got == "0" {
			t.Errorf("%s = %q on a Redis-decided 429", h, got)
		}
	}

	// Outage: each instance falls back to its own local bucket (fresh: cluster mode did not
	// consume it), so one instance alone allows the limit again, then limits.
	srv.Stop()
	local := 0
	for range 15 {
		if fs[0].Request(request("10.0.0.1", nil)).Status == 0 {
			local++
		}
	}
	if local != 10 {
		t.Fatalf("during the outage one instance allowed %d of 15, want its local 10", local)
	}

	// Recovery: once Redis is back, cluster limiting resumes (bounded wait for the probe).
	srv.Start()
	deadline := time.Now().Add(10 * time.Second)
	if metricValue(t, reg0, "meshgate_ratelimit_fallback", "policy", "shared") != 1 {
		t.Fatal("fallback gauge is not 1 during the outage")
	}
	for metricValue(t, reg0, "meshgate_ratelimit_fallback", "policy", "shared") != 0 {
		if time.Now().After(deadline) {
			t.Fatal("cluster limit did not recover within 10s of Redis restarting")
		}
		fs[0].Request(request("10.9.9.9", nil))
		time.Sleep(20 * time.Millisecond)
	}
	if got := allowedOf("10.0.0.2", 30); got < 10 || got > 11 {
		t.Fatalf("after recovery two instances allowed %d of 30, want ~10", got)
	}
	if !strings.Contains(logs.String(), "redis recovered") {
		t.Errorf("recovery not logged:\n%s", logs)
	}
}

func TestSetRedisKeepsUnchangedClient(t *testing.T) {
	t.Parallel()
	m, _ := newManager(t, Options{})
	m.SetRedis(&RedisOptions{Address: "127.0.0.1:1"})
	c := m.conn
	m.SetRedis(&RedisOptions{Address: "127.0.0.1:1", Timeout: DefaultRedisTimeout})
	if m.conn != c {
		t.Fatal("unchanged redis options replaced the client")
	}
	m.SetRedis(&RedisOptions{Address: "127.0.0.1:2"})
	if m.conn == c || len(m.retired) != 1 {
		t.Fatal("changed redis options kept the old client")
	}
	m.SetRedis(nil)
	if _, err := m.Filter(Policy{Name: "p", Requests: 1, Per: time.Second, Cluster: true}); err == nil {
		t.Fatal("cluster policy accepted without redis")
	}
}

// TestRedisKeyNamesHideHeaderValues lists the keys in a real Redis: a header-keyed policy must
// not put the header's value (often an API key) into a key name, and IPv6 clients are named by
// their /64.
func TestRedisKeyNamesHideHeaderValues(t *testing.T) {
	t.Parallel()
	srv := redistest.Start(t)
	m, _ := newManager(t, Options{Logger: zerolog.Nop()})
	m.SetRedis(&RedisOptions{Address: srv.Addr, Timeout: time.Second})
	const secret = "sk_live_SECRET-api-key-0123456789"
	hf := mustFilter(t, m, Policy{Name: "by-key", Requests: 100, Per: time.Minute, Key: "header:X-Api-Key", Cluster: true})
	ipf := mustFilter(t, m, Policy{Name: "by-ip", Requests: 100, Per: time.Minute, Cluster: true})
	if v := hf.Request(request("10.0.0.1", map[string]string{"X-Api-Key": secret})); v.Status != 0 {
		t.Fatalf("header verdict %+v", v)
	}
	for _, ip := range []string{"2001:db8:1:2::5", "2001:db8:1:2:ffff::9", "10.0.0.7"} {
		if v := ipf.Request(request(ip, nil)); v.Status != 0 {
			t.Fatalf("%s verdict %+v", ip, v)
		}
	}

	client := redis.NewClient(&redis.Options{Addr: srv.Addr, DisableIdentity: true,
		MaintNotificationsConfig: &maintnotifications.Config{Mode: maintnotifications.ModeDisabled}})
	defer client.Close()
	keys, err := client.Keys(t.Context(), "meshgate:rl:*").Result()
	if err != nil {
		t.Fatal(err)
	}
	slices.Sort(keys)
	want := []string{
		"meshgate:rl:by-ip:10.0.0.7",
		"meshgate:rl:by-ip:2001:db8:1:2::/64", // both addresses, one bucket
		"meshgate:rl:by-key:sha256:",
	}
	if len(keys) != len(want) {
		t.Fatalf("keys = %q, want %d", keys, len(want))
	}
	for i, k := range keys {
		if !strings.HasPrefix(k, want[i]) {
			t.Errorf("key %q, want prefix %q", k, want[i])
		}
		if strings.Contains(k, "SECRET") {
			t.Errorf("header value in key name %q", k)
		}
	}
	if hashed := strings.TrimPrefix(keys[2], want[2]); len(hashed) != 32 {
		t.Errorf("hashed key part %q: want 32 hex digits", hashed)
	}
}
