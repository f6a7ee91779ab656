package intentions

import (
	"context"
	"io"
	"sync"
	"testing"
	"time"

	"github.com/rs/zerolog"
	"github.com/valyala/fasthttp"
	"go.uber.org/goleak"

	"github.com/meshgate/meshgate/internal/await"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m, await.IgnoreIdleConns()...)
}

// The hot-path caller passes fasthttp's request header straight through.
var _ HeaderGetter = (*fasthttp.RequestHeader)(nil)

// request is one evaluated request: a real fasthttp request header, so Peek behaves exactly
// as it will in the sidecar.
type request struct {
	method, path string
	headers      map[string]string
}

func (r request) header() *fasthttp.RequestHeader {
	h := &fasthttp.RequestHeader{}
	h.SetMethod(r.method)
	h.SetRequestURI(r.path)
	for k, v := range r.headers {
		h.Set(k, v)
	}
	return h
}

func get(path string) request { return request{method: "GET", path: path} }

// l4 and l7 build intentions the way Consul's match endpoint returns them for destination
// "api", with Consul's precedence for each source/destination shape.
func l4(src string, action Action) Intention {
	return Intention{SourceName: src, SourceNamespace: "default", SourceType: "consul",
		DestinationName: "api", DestinationNamespace: "default", Action: action, Precedence: prec(src, "api")}
}

func l7(src string, perms ...Permission) Intention {
	ix := l4(src, "")
	ix.Permissions = perms
	return ix
}

func prec(src, dst string) int {
	p := 9
	if dst == Wildcard {
		p = 6
	}
	if src == Wildcard {
		p--
	}
	return p
}

// with returns ix changed by edit, for table entries.
func with(ix Intention, edit func(*Intention)) Intention {
	edit(&ix)
	return ix
}

func toAnyDestination(ix *Intention) {
	ix.DestinationName, ix.Precedence = Wildcard, prec(ix.SourceName, Wildcard)
}

func allowHTTP(m HTTPMatch) Permission { return Permission{Action: ActionAllow, HTTP: &m} }
func denyHTTP(m HTTPMatch) Permission  { return Permission{Action: ActionDeny, HTTP: &m} }

func mustCompile(t testing.TB, list []Intention, defaultAllow bool) *ruleSet {
	t.Helper()
	rs, err := compile(list, defaultAllow, 1, OriginSource)
	if err != nil {
		t.Fatalf("compile: %v", err)
	}
	return rs
}

// fakeSource serves answers in order as the test publishes them, one per query; with none
// pending it blocks like a Consul blocking query. An answer with an error is a failed query.
type fakeSource struct {
	mu      sync.Mutex
	changed chan struct{}
	answers []fakeAnswer
	pos     int
	indexes []uint64    // the index each query was made with
	times   []time.Time // when each query was made
	// sticky, when set, answers every further query once the list is used up, at once and
	// with the same index: a source that cannot block.
	sticky bool
}

type fakeAnswer struct {
	list  []Intention
	index uint64
	err   error
}

func newFakeSource(first ...fakeAnswer) *fakeSource {
	return &fakeSource{changed: make(chan struct{}), answers: first}
}

func (f *fakeSource) publish(a fakeAnswer) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.answers = append(f.answers, a)
	close(f.changed)
	f.changed = make(chan struct{})
}

func (f *fakeSource) queried() ([]uint64, []time.Time) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]uint64(nil), f.indexes...), append([]time.Time(nil), f.times...)
}

func (f *fakeSource) Match(ctx context.Context, _ string, index uint64) ([]Intention, uint64, error) {
	f.mu.Lock()
	f.indexes = append(f.indexes, index)
	f.times = append(f.times, time.Now())
	f.mu.Unlock()
	for {
		f.mu.Lock()
		if f.pos < len(f.answers) {
			a := f.answers[f.pos]
			f.pos++
			f.mu.Unlock()
			return a.list, a.index, a.err
		}
		if f.sticky && f.pos > 0 {
			a := f.answers[f.pos-1]
			f.mu.Unlock()
			return a.list, a.index, a.err
		}
		ch := f.changed
		f.mu.Unlock()
		select {
		case <-ctx.Done():
			return nil, 0, ctx.Err()
		case <-ch:
		}
	}
}

func newAuthorizer(t *testing.T, o Options) *Authorizer {
	t.Helper()
	if o.Destination == "" {
		o.Destination = "api"
	}
	o.Logger = zerolog.New(io.Discard)
	if o.MinBackoff == 0 {
		o.MinBackoff, o.MaxBackoff = 10*time.Millisecond, 50*time.Millisecond
	}
	a, err := New(o)
	if err != nil {
		t.Fatal(err)
	}
	return a
}

// start runs a until the test ends and waits for Run to return at cleanup. The returned
// function stops it early.
func start(t *testing.T, a *Authorizer) (stop func()) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- a.Run(ctx) }()
	var once sync.Once
	stop = func() {
		once.Do(func() {
			cancel()
			if err := <-done; err != nil {
				t.Errorf("run: %v", err)
			}
		})
	}
	t.Cleanup(stop)
	return stop
}

func authorize(a *Authorizer, src string, r request) Decision {
	h := r.header()
	return a.Authorize(Caller{Service: src}, h.Method(), h.RequestURI(), h)
}
