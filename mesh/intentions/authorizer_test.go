package intentions

import (
	"encoding/json"
	"errors"
	"io"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/meshgate/meshgate/discovery/snapshot"
	"github.com/meshgate/meshgate/internal/await"
)

var _ Snapshot = (*snapshot.Store)(nil)

const waitLimit = 5 * time.Second

func TestNewValidates(t *testing.T) {
	t.Parallel()
	src := newFakeSource()
	tests := []struct {
		name string
		o    Options
		ok   bool
	}{
		{"ok", Options{Source: src, Destination: "api"}, true},
		{"no source", Options{Destination: "api"}, false},
		{"no destination", Options{Source: src}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			a, err := New(tt.o)
			if (err == nil) != tt.ok || (a != nil) != tt.ok {
				t.Fatalf("New = %v, %v; want ok=%v", a, err, tt.ok)
			}
		})
	}
}

// TestNotLoadedFailsClosed: before the first answer nothing is allowed, not even with
// DefaultAllow, because "no rules yet" is not "no rules".
func TestNotLoadedFailsClosed(t *testing.T) {
	t.Parallel()
	a := newAuthorizer(t, Options{Source: newFakeSource(), DefaultAllow: true})
	if d := authorize(a, "web", get("/")); d.Allow || d.Intention != LabelNotLoaded {
		t.Fatalf("before load: %+v; want deny by %q", d, LabelNotLoaded)
	}
	if a.Ready() || a.Version() != 0 {
		t.Fatalf("Ready = %v, Version = %d before any answer", a.Ready(), a.Version())
	}
	v := a.Rules()
	if v.Ready || v.Intentions == nil {
		t.Fatalf("Rules() = %+v; want not ready with an empty (non-null) list", v)
	}
}

func TestRunFollowsAnswers(t *testing.T) {
	t.Parallel()
	src := newFakeSource(fakeAnswer{list: []Intention{l4("web", ActionAllow)}, index: 10})
	a := newAuthorizer(t, Options{Source: src})
	start(t, a)
	await.Until(t, waitLimit, "first answer", a.Ready)
	if d := authorize(a, "web", get("/")); !d.Allow || d.Intention != "web→api allow" {
		t.Fatalf("after answer 10: %+v", d)
	}

	src.publish(fakeAnswer{list: []Intention{l4("web", ActionDeny)}, index: 11})
	await.Until(t, waitLimit, "version 11", func() bool { return a.Version() == 11 })
	if d := authorize(a, "web", get("/")); d.Allow || d.Intention != "web→api deny" {
		t.Fatalf("after answer 11: %+v", d)
	}

	// The entry is deleted: back to the default.
	src.publish(fakeAnswer{index: 12})
	await.Until(t, waitLimit, "version 12", func() bool { return a.Version() == 12 })
	if d := authorize(a, "web", get("/")); d.Allow || d.Intention != LabelDefaultDeny {
		t.Fatalf("after answer 12: %+v", d)
	}
	if s := a.Stats(); s.Updates != 3 || s.Failures != 0 {
		t.Fatalf("stats = %+v; want 3 updates", s)
	}
	idx, _ := src.queried()
	if !slices.Equal(idx[:3], []uint64{0, 10, 11}) {
		t.Fatalf("query indexes = %v; want each query to wait on the previous index", idx)
	}
}

// TestFailuresKeepRules: failed queries and answers that do not compile never replace the
// rules in use.
func TestFailuresKeepRules(t *testing.T) {
	t.Parallel()
	src := newFakeSource(
		fakeAnswer{list: []Intention{l4("web", ActionAllow)}, index: 5},
		fakeAnswer{err: errors.New("connection refused")},
		fakeAnswer{err: errors.New("connection refused")},
		fakeAnswer{list: []Intention{l7("web", allowHTTP(HTTPMatch{PathRegex: "(("}))}, index: 6},
	)
	a := newAuthorizer(t, Options{Source: src})
	start(t, a)
	await.Until(t, waitLimit, "two failures and a rejection", func() bool {
		s := a.Stats()
		return s.Failures == 2 && s.Rejected == 1
	})
	if d := authorize(a, "web", get("/")); !d.Allow || a.Version() != 5 {
		t.Fatalf("after failures: %+v at version %d; want the index-5 rules kept", d, a.Version())
	}
	src.publish(fakeAnswer{list: []Intention{l4("web", ActionDeny)}, index: 7})
	await.Until(t, waitLimit, "recovery", func() bool { return a.Version() == 7 })
	if d := authorize(a, "web", get("/")); d.Allow {
		t.Fatalf("after recovery: %+v", d)
	}
}

