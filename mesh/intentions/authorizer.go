package intentions

import (
	"context"
	"encoding/json"
	"errors"
	"math/rand/v2"
	"reflect"
	"sync"
	"sync/atomic"
	"time"

	"github.com/rs/zerolog"
)

// Snapshot persists documents across restarts; discovery/snapshot satisfies it.
type Snapshot interface {
	SaveDoc(kind, name string, b []byte) error
	LoadDoc(kind, name string) ([]byte, bool)
}

// SnapshotKind is the snapshot document kind; the name is the destination service.
const SnapshotKind = "intentions"

const (
	defaultMinBackoff   = 250 * time.Millisecond
	defaultMaxBackoff   = 30 * time.Second
	defaultPollInterval = time.Second
	// snapshotRefresh is how often an unchanged answer re-saves the snapshot, so that its
	// fetched_at (which max age is judged by after a restart) stays close to the truth. Idle
	// blocking queries answer every few minutes; this bounds the writes anyway.
	snapshotRefresh = time.Minute
)

// Log field names.
const (
	fieldDestination = "destination"
	fieldIndex       = "index"
	fieldCount       = "intentions"
	fieldRetryIn     = "retry_in"
	fieldOrigin      = "origin"
	fieldFetchedAt   = "fetched_at"
	fieldMaxAge      = "max_age"
)

// Options configures an Authorizer.
type Options struct {
	Source Source
	// Destination is the local service the sidecar fronts; its intentions are enforced.
	Destination string
	// DefaultAllow decides requests no intention matches, and L7 requests no permission
	// matches. Consul uses its ACL default policy here (allow when ACLs are off).
	DefaultAllow bool
	Logger       zerolog.Logger
	// Snapshot, when set, keeps the last rules across a restart during a Consul outage.
	Snapshot Snapshot
	// MinBackoff and MaxBackoff bound the retry delay after a failed query; zero means 250 ms
	// and 30 s.
	MinBackoff, MaxBackoff time.Duration
	// PollInterval paces a Source that answers without blocking; zero means 1 s, which keeps
	// a change enforced within about a second even then.
	PollInterval time.Duration
	// MaxAge: when the rules in use were last confirmed by the Source (or, loaded from the
	// snapshot, fetched) longer ago than this, every request is denied until the Source
	// answers again: an intention revoked during a long Consul outage must not stay granted
	// forever. Zero means no limit.
	MaxAge time.Duration
}

// Authorizer decides, per request, whether a calling service may reach Destination, from the
// intentions a Source reports. Authorize is safe for concurrent use and lock-free.
type Authorizer struct {
	src          Source
	dest         string
	defaultAllow bool
	log          zerolog.Logger
	snap         Snapshot
	min, max     time.Duration
	poll         time.Duration

	rules    atomic.Pointer[ruleSet]
	running  atomic.Bool
	updates  atomic.Uint64
	failures atomic.Uint64
	rejected atomic.Uint64

	// Max age: fetched is when the rules in use were last confirmed (unix ns, 0 = never);
	// stale is set by a timer when that is more than maxAge ago, so requests pay one atomic
	// load, not a clock read.
	maxAge       time.Duration
	fetched      atomic.Int64
	stale        atomic.Bool
	staleDenials atomic.Uint64
	savedAt      time.Time // fetched_at in the snapshot; only the Run goroutine touches it
	timerMu      sync.Mutex
	timer        *time.Timer
	timerStopped bool // Run returned: no timer may be armed again
}

var (
	notLoaded    = Decision{Intention: LabelNotLoaded}
	otherTenancy = Decision{Intention: LabelOtherTenancy}
	tooOld       = Decision{Intention: LabelTooOld}
)

// New validates options and, when a snapshot is configured, loads the persisted rules so the
// Authorizer is Ready before Consul answers.
func New(o Options) (*Authorizer, error) {
	if o.Source == nil {
		return nil, errors.New("intentions: nil source")
	}
	if o.Destination == "" {
		return nil, errors.New("intentions: empty destination service")
	}
	a := &Authorizer{
		src: o.Source, dest: o.Destination, defaultAllow: o.DefaultAllow,
		log:  o.Logger.With().Str(fieldDestination, o.Destination).Logger(),
		snap: o.Snapshot, min: o.MinBackoff, max: o.MaxBackoff, poll: o.PollInterval,
		maxAge: max(o.MaxAge, 0),
	}
	if a.min <= 0 {
		a.min = defaultMinBackoff
	}
	if a.max < a.min {
		a.max = max(defaultMaxBackoff, a.min)
	}
	if a.poll <= 0 {
		a.poll = defaultPollInterval
	}
	a.loadSnapshot()
	return a, nil
}

