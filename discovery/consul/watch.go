package consul

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/hashicorp/consul/api"
	"github.com/rs/zerolog"

	"github.com/meshgate/meshgate/discovery"
	"github.com/meshgate/meshgate/discovery/snapshot"
)

// watch is one blocking-query loop and its subscribers.
type watch struct {
	key      string
	service  string        // routed name: the Set's Service
	label    string        // metrics label, log and Health name: service, or "connect:<service>"
	metrics  *labelMetrics // label's counts
	selector string
	sub      Subset
	stop     context.CancelFunc
	// proto is the service-defaults state the watch's sets take their Protocol from; nil for
	// loops without sets (KV, the protocols loop itself). Fixed at start: the protocols loop
	// outlives every service watch that points to it (it stops with the last of them).
	proto *protocols
	// unknown is what Health says the loop serves before it has anything; "" means
	// "no endpoints known yet".
	unknown string

	saveMu sync.Mutex // serialises snapshot writes of the set (saveCurrent); taken before mu

	mu         sync.Mutex // guards everything below; held while calling subscribers
	subs       map[uint64]func(discovery.Set)
	nextID     uint64
	cur        discovery.Set
	have       bool
	snapshotAt time.Time // when cur came from the snapshot: when it was saved
	lastOK     time.Time
	answered   bool // a query finished, successfully or not
	lastErr    error
	failSince  time.Time // first failure of the current failure streak
	// troubled says w is counted in Source.troubled (see noteTrouble); gone, that it was
	// removed from the source and must never be counted again.
	troubled, gone bool
}

// noteTrouble recounts w in s.troubled after its state changed: it is in trouble exactly when
// problem would describe it (its last query failed, or it serves only its snapshot). The
// degraded gauge reads that count at scrape time instead of locking every watch: a scrape
// waiting for w.mu, while w's holder delivers a set and creates a metric child whose vector
// the scrape's collectors hold read-locked, deadlocked discovery, the scrape and the requests
// waiting for those metrics. Called with w.mu held (or before w is shared).
func (s *Source) noteTrouble(w *watch) {
	t := !w.gone && (w.lastErr != nil || (w.have && w.cur.Source == SourceSnapshot))
	if t == w.troubled {
		return
	}
	w.troubled = t
	if t {
		s.troubled.Add(1)
	} else {
		s.troubled.Add(-1)
	}
}

// retire takes w out of the trouble count for good: it was removed from s.watches. Its loop
// may still finish a query after that, which must not count it again.
func (s *Source) retire(w *watch) {
	w.mu.Lock()
	w.gone = true
	s.noteTrouble(w)
	w.mu.Unlock()
}

// snapshotKind is where the watch's sets are saved: the Connect set of a service must not
// replace its plain set on disk.
func (w *watch) snapshotKind() string {
	if w.sub.Connect {
		return SnapshotKindConnect
	}
	return snapshot.KindServices
}

// run is the query loop: one goroutine per watch, ended by ctx. It holds the watch's agent
// connection and little else: each answer is read and decoded on a goroutine of its own
// (agentConn.get, a few at a time), and applied on another, so the loop's stack stays small.
// Applying is not in the bounded step: it saves the snapshot, whose fsync would otherwise
// queue a burst's changes behind each other.
func (s *Source) run(ctx context.Context, w *watch) {
	defer s.wg.Done()
	ac := s.poller.conn(ctx)
	defer ac.release()
	path := w.path()
	s.blockingLoop(ctx, func(index uint64) (uint64, error) {
		var entries []*api.ServiceEntry
		got, err := ac.get(ctx, path, index, s.wait, func(body io.Reader) error {
			if err := json.NewDecoder(body).Decode(&entries); err != nil {
				return fmt.Errorf("decode answer: %w", err)
			}
			return nil
		})
		if err == nil && ctx.Err() == nil {
			onStep(nil, func() { s.apply(w, entries) })
		}
		return got, err
	}, func(err error, failures int) { s.failed(w, err, failures) })
}

// path is the watch's query without index and wait: passing instances only, Consul matching
// the tags of a plain watch (the connect endpoint ignores tags in Consul 1.16; endpoints
// matches them for a Connect watch).
func (w *watch) path() string {
	v := url.Values{"passing": {"1"}}
	kind := "service"
	if w.sub.Connect {
		kind = "connect"
	} else if len(w.sub.Tags) > 0 {
		v["tag"] = w.sub.Tags
	}
	return "/v1/health/" + kind + "/" + url.PathEscape(w.sub.Name) + "?" + v.Encode()
}

