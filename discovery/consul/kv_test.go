package consul

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/consul/api"

	"github.com/meshgate/meshgate/discovery/snapshot"
)

// kvRecorder collects WatchKV deliveries.
type kvRecorder struct {
	mu  sync.Mutex
	got [][]KVDoc
}

func (r *kvRecorder) fn(docs []KVDoc) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.got = append(r.got, docs)
}

func (r *kvRecorder) all() [][]KVDoc {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.got)
}

// render is "key=value,key=value" for comparisons.
func render(docs []KVDoc) string {
	parts := make([]string, len(docs))
	for i, d := range docs {
		parts[i] = d.Key + "=" + string(d.Value)
	}
	return strings.Join(parts, ",")
}

// waitKV waits until the latest delivery renders as want.
func (r *kvRecorder) waitKV(t *testing.T, want string) {
	t.Helper()
	eventually(t, propagationBound, func() error {
		all := r.all()
		if len(all) == 0 {
			return fmt.Errorf("no delivery yet, want %q", want)
		}
		if got := render(all[len(all)-1]); got != want {
			return fmt.Errorf("last delivery %q, want %q", got, want)
		}
		return nil
	})
}

func put(t *testing.T, c *api.Client, key, value string) {
	t.Helper()
	if _, err := c.KV().Put(&api.KVPair{Key: key, Value: []byte(value)}, nil); err != nil {
		t.Fatalf("put %s: %v", key, err)
	}
}

// TestWatchKVFollowsPrefix: a real agent's keys under the prefix are delivered on every change,
// folders and neighbouring prefixes are not, an unchanged rewrite delivers nothing, an outage
// delivers nothing, and the saved set is delivered first by a source started during the outage.
func TestWatchKVFollowsPrefix(t *testing.T) {
	t.Parallel()
	a, c := startAgent(t)
	dir := t.TempDir()
	store := func() *snapshot.Store {
		st, err := snapshot.New(snapshot.Options{Dir: dir})
		if err != nil {
			t.Fatal(err)
		}
		return st
	}
	s := newSource(t, Options{Address: a.HTTPAddr, Snapshot: store()})
	r := &kvRecorder{}
	if err := s.WatchKV(t.Context(), "mg/routes/", r.fn); err != nil {
		t.Fatal(err)
	}
	// A real empty answer is delivered (the consumer may have to drop snapshot documents).
	r.waitKV(t, "")
	if !s.Synced() {
		t.Fatal("not synced after the first answer")
	}

	put(t, c, "mg/routes/a", "one")
	r.waitKV(t, "mg/routes/a=one")
	put(t, c, "mg/routes/sub/", "")      // a UI folder: not a document
	put(t, c, "mg/routes-other/x", "no") // a neighbouring prefix
	put(t, c, "mg/routes/a", "one")      // same value: nothing to deliver
	put(t, c, "mg/routes/sub/b", "two")  // nested keys are documents too
	r.waitKV(t, "mg/routes/a=one,mg/routes/sub/b=two")
	for _, d := range r.all() {
		for _, doc := range d {
			if strings.HasSuffix(doc.Key, "/") || !strings.HasPrefix(doc.Key, "mg/routes/") {
				t.Fatalf("delivered %q", doc.Key)
			}
		}
	}
	n := len(r.all())
	if got := render(r.all()[n-2]); got != "mg/routes/a=one" {
		t.Fatalf("an unchanged rewrite or a folder was delivered: %q before the last delivery", got)
	}
	put(t, c, "mg/routes/a", "uno")
	r.waitKV(t, "mg/routes/a=uno,mg/routes/sub/b=two")
	if _, err := c.KV().Delete("mg/routes/sub/b", nil); err != nil {
		t.Fatal(err)
	}
	r.waitKV(t, "mg/routes/a=uno")
	last := r.all()[len(r.all())-1]
	if last[0].ModifyIndex == 0 {
		t.Fatalf("ModifyIndex not set: %+v", last[0])
	}
	if err := s.SaveKV("mg/routes", last); err != nil {
		t.Fatal(err)
	}

	// Outage: nothing delivered, Health names the kv watch.
	deliveries := len(r.all())
	a.Kill()
	eventually(t, propagationBound, func() error {
		if ok, detail := s.Health(); ok || !strings.Contains(detail, "kv:mg/routes: consul query failing") {
			return fmt.Errorf("health = %v %q", ok, detail)
		}
		return nil
	})
	if got := len(r.all()); got != deliveries {
		t.Fatalf("the outage delivered: %v", r.all()[deliveries:])
	}

	// A new source during the outage delivers the saved set synchronously.
	s2 := newSource(t, Options{Address: a.HTTPAddr, Snapshot: store()})
	r2 := &kvRecorder{}
	if err := s2.WatchKV(t.Context(), "mg/routes", r2.fn); err != nil {
		t.Fatal(err)
	}
	if got := r2.all(); len(got) != 1 || render(got[0]) != "mg/routes/a=uno" {
		t.Fatalf("start during the outage delivered %v, want the snapshot", got)
	}
	if !s2.Synced() {
		t.Fatal("a snapshot-served kv watch is not synced")
	}
	// Its first query may already have failed (the agent is down): then the detail is
	// "kv:mg/routes: consul query failing … (serving the snapshot saved …)".
	if ok, detail := s2.Health(); ok || !strings.Contains(detail, "kv:mg/routes: ") || !strings.Contains(detail, "serving the snapshot saved") {
		t.Fatalf("health from the snapshot = %v %q", ok, detail)
	}

	// The dev agent comes back empty: a real answer, delivered to both.
	a.Restart(t)
	r.waitKV(t, "")
	r2.waitKV(t, "")
	eventually(t, propagationBound, func() error {
		if ok, detail := s2.Health(); !ok {
			return fmt.Errorf("health after recovery: %s", detail)
		}
		return nil
	})
}