// Caller is the verified identity of a mesh peer: partition, namespace and service name from
// its SPIFFE ID. Empty Partition or Namespace mean "default".
type Caller struct {
	Partition string
	Namespace string
	Service   string
}

// Authorize decides whether the caller (from its verified SPIFFE ID) may make this request.
// h reads request headers and may be nil. Before the first rules are in, every request is
// denied, and so is every caller outside the default partition and namespace: intentions
// are compiled for default/default only, and matching such a caller by its service name
// alone would give "team-b/web" what an intention grants "default/web". It does not allocate.
//
// path should be the path that will be forwarded, normalised (fasthttp's URI().Path()), so
// that "/public/../admin" cannot pass a "/public" prefix rule and then reach /admin. A raw
// request URI also works (path rules ignore its query; ":path" header rules see it whole), but
// then matching is on the raw bytes, as in Envoy without path normalisation.
func (a *Authorizer) Authorize(c Caller, method, path []byte, h HeaderGetter) Decision {
	if !isDefault(c.Partition) || !isDefault(c.Namespace) {
		return otherTenancy
	}
	rs := a.rules.Load()
	if rs == nil {
		return notLoaded
	}
	if a.stale.Load() {
		a.staleDenials.Add(1)
		return tooOld
	}
	return rs.authorize(c.Service, method, path, h)
}

// Stale reports whether the rules in use are older than Options.MaxAge, so every request is
// denied until the Source answers.
func (a *Authorizer) Stale() bool { return a.stale.Load() }

// FetchedAt is when the rules in use were last confirmed by the Source (or fetched, for rules
// from the snapshot); zero before any, or for a snapshot written before this was recorded.
func (a *Authorizer) FetchedAt() time.Time {
	if ns := a.fetched.Load(); ns != 0 {
		return time.Unix(0, ns)
	}
	return time.Time{}
}

// confirmed records that the rules in use are current as of t and re-arms the max-age timer.
func (a *Authorizer) confirmed(t time.Time) {
	a.fetched.Store(t.UnixNano())
	if a.stale.CompareAndSwap(true, false) {
		a.log.Info().Time(fieldFetchedAt, t).Msg("intentions are fresh again; enforcing them")
	}
	a.arm(t)
}

// arm schedules the max-age check for rules confirmed at t.
func (a *Authorizer) arm(t time.Time) {
	if a.maxAge <= 0 || t.IsZero() {
		return
	}
	d := time.Until(t.Add(a.maxAge))
	a.timerMu.Lock()
	defer a.timerMu.Unlock()
	if a.timerStopped {
		return
	}
	if a.timer == nil {
		a.timer = time.AfterFunc(d, a.expire)
		return
	}
	a.timer.Reset(d)
}

// expire runs when the rules may have outlived maxAge. A confirmation that raced with the
// timer wins: the check is against the latest fetched time, not the one that armed it.
func (a *Authorizer) expire() {
	fetched := a.FetchedAt()
	if !fetched.IsZero() && time.Since(fetched) < a.maxAge {
		a.arm(fetched)
		return
	}
	a.markStale(fetched)
}

func (a *Authorizer) markStale(fetched time.Time) {
	if a.stale.CompareAndSwap(false, true) {
		ev := a.log.Error().Dur(fieldMaxAge, a.maxAge)
		if !fetched.IsZero() {
			ev = ev.Time(fieldFetchedAt, fetched)
		}
		ev.Msg("intentions are older than identity.max_snapshot_age; denying every caller until consul answers")
	}
}

func (a *Authorizer) stopTimer() {
	a.timerMu.Lock()
	defer a.timerMu.Unlock()
	a.timerStopped = true
	if a.timer != nil {
		a.timer.Stop()
	}
}

func isDefault(tenancy string) bool { return tenancy == "" || tenancy == defaultTenancy }

// Ready reports whether rules are loaded, from the Source or from a snapshot.
func (a *Authorizer) Ready() bool { return a.rules.Load() != nil }

