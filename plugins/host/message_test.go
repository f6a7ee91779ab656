package host

import (
	"errors"
	"net/netip"
	"slices"
	"strings"
	"testing"

	"github.com/valyala/fasthttp"

	"github.com/meshgate/meshgate/gateway/filter"
	pb "github.com/meshgate/meshgate/plugins/proto"
	"github.com/meshgate/meshgate/plugins/sdk"
)

// Translation between fasthttp and the contract, without processes.

func hdr(name, value string) *pb.Header { return &pb.Header{Name: []byte(name), Value: []byte(value)} }

func headerLines(hs []*pb.Header) []string {
	out := make([]string, len(hs))
	for i, h := range hs {
		out[i] = string(h.GetName()) + ": " + string(h.GetValue())
	}
	return out
}

func TestFillSendsOnlyWhatWasAskedFor(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name  string
		parts sdk.RequestParts
		check func(t *testing.T, in *pb.RequestPhase)
	}{
		{
			name: "nothing asked",
			check: func(t *testing.T, in *pb.RequestPhase) {
				t.Helper()
				if len(in.Headers) != 0 || in.Body != nil || in.Query != nil || in.Peer != nil || in.ClientIp != "" {
					t.Errorf("sent parts nobody asked for: %v", in)
				}
				// Always sent: they cost nothing to point at.
				if string(in.Method) != "POST" || string(in.Path) != "/api/orders" || in.Route != "api" ||
					string(in.RequestId) != "0af7651916cd43dd8448eb211c80319c" {
					t.Errorf("method/path/route/id = %q %q %q %q", in.Method, in.Path, in.Route, in.RequestId)
				}
			},
		},
		{
			name:  "named headers, every value in order, case-insensitive",
			parts: sdk.RequestParts{Headers: sdk.HeaderNames("x-tenant", "AUTHORIZATION")},
			check: func(t *testing.T, in *pb.RequestPhase) {
				t.Helper()
				want := []string{"X-Tenant: a", "Authorization: Bearer t", "X-Tenant: b"}
				if got := headerLines(in.Headers); !slices.Equal(got, want) {
					t.Errorf("headers = %q, want %q", got, want)
				}
			},
		},
		{
			name:  "all headers",
			parts: sdk.RequestParts{Headers: sdk.AllHeaders()},
			check: func(t *testing.T, in *pb.RequestPhase) {
				t.Helper()
				got := strings.Join(headerLines(in.Headers), "\n")
				for _, w := range []string{"Host: example.test", "X-Tenant: a", "X-Tenant: b", "Content-Type: application/json", "X-Other: 1"} {
					if !strings.Contains(got, w) {
						t.Errorf("headers missing %q:\n%s", w, got)
					}
				}
			},
		},
		{
			name:  "body within the limit",
			parts: sdk.RequestParts{Body: true, MaxBodyBytes: 64},
			check: func(t *testing.T, in *pb.RequestPhase) {
				t.Helper()
				if string(in.Body) != `{"id":7}` || in.BodyTruncated {
					t.Errorf("body = %q truncated=%v", in.Body, in.BodyTruncated)
				}
			},
		},
		{
			name:  "body over the limit",
			parts: sdk.RequestParts{Body: true, MaxBodyBytes: 4},
			check: func(t *testing.T, in *pb.RequestPhase) {
				t.Helper()
				if string(in.Body) != `{"id` || !in.BodyTruncated {
					t.Errorf("body = %q truncated=%v, want the first 4 bytes, truncated", in.Body, in.BodyTruncated)
				}
			},
		},
		{
			name:  "query, client ip, peer",
			parts: sdk.RequestParts{Query: true, ClientIP: true, Peer: true},
			check: func(t *testing.T, in *pb.RequestPhase) {
				t.Helper()
				if string(in.Query) != "id=7&x=%20" || in.ClientIp != "2001:db8::1" {
					t.Errorf("query = %q, client ip = %q", in.Query, in.ClientIp)
				}
				if in.Peer.GetConsumer() != "billing" || in.Peer.GetService() != "" {
					t.Errorf("peer = %v", in.Peer)
				}
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			r := request("POST", "/api/orders?id=7&x=%20",
				"X-Tenant", "a", "Authorization", "Bearer t", "X-Tenant", "b", "X-Other", "1")
			r.Ctx.Request.Header.SetHost("example.test")
			r.Ctx.Request.Header.SetContentType("application/json")
			r.Ctx.Request.SetBodyString(`{"id":7}`)
			r.ClientIP = netip.MustParseAddr("2001:db8::1")
			r.Identity = append(r.Identity, "billing"...)
			var c requestCall
			c.fill(r, newShape(sdk.Capabilities{Phases: sdk.PhaseRequest, Request: tt.parts}))
			tt.check(t, &c.in)
			c.reset()
			if c.in.Headers != nil || c.in.Body != nil || c.in.Method != nil || c.in.ClientIp != "" || len(c.headers.ptrs) != 0 {
				t.Errorf("reset left references to the request: %v", &c.in)
			}
		})
	}
}