func TestWatchKVStopsWithCtx(t *testing.T) {
	t.Parallel()
	s := newSource(t, Options{Address: deadAddress(t)})
	if err := s.WatchKV(t.Context(), "", func([]KVDoc) {}); err == nil {
		t.Fatal("empty prefix accepted")
	}
	r := &kvRecorder{}
	ctx, cancel := context.WithCancel(t.Context())
	if err := s.WatchKV(ctx, "p", r.fn); err != nil {
		t.Fatal(err)
	}
	if s.watchCount() != 1 {
		t.Fatalf("watches = %d, want 1", s.watchCount())
	}
	// Unreachable agent: the first failure is an answer (synced) but delivers nothing.
	eventually(t, propagationBound, func() error {
		if !s.Synced() {
			return fmt.Errorf("not synced")
		}
		return nil
	})
	if got := r.all(); len(got) != 0 {
		t.Fatalf("a failed query delivered %v", got)
	}
	cancel()
	eventually(t, propagationBound, func() error {
		if n := s.watchCount(); n != 0 {
			return fmt.Errorf("%d watches after cancel", n)
		}
		return nil
	})
	s.Close()
	if err := s.WatchKV(t.Context(), "p", r.fn); err == nil {
		t.Fatal("WatchKV after Close succeeded")
	}
}

func TestKVSnapshotRejectsBadFiles(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		data string
	}{
		{"corrupt", "{not json"},
		{"other version", `{"version": 9, "prefix": "p", "documents": []}`},
		{"other prefix", `{"version": 1, "prefix": "q", "documents": []}`},
		{"key outside the prefix", `{"version": 1, "prefix": "p", "documents": [{"key": "q/a", "value": ""}]}`},
		{"folder key", `{"version": 1, "prefix": "p", "documents": [{"key": "p/a/", "value": ""}]}`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			dir := t.TempDir()
			st, err := snapshot.New(snapshot.Options{Dir: dir})
			if err != nil {
				t.Fatal(err)
			}
			s := newSource(t, Options{Address: deadAddress(t), Snapshot: st})
			if err := os.MkdirAll(filepath.Join(dir, SnapshotKindKV), 0o700); err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(filepath.Join(dir, SnapshotKindKV, "p.json"), []byte(tt.data), 0o600); err != nil {
				t.Fatal(err)
			}
			if docs, _, ok := s.LoadKV("p"); ok {
				t.Fatalf("LoadKV accepted %q: %v", tt.data, docs)
			}
		})
	}
}

func TestKVSnapshotRoundTrip(t *testing.T) {
	t.Parallel()
	st, err := snapshot.New(snapshot.Options{Dir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	s := newSource(t, Options{Address: deadAddress(t), Snapshot: st})
	in := []KVDoc{{Key: "a/b/2", Value: []byte("\xff binary"), ModifyIndex: 7}, {Key: "a/b/1", Value: []byte("routes: []"), ModifyIndex: 3}}
	if err := s.SaveKV("a/b/", in); err != nil {
		t.Fatal(err)
	}
	got, savedAt, ok := s.LoadKV("a/b")
	if !ok || time.Since(savedAt) > time.Minute {
		t.Fatalf("LoadKV ok=%v savedAt=%v", ok, savedAt)
	}
	want := []KVDoc{in[1], in[0]}
	if !SameKVDocs(got, want) || got[0].ModifyIndex != 3 {
		t.Fatalf("round trip %+v, want %+v", got, want)
	}
	// Without a store both are no-ops.
	s2 := newSource(t, Options{Address: deadAddress(t)})
	if err := s2.SaveKV("a", in); err != nil {
		t.Fatal(err)
	}
	if _, _, ok := s2.LoadKV("a"); ok {
		t.Fatal("LoadKV without a store returned data")
	}
}
