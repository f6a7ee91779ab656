package intentions

import (
	"context"
	"encoding/json"
	"errors"
	"math/rand/v2"
	"reflect"
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
)

// Log field names.
const (
	fieldDestination = "destination"
	fieldIndex       = "index"
	fieldCount       = "intentions"
	fieldRetryIn     = "retry_in"
	fieldOrigin      = "origin"
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
}

var (
	notLoaded    = Decision{Intention: LabelNotLoaded}
	otherTenancy = Decision{Intention: LabelOtherTenancy}
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
	return rs.authorize(c.Service, method, path, h)
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
	// Intentions are in evaluation order, including those that can never match a local
	// caller (peers, other partitions). Treat them as read-only.
	Intentions []Intention `json:"intentions"`
}

// Rules returns the rules in use, for the admin API.
func (a *Authorizer) Rules() RulesView {
	v := RulesView{Destination: a.dest, DefaultAllow: a.defaultAllow, Intentions: []Intention{}}
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
}

// Stats returns the counters.
func (a *Authorizer) Stats() Stats {
	return Stats{Updates: a.updates.Load(), Failures: a.failures.Load(), Rejected: a.rejected.Load()}
}

// Run watches the Source until ctx ends, then returns nil. A failed query is logged and
// retried with jittered backoff; it never replaces the rules in use. Run may be called once.
func (a *Authorizer) Run(ctx context.Context) error {
	if !a.running.CompareAndSwap(false, true) {
		return errors.New("intentions: run called twice")
	}
	var index uint64
	delay := a.min
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
			continue
		}
		delay = a.min
		a.apply(list, next)
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

func (a *Authorizer) apply(list []Intention, index uint64) {
	cur := a.rules.Load()
	if cur != nil && cur.origin == OriginSource && index != 0 && cur.version == index {
		return
	}
	rs, err := compile(list, a.defaultAllow, index, OriginSource)
	if err != nil {
		a.rejected.Add(1)
		a.log.Error().Err(err).Uint64(fieldIndex, index).
			Msg("intentions rejected; keeping the rules in use")
		return
	}
	a.rules.Store(rs)
	if cur != nil && reflect.DeepEqual(cur.intentions, rs.intentions) {
		return
	}
	a.updates.Add(1)
	a.log.Info().Uint64(fieldIndex, index).Int(fieldCount, len(rs.intentions)).Msg("intentions updated")
	a.saveSnapshot(rs)
}

type snapshotDoc struct {
	Destination string      `json:"destination"`
	Index       uint64      `json:"index"`
	Intentions  []Intention `json:"intentions"`
}

func (a *Authorizer) saveSnapshot(rs *ruleSet) {
	if a.snap == nil {
		return
	}
	b, err := json.Marshal(snapshotDoc{Destination: a.dest, Index: rs.version, Intentions: rs.intentions})
	if err == nil {
		err = a.snap.SaveDoc(SnapshotKind, a.dest, b)
	}
	if err != nil {
		a.log.Warn().Err(err).Msg("intentions: persist snapshot")
	}
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
	a.log.Info().Uint64(fieldIndex, d.Index).Int(fieldCount, len(rs.intentions)).Str(fieldOrigin, OriginSnapshot).
		Msg("intentions loaded from snapshot")
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
