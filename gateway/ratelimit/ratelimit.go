package ratelimit

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"net/netip"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
	"unsafe"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/rs/zerolog"

	"github.com/meshgate/meshgate/gateway/filter"
)

// Reason codes rendered in the JSON error body and the access log.
const (
	ReasonLimited     = "rate_limited"
	ReasonUnavailable = "rate_limit_unavailable"
)

// Key sources and failure modes, as spelled in the config.
const (
	KeyClientIP     = "client_ip"
	KeyRoute        = "route"
	KeyIdentity     = "identity"
	KeyHeaderPrefix = "header:"

	OnErrorLocal  = "local"
	OnErrorOpen   = "open"
	OnErrorClosed = "closed"
)

// DefaultMaxKeys bounds the keys one policy tracks.
const DefaultMaxKeys = 100_000

// DefaultIPv6Prefix is how many leading bits of an IPv6 client address name its bucket: a
// single host is routinely handed a whole /64 (SLAAC, RFC 6177), so keying per /128 would give
// one client 2^64 buckets. IPv4 clients are always keyed per address.
const DefaultIPv6Prefix = 64

// retireAfter is how long a replaced Redis client stays open: requests of the previous config
// generation may still be using it, and no route timeout should reasonably exceed this.
const retireAfter = time.Minute

// ErrNoRedis is returned by Manager.Filter for a cluster policy when no Redis is configured.
var ErrNoRedis = errors.New("ratelimit: cluster limit needs redis")

// Options configures a Manager.
type Options struct {
	// Registerer receives the ratelimit metrics. Required.
	Registerer prometheus.Registerer
	Logger     zerolog.Logger
	// MaxKeys is the most keys one policy tracks; default DefaultMaxKeys.
	MaxKeys int
	// Now is the clock; default time.Now. Tests drive refills with a fake one.
	Now func() time.Time
}

// Policy is one named limit: Requests per Per, bursting to Burst.
type Policy struct {
	Name     string
	Requests int
	Per      time.Duration
	Burst    int    // 0 = Requests
	Key      string // client_ip (default), route, identity, header:<Name>
	Cluster  bool   // enforce across instances through Redis
	// OnRedisError: local (default), open or closed.
	OnRedisError string
	// IPv6Prefix: client_ip keys of IPv6 clients are their first IPv6Prefix bits (1..128);
	// 0 = DefaultIPv6Prefix.
	IPv6Prefix int
}

// RedisOptions is the connection used by cluster policies.
type RedisOptions struct {
	Address  string
	Password string
	DB       int
	Timeout  time.Duration // per command; 0 = 50ms
}

// Manager owns the limiter state of every policy and the Redis client; create one per process
// and ask it for filters on every config generation.
type Manager struct {
	opts    Options
	epoch   time.Time
	metrics metrics

	mu      sync.Mutex
	entries map[string]*entry
	conn    *redisConn
	retired []retiredConn
	closed  bool
}

type retiredConn struct {
	conn  *redisConn
	timer *time.Timer
}

// entry is the state of one policy that survives reloads.
type entry struct {
	local   localParams
	store   *store
	failing atomic.Bool // Redis is failing for this policy (gauge and log edges)
	m       policyMetrics
}

// localParams are the fields whose change invalidates the buckets.
type localParams struct {
	rate       gcra
	key        string
	ipv6Prefix int
}

// New creates a Manager; it registers the metrics and fails if they already exist.
func New(opts Options) (*Manager, error) {
	if opts.Registerer == nil {
		return nil, errors.New("ratelimit: a prometheus registerer is required")
	}
	if opts.MaxKeys < 0 {
		return nil, fmt.Errorf("ratelimit: max keys must not be negative (got %d)", opts.MaxKeys)
	}
	if opts.MaxKeys == 0 {
		opts.MaxKeys = DefaultMaxKeys
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	m := &Manager{opts: opts, epoch: opts.Now(), entries: make(map[string]*entry)}
	var err error
	if m.metrics, err = newMetrics(opts.Registerer); err != nil {
		return nil, err
	}
	return m, nil
}

// SetRedis sets the Redis used by cluster policies created from now on; nil removes it. An
// unchanged address and credentials keep the current client (and its connections). A replaced
// client is closed a minute later so the previous generation's requests can finish with it.
func (m *Manager) SetRedis(r *RedisOptions) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.closed {
		return
	}
	if r != nil && m.conn != nil && m.conn.opts == normalizeRedis(*r) {
		return
	}
	if old := m.conn; old != nil {
		m.retired = append(m.retired, retiredConn{conn: old, timer: time.AfterFunc(retireAfter, old.close)})
	}
	m.conn = nil
	if r != nil {
		m.conn = newRedisConn(normalizeRedis(*r))
	}
}

