package consul

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/hashicorp/consul/api"

	"github.com/meshgate/meshgate/discovery"
)

// KV watching: one blocking query on /v1/kv/<prefix>/?recurse per WatchKV, with the same index
// handling, backoff and failure semantics as the health watches (watch.go):
//
//	WatchKV(ctx, "meshgate/routes", fn) ─▶ LoadKV (snapshot) ─▶ fn(docs)  (synchronously, if any)
//	                                       loop: GET /v1/kv/meshgate/routes/?recurse&index=N&wait=5m
//	                                       ├─ ok: drop folder keys, sort, fn(docs) if keys or values changed
//	                                       └─ error: nothing delivered, backoff, index = 0
//
// The source does not know which documents are valid (the consumer validates them), so it does
// not save what it receives: the consumer saves the set it accepted with SaveKV, and that is
// what WatchKV delivers first at the next start.
//
// The loop is registered in Source.watches as a watch named "kv:<prefix>", so Close stops it,
// Synced waits for its first answer, Health reports it when it fails or serves the snapshot,
// and the query metrics count it under that name. It has no discovery.Set subscribers.

// SnapshotKindKV is the snapshot directory KV document sets are stored in.
const SnapshotKindKV = "kv"

// kvSnapshotVersion is bumped on incompatible changes; other versions are ignored.
const kvSnapshotVersion = 1

// KVDoc is one key under a watched prefix.
type KVDoc struct {
	Key         string // the full key, e.g. "meshgate/routes/api"
	Value       []byte
	ModifyIndex uint64
}

// kvWatch is the state of one WatchKV besides its watch entry.
type kvWatch struct {
	w      *watch
	prefix string // without the trailing "/"
	fn     func([]KVDoc)

	deliver sync.Mutex // serialises fn calls: the snapshot delivery, then the loop's
	cur     []KVDoc    // last delivered; guarded by deliver
}

// NormalizeKVPrefix strips the trailing "/" a prefix may be configured with.
func NormalizeKVPrefix(prefix string) string { return strings.TrimSuffix(prefix, "/") }

// WatchKV follows every key under prefix + "/" (prefix itself is a "folder", not a document)
// and calls fn with all of them, sorted by key, whenever a key was added, removed or its value
// changed. Keys ending in "/" (folders made by the UI) are skipped.
//
// If the snapshot holds a set saved with SaveKV for this prefix, it is delivered before WatchKV
// returns, so a process started while Consul is down has its documents at once; the first
// successful answer replaces it (delivered only if it differs). A failed query never delivers;
// a successful answer with no keys delivers an empty slice. Calls to fn are serialised; fn may
// take its time (the next query waits for it) but must not call Close.
func (s *Source) WatchKV(ctx context.Context, prefix string, fn func([]KVDoc)) error {
	prefix = NormalizeKVPrefix(prefix)
	if prefix == "" || fn == nil {
		return errors.New("consul: watch kv needs a prefix and a callback")
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	docs, savedAt, fromSnap := s.LoadKV(prefix)

	wctx, cancel := context.WithCancel(context.Background())
	name := "kv:" + prefix
	kw := &kvWatch{prefix: prefix, fn: fn, w: &watch{service: name, label: name, selector: prefix, stop: cancel}}
	if fromSnap {
		// Only Source matters in a KV watch's Set: Health reads it to say "snapshot".
		kw.w.cur, kw.w.have, kw.w.snapshotAt = discovery.Set{Service: name, Source: SourceSnapshot}, true, savedAt
		s.noteTrouble(kw.w) // not shared yet
		s.log.Info().Str(fieldService, name).Int("documents", len(docs)).Time("saved_at", savedAt).
			Msg("serving the kv snapshot until consul answers")
	}

	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		cancel()
		return ErrClosed
	}
	// Keyed by the pointer as well: two WatchKV on one prefix are two loops, each with its fn.
	kw.w.key = fmt.Sprintf("\x00kv\x00%s\x00%p", prefix, kw)
	s.watches[kw.w.key] = kw.w
	s.m.watches.Inc()
	kw.deliver.Lock() // the loop's first delivery waits for the snapshot's
	s.wg.Add(1)
	go s.runKV(wctx, kw)
	s.mu.Unlock()

	if fromSnap {
		kw.cur = docs
		fn(docs)
	}
	kw.deliver.Unlock()
	context.AfterFunc(ctx, func() { s.stopKV(kw.w) })
	return nil
}

func (s *Source) stopKV(w *watch) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.watches[w.key] != w {
		return // Close got there first
	}
	delete(s.watches, w.key)
	w.stop()
	s.retire(w)
	s.m.watches.Dec()
}

// runKV is the KV query loop; blockingLoop holds the index and backoff rules it shares.
func (s *Source) runKV(ctx context.Context, kw *kvWatch) {
	defer s.wg.Done()
	s.blockingLoop(ctx, func(index uint64) (uint64, error) {
		pairs, got, err := s.queryKV(ctx, kw.prefix, index)
		if err == nil && ctx.Err() == nil {
			s.kvApply(kw, pairs)
		}
		return got, err
	}, func(err error, failures int) { s.kvFailed(kw, err, failures) })
}

func (s *Source) queryKV(ctx context.Context, prefix string, index uint64) (api.KVPairs, uint64, error) {
	qctx, cancel := context.WithTimeout(ctx, s.wait+s.wait/16+queryGrace)
	defer cancel()
	q := (&api.QueryOptions{Datacenter: s.dc, WaitIndex: index, WaitTime: s.wait, Token: s.token}).WithContext(qctx)
	pairs, meta, err := s.client.KV().List(prefix+"/", q)
	if err != nil {
		return nil, 0, err
	}
	return pairs, meta.LastIndex, nil
}