func TestFillStreamedBody(t *testing.T) {
	t.Parallel()
	r := request("POST", "/upload")
	r.Ctx.Request.SetBodyStream(strings.NewReader("a large body"), -1)
	var c requestCall
	c.fill(r, newShape(sdk.Capabilities{Phases: sdk.PhaseRequest, Request: sdk.RequestParts{Body: true}}))
	if c.in.Body != nil || !c.in.BodyTruncated {
		t.Errorf("streamed body: body = %q truncated = %v, want none, truncated", c.in.Body, c.in.BodyTruncated)
	}
	if !r.Ctx.Request.IsBodyStream() {
		t.Error("the stream was read into memory")
	}
}

// TestFillManyHeaders grows the slab mid-call; every header must still come out.
func TestFillManyHeaders(t *testing.T) {
	t.Parallel()
	var kv []string
	for i := range 40 {
		kv = append(kv, "X-H", strings.Repeat("v", i+1))
	}
	r := request("GET", "/", kv...)
	var c requestCall
	sh := newShape(sdk.Capabilities{Request: sdk.RequestParts{Headers: sdk.HeaderNames("X-H")}})
	for range 2 { // the second call runs on the grown slab
		c.fill(r, sh)
		if len(c.in.Headers) != 40 {
			t.Fatalf("%d headers, want 40", len(c.in.Headers))
		}
		for i, h := range c.in.Headers {
			if len(h.Value) != i+1 {
				t.Fatalf("header %d = %q", i, h.Value)
			}
		}
		c.reset()
	}
}

