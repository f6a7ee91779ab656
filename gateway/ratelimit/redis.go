package ratelimit

import (
	"context"
	"errors"
	"fmt"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/redis/go-redis/v9/maintnotifications"

	"github.com/meshgate/meshgate/gateway/filter"
)

// DefaultRedisTimeout bounds every Redis command: a slow Redis must not slow requests.
const DefaultRedisTimeout = 50 * time.Millisecond

// probeInterval is how long a failed Redis is left alone before requests try it again. Without
// it, a black-holed Redis would add a full timeout to every request of every cluster policy.
const probeInterval = 500 * time.Millisecond

// errRedisDown stands for "not tried: Redis failed less than probeInterval ago".
var errRedisDown = errors.New("redis marked down after a recent failure")

// gcraScript is GCRA on Redis's own clock (TIME), so instances with skewed clocks still share
// one limit. Times are microseconds. KEYS[1] = bucket; ARGV = emission interval, burst
// tolerance. Returns {allowed, remaining, retry_after, reset}. The TAT is written with
// %.0f because Lua's default number formatting (%.14g) would round it.
const gcraScript = `
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local interval = tonumber(ARGV[1])
local tau = tonumber(ARGV[2])
local tat = tonumber(redis.call('GET', KEYS[1]))
if not tat or tat < now then tat = now end
local nxt = tat + interval
if nxt - now > tau then
  return {0, 0, nxt - tau - now, tat - now}
end
redis.call('SET', KEYS[1], string.format('%.0f', nxt), 'PX', math.ceil((nxt - now) / 1000))
return {1, math.floor((tau - (nxt - now)) / interval), 0, nxt - now}
`

type redisConn struct {
	opts      RedisOptions
	client    *redis.Client
	script    *redis.Script
	downUntil atomic.Int64 // unix nanoseconds; 0 = up
}

func normalizeRedis(r RedisOptions) RedisOptions {
	if r.Timeout <= 0 {
		r.Timeout = DefaultRedisTimeout
	}
	return r
}

func newRedisConn(o RedisOptions) *redisConn {
	client := redis.NewClient(&redis.Options{
		Addr:     o.Address,
		Password: o.Password,
		DB:       o.DB,
		// The command timeout is enforced by the socket deadlines, not a per-request context,
		// which keeps context and timer allocations off the request path.
		DialTimeout:  o.Timeout,
		ReadTimeout:  o.Timeout,
		WriteTimeout: o.Timeout,
		PoolTimeout:  o.Timeout,
		// A retry would double the worst-case latency; the fallback is the retry.
		MaxRetries:      -1,
		DialerRetries:   1, // go-redis would otherwise dial 5 times, 100ms apart, per request
		DisableIdentity: true,
		// Redis Enterprise maintenance hand-offs need RESP3 push handling we do not want on a
		// limiter; plain Redis never sends them.
		MaintNotificationsConfig: &maintnotifications.Config{Mode: maintnotifications.ModeDisabled},
	})
	return &redisConn{opts: o, client: client, script: redis.NewScript(gcraScript)}
}

func (c *redisConn) close() { _ = c.client.Close() }

func (c *redisConn) take(key string, g gcra) (decision, error) {
	us := func(ns int64) int64 { return max(ns/int64(time.Microsecond), 1) }
	res, err := c.script.Run(context.Background(), c.client, []string{key}, us(g.interval), us(g.tau)).Int64Slice()
	if err != nil {
		return decision{}, fmt.Errorf("redis gcra: %w", err)
	}
	if len(res) != 4 {
		return decision{}, fmt.Errorf("redis gcra: script returned %d values, want 4", len(res))
	}
	const us2ns = int64(time.Microsecond)
	return decision{allowed: res[0] == 1, remaining: res[1], retryAfter: res[2] * us2ns, reset: res[3] * us2ns}, nil
}

// cluster decides with Redis, and on failure as the policy's on_redis_error says.
func (f *Filter) cluster(r *filter.Request, key []byte) filter.Verdict {
	c := f.conn
	now := f.now().UnixNano()
	err := errRedisDown
	if now >= c.downUntil.Load() {
		var d decision
		if d, err = c.take(f.redisKey(key), f.rate); err == nil {
			f.recovered()
			return f.verdict(r, d)
		}
		c.downUntil.Store(now + int64(probeInterval))
		f.e.m.redisErrors.Inc()
	}
	f.failed(err)
	switch f.onError {
	case failOpen:
		f.e.m.allowed.Inc()
		return filter.Verdict{}
	case failClosed:
		f.e.m.unavailable.Inc()
		if r.Ctx != nil {
			r.Ctx.Response.Header.Set("Retry-After", "1")
		}
		return filter.Verdict{Status: 503, Reason: ReasonUnavailable}
	default:
		return f.local(r, key)
	}
}

// failed and recovered log and flag only the transitions, never every request.
func (f *Filter) failed(err error) {
	if f.e.failing.Load() || !f.e.failing.CompareAndSwap(false, true) {
		return
	}
	f.e.m.fallback.Set(1)
	f.log.Warn().Err(err).Str("redis", f.conn.opts.Address).Str("on_redis_error", modeName(f.onError)).
		Msg("cluster rate limit: redis unavailable; using the fallback until it recovers")
}

func (f *Filter) recovered() {
	if !f.e.failing.Load() || !f.e.failing.CompareAndSwap(true, false) {
		return
	}
	f.e.m.fallback.Set(0)
	f.log.Info().Str("redis", f.conn.opts.Address).Msg("cluster rate limit: redis recovered")
}

func modeName(m failMode) string {
	switch m {
	case failOpen:
		return OnErrorOpen
	case failClosed:
		return OnErrorClosed
	}
	return OnErrorLocal
}
