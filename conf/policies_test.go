package conf

import (
	"strconv"
	"strings"
	"testing"
	"time"
)

// policyBase is lines 1-9 of every policy test config; the policies under test start on line 10.
const policyBase = `listeners:
  - address: 127.0.0.1:8080
routes:
  - name: api
    match: { path_prefix: / }
    to: [ { service: origin } ]
    policies: [ limit, chaos ]
discovery:
  static: { origin: [ 127.0.0.1:9000 ] }
`

func TestPolicyDefaults(t *testing.T) {
	t.Parallel()
	c, err := parse("test.yaml", []byte(policyBase+`policies:
  limit:
    rate_limit: { requests: 100, cluster: true }
  chaos:
    fault:
      abort: { status: 503, percent: 1.5 }
  solo:
    rate_limit: { requests: 5, per: 1m, burst: 20, key: "header:X-Api-Key" }
redis: { address: 127.0.0.1:6379 }
`), testEnv)
	if err != nil {
		t.Fatal(err)
	}
	want := RateLimit{Requests: 100, Per: Duration(time.Second), Burst: 100, Key: "client_ip", Cluster: true, OnRedisError: "local", IPv6Prefix: 64}
	if got := *c.Policies["limit"].RateLimit; got != want {
		t.Errorf("limit = %+v, want %+v", got, want)
	}
	want = RateLimit{Requests: 5, Per: Duration(time.Minute), Burst: 20, Key: "header:X-Api-Key"}
	if got := *c.Policies["solo"].RateLimit; got != want {
		t.Errorf("solo = %+v, want %+v (on_redis_error stays empty for a local limit)", got, want)
	}
	if a := c.Policies["chaos"].Fault.Abort; a.Status != 503 || a.Percent != 1.5 {
		t.Errorf("chaos abort = %+v", a)
	}
	if c.Redis.Timeout.D() != 50*time.Millisecond {
		t.Errorf("redis timeout = %s, want 50ms", c.Redis.Timeout)
	}
	if got := c.Routes[0].Policies; len(got) != 2 || got[0] != "limit" || got[1] != "chaos" {
		t.Errorf("route policies = %v", got)
	}
	// Idempotent: the effective config re-parses to itself.
	out, err := Marshal(c)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := parse("effective.yaml", out, nil); err != nil {
		t.Fatalf("effective config does not re-parse: %v\n%s", err, out)
	}
}