func TestApplyDecision(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		d       *pb.RequestDecision
		want    filter.Verdict
		wantErr string
		check   func(t *testing.T, r *filter.Request)
	}{
		{name: "empty is continue", d: &pb.RequestDecision{}},
		{
			name: "remove, then set (every value), then add",
			d: &pb.RequestDecision{Action: &pb.RequestDecision_Proceed{Proceed: &pb.Continue{
				RemoveHeaders: [][]byte{[]byte("x-drop")},
				SetHeaders:    []*pb.Header{hdr("X-Multi", "one"), hdr("X-New", "n")},
				AddHeaders:    []*pb.Header{hdr("X-Multi", "two"), hdr("X-Drop", "back")},
				RewritePath:   []byte("/v2/orders"),
				Consumer:      "billing",
			}}},
			check: func(t *testing.T, r *filter.Request) {
				t.Helper()
				h := &r.Ctx.Request.Header
				if got := h.PeekAll("X-Multi"); len(got) != 2 || string(got[0]) != "one" || string(got[1]) != "two" {
					t.Errorf("X-Multi = %q, want [one two]", got)
				}
				if got := h.PeekAll("X-Drop"); len(got) != 1 || string(got[0]) != "back" {
					t.Errorf("X-Drop = %q, want [back]", got)
				}
				if string(h.Peek("X-New")) != "n" {
					t.Errorf("X-New = %q", h.Peek("X-New"))
				}
				if got := string(r.Ctx.Request.URI().Path()); got != "/v2/orders" {
					t.Errorf("path = %q", got)
				}
				if got := string(r.Ctx.Request.URI().QueryString()); got != "q=1" {
					t.Errorf("query = %q, want it kept", got)
				}
				if string(r.Identity) != "billing" {
					t.Errorf("identity = %q", r.Identity)
				}
			},
		},
		{
			name: "respond writes the whole answer",
			d: &pb.RequestDecision{Action: &pb.RequestDecision_Respond{Respond: &pb.Respond{
				Status: 302, Headers: []*pb.Header{hdr("Location", "/login"), hdr("Set-Cookie", "a=1"), hdr("Set-Cookie", "b=2")},
				Body: []byte("see /login"),
			}}},
			want: filter.Verdict{Status: 302, Reason: ReasonResponse, Written: true},
			check: func(t *testing.T, r *filter.Request) {
				t.Helper()
				resp := &r.Ctx.Response
				if resp.StatusCode() != 302 || string(resp.Header.Peek("Location")) != "/login" || string(resp.Body()) != "see /login" {
					t.Errorf("response = %d %q %q", resp.StatusCode(), resp.Header.Peek("Location"), resp.Body())
				}
				var cookies []string
				for k, v := range resp.Header.All() {
					if string(k) == "Set-Cookie" {
						cookies = append(cookies, string(v))
					}
				}
				if !slices.Equal(cookies, []string{"a=1", "b=2"}) {
					t.Errorf("Set-Cookie headers = %q, want [a=1 b=2]", cookies)
				}
			},
		},
		{name: "header injection", wantErr: "control characters", d: proceed(&pb.Continue{SetHeaders: []*pb.Header{hdr("X-A", "v\r\nX-Evil: 1")}})},
		{name: "name not a token", wantErr: "not a valid header name", d: proceed(&pb.Continue{AddHeaders: []*pb.Header{hdr("X A", "v")}})},
		{name: "empty name", wantErr: "not a valid header name", d: proceed(&pb.Continue{RemoveHeaders: [][]byte{nil}})},
		{name: "smuggling", wantErr: "set by the proxy", d: proceed(&pb.Continue{SetHeaders: []*pb.Header{hdr("transfer-encoding", "chunked")}})},
		{name: "content-length", wantErr: "set by the proxy", d: proceed(&pb.Continue{RemoveHeaders: [][]byte{[]byte("Content-Length")}})},
		{name: "relative path", wantErr: "rewrite_path", d: proceed(&pb.Continue{RewritePath: []byte("v2/orders")})},
		{name: "path with query", wantErr: "rewrite_path", d: proceed(&pb.Continue{RewritePath: []byte("/a?b=c")})},
		{name: "consumer with newline", wantErr: "consumer", d: proceed(&pb.Continue{Consumer: "a\nb"})},
		{name: "status not final", wantErr: "not a final status", d: respond(&pb.Respond{Status: 101})},
		{name: "status too large", wantErr: "not a final status", d: respond(&pb.Respond{Status: 600})},
		{name: "respond with framing", wantErr: "set by the proxy", d: respond(&pb.Respond{Status: 200, Headers: []*pb.Header{hdr("Connection", "close")}})},
		{
			// A decision is refused whole: a good edit before the bad one is not applied.
			name:    "refused whole",
			wantErr: "control characters",
			d:       proceed(&pb.Continue{SetHeaders: []*pb.Header{hdr("X-Good", "g"), hdr("X-Bad", "\x00")}, Consumer: "c"}),
			check: func(t *testing.T, r *filter.Request) {
				t.Helper()
				if r.Ctx.Request.Header.Peek("X-Good") != nil || len(r.Identity) != 0 {
					t.Error("part of a refused decision was applied")
				}
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			r := request("GET", "/orders?q=1", "X-Drop", "a", "X-Drop", "b", "X-Multi", "old")
			v, err := applyDecision(r, tt.d)
			if tt.wantErr != "" {
				if !errors.Is(err, errInvalidDecision) || !strings.Contains(err.Error(), tt.wantErr) {
					t.Errorf("err = %v, want errInvalidDecision mentioning %q", err, tt.wantErr)
				}
			} else if err != nil {
				t.Fatal(err)
			}
			if v != tt.want {
				t.Errorf("verdict = %+v, want %+v", v, tt.want)
			}
			if tt.check != nil {
				tt.check(t, r)
			}
		})
	}
}