// Version is the Source index (Consul's X-Consul-Index) of the rules in use, 0 before any.
func (a *Authorizer) Version() uint64 {
	if rs := a.rules.Load(); rs != nil {
		return rs.version
	}
	return 0
}

// Origin is where the rules in use came from (OriginSource or OriginSnapshot), "" before any.
func (a *Authorizer) Origin() string {
	if rs := a.rules.Load(); rs != nil {
		return rs.origin
	}
	return ""
}

// RulesView is the admin API's picture of the rules in use.
type RulesView struct {
	Destination  string `json:"destination"`
	Ready        bool   `json:"ready"`
	Origin       string `json:"origin,omitempty"`
	Version      uint64 `json:"version"`
	DefaultAllow bool   `json:"default_allow"`
	// FetchedAt is when the rules were last confirmed by Consul (or fetched, from the
	// snapshot). With MaxAge set, Stale rules deny every request; StaleDenials counts those.
	FetchedAt    *time.Time `json:"fetched_at,omitempty"`
	MaxAge       string     `json:"max_age,omitempty"`
	Stale        bool       `json:"stale"`
	StaleDenials uint64     `json:"stale_denials"`
	// Intentions are in evaluation order, including those that can never match a local
	// caller (peers, other partitions). Treat them as read-only.
	Intentions []Intention `json:"intentions"`
}

// Rules returns the rules in use, for the admin API.
func (a *Authorizer) Rules() RulesView {
	v := RulesView{Destination: a.dest, DefaultAllow: a.defaultAllow, Intentions: []Intention{},
		Stale: a.stale.Load(), StaleDenials: a.staleDenials.Load()}
	if a.maxAge > 0 {
		v.MaxAge = a.maxAge.String()
	}
	if f := a.FetchedAt(); !f.IsZero() {
		v.FetchedAt = &f
	}
	if rs := a.rules.Load(); rs != nil {
		v.Ready, v.Origin, v.Version = true, rs.origin, rs.version
		v.Intentions = append(v.Intentions, rs.intentions...)
	}
	return v
}

// Stats are counters for metrics.
type Stats struct {
	// Updates counts answers that changed the rules in use.
	Updates uint64
	// Failures counts failed queries; the rules in use were kept.
	Failures uint64
	// Rejected counts answers that did not compile (a bad regex); the rules in use were kept.
	Rejected uint64
	// StaleDenials counts requests denied because the rules were older than MaxAge.
	StaleDenials uint64
}

// Stats returns the counters.
func (a *Authorizer) Stats() Stats {
	return Stats{Updates: a.updates.Load(), Failures: a.failures.Load(), Rejected: a.rejected.Load(),
		StaleDenials: a.staleDenials.Load()}
}

// Run watches the Source until ctx ends, then returns nil. A failed query is logged and
// retried with jittered backoff; it never replaces the rules in use. Run may be called once.
func (a *Authorizer) Run(ctx context.Context) error {
	if !a.running.CompareAndSwap(false, true) {
		return errors.New("intentions: run called twice")
	}
	// Rules from the snapshot age from when they were fetched, not from now.
	a.arm(a.FetchedAt())
	defer a.stopTimer()
	var index uint64
	delay := a.min
	// failed: the last query failed. The agent may have restarted since, and Consul's indexes
	// are per cluster state: a new agent's index can equal the old one by chance, so the first
	// answer after a failure is never taken as "unchanged" on its index alone.
	failed := false
	for {
		start := time.Now()
		list, next, err := a.src.Match(ctx, a.dest, index)
		if ctx.Err() != nil {
			return nil
		}
		if err != nil {
			a.failures.Add(1)
			a.log.Warn().Err(err).Dur(fieldRetryIn, delay).
				Msg("intentions query failed; keeping the rules in use")
			// Full jitter keeps many sidecars on one agent from retrying in lockstep.
			if !sleep(ctx, delay/2+rand.N(delay/2+1)) {
				return nil
			}
			delay = min(delay*2, a.max)
			failed = true
			continue
		}
		delay = a.min
		a.apply(list, next, failed)
		failed = false
		switch {
		case next == 0 || next == index:
			// No index, or a blocking wait that ran out: a source that does not block would
			// spin here, so pace it.
			if !sleep(ctx, a.poll-time.Since(start)) {
				return nil
			}
			index = next
		case next < index:
			// Consul's rule: an index going backwards (agent restart, snapshot restore) resets
			// to 0, or we would block on a future that never comes.
			index = 0
		default:
			index = next
		}
	}
}