// blockingLoop drives one blocking query with Consul's index rules until ctx ends. query runs
// one request at index and applies its answer; failed reports an error. Shared by the service
// and KV watches so both follow the same rules.
func (s *Source) blockingLoop(ctx context.Context, query func(index uint64) (uint64, error), failed func(error, int)) {
	var index uint64
	failures := 0
	for {
		start := time.Now()
		got, err := query(index)
		if ctx.Err() != nil {
			return
		}
		if err != nil {
			failures++
			// Start over with a non-blocking query: a restarted agent's index is lower than
			// ours, and blocking on a future index would hide its current state for a whole wait.
			index = 0
			failed(err, failures)
			if !sleep(ctx, s.backoff(failures)) {
				return
			}
			continue
		}
		failures = 0
		prev := index
		index = nextIndex(prev, got)
		// An unchanged index that came back quickly is a spurious wake-up (or a misbehaving
		// proxy in between): pace the loop instead of hammering the agent.
		if index == prev {
			if gap := s.minInterval - time.Since(start); gap > 0 && !sleep(ctx, gap) {
				return
			}
		}
	}
}

// nextIndex follows Consul's blocking-query rules: an index that goes backwards (snapshot
// restore, agent restart) resets to 0 so the next query fetches fresh state, and 0 is never
// used to block (it makes the query return at once, every time: a busy loop), so it becomes 1.
func nextIndex(prev, got uint64) uint64 {
	switch {
	case got < prev:
		return 0
	case got == 0:
		return 1
	}
	return got
}

// apply turns a successful answer into a set and delivers it if it differs from what
// subscribers have (or they have only the snapshot's copy). Applied sets are saved.
func (s *Source) apply(w *watch, entries []*api.ServiceEntry) {
	w.metrics.ok.Add(1)
	var tags []string
	if w.sub.Connect {
		tags = w.sub.Tags // Consul filtered the plain query's tags already
	}
	set := discovery.Set{Service: w.service, Endpoints: endpoints(entries, tags, w.sub.Meta), Source: SourceConsul}
	now := s.now()
	w.mu.Lock()
	if w.proto != nil {
		// Read under w.mu: see reapplyProtocols. Until service-defaults has answered, the
		// protocol the set already had (its snapshot's) is kept.
		set.Protocol = w.proto.resolve(w.sub.Name, w.cur.Protocol)
	}
	recovered := w.lastErr != nil
	down := now.Sub(w.failSince)
	w.lastOK, w.lastErr, w.failSince, w.answered = now, nil, time.Time{}, true
	changed := !w.have || w.cur.Source != SourceConsul || !set.Equal(w.cur)
	if changed {
		w.cur, w.have, w.snapshotAt = set, true, time.Time{}
	}
	s.noteTrouble(w)
	if changed {
		// Metrics first: whoever observes a delivery must also see it counted.
		w.metrics.updates.Add(1)
		w.metrics.endpoints.Store(int64(len(set.Endpoints)))
		for _, fn := range w.subs {
			fn(set)
		}
	}
	w.mu.Unlock()

	if recovered {
		s.log.Info().Str(fieldService, w.label).Dur("down", down).Msg("consul answers again")
	}
	if !changed {
		return
	}
	s.log.Debug().Str(fieldService, w.label).Int(fieldEndpoints, len(set.Endpoints)).Msg("endpoints updated")
	s.saveCurrent(w)
}

// saveCurrent writes w's current set to the snapshot, if it came from Consul. Two goroutines
// change a watch's set (its query loop, and the protocols loop re-delivering with a new
// protocol), and each saves after delivering, outside w.mu (a save fsyncs). Saves are
// serialised and each writes the set current when it runs, so the last save always holds the
// newest set: saving the set each one delivered could let an older one land last.
func (s *Source) saveCurrent(w *watch) {
	if s.snap == nil {
		return
	}
	w.saveMu.Lock()
	defer w.saveMu.Unlock()
	w.mu.Lock()
	set := w.cur
	w.mu.Unlock()
	// A snapshot-served set is saved by its first answer; saving it before would present old
	// endpoints as freshly saved.
	if set.Source != SourceConsul {
		return
	}
	if err := s.snap.SaveSelectedIn(w.snapshotKind(), set, w.selector); err != nil {
		s.log.Warn().Err(err).Str(fieldService, w.label).Msg("could not save the snapshot; serving continues")
	}
}

