package consul

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/consul/api"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/rs/zerolog"

	"github.com/meshgate/meshgate/discovery"
	"github.com/meshgate/meshgate/discovery/snapshot"
)

// Set sources, as shown in discovery.Set.Source.
const (
	SourceConsul   = "consul"
	SourceSnapshot = "snapshot"
)

// Defaults and limits.
const (
	DefaultAddress = "127.0.0.1:8500"
	DefaultWait    = 5 * time.Minute
	// MaxWait is Consul's own cap on a blocking query's wait.
	MaxWait = 10 * time.Minute

	defaultMinBackoff  = 50 * time.Millisecond
	defaultMaxBackoff  = 30 * time.Second
	defaultMinInterval = 100 * time.Millisecond
	dialTimeout        = 5 * time.Second
	// queryGrace is added to wait + Consul's wait/16 jitter for the whole-request deadline, so
	// a hung connection (agent stopped, not dead) is noticed after one wait at most.
	queryGrace = 10 * time.Second
)

// Log field names.
const (
	fieldComponent = "component"
	fieldService   = "service"
	fieldEndpoints = "endpoints"
	fieldSource    = "source"
	componentName  = "discovery.consul"
)

// ErrClosed is returned by Watch after Close.
var ErrClosed = errors.New("consul source closed")

// TLSOptions configure TLS to the agent (used with Scheme "https").
type TLSOptions struct {
	CAFile             string
	CertFile           string
	KeyFile            string
	ServerName         string
	InsecureSkipVerify bool
}

// Subset narrows a routed service to some of a Consul service's instances.
type Subset struct {
	Name string            // Consul service name; empty means the routed name
	Tags []string          // every tag must be present (Consul ANDs repeated tag parameters)
	Meta map[string]string // every key must have this value (filtered here, exactly)
	// Connect selects the service's Connect endpoints instead of its instances: the passing
	// connect-proxy services whose destination it is (Consul's sidecars, ours) and its passing
	// Connect-native instances, from /v1/health/connect/<name>. A caller that reaches the
	// service over mTLS dials these, never the app's own port. Tags and Meta are then matched
	// against the proxies' registrations (Consul's own sidecar registrations copy the app's
	// tags and meta; so does meshgate's sidecar), and tags are matched here, because Consul's
	// connect endpoint ignores the tag parameter.
	Connect bool
}

// SnapshotKindConnect is the snapshot directory Connect endpoint sets are stored in, so the
// proxies of a service and its plain instances both survive a restart (see
// snapshot.SaveSelectedIn).
const SnapshotKindConnect = "connect"

// connectLabel prefixes a Connect watch's routed name in metrics, logs and Health, so it
// cannot be mistaken for the plain watch of the same service (like "kv:" for KV watches).
const connectLabel = "connect:"

// Options configure a Source.
type Options struct {
	Address    string // host:port of the agent's HTTP API; default 127.0.0.1:8500
	Scheme     string // "http" (default) or "https"
	Datacenter string // default: the agent's
	// Token and TokenFile: see ResolveToken for the precedence. Getenv (nil: os.Getenv) is
	// consulted for CONSUL_HTTP_TOKEN(_FILE); tests inject it.
	Token     string
	TokenFile string
	Getenv    func(string) string
	TLS       TLSOptions
	// Wait is the blocking-query wait; 0 means DefaultWait, more than MaxWait is an error.
	Wait time.Duration
	// Subsets maps routed service names to the instances Watch selects; a service without an
	// entry selects every passing instance of the Consul service of the same name.
	Subsets map[string]Subset
	// Snapshot, when set, receives every applied set and provides the first set of a watch.
	Snapshot *snapshot.Store
	Logger   zerolog.Logger
	// Registerer receives the source's metrics; nil registers nothing.
	Registerer prometheus.Registerer

	// Client, when set, is the agent connection to use (shared with the process's other
	// Consul users); the connection fields above are then ignored.
	Client *Client

	// Tuning; zero values are the defaults (50ms, 30s, 100ms). Tests shorten them.
	BackoffMin  time.Duration
	BackoffMax  time.Duration
	MinInterval time.Duration // minimum gap between queries whose index did not move
}