func proceed(c *pb.Continue) *pb.RequestDecision {
	return &pb.RequestDecision{Action: &pb.RequestDecision_Proceed{Proceed: c}}
}

func respond(r *pb.Respond) *pb.RequestDecision {
	return &pb.RequestDecision{Action: &pb.RequestDecision_Respond{Respond: r}}
}

func TestResponsePhase(t *testing.T) {
	t.Parallel()
	r := request("GET", "/")
	resp := &fasthttp.Response{}
	resp.SetStatusCode(201)
	resp.Header.Set("Server", "app")
	resp.Header.Add("X-Internal", "1")
	resp.Header.Add("Cache-Control", "no-store")
	var c responseCall
	c.fill(r, resp, newShape(sdk.Capabilities{Phases: sdk.PhaseResponse, Response: sdk.ResponseParts{Headers: sdk.HeaderNames("x-internal")}}))
	if c.in.Status != 201 || !slices.Equal(headerLines(c.in.Headers), []string{"X-Internal: 1"}) || c.in.Route != "api" {
		t.Errorf("response phase = %v", &c.in)
	}
	c.reset()

	err := applyMutation(resp, &pb.ResponseMutation{
		RemoveHeaders: [][]byte{[]byte("X-Internal")},
		SetHeaders:    []*pb.Header{hdr("Cache-Control", "private")},
		AddHeaders:    []*pb.Header{hdr("X-Served-Via", "meshgate")},
	})
	if err != nil {
		t.Fatal(err)
	}
	if resp.Header.Peek("X-Internal") != nil || string(resp.Header.Peek("Cache-Control")) != "private" ||
		string(resp.Header.Peek("X-Served-Via")) != "meshgate" {
		t.Errorf("headers after mutation:\n%s", &resp.Header)
	}
	if err := applyMutation(resp, &pb.ResponseMutation{SetHeaders: []*pb.Header{hdr("Content-Length", "0")}}); !errors.Is(err, errInvalidDecision) {
		t.Errorf("framing header in a mutation: err = %v", err)
	}
}

// TestTranslationAllocations: building a call's message and applying a typical decision cost
// no allocation of ours, once the pooled message has grown to the request's size.
func TestTranslationAllocations(t *testing.T) {
	r := request("POST", "/api/orders?id=7", "Authorization", "Bearer t", "X-Tenant", "a", "X-Other", "1")
	r.Ctx.Request.SetBodyString(`{"id":7}`)
	r.ClientIP = netip.MustParseAddr("192.0.2.1")
	r.Identity = append(r.Identity, "billing"...)
	shapes := map[string]*shape{
		"nothing":       newShape(sdk.Capabilities{Phases: sdk.PhaseRequest}),
		"named headers": newShape(sdk.Capabilities{Request: sdk.RequestParts{Headers: sdk.HeaderNames("Authorization", "X-Tenant")}}),
		"everything": newShape(sdk.Capabilities{Request: sdk.RequestParts{Headers: sdk.AllHeaders(), Body: true,
			Query: true, ClientIP: true, Peer: true}}),
	}
	var c requestCall
	for name, sh := range shapes {
		c.fill(r, sh)
		c.reset()
		if n := testing.AllocsPerRun(200, func() { c.fill(r, sh); c.reset() }); n != 0 {
			t.Errorf("fill %s: %v allocs per call, want 0", name, n)
		}
	}

	d := proceed(&pb.Continue{SetHeaders: []*pb.Header{hdr("X-Stamp", "v1")}, RemoveHeaders: [][]byte{[]byte("Authorization")}, Consumer: "billing"})
	if _, err := applyDecision(r, d); err != nil {
		t.Fatal(err)
	}
	if n := testing.AllocsPerRun(200, func() { _, _ = applyDecision(r, d) }); n != 0 {
		t.Errorf("applyDecision: %v allocs per call, want 0", n)
	}
}