// apply installs an answer; force compiles it even when its index equals the rules in use.
func (a *Authorizer) apply(list []Intention, index uint64, force bool) {
	now := time.Now()
	cur := a.rules.Load()
	if !force && cur != nil && cur.origin == OriginSource && index != 0 && cur.version == index {
		a.confirmed(now) // an unchanged answer still proves the rules current
		a.refreshSnapshot(cur, now)
		return
	}
	rs, err := compile(list, a.defaultAllow, index, OriginSource)
	if err != nil {
		a.rejected.Add(1)
		a.log.Error().Err(err).Uint64(fieldIndex, index).
			Msg("intentions rejected; keeping the rules in use")
		return
	}
	if cur != nil && reflect.DeepEqual(cur.intentions, rs.intentions) {
		a.rules.Store(rs)
		a.confirmed(now)
		a.refreshSnapshot(rs, now)
		return
	}
	// Counted before the swap, so whoever sees the new rules also sees them counted.
	a.updates.Add(1)
	a.rules.Store(rs)
	a.confirmed(now)
	a.log.Info().Uint64(fieldIndex, index).Int(fieldCount, len(rs.intentions)).Msg("intentions updated")
	a.saveSnapshot(rs, now)
}

type snapshotDoc struct {
	Destination string      `json:"destination"`
	Index       uint64      `json:"index"`
	Intentions  []Intention `json:"intentions"`
	// FetchedAt is when Consul last confirmed these intentions; max age is judged by it after
	// a restart. Zero in snapshots from before it was recorded: of unknown age.
	FetchedAt time.Time `json:"fetched_at,omitzero"`
}

// refreshSnapshot re-saves unchanged rules now and then, so the snapshot's fetched_at does
// not make rules confirmed a minute ago look days old after a restart.
func (a *Authorizer) refreshSnapshot(rs *ruleSet, now time.Time) {
	if a.maxAge > 0 && now.Sub(a.savedAt) >= snapshotRefresh {
		a.saveSnapshot(rs, now)
	}
}

func (a *Authorizer) saveSnapshot(rs *ruleSet, fetched time.Time) {
	if a.snap == nil {
		return
	}
	b, err := json.Marshal(snapshotDoc{Destination: a.dest, Index: rs.version, Intentions: rs.intentions, FetchedAt: fetched})
	if err == nil {
		err = a.snap.SaveDoc(SnapshotKind, a.dest, b)
	}
	if err != nil {
		a.log.Warn().Err(err).Msg("intentions: persist snapshot")
		return
	}
	a.savedAt = fetched
}

// loadSnapshot restores persisted rules. Anything unreadable is ignored: the Source will
// answer once reachable, and until then denying everything is the safe failure.
func (a *Authorizer) loadSnapshot() {
	if a.snap == nil {
		return
	}
	b, ok := a.snap.LoadDoc(SnapshotKind, a.dest)
	if !ok {
		return
	}
	var d snapshotDoc
	if err := json.Unmarshal(b, &d); err != nil {
		a.log.Warn().Err(err).Msg("intentions: snapshot unreadable")
		return
	}
	if d.Destination != a.dest {
		a.log.Warn().Str("snapshot_destination", d.Destination).Msg("intentions: snapshot is for another service")
		return
	}
	rs, err := compile(d.Intentions, a.defaultAllow, d.Index, OriginSnapshot)
	if err != nil {
		a.log.Warn().Err(err).Msg("intentions: snapshot invalid")
		return
	}
	a.rules.Store(rs)
	a.savedAt = d.FetchedAt
	if !d.FetchedAt.IsZero() {
		a.fetched.Store(d.FetchedAt.UnixNano())
	}
	a.log.Info().Uint64(fieldIndex, d.Index).Int(fieldCount, len(rs.intentions)).Str(fieldOrigin, OriginSnapshot).
		Time(fieldFetchedAt, d.FetchedAt).Msg("intentions loaded from snapshot")
	if a.maxAge > 0 && (d.FetchedAt.IsZero() || time.Since(d.FetchedAt) >= a.maxAge) {
		// Too old (or of unknown age) already: deny from the first request, not from the
		// first timer tick.
		a.markStale(d.FetchedAt)
	}
}

func sleep(ctx context.Context, d time.Duration) bool {
	if d <= 0 {
		return ctx.Err() == nil
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}