// Source is a discovery.Source over Consul's health endpoint. Create it once per process; it
// survives config reloads (see the package doc).
type Source struct {
	client    *api.Client
	poller    *poller // the health watches' own agent connections
	closeIdle func()
	token     string
	dc        string
	wait      time.Duration
	subsets   map[string]Subset
	snap      *snapshot.Store
	log       zerolog.Logger
	m         *metrics
	now       func() time.Time

	backoffMin, backoffMax, minInterval time.Duration

	mu      sync.Mutex // guards closed, watches, services and proto; taken before any watch.mu
	closed  bool
	watches map[string]*watch
	// troubled counts the watches Health would name (noteTrouble); the degraded gauge reads
	// it without taking any lock.
	troubled atomic.Int64
	// services counts the running service watches; proto is the service-defaults loop they
	// share, running while services > 0 (protocol.go).
	services int
	proto    *protocols
	wg       sync.WaitGroup // query loops
}

var _ discovery.Source = (*Source)(nil)

// New builds the source (and its client, unless Options.Client is given); it does not contact
// Consul (starting while Consul is down must work). It fails on bad options and on an
// unreadable token file.
func New(opts Options) (*Source, error) {
	switch {
	case opts.Wait == 0:
		opts.Wait = DefaultWait
	case opts.Wait < 0 || opts.Wait > MaxWait:
		return nil, fmt.Errorf("consul: wait %s: want 0..%s", opts.Wait, MaxWait)
	}
	cl := opts.Client
	if cl == nil {
		var err error
		if cl, err = NewClient(ClientOptions{Address: opts.Address, Scheme: opts.Scheme, Datacenter: opts.Datacenter,
			Token: opts.Token, TokenFile: opts.TokenFile, Getenv: opts.Getenv, TLS: opts.TLS}); err != nil {
			return nil, err
		}
	}
	m := newMetrics()
	s := &Source{
		client:      cl.api,
		poller:      newPoller(cl.address, cl.tls, cl.token, cl.dc),
		closeIdle:   cl.closeIdle,
		token:       cl.token,
		dc:          cl.dc,
		wait:        opts.Wait,
		subsets:     maps.Clone(opts.Subsets),
		snap:        opts.Snapshot,
		log:         opts.Logger.With().Str(fieldComponent, componentName).Logger(),
		m:           m,
		now:         time.Now,
		backoffMin:  orDefault(opts.BackoffMin, defaultMinBackoff),
		backoffMax:  orDefault(opts.BackoffMax, defaultMaxBackoff),
		minInterval: orDefault(opts.MinInterval, defaultMinInterval),
		watches:     make(map[string]*watch),
	}
	if err := m.register(opts.Registerer, func() bool { return s.troubled.Load() > 0 }); err != nil {
		return nil, fmt.Errorf("consul: %w", err)
	}
	return s, nil
}

func orDefault(d, def time.Duration) time.Duration {
	if d <= 0 {
		return def
	}
	return d
}

// Watch implements discovery.Source with the subset from Options.Subsets. Every service is
// "known" to Consul (an unregistered one is an empty set), so it never returns
// ErrUnknownService.
func (s *Source) Watch(ctx context.Context, service string, fn func(discovery.Set)) error {
	return s.WatchSubset(ctx, service, s.subsets[service], fn)
}

// WatchSubset is Watch with an explicit subset, for callers whose subsets change with their
// config (a different subset is a different watch; the old one ends with its last subscriber).
//
// The current set, if any (from Consul or the snapshot), is delivered to fn before
// WatchSubset returns; later sets come from the watch's goroutine. Deliveries to one fn are
// serialised and in order. fn must not block.
func (s *Source) WatchSubset(ctx context.Context, service string, sub Subset, fn func(discovery.Set)) error {
	if service == "" || fn == nil {
		return errors.New("consul: watch needs a service name and a callback")
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	sub = canonical(service, sub)
	sel := selector(sub)
	// The selector carries Connect, so the plain and the Connect watch of one service are two
	// loops with two sets.
	key := service + "\x00" + sel

	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return ErrClosed
	}
	w, ok := s.watches[key]
	if !ok {
		w = s.startWatch(key, service, sel, sub)
		s.watches[key] = w
	}
	w.mu.Lock()
	s.mu.Unlock()
	w.nextID++
	id := w.nextID
	w.subs[id] = fn
	if w.have {
		fn(w.cur)
	}
	w.mu.Unlock()

	context.AfterFunc(ctx, func() { s.unsubscribe(w, id) })
	return nil
}