// Filter returns the filter for policy p. Its buckets are the ones the previous filter of the
// same name used, unless requests, per, burst or key changed.
func (m *Manager) Filter(p Policy) (*Filter, error) {
	kind, header, err := parseKey(p.Key)
	if err != nil {
		return nil, fmt.Errorf("ratelimit: policy %q: %w", p.Name, err)
	}
	mode, err := parseMode(p.OnRedisError)
	if err != nil {
		return nil, fmt.Errorf("ratelimit: policy %q: %w", p.Name, err)
	}
	switch {
	case p.Name == "":
		return nil, errors.New("ratelimit: policy name is required")
	case p.Requests <= 0:
		return nil, fmt.Errorf("ratelimit: policy %q: requests must be positive (got %d)", p.Name, p.Requests)
	case p.Per <= 0:
		return nil, fmt.Errorf("ratelimit: policy %q: per must be positive (got %s)", p.Name, p.Per)
	case p.Burst < 0:
		return nil, fmt.Errorf("ratelimit: policy %q: burst must not be negative (got %d)", p.Name, p.Burst)
	case p.IPv6Prefix < 0 || p.IPv6Prefix > 128:
		return nil, fmt.Errorf("ratelimit: policy %q: ipv6 prefix must be 1..128 (got %d)", p.Name, p.IPv6Prefix)
	}
	v6 := p.IPv6Prefix
	if v6 == 0 {
		v6 = DefaultIPv6Prefix
	}
	burst := p.Burst
	if burst == 0 {
		burst = p.Requests
	}
	interval := max(int64(p.Per)/int64(p.Requests), 1)
	lp := localParams{rate: gcra{interval: interval, tau: interval * int64(burst)}, key: p.Key}
	if kind == keyClientIP {
		lp.ipv6Prefix = v6 // only client_ip buckets depend on it
	}

	m.mu.Lock()
	defer m.mu.Unlock()
	if m.closed {
		return nil, errors.New("ratelimit: manager is closed")
	}
	var conn *redisConn
	if p.Cluster {
		if m.conn == nil {
			return nil, fmt.Errorf("ratelimit: policy %q: %w", p.Name, ErrNoRedis)
		}
		conn = m.conn
	}
	e := m.entries[p.Name]
	if e == nil || e.local != lp {
		e = &entry{local: lp, store: newStore(m.opts.MaxKeys, m.epoch), m: m.metrics.bind(p.Name)}
		m.entries[p.Name] = e
	}
	if !p.Cluster && e.failing.CompareAndSwap(true, false) {
		// No longer a cluster policy: nothing is falling back any more.
		e.m.fallback.Set(0)
	}
	f := &Filter{
		name:      p.Name,
		kind:      kind,
		header:    header,
		v6Bits:    v6,
		rate:      lp.rate,
		e:         e,
		now:       m.opts.Now,
		epoch:     m.epoch,
		conn:      conn,
		onError:   mode,
		log:       m.opts.Logger.With().Str("policy", p.Name).Logger(),
		limitHdr:  []byte(strconv.Itoa(p.Requests)),
		policyHdr: []byte(policyHeader(p.Requests, p.Per, burst)),
	}
	if conn != nil {
		f.redisPrefix = "meshgate:rl:" + p.Name + ":"
	}
	return f, nil
}

