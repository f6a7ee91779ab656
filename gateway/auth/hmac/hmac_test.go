package hmac

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/valyala/fasthttp"

	"github.com/meshgate/meshgate/gateway/filter"
)

var (
	testNow = time.Date(2026, 3, 2, 12, 0, 0, 0, time.UTC)
	secret  = []byte("client-one-secret-0123456789")
)

// signed builds a request the way a client library would.
type signed struct {
	method, uri, body string
	date              time.Time
	headers           string // signed header list
	keyID             string
	secret            []byte
	digestHeader      string // "Digest" or "Content-Digest"
	skip              string // header to leave off the request after signing
}

func (s signed) build() *fasthttp.RequestCtx {
	var ctx fasthttp.RequestCtx
	req := &ctx.Request
	req.Header.SetMethod(s.method)
	req.SetRequestURI(s.uri)
	req.Header.SetHost("api.example.test")
	req.SetBodyString(s.body)
	sum := sha256.Sum256([]byte(s.body))
	b64 := base64.StdEncoding.EncodeToString(sum[:])
	if s.digestHeader == "Content-Digest" {
		req.Header.Set("Content-Digest", "sha-256=:"+b64+":")
	} else {
		req.Header.Set("Digest", "SHA-256="+b64)
	}
	req.Header.Set("X-Date", s.date.UTC().Format(time.RFC1123)[:len(time.RFC1123)-3]+"GMT")
	var lines []string
	for _, h := range strings.Fields(s.headers) {
		if h == "(request-target)" {
			lines = append(lines, h+": "+strings.ToLower(s.method)+" "+s.uri)
			continue
		}
		lines = append(lines, h+": "+string(req.Header.Peek(h)))
	}
	m := hmac.New(sha256.New, s.secret)
	m.Write([]byte(strings.Join(lines, "\n")))
	req.Header.Set("Authorization", `HMAC-SHA256 keyId="`+s.keyID+`",headers="`+s.headers+`",signature="`+
		base64.StdEncoding.EncodeToString(m.Sum(nil))+`"`)
	if s.skip != "" {
		req.Header.Del(s.skip)
	}
	return &ctx
}

func good() signed {
	return signed{method: "POST", uri: "/v1/orders?id=7", body: `{"qty":1}`, date: testNow,
		headers: "(request-target) host x-date digest", keyID: "client-one", secret: secret}
}

func newFilter(t testing.TB) *Filter {
	t.Helper()
	f, err := New(Options{
		Secrets:       map[string][]byte{"client-one": secret, "client-two": []byte("another-secret-abcdefgh")},
		SignedHeaders: []string{"Host"},
		Now:           func() time.Time { return testNow },
	})
	if err != nil {
		t.Fatal(err)
	}
	return f
}

func run(f *Filter, ctx *fasthttp.RequestCtx) (filter.Verdict, *filter.Request) {
	r := &filter.Request{Ctx: ctx, Identity: make([]byte, 0, 64)}
	return f.Request(r), r
}

func TestSignedRequests(t *testing.T) {
	t.Parallel()
	mod := func(fn func(*signed)) signed { s := good(); fn(&s); return s }
	cases := []struct {
		name   string
		ctx    func() *fasthttp.RequestCtx
		status int
		reason string
	}{
		{"valid", good().build, 0, ""},
		{"valid, Content-Digest", mod(func(s *signed) {
			s.digestHeader = "Content-Digest"
			s.headers = "(request-target) host x-date content-digest"
		}).build, 0, ""},
		{"valid, empty body GET", mod(func(s *signed) { s.method, s.body = "GET", "" }).build, 0, ""},
		{"skewed past", mod(func(s *signed) { s.date = testNow.Add(-6 * time.Minute) }).build, 401, ReasonSkewed},
		{"skewed future", mod(func(s *signed) { s.date = testNow.Add(6 * time.Minute) }).build, 401, ReasonSkewed},
		{"wrong secret", mod(func(s *signed) { s.secret = []byte("guessed-secret-000000000000") }).build, 401, ReasonBadSignature},
		{"unknown key id", mod(func(s *signed) { s.keyID = "client-nine" }).build, 401, ReasonUnknownKey},
		{"tampered body", func() *fasthttp.RequestCtx {
			c := good().build()
			c.Request.SetBodyString(`{"qty":1000}`)
			return c
		}, 401, ReasonDigest},
		{"tampered body and digest", func() *fasthttp.RequestCtx {
			c := good().build()
			c.Request.SetBodyString(`{"qty":1000}`)
			sum := sha256.Sum256([]byte(`{"qty":1000}`))
			c.Request.Header.Set("Digest", "SHA-256="+base64.StdEncoding.EncodeToString(sum[:]))
			return c
		}, 401, ReasonBadSignature},
		{"tampered path", func() *fasthttp.RequestCtx {
			c := good().build()
			c.Request.SetRequestURI("/v1/orders?id=8")
			return c
		}, 401, ReasonBadSignature},
		{"digest not signed", mod(func(s *signed) { s.headers = "(request-target) host x-date" }).build, 401, ReasonUnsignedHeader},
		{"date not signed", mod(func(s *signed) { s.headers = "(request-target) host digest" }).build, 401, ReasonUnsignedHeader},
		{"host not signed (policy requires it)", mod(func(s *signed) { s.headers = "(request-target) x-date digest" }).build, 401, ReasonUnsignedHeader},
		{"missing digest header", mod(func(s *signed) { s.skip = "Digest" }).build, 401, ReasonMissingHeader},
		{"missing date header", mod(func(s *signed) { s.skip = "X-Date" }).build, 401, ReasonMissingHeader},
		{"missing authorization", mod(func(s *signed) { s.skip = "Authorization" }).build, 401, ReasonMissing},
		{"malformed authorization", func() *fasthttp.RequestCtx {
			c := good().build()
			c.Request.Header.Set("Authorization", `HMAC-SHA256 keyId=client-one`)
			return c
		}, 401, ReasonMalformed},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			f := newFilter(t)
			ctx := tc.ctx()
			v, r := run(f, ctx)
			if v.Status != tc.status || v.Reason != tc.reason {
				t.Fatalf("got %d %q, want %d %q", v.Status, v.Reason, tc.status, tc.reason)
			}
			if tc.status == 0 && string(r.Identity) != "client-one" {
				t.Errorf("identity %q", r.Identity)
			}
			if tc.status == 401 && !strings.HasPrefix(string(ctx.Response.Header.Peek("WWW-Authenticate")), "HMAC-SHA256 ") {
				t.Errorf("401 without HMAC challenge")
			}
		})
	}
}