// TestIndexGoingBackwardsResets: after an agent restart the index restarts low; waiting on
// the old, higher index would block until it caught up.
func TestIndexGoingBackwardsResets(t *testing.T) {
	t.Parallel()
	src := newFakeSource(
		fakeAnswer{list: []Intention{l4("web", ActionAllow)}, index: 100},
		fakeAnswer{list: []Intention{l4("web", ActionAllow)}, index: 3},
	)
	a := newAuthorizer(t, Options{Source: src})
	start(t, a)
	await.Until(t, waitLimit, "third query", func() bool { idx, _ := src.queried(); return len(idx) >= 3 })
	if idx, _ := src.queried(); !slices.Equal(idx[:3], []uint64{0, 100, 0}) {
		t.Fatalf("query indexes = %v; want 0, 100, then a reset to 0", idx)
	}
}

// TestNonBlockingSourceIsPaced: a source without indexes answers at once; it is polled every
// PollInterval, not in a tight loop, and a change is still picked up.
func TestNonBlockingSourceIsPaced(t *testing.T) {
	t.Parallel()
	const poll = 20 * time.Millisecond
	src := newFakeSource(fakeAnswer{list: []Intention{l4("web", ActionAllow)}})
	src.sticky = true
	a := newAuthorizer(t, Options{Source: src, PollInterval: poll})
	start(t, a)
	await.Until(t, waitLimit, "6 queries", func() bool { idx, _ := src.queried(); return len(idx) >= 6 })
	_, times := src.queried()
	for i := 1; i < 6; i++ {
		if gap := times[i].Sub(times[i-1]); gap < poll*9/10 {
			t.Fatalf("query %d came %v after the previous; want ≥ %v", i, gap, poll)
		}
	}
	src.publish(fakeAnswer{list: []Intention{l4("web", ActionDeny)}})
	await.Until(t, waitLimit, "change picked up", func() bool { return !authorize(a, "web", get("/")).Allow })
	if s := a.Stats(); s.Updates != 2 {
		t.Fatalf("stats = %+v; want 2 updates (unchanged polls are no-ops)", s)
	}
}

func TestRunTwice(t *testing.T) {
	t.Parallel()
	a := newAuthorizer(t, Options{Source: newFakeSource()})
	start(t, a)
	await.Until(t, waitLimit, "first Run to start", a.running.Load)
	if err := a.Run(t.Context()); err == nil {
		t.Fatal("second Run returned nil; want an error")
	}
}