// Retain drops the state of every policy not named, after a reload removed them.
func (m *Manager) Retain(names []string) {
	keep := make(map[string]bool, len(names))
	for _, n := range names {
		keep[n] = true
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	for name := range m.entries {
		if !keep[name] {
			delete(m.entries, name)
			m.metrics.unbind(name)
		}
	}
}

// Keys reports how many keys policy name tracks (0 when unknown); for tests and diagnostics.
func (m *Manager) Keys(name string) int {
	m.mu.Lock()
	e := m.entries[name]
	m.mu.Unlock()
	if e == nil {
		return 0
	}
	return e.store.len()
}

// Close closes the Redis clients. Filters already handed out keep working; their cluster
// policies then behave as if Redis were down.
func (m *Manager) Close() {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.closed = true
	for _, r := range m.retired {
		if r.timer.Stop() {
			r.conn.close()
		}
	}
	m.retired = nil
	if m.conn != nil {
		m.conn.close()
		m.conn = nil
	}
}

type keyKind uint8

const (
	keyClientIP keyKind = iota
	keyRoute
	keyIdentity
	keyHeader
)

func parseKey(k string) (keyKind, string, error) {
	switch k {
	case "", KeyClientIP:
		return keyClientIP, "", nil
	case KeyRoute:
		return keyRoute, "", nil
	case KeyIdentity:
		return keyIdentity, "", nil
	}
	if h, ok := strings.CutPrefix(k, KeyHeaderPrefix); ok && h != "" {
		return keyHeader, h, nil
	}
	return 0, "", fmt.Errorf("key %q is not one of client_ip, route, identity, header:<Name>", k)
}

type failMode uint8

const (
	failLocal failMode = iota
	failOpen
	failClosed
)

func parseMode(s string) (failMode, error) {
	switch s {
	case "", OnErrorLocal:
		return failLocal, nil
	case OnErrorOpen:
		return failOpen, nil
	case OnErrorClosed:
		return failClosed, nil
	}
	return 0, fmt.Errorf("on_redis_error %q is not one of local, open, closed", s)
}

// policyHeader renders RateLimit-Policy (draft-ietf-httpapi-ratelimit-headers-07): the quota,
// its window in whole seconds and, as an extension parameter, the burst.
func policyHeader(requests int, per time.Duration, burst int) string {
	w := int64((per + time.Second - 1) / time.Second)
	s := strconv.Itoa(requests) + ";w=" + strconv.FormatInt(w, 10)
	if burst != requests {
		s += ";burst=" + strconv.Itoa(burst)
	}
	return s
}

// Filter enforces one policy. Safe for concurrent use; built per config generation.
type Filter struct {
	name   string
	kind   keyKind
	header string
	v6Bits int
	rate   gcra
	e      *entry
	now    func() time.Time
	epoch  time.Time

	conn        *redisConn // nil: local policy
	onError     failMode
	redisPrefix string
	log         zerolog.Logger

	limitHdr  []byte
	policyHdr []byte
}

var _ filter.Filter = (*Filter)(nil)

// Request admits or rejects one request.
func (f *Filter) Request(r *filter.Request) filter.Verdict {
	var ip [16]byte
	key := f.key(r, &ip)
	if f.conn != nil {
		return f.cluster(r, key)
	}
	return f.local(r, key)
}

func (f *Filter) local(r *filter.Request, key []byte) filter.Verdict {
	now := int64(f.now().Sub(f.epoch))
	d := f.rate.take(f.e.store.bucket(key, now), now)
	return f.verdict(r, d)
}

func (f *Filter) verdict(r *filter.Request, d decision) filter.Verdict {
	if d.allowed {
		f.e.m.allowed.Inc()
		return filter.Verdict{}
	}
	f.e.m.limited.Inc()
	if r.Ctx != nil {
		h := &r.Ctx.Response.Header
		var buf [20]byte
		h.SetBytesV("Retry-After", strconv.AppendInt(buf[:0], ceilSeconds(d.retryAfter), 10))
		h.SetBytesV("RateLimit-Limit", f.limitHdr)
		h.SetBytesV("RateLimit-Remaining", strconv.AppendInt(buf[:0], d.remaining, 10))
		h.SetBytesV("RateLimit-Reset", strconv.AppendInt(buf[:0], ceilSeconds(d.reset), 10))
		h.SetBytesV("RateLimit-Policy", f.policyHdr)
	}
	return filter.Verdict{Status: 429, Reason: ReasonLimited}
}

// key returns the bucket key for r; the bytes are valid only during the request. Requests
// without the key (no header, no identity) share the empty key's bucket.
func (f *Filter) key(r *filter.Request, ip *[16]byte) []byte {
	switch f.kind {
	case keyRoute:
		// Read-only view of the route name: the store copies it only when it inserts.
		return unsafe.Slice(unsafe.StringData(r.Route), len(r.Route))
	case keyIdentity:
		return r.Identity
	case keyHeader:
		if r.Ctx == nil {
			return nil
		}
		return r.Ctx.Request.Header.Peek(f.header)
	default:
		a := r.ClientIP.Unmap() // IPv4 and IPv4-mapped IPv6 share a bucket
		if !a.IsValid() {
			return nil
		}
		if a.Is6() {
			// Prefix cannot fail: v6Bits is 1..128 for an IPv6 address (checked in Filter).
			p, _ := a.Prefix(f.v6Bits)
			a = p.Addr()
		}
		*ip = a.As16()
		return ip[:]
	}
}

// redisKey names key's bucket in Redis. Client addresses are readable in redis-cli (text form,
// IPv6 as its prefix); header values are hashed: they are often credentials (API keys, tokens)
// and a key name is visible to anyone who can run SCAN or MONITOR on a shared Redis, and the
// hash also bounds the name's length whatever the client sent. The hash is unkeyed so every
// instance computes the same name; the values worth hiding are high-entropy secrets.
func (f *Filter) redisKey(key []byte) string {
	var buf [160]byte
	b := append(buf[:0], f.redisPrefix...)
	switch {
	case f.kind == keyClientIP && len(key) == 16:
		a := netip.AddrFrom16([16]byte(key)).Unmap()
		b = a.AppendTo(b)
		if a.Is6() {
			b = append(b, '/')
			b = strconv.AppendInt(b, int64(f.v6Bits), 10)
		}
	case f.kind == keyHeader:
		sum := sha256.Sum256(key)
		b = append(b, "sha256:"...)
		b = hex.AppendEncode(b, sum[:16]) // 128 bits: collisions are not a concern for buckets
	default:
		b = append(b, key...)
	}
	return string(b)
}

func ceilSeconds(ns int64) int64 {
	if ns <= 0 {
		return 0
	}
	return (ns + int64(time.Second) - 1) / int64(time.Second)
}