// failed records a failed query. The set is left alone: a registry outage must never look
// like "zero instances".
func (s *Source) failed(w *watch, err error, failures int) {
	w.metrics.failed.Add(1)
	err = s.markFailed(w, err)
	w.mu.Lock()
	src := w.cur.Source
	w.mu.Unlock()
	if src == "" {
		src = "none"
	}
	s.log.WithLevel(retryLevel(failures)).Err(err).Str(fieldService, w.label).Str(fieldSource, src).Int("failures", failures).
		Msg("consul query failed; keeping the last endpoint set")
}

// markOK records a successful answer of a loop that has no endpoint set of its own (KV,
// protocols): it now serves Consul's answer. Called after the answer was delivered, so Synced
// means "applied". It reports whether a failure streak just ended, and how long it lasted.
func (s *Source) markOK(w *watch) (recovered bool, down time.Duration) {
	now := s.now()
	w.mu.Lock()
	defer w.mu.Unlock()
	recovered, down = w.lastErr != nil, now.Sub(w.failSince)
	w.lastOK, w.lastErr, w.failSince, w.answered = now, nil, time.Time{}, true
	w.have, w.cur.Source, w.snapshotAt = true, SourceConsul, time.Time{}
	s.noteTrouble(w)
	return recovered, down
}

// markFailed records a failed query on w (nothing it serves is touched) and returns err
// simplified for logs and Health.
func (s *Source) markFailed(w *watch, err error) error {
	err = simplify(err)
	w.mu.Lock()
	defer w.mu.Unlock()
	w.lastErr, w.answered = err, true
	if w.failSince.IsZero() {
		w.failSince = s.now()
	}
	s.noteTrouble(w)
	return err
}

// retryLevel is the log level of a loop's failures-th failure in a row: the first is worth a
// warning, the retries (every 30 s at most) only debug, so an outage with many watched
// services does not flood the log.
func retryLevel(failures int) zerolog.Level {
	if failures == 1 {
		return zerolog.WarnLevel
	}
	return zerolog.DebugLevel
}

// simplify drops the request URL from transport errors: it is long, repeats the service name
// and would end up in /ready's body.
func simplify(err error) error {
	var ue *url.Error
	if errors.As(err, &ue) {
		return ue.Err
	}
	return err
}

// endpoints converts passing health entries to endpoints: the service address (the node's
// when the service has none) and port, weight Weights.Passing (at least 1). Every tag in tags
// must be present and meta must match exactly. Duplicates keep the highest weight; the result
// is sorted for stable snapshots.
func endpoints(entries []*api.ServiceEntry, tags []string, meta map[string]string) []discovery.Endpoint {
	byAddr := make(map[string]int, len(entries))
	for _, e := range entries {
		if e == nil || e.Service == nil || e.Service.Port <= 0 || !hasTags(e.Service.Tags, tags) || !hasMeta(e.Service.Meta, meta) {
			continue
		}
		host := e.Service.Address
		if host == "" && e.Node != nil {
			host = e.Node.Address
		}
		if host == "" {
			continue
		}
		addr := net.JoinHostPort(strings.Trim(host, "[]"), strconv.Itoa(e.Service.Port))
		byAddr[addr] = max(byAddr[addr], e.Service.Weights.Passing, 1)
	}
	out := make([]discovery.Endpoint, 0, len(byAddr))
	for addr, w := range byAddr {
		out = append(out, discovery.Endpoint{Address: addr, Weight: w})
	}
	slices.SortFunc(out, func(a, b discovery.Endpoint) int { return strings.Compare(a.Address, b.Address) })
	return out
}

func hasTags(have, want []string) bool {
	for _, t := range want {
		if !slices.Contains(have, t) {
			return false
		}
	}
	return true
}

func hasMeta(have, want map[string]string) bool {
	for k, v := range want {
		if got, ok := have[k]; !ok || got != v {
			return false
		}
	}
	return true
}

// backoff is exponential from backoffMin to backoffMax with equal jitter: at least half the
// step, so retries stay spaced, and randomised, so many watches do not retry in lockstep.
func (s *Source) backoff(failures int) time.Duration {
	d := s.backoffMax
	if failures < 32 {
		d = min(s.backoffMin<<(failures-1), s.backoffMax)
	}
	half := d / 2
	return half + rand.N(half+1)
}

// sleep waits d or until ctx ends; it reports whether the loop should go on.
func sleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}