// TestSnapshotRestoresRules: a sidecar restarted while Consul is down enforces the last
// known rules instead of denying everything.
func TestSnapshotRestoresRules(t *testing.T) {
	t.Parallel()
	store, err := snapshot.New(snapshot.Options{Dir: t.TempDir(), Logger: zerolog.New(io.Discard)})
	if err != nil {
		t.Fatal(err)
	}
	list := []Intention{l7("web", allowHTTP(HTTPMatch{PathPrefix: "/public"})), l4("*", ActionDeny)}

	first := newAuthorizer(t, Options{Source: newFakeSource(fakeAnswer{list: list, index: 42}), Snapshot: store})
	stop := start(t, first)
	await.Until(t, waitLimit, "first authorizer loaded", first.Ready)
	stop()

	down := newFakeSource(fakeAnswer{err: errors.New("connection refused")})
	down.sticky = true
	second := newAuthorizer(t, Options{Source: down, Snapshot: store})
	if !second.Ready() || second.Version() != 42 || second.Rules().Origin != OriginSnapshot {
		t.Fatalf("restored: ready=%v version=%d origin=%q; want ready at 42 from the snapshot",
			second.Ready(), second.Version(), second.Rules().Origin)
	}
	start(t, second)
	await.Until(t, waitLimit, "a failed query", func() bool { return second.Stats().Failures > 0 })
	for _, c := range []struct {
		src   string
		path  string
		allow bool
	}{{"web", "/public/a", true}, {"web", "/admin", false}, {"db", "/public/a", false}} {
		if d := authorize(second, c.src, get(c.path)); d.Allow != c.allow {
			t.Errorf("%s %s: %+v; want allow=%v", c.src, c.path, d, c.allow)
		}
	}

	// A snapshot of another service, or garbage, is ignored.
	if err := store.SaveDoc(SnapshotKind, "other", []byte("{not json")); err != nil {
		t.Fatal(err)
	}
	b, ok := store.LoadDoc(SnapshotKind, "api")
	if !ok || !strings.Contains(string(b), `"destination":"api"`) {
		t.Fatalf("snapshot doc = %s", b)
	}
	if err := store.SaveDoc(SnapshotKind, "copied", b); err != nil {
		t.Fatal(err)
	}
	for _, dest := range []string{"other", "nothing", "copied"} {
		if a := newAuthorizer(t, Options{Source: down, Snapshot: store, Destination: dest}); a.Ready() {
			t.Errorf("destination %s: ready from an unusable snapshot", dest)
		}
	}
}

func TestRulesViewJSON(t *testing.T) {
	t.Parallel()
	src := newFakeSource(fakeAnswer{list: []Intention{l4("*", ActionDeny), l4("web", ActionAllow)}, index: 9})
	a := newAuthorizer(t, Options{Source: src, DefaultAllow: true})
	start(t, a)
	await.Until(t, waitLimit, "loaded", a.Ready)
	b, err := json.Marshal(a.Rules())
	if err != nil {
		t.Fatal(err)
	}
	var v RulesView
	if err := json.Unmarshal(b, &v); err != nil {
		t.Fatal(err)
	}
	if !v.Ready || v.Version != 9 || !v.DefaultAllow || v.Origin != OriginSource || len(v.Intentions) != 2 ||
		v.Intentions[0].SourceName != "web" {
		t.Fatalf("view = %s; want ready, version 9, web first (evaluation order)", b)
	}
}

// TestOtherTenancyDenied: intentions are compiled for default/default, so a caller from
// another namespace or partition is refused with its own label, even when an intention for its
// service name (or a wildcard, or the default) would allow it.
func TestOtherTenancyDenied(t *testing.T) { // not parallel: AllocsPerRun
	src := newFakeSource(fakeAnswer{list: []Intention{l4("web", ActionAllow), l4("*", ActionAllow)}, index: 1})
	a := newAuthorizer(t, Options{Source: src, DefaultAllow: true})
	start(t, a)
	await.Until(t, waitLimit, "rules", a.Ready)
	h := get("/").header()
	tests := []struct {
		c     Caller
		allow bool
	}{
		{Caller{Service: "web"}, true},
		{Caller{Partition: "default", Namespace: "default", Service: "web"}, true},
		{Caller{Namespace: "team-b", Service: "web"}, false},
		{Caller{Partition: "finance", Namespace: "default", Service: "web"}, false},
		{Caller{Partition: "finance", Namespace: "team-b", Service: "other"}, false},
	}
	for _, tt := range tests {
		d := a.Authorize(tt.c, h.Method(), h.RequestURI(), h)
		if d.Allow != tt.allow {
			t.Errorf("%+v: %+v, want allow=%v", tt.c, d, tt.allow)
		}
		if !tt.allow && d.Intention != LabelOtherTenancy {
			t.Errorf("%+v: label %q, want %q", tt.c, d.Intention, LabelOtherTenancy)
		}
	}
	if n := testing.AllocsPerRun(100, func() {
		a.Authorize(Caller{Namespace: "team-b", Service: "web"}, h.Method(), h.RequestURI(), h)
	}); n != 0 {
		t.Errorf("refusal: %v allocs, want 0", n)
	}
}