func TestReplayRejectedWithinWindow(t *testing.T) {
	t.Parallel()
	now := testNow
	f, err := New(Options{Secrets: map[string][]byte{"client-one": secret}, Now: func() time.Time { return now }})
	if err != nil {
		t.Fatal(err)
	}
	s := good()
	s.headers = "(request-target) x-date digest"
	if v, _ := run(f, s.build()); v.Status != 0 {
		t.Fatalf("first: %+v", v)
	}
	now = testNow.Add(4 * time.Minute)
	if v, _ := run(f, s.build()); v.Reason != ReasonReplayed {
		t.Fatalf("replay inside the window: %+v", v)
	}
	now = testNow.Add(6 * time.Minute)
	if v, _ := run(f, s.build()); v.Reason != ReasonSkewed {
		t.Fatalf("replay after the window: %+v", v)
	}
	s.date = now
	if v, _ := run(f, s.build()); v.Status != 0 {
		t.Fatalf("fresh request: %+v", v)
	}
}

func TestReplayCacheBoundedFailsClosed(t *testing.T) {
	t.Parallel()
	c := NewReplayCache(time.Minute, replayShards) // one entry per shard
	var a, b [32]byte
	b[1] = 1 // same shard as a (sig[0] == 0)
	if err := c.add(a, testNow.Add(time.Minute), testNow); err != nil {
		t.Fatal(err)
	}
	if err := c.add(b, testNow.Add(time.Minute), testNow); !errors.Is(err, errFull) {
		t.Fatalf("over the bound: %v, want errFull", err)
	}
	// Once a's entry expires the space is reclaimed.
	later := testNow.Add(3 * time.Minute)
	if err := c.add(b, later.Add(time.Minute), later); err != nil {
		t.Fatalf("after expiry: %v", err)
	}
}

func TestNewRejects(t *testing.T) {
	t.Parallel()
	if _, err := New(Options{}); err == nil {
		t.Error("no secrets accepted")
	}
	if _, err := New(Options{Secrets: map[string][]byte{"k": []byte("short")}}); err == nil || !strings.Contains(err.Error(), "16 bytes") {
		t.Errorf("short secret: %v", err)
	}
}

func TestHMACAllocs(t *testing.T) {
	if raceEnabled {
		t.Skip("allocation counts are meaningless under -race")
	}
	f := newFilter(t)
	const runs = 100
	ctxs := make([]*fasthttp.RequestCtx, runs+1)
	for i := range ctxs {
		s := good()
		s.date = testNow.Add(time.Duration(i) * time.Second) // distinct signatures: no replay
		ctxs[i] = s.build()
		// fasthttp parses the URI lazily into buffers a served connection reuses; parse it
		// here so the count is ours, as it is on a warm connection.
		ctxs[i].Request.URI().QueryString()
	}
	i := 0
	r := &filter.Request{Identity: make([]byte, 0, 64)}
	n := testing.AllocsPerRun(runs, func() {
		r.Ctx = ctxs[i]
		i++
		if v := f.Request(r); v.Status != 0 {
			t.Fatalf("verdict %+v", v)
		}
	})
	// Amortised replay-map growth only; the verification itself allocates nothing.
	if n > 1 {
		t.Errorf("signed request check allocates %.2f times per request", n)
	}
}

func BenchmarkHMAC(b *testing.B) {
	f := newFilter(b)
	var ctxs []*fasthttp.RequestCtx
	for i := range 4096 {
		s := good()
		s.date = testNow.Add(time.Duration(i%200) * time.Second)
		s.uri = "/v1/orders?id=" + string(rune('a'+i%26)) + strings.Repeat("x", i/26)
		ctxs = append(ctxs, s.build())
	}
	f.opts.MaxNonces = 1 << 30
	f.replay = NewReplayCache(f.opts.Skew, 1<<30)
	r := &filter.Request{Identity: make([]byte, 0, 64)}
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		r.Ctx = ctxs[i%len(ctxs)]
		if i%len(ctxs) == 0 {
			f.replay = NewReplayCache(f.opts.Skew, 1<<30)
		}
		i++
		if v := f.Request(r); v.Status != 0 {
			b.Fatal(v)
		}
	}
}