// kvApply delivers a successful answer if it changed anything, then marks the watch answered
// (after the delivery, so Synced means "applied").
func (s *Source) kvApply(kw *kvWatch, pairs api.KVPairs) {
	w := kw.w
	s.m.of(w.service).ok.Add(1)
	docs := make([]KVDoc, 0, len(pairs))
	for _, p := range pairs {
		if p == nil || strings.HasSuffix(p.Key, "/") {
			continue
		}
		docs = append(docs, KVDoc{Key: p.Key, Value: p.Value, ModifyIndex: p.ModifyIndex})
	}
	slices.SortFunc(docs, func(a, b KVDoc) int { return strings.Compare(a.Key, b.Key) })

	kw.deliver.Lock()
	w.mu.Lock()
	first := !w.have
	w.mu.Unlock()
	changed := first || !SameKVDocs(kw.cur, docs)
	if changed {
		kw.cur = docs
		s.m.of(w.service).updates.Add(1) // before delivery: an observer sees it counted
		kw.fn(docs)
	}
	kw.deliver.Unlock()

	recovered, down := s.markOK(w)
	if recovered {
		s.log.Info().Str(fieldService, w.service).Dur("down", down).Msg("consul answers again")
	}
	if changed {
		s.log.Debug().Str(fieldService, w.service).Int("documents", len(docs)).Msg("kv documents updated")
	}
}

// kvFailed records a failed query; nothing is delivered, so the consumer keeps its documents.
func (s *Source) kvFailed(kw *kvWatch, err error, failures int) {
	w := kw.w
	s.m.of(w.service).failed.Add(1)
	err = s.markFailed(w, err)
	s.log.WithLevel(retryLevel(failures)).Err(err).Str(fieldService, w.service).Int("failures", failures).
		Msg("consul kv query failed; keeping the current documents")
}

// SameKVDocs reports whether a and b hold the same keys with the same values (ModifyIndex is
// ignored: rewriting a value unchanged changes nothing).
func SameKVDocs(a, b []KVDoc) bool {
	return slices.EqualFunc(a, b, func(x, y KVDoc) bool { return x.Key == y.Key && bytes.Equal(x.Value, y.Value) })
}

// kvRecord is the on-disk form of a saved document set.
type kvRecord struct {
	Version int       `json:"version"`
	Prefix  string    `json:"prefix"`
	SavedAt time.Time `json:"saved_at"`
	Docs    []kvEntry `json:"documents"`
}

type kvEntry struct {
	Key         string `json:"key"`
	Value       []byte `json:"value"` // base64: documents are bytes, not necessarily UTF-8
	ModifyIndex uint64 `json:"modify_index"`
}

func kvSnapshotName(prefix string) string { return NormalizeKVPrefix(prefix) + ".json" }

// SaveKV stores docs as the last known good set of prefix (atomically; see discovery/snapshot).
// Without a snapshot store it does nothing. The consumer calls it with the documents it
// accepted, so WatchKV's next start delivers only documents that were valid.
func (s *Source) SaveKV(prefix string, docs []KVDoc) error {
	if s.snap == nil {
		return nil
	}
	prefix = NormalizeKVPrefix(prefix)
	rec := kvRecord{Version: kvSnapshotVersion, Prefix: prefix, SavedAt: s.now().UTC(), Docs: make([]kvEntry, len(docs))}
	for i, d := range docs {
		rec.Docs[i] = kvEntry(d)
	}
	data, err := json.MarshalIndent(rec, "", "  ")
	if err != nil {
		return fmt.Errorf("consul: encode kv snapshot: %w", err)
	}
	return s.snap.SaveDoc(SnapshotKindKV, kvSnapshotName(prefix), data)
}

// LoadKV returns the set SaveKV stored for prefix. ok is false without a store, without a
// snapshot, or when it is unusable (logged): a corrupt snapshot is never fatal.
func (s *Source) LoadKV(prefix string) (docs []KVDoc, savedAt time.Time, ok bool) {
	if s.snap == nil {
		return nil, time.Time{}, false
	}
	prefix = NormalizeKVPrefix(prefix)
	data, ok := s.snap.LoadDoc(SnapshotKindKV, kvSnapshotName(prefix))
	if !ok {
		return nil, time.Time{}, false
	}
	var rec kvRecord
	err := json.Unmarshal(data, &rec)
	if err == nil {
		err = rec.check(prefix)
	}
	if err != nil {
		s.log.Warn().Err(err).Str("prefix", prefix).Msg("ignoring unusable kv snapshot")
		return nil, time.Time{}, false
	}
	docs = make([]KVDoc, len(rec.Docs))
	for i, e := range rec.Docs {
		docs[i] = KVDoc(e)
	}
	slices.SortFunc(docs, func(a, b KVDoc) int { return strings.Compare(a.Key, b.Key) })
	return docs, rec.SavedAt, true
}

func (r kvRecord) check(prefix string) error {
	if r.Version != kvSnapshotVersion {
		return fmt.Errorf("format version %d, want %d", r.Version, kvSnapshotVersion)
	}
	if r.Prefix != prefix {
		return fmt.Errorf("file holds prefix %q, want %q", r.Prefix, prefix)
	}
	for i, d := range r.Docs {
		if !strings.HasPrefix(d.Key, prefix+"/") || strings.HasSuffix(d.Key, "/") {
			return fmt.Errorf("document %d: key %s is not a document under %s/", i, strconv.Quote(d.Key), prefix)
		}
	}
	return nil
}
