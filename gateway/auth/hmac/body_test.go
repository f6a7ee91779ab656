package hmac

import (
	"testing"
	"time"

	"github.com/valyala/fasthttp"

	"github.com/meshgate/meshgate/gateway/filter"
)

// countingBody is the engine's side of filter.Request.Body as a filter sees it: it hands out
// the request's body (or a fixed verdict) and counts how often it was asked.
type countingBody struct {
	req   *fasthttp.Request
	reads int
	v     filter.Verdict
}

func (b *countingBody) ReadBody() ([]byte, filter.Verdict) {
	b.reads++
	if b.v.Status != 0 {
		return nil, b.v
	}
	return b.req.Body(), filter.Verdict{}
}

// TestBodyReadOnlyAfterCheapChecks: a request that fails any check not needing the body is
// refused without the body being read; a verified one reads it exactly once, through
// filter.Request.Body (never Request.Body(), which on a stream reads without a limit).
func TestBodyReadOnlyAfterCheapChecks(t *testing.T) {
	t.Parallel()
	mod := func(fn func(*signed)) signed { s := good(); fn(&s); return s }
	replayed := good().build() // sent once below, then again
	cases := []struct {
		name   string
		ctx    *fasthttp.RequestCtx
		reason string
		reads  int
	}{
		{"unknown key id", mod(func(s *signed) { s.keyID = "nobody" }).build(), ReasonUnknownKey, 0},
		{"skewed", mod(func(s *signed) { s.date = testNow.Add(-time.Hour) }).build(), ReasonSkewed, 0},
		{"bad signature", mod(func(s *signed) { s.secret = []byte("guessed-secret-000000000000") }).build(), ReasonBadSignature, 0},
		{"digest unsigned", mod(func(s *signed) { s.headers = "(request-target) host x-date" }).build(), ReasonUnsignedHeader, 0},
		{"valid", good().build(), "", 1},
		{"replayed", replayed, ReasonReplayed, 0},
	}
	f := newFilter(t)
	first := &filter.Request{Ctx: replayed, Identity: make([]byte, 0, 64)}
	if v := f.Request(first); v.Status != 0 {
		t.Fatalf("first send: %+v", v)
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if tc.name == "valid" { // a distinct signature from the replayed one
				tc.ctx = mod(func(s *signed) { s.date = testNow.Add(time.Second) }).build()
			}
			b := &countingBody{req: &tc.ctx.Request}
			r := &filter.Request{Ctx: tc.ctx, Identity: make([]byte, 0, 64)}
			r.SetBody(b)
			v := f.Request(r)
			if v.Reason != tc.reason || b.reads != tc.reads {
				t.Fatalf("verdict %+v after %d body reads, want %q after %d", v, b.reads, tc.reason, tc.reads)
			}
		})
	}
}

// TestBodyVerdictIsTheAnswer: the engine's 413 (past max_body_bytes) or 400 (broken body) is
// what the client gets, not a signature error, and nothing is recorded as seen.
func TestBodyVerdictIsTheAnswer(t *testing.T) {
	t.Parallel()
	f := newFilter(t)
	for _, want := range []filter.Verdict{
		{Status: 413, Reason: "body_too_large"},
		{Status: 400, Reason: "bad_request"},
	} {
		ctx := good().build()
		r := &filter.Request{Ctx: ctx, Identity: make([]byte, 0, 64)}
		r.SetBody(&countingBody{req: &ctx.Request, v: want})
		if v := f.Request(r); v != want {
			t.Fatalf("got %+v, want %+v", v, want)
		}
	}
	// The same signature with its body readable is then accepted: a failed read did not burn it.
	if v, _ := run(f, good().build()); v.Status != 0 {
		t.Fatalf("after failed body reads: %+v", v)
	}
}

// TestReplayCacheSharedAndResized: a cache given in Options outlives the filter (a reload
// builds a new filter on it), and a changed window still refuses what the old one accepted.
func TestReplayCacheSharedAndResized(t *testing.T) {
	t.Parallel()
	now := testNow
	clock := func() time.Time { return now }
	rc := NewReplayCache(DefaultSkew, 0)
	mk := func(c *ReplayCache, skew time.Duration) *Filter {
		f, err := New(Options{Secrets: map[string][]byte{"client-one": secret}, SignedHeaders: []string{"host"},
			Skew: skew, Replay: c, Now: clock})
		if err != nil {
			t.Fatal(err)
		}
		return f
	}
	if v, _ := run(mk(rc, DefaultSkew), good().build()); v.Status != 0 {
		t.Fatalf("first: %+v", v)
	}
	if same := rc.Resized(DefaultSkew, 0, now); same != rc {
		t.Fatal("Resized with the same window made a new cache")
	}
	if v, _ := run(mk(rc.Resized(DefaultSkew, 0, now), DefaultSkew), good().build()); v.Reason != ReasonReplayed {
		t.Fatalf("replay on a new filter with the kept cache: %+v", v)
	}
	for _, skew := range []time.Duration{time.Minute, time.Hour} {
		wider := rc.Resized(skew, 0, now)
		if wider == rc {
			t.Fatalf("window %s: same cache", skew)
		}
		if v, _ := run(mk(wider, skew), good().build()); v.Reason != ReasonReplayed {
			t.Fatalf("replay after the window changed to %s: %+v", skew, v)
		}
	}
	// Once the old entries have expired the replaced cache is no longer consulted.
	wider := rc.Resized(time.Hour, 0, now)
	now = testNow.Add(30 * time.Minute)
	s := good()
	s.date = now
	if v, _ := run(mk(wider, time.Hour), s.build()); v.Status != 0 {
		t.Fatalf("fresh request on the resized cache: %+v", v)
	}
	if wider.seenBefore([32]byte{}, now) {
		t.Fatal("an expired predecessor still answers")
	}
}