func TestPolicyErrors(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		yaml string // appended to policyBase (line 10 onward)
		want []wantErr
	}{
		{
			name: "both blocks and neither",
			yaml: `policies:
  limit:
    rate_limit: { requests: 1 }
    fault: { abort: { status: 500, percent: 1 } }
  chaos: {}
`,
			want: []wantErr{
				{11, "policies.limit", "must be set (got 2"},
				{14, "policies.chaos", "headers must be set"},
			},
		},
		{
			name: "rate limit values",
			yaml: `policies:
  chaos: { fault: { delay: { duration: 1s, percent: 10 } } }
  limit:
    rate_limit:
      requests: 0
      per: -1s
      burst: -2
      key: cookie
      on_redis_error: maybe
`,
			want: []wantErr{
				{14, "policies.limit.rate_limit.requests", "must be positive (got 0)"},
				{15, "policies.limit.rate_limit.per", "must be positive"},
				{16, "policies.limit.rate_limit.burst", "must not be negative"},
				{17, "policies.limit.rate_limit.key", `"cookie" is not one of client_ip, route, identity, header:<Name>`},
				{18, "policies.limit.rate_limit.on_redis_error", `"maybe" is not one of local, open, closed`},
			},
		},
		{
			name: "header key needs a valid name",
			yaml: `policies:
  chaos: { fault: { abort: { status: 500, percent: 1 } } }
  limit: { rate_limit: { requests: 1, key: "header:" } }
  other: { rate_limit: { requests: 1, key: "header:X Y" } }
`,
			want: []wantErr{
				{12, "policies.limit.rate_limit.key", `"header:" is not one of`},
				{13, "policies.other.rate_limit.key", `"header:X Y" is not one of`},
			},
		},
		{
			name: "ipv6 prefix",
			yaml: `policies:
  chaos: { fault: { abort: { status: 500, percent: 1 } } }
  limit: { rate_limit: { requests: 1, ipv6_prefix: 129 } }
  other: { rate_limit: { requests: 1, key: route, ipv6_prefix: 48 } }
  fine: { rate_limit: { requests: 1, ipv6_prefix: 56 } }
`,
			want: []wantErr{
				{12, "policies.limit.rate_limit.ipv6_prefix", "must be 1..128 (got 129)"},
				{13, "policies.other.rate_limit.ipv6_prefix", `only applies to key: client_ip (key is "route")`},
			},
		},
		{
			name: "cluster without redis",
			yaml: `policies:
  chaos: { fault: { abort: { status: 500, percent: 1 } } }
  limit:
    rate_limit: { requests: 1, cluster: true }
`,
			want: []wantErr{{13, "policies.limit.rate_limit.cluster", "needs the top-level redis block"}},
		},
		{
			name: "fault values",
			yaml: `policies:
  limit: { rate_limit: { requests: 1 } }
  chaos:
    fault:
      delay: { duration: 0s, percent: 101 }
      abort: { status: 302, percent: -1 }
      header: "X Chaos"
  empty: { fault: { header: X-Chaos } }
`,
			want: []wantErr{
				{14, "policies.chaos.fault.delay.duration", "must be positive"},
				{14, "policies.chaos.fault.delay.percent", "must be a percentage 0..100 (got 101)"},
				{15, "policies.chaos.fault.abort.status", "must be an HTTP status 400..599 (got 302)"},
				{15, "policies.chaos.fault.abort.percent", "must be a percentage 0..100 (got -1)"},
				{16, "policies.chaos.fault.header", `"X Chaos" is not a valid header name`},
				{17, "policies.empty.fault", "at least one of delay, abort must be set"},
			},
		},
		{
			name: "redis block",
			yaml: `policies:
  limit: { rate_limit: { requests: 1, cluster: true } }
  chaos: { fault: { abort: { status: 500, percent: 1 } } }
redis:
  address: localhost
  db: -1
  timeout: -5ms
`,
			want: []wantErr{
				{14, "redis.address", `invalid address "localhost": want host:port`},
				{15, "redis.db", "must not be negative"},
				{16, "redis.timeout", "must not be negative"},
			},
		},
		{
			name: "bad policy name",
			yaml: `policies:
  limit: { rate_limit: { requests: 1 } }
  chaos: { fault: { abort: { status: 500, percent: 1 } } }
  "bad name": { rate_limit: { requests: 1 } }
`,
			want: []wantErr{{13, "policies.bad name", `invalid policy name "bad name"`}},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			checkErrors(t, policyBase+tt.yaml, tt.want)
		})
	}
}

// Route references are checked against the policies map, with the index of the entry.
func TestRoutePolicyReferences(t *testing.T) {
	t.Parallel()
	yaml := `listeners: [ { address: 127.0.0.1:8080 } ]
routes:
  - name: a
    to: [ { service: origin } ]
    policies:
      - limit
      - nope
      - limit
discovery: { static: { origin: [ 127.0.0.1:9000 ] } }
policies:
  limit: { rate_limit: { requests: 1 } }
`
	checkErrors(t, yaml, []wantErr{
		{7, "routes[0].policies[1]", `no policy named "nope" in policies`},
		{8, "routes[0].policies[2]", `policy "limit" is listed twice (also policies[0])`},
	})
}

func checkErrors(t *testing.T, yaml string, want []wantErr) {
	t.Helper()
	c, err := parse("test.yaml", []byte(yaml), testEnv)
	if err == nil {
		t.Fatalf("no error; config %+v", c)
	}
	es, ok := AsErrors(err)
	if !ok {
		t.Fatalf("error %T is not Errors: %v", err, err)
	}
	for _, w := range want {
		if !hasErr(es, w) {
			t.Errorf("missing error %d %q %q in:\n%v", w.line, w.path, w.msg, err)
		}
		if prefix := "test.yaml:" + strconv.Itoa(w.line) + ": " + w.path + ": "; !strings.Contains(err.Error(), prefix) {
			t.Errorf("rendered errors lack %q:\n%v", prefix, err)
		}
	}
	if len(es) != len(want) {
		t.Errorf("got %d errors, want %d:\n%v", len(es), len(want), err)
	}
}