// TestMaxAgeSnapshot: rules loaded from the snapshot are as old as their fetch, not their
// load: too old (or of unknown age, from an older snapshot) denies from the first request;
// young enough serves until MaxAge after the fetch.
func TestMaxAgeSnapshot(t *testing.T) {
	t.Parallel()
	const maxAge = time.Hour
	allowWeb := []Intention{l4("web", ActionAllow)}
	tests := []struct {
		name      string
		fetchedAt time.Time
		allow     bool
	}{
		{"fetched a minute ago", time.Now().Add(-time.Minute), true},
		{"fetched two hours ago", time.Now().Add(-2 * time.Hour), false},
		{"no fetched_at (older snapshot)", time.Time{}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			store, err := snapshot.New(snapshot.Options{Dir: t.TempDir(), Logger: zerolog.New(io.Discard)})
			if err != nil {
				t.Fatal(err)
			}
			b, err := json.Marshal(snapshotDoc{Destination: "api", Index: 3, Intentions: allowWeb, FetchedAt: tt.fetchedAt})
			if err != nil {
				t.Fatal(err)
			}
			if err := store.SaveDoc(SnapshotKind, "api", b); err != nil {
				t.Fatal(err)
			}
			a := newAuthorizer(t, Options{Source: newFakeSource(), Snapshot: store, MaxAge: maxAge})
			d := authorize(a, "web", get("/"))
			if d.Allow != tt.allow || (!tt.allow && d.Intention != LabelTooOld) {
				t.Fatalf("decision %+v, want allow=%v", d, tt.allow)
			}
			// Without a max age the same snapshot serves.
			b2 := newAuthorizer(t, Options{Source: newFakeSource(), Snapshot: store})
			if d := authorize(b2, "web", get("/")); !d.Allow {
				t.Fatalf("without max age: %+v", d)
			}
		})
	}
}

// TestMaxAgeSavesFetchedAt: the snapshot written from an answer records when it was fetched,
// so a restart judges its age correctly.
func TestMaxAgeSavesFetchedAt(t *testing.T) {
	t.Parallel()
	store, err := snapshot.New(snapshot.Options{Dir: t.TempDir(), Logger: zerolog.New(io.Discard)})
	if err != nil {
		t.Fatal(err)
	}
	a := newAuthorizer(t, Options{Source: newFakeSource(fakeAnswer{list: []Intention{l4("web", ActionAllow)}, index: 4}),
		Snapshot: store, MaxAge: time.Hour})
	before := time.Now()
	start(t, a)
	// The rules are in force (Ready) just before the snapshot is written: wait for the file.
	var b []byte
	await.Until(t, waitLimit, "snapshot saved", func() bool {
		var ok bool
		b, ok = store.LoadDoc(SnapshotKind, "api")
		return ok
	})
	var d snapshotDoc
	if err := json.Unmarshal(b, &d); err != nil {
		t.Fatal(err)
	}
	if d.FetchedAt.Before(before) || d.FetchedAt.After(time.Now()) {
		t.Fatalf("fetched_at %v, want between %v and now", d.FetchedAt, before)
	}
}

// TestRestartWithSameIndexIsNotUnchanged: after an outage the agent may be a new one whose
// index happens to equal the old one; its answer (here: no intentions) must replace the
// rules, not be taken as a confirmation of them.
func TestRestartWithSameIndexIsNotUnchanged(t *testing.T) {
	t.Parallel()
	src := newFakeSource(
		fakeAnswer{list: []Intention{l4("web", ActionAllow)}, index: 9},
		fakeAnswer{err: errors.New("connection refused")},
		fakeAnswer{list: nil, index: 9},
	)
	a := newAuthorizer(t, Options{Source: src})
	start(t, a)
	await.Until(t, waitLimit, "the answer after the failure", func() bool { return a.Stats().Failures == 1 && !authorize(a, "web", get("/")).Allow })
	if d := authorize(a, "web", get("/")); d.Allow || d.Intention != LabelDefaultDeny {
		t.Fatalf("after the restart: %+v; want the default", d)
	}
}