// startWatch creates a watch, seeds it from the snapshot and starts its loop. Called with s.mu
// held, so the snapshot read (one small file) happens once per key.
func (s *Source) startWatch(key, service, sel string, sub Subset) *watch {
	ctx, cancel := context.WithCancel(context.Background())
	if s.proto == nil {
		s.proto = s.startProtocols()
	}
	s.services++
	w := &watch{key: key, service: service, label: service, selector: sel, sub: sub, stop: cancel,
		proto: s.proto, subs: map[uint64]func(discovery.Set){}}
	if sub.Connect {
		w.label = connectLabel + service
	}
	w.metrics = s.m.of(w.label)
	if s.snap != nil {
		if set, savedAt, ok := s.snap.LoadSelectedIn(w.snapshotKind(), service, sel); ok {
			// Protocols already known (another watch started the loop) beat the snapshot's.
			set.Protocol = w.proto.resolve(sub.Name, set.Protocol)
			w.cur, w.have, w.snapshotAt = set, true, savedAt
			s.noteTrouble(w) // w is not shared yet
			w.metrics.endpoints.Store(int64(len(set.Endpoints)))
			s.log.Info().Str(fieldService, w.label).Int(fieldEndpoints, len(set.Endpoints)).
				Time("saved_at", savedAt).Msg("serving the snapshot until consul answers")
		}
	}
	s.m.watches.Inc()
	s.wg.Add(1)
	go s.run(ctx, w)
	return w
}

func (s *Source) unsubscribe(w *watch, id uint64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	w.mu.Lock()
	delete(w.subs, id)
	last := len(w.subs) == 0
	w.mu.Unlock()
	if !last || s.watches[w.key] != w {
		return
	}
	delete(s.watches, w.key)
	w.stop()
	s.retire(w)
	s.m.watches.Dec()
	if s.services--; s.services == 0 {
		s.stopProtocols()
	}
	for _, o := range s.watches {
		if o.label == w.label {
			return
		}
	}
	w.metrics.endpoints.Store(noEndpoints)
}

// Close stops every query loop, waits for them and drops idle agent connections. Watch fails
// with ErrClosed afterwards. Subscribers simply receive nothing more.
func (s *Source) Close() {
	s.mu.Lock()
	s.closed = true
	for k, w := range s.watches {
		w.stop()
		delete(s.watches, k)
		s.retire(w)
		if s.proto == nil || w != s.proto.w { // the protocols loop is not counted
			s.m.watches.Dec()
		}
	}
	s.services, s.proto = 0, nil // the protocols loop was one of the watches
	s.mu.Unlock()
	s.wg.Wait()
	s.closeIdle()
}

// canonical fills the Consul name and sorts and de-duplicates tags, so equal subsets share one
// watch and one snapshot selector whatever order the config lists them in.
func canonical(service string, sub Subset) Subset {
	if sub.Name == "" {
		sub.Name = service
	}
	tags := slices.Clone(sub.Tags)
	slices.Sort(tags)
	sub.Tags = slices.Compact(tags)
	if len(sub.Tags) == 0 {
		sub.Tags = nil
	}
	if len(sub.Meta) == 0 {
		sub.Meta = nil
	} else {
		sub.Meta = maps.Clone(sub.Meta)
	}
	return sub
}

// selector is an unambiguous text form of a canonical subset (JSON sorts map keys). Connect is
// omitted when false, so the selectors of plain watches — and the snapshots saved with them —
// are what they were before Connect existed.
func selector(sub Subset) string {
	b, err := json.Marshal(struct {
		Name    string            `json:"name"`
		Tags    []string          `json:"tags,omitempty"`
		Meta    map[string]string `json:"meta,omitempty"`
		Connect bool              `json:"connect,omitempty"`
	}{sub.Name, sub.Tags, sub.Meta, sub.Connect})
	if err != nil { // strings and a map of strings always marshal
		return sub.Name
	}
	return string(b)
}
