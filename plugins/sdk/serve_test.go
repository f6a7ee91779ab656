package sdk

import (
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/hashicorp/go-hclog"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	pb "github.com/meshgate/meshgate/plugins/proto"
)

// These tests drive the proto ⇄ sdk translation in process; process_test.go runs real plugin
// binaries through go-plugin.

type describeOnly struct{}

func (describeOnly) Describe() Capabilities { return Capabilities{Name: "bare", Phases: PhaseResponse} }

type fake struct {
	onRequest func(context.Context, *Request) (Decision, error)
	configure func([]byte) error
}

func (*fake) Describe() Capabilities {
	return Capabilities{Name: "fake", Version: "0.1", Request: RequestParts{Body: true, Headers: AllHeaders()}, CanDeny: true}
}

func (f *fake) Configure(b []byte) error { return f.configure(b) }

func (f *fake) OnRequest(ctx context.Context, r *Request) (Decision, error) {
	return f.onRequest(ctx, r)
}

func quiet() hclog.Logger { return hclog.NewNullLogger() }

func TestDescribePhasesComeFromInterfaces(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name   string
		plugin Plugin
		want   *pb.Capabilities
	}{
		{
			// Phases set by hand are overwritten: there is no OnResponse to call.
			name:   "no handlers",
			plugin: describeOnly{},
			want: &pb.Capabilities{Name: "bare", Request: &pb.RequestParts{Headers: &pb.HeaderSelection{}},
				Response: &pb.ResponseParts{Headers: &pb.HeaderSelection{}}},
		},
		{
			name:   "request handler, body without a size",
			plugin: &fake{},
			want: &pb.Capabilities{Name: "fake", Version: "0.1", OnRequest: true, CanDeny: true,
				Request:  &pb.RequestParts{Headers: &pb.HeaderSelection{All: true}, Body: true, MaxBodyBytes: DefaultMaxBodyBytes},
				Response: &pb.ResponseParts{Headers: &pb.HeaderSelection{}}},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			got, err := newServer(tt.plugin, quiet()).Describe(t.Context(), &pb.DescribeRequest{})
			if err != nil {
				t.Fatal(err)
			}
			if !proto.Equal(got, tt.want) {
				t.Errorf("Describe = %v, want %v", got, tt.want)
			}
			back := capabilitiesFromProto(got)
			if back.Name != tt.want.Name || (back.Phases&PhaseRequest != 0) != tt.want.OnRequest {
				t.Errorf("round trip = %+v", back)
			}
		})
	}
}

func TestConfigure(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		plugin  Plugin
		config  string
		wantErr string
	}{
		{name: "no configurer, nothing written", plugin: describeOnly{}, config: ""},
		{name: "no configurer, empty object", plugin: describeOnly{}, config: " {} "},
		{name: "no configurer, null", plugin: describeOnly{}, config: "null"},
		{name: "no configurer, something written", plugin: describeOnly{}, config: `{"a":1}`, wantErr: "takes no configuration"},
		{name: "configurer accepts", plugin: &fake{configure: func([]byte) error { return nil }}, config: `{"a":1}`},
		{name: "configurer rejects", plugin: &fake{configure: func([]byte) error { return errors.New("keys[0]: bad") }},
			config: `{}`, wantErr: "keys[0]: bad"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			resp, err := newServer(tt.plugin, quiet()).Configure(t.Context(), &pb.ConfigureRequest{Config: []byte(tt.config)})
			if tt.wantErr != "" {
				if status.Code(err) != codes.InvalidArgument || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("err = %v, want INVALID_ARGUMENT with %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if resp.GetCapabilities().GetName() == "" {
				t.Errorf("Configure returned no capabilities: %v", resp)
			}
		})
	}
}

func TestOnRequestTranslation(t *testing.T) {
	t.Parallel()
	var seen Request
	f := &fake{onRequest: func(_ context.Context, r *Request) (Decision, error) {
		seen = *r
		return Continue().SetHeader("X-A", "1").AddHeader("X-B", "2").RemoveHeader("X-Api-Key").
			WithPath("/v2").WithConsumer("alice"), nil
	}}
	in := &pb.RequestPhase{
		RequestId: []byte("rid"), Route: "api", Method: []byte("POST"), Path: []byte("/v1"),
		Query: []byte("a=1"), Body: []byte("{}"), BodyTruncated: true, ClientIp: "192.0.2.1",
		Headers: []*pb.Header{
			{Name: []byte("X-Api-Key"), Value: []byte("k1")},
			{Name: []byte("accept"), Value: []byte("a")},
			{Name: []byte("Accept"), Value: []byte("b")},
			{Name: []byte("X-Latin1"), Value: []byte{0xe9}}, // not UTF-8: must pass through
		},
		Peer: &pb.Identity{Service: "web", SpiffeId: "spiffe://example.test/ns/default/dc/dc1/svc/web"},
	}
	got, err := newServer(f, quiet()).OnRequest(t.Context(), in)
	if err != nil {
		t.Fatal(err)
	}
	want := &pb.RequestDecision{Action: &pb.RequestDecision_Proceed{Proceed: &pb.Continue{
		SetHeaders:    []*pb.Header{{Name: []byte("X-A"), Value: []byte("1")}},
		AddHeaders:    []*pb.Header{{Name: []byte("X-B"), Value: []byte("2")}},
		RemoveHeaders: [][]byte{[]byte("X-Api-Key")},
		RewritePath:   []byte("/v2"),
		Consumer:      "alice",
	}}}
	if !proto.Equal(got, want) {
		t.Errorf("decision = %v, want %v", got, want)
	}
	if seen.RequestID != "rid" || seen.Route != "api" || seen.Method != "POST" || seen.Path != "/v1" ||
		seen.Query != "a=1" || string(seen.Body) != "{}" || !seen.BodyTruncated || seen.ClientIP != "192.0.2.1" ||
		seen.Peer.Service != "web" || seen.Peer.SPIFFEID == "" {
		t.Errorf("request = %+v", seen)
	}
	if got := seen.Header("x-api-key"); got != "k1" {
		t.Errorf(`Header("x-api-key") = %q`, got)
	}
	if got := seen.Values("ACCEPT"); len(got) != 2 || got[0] != "a" || got[1] != "b" {
		t.Errorf(`Values("ACCEPT") = %q`, got)
	}
	if got := seen.Header("X-Latin1"); got != "\xe9" {
		t.Errorf("non-UTF-8 value = %q", got)
	}
	if len(seen.Headers) != 4 || seen.Headers[1] != (Header{Name: "accept", Value: "a"}) {
		t.Errorf("headers = %q, want all four in request order", seen.Headers)
	}
	// A non-UTF-8 header value survives the wire, which a proto3 string would refuse.
	if _, err := proto.Marshal(in); err != nil {
		t.Errorf("marshal request with non-UTF-8 header: %v", err)
	}
}

func TestOnRequestOutcomes(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name     string
		decide   func(context.Context, *Request) (Decision, error)
		want     *pb.RequestDecision
		wantCode codes.Code
	}{
		{
			// The common case costs nothing on the wire.
			name:   "plain continue is empty",
			decide: func(context.Context, *Request) (Decision, error) { return Continue(), nil },
			want:   &pb.RequestDecision{},
		},
		{
			name: "respond",
			decide: func(context.Context, *Request) (Decision, error) {
				return Respond(401, "no").SetHeader("WWW-Authenticate", "ApiKey").SetHeader("content-type", "application/json"), nil
			},
			want: &pb.RequestDecision{Action: &pb.RequestDecision_Respond{Respond: &pb.Respond{
				Status: 401, Body: []byte("no"),
				Headers: []*pb.Header{
					{Name: []byte("WWW-Authenticate"), Value: []byte("ApiKey")},
					{Name: []byte("content-type"), Value: []byte("application/json")},
				},
			}}},
		},
		{
			name:     "invalid status",
			decide:   func(context.Context, *Request) (Decision, error) { return Respond(99, ""), nil },
			wantCode: codes.Unknown,
		},
		{
			name:     "error",
			decide:   func(context.Context, *Request) (Decision, error) { return Decision{}, errors.New("boom") },
			wantCode: codes.Unknown,
		},
		{
			name:     "panic is one failed call, not a dead process",
			decide:   func(context.Context, *Request) (Decision, error) { panic("boom") },
			wantCode: codes.Internal,
		},
		{
			name: "context error stays recognisable",
			decide: func(ctx context.Context, _ *Request) (Decision, error) {
				<-ctx.Done()
				return Decision{}, ctx.Err()
			},
			wantCode: codes.Canceled,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			ctx, cancel := context.WithCancel(t.Context())
			if tt.wantCode == codes.Canceled {
				cancel()
			}
			defer cancel()
			got, err := newServer(&fake{onRequest: tt.decide}, quiet()).OnRequest(ctx, &pb.RequestPhase{})
			if tt.want == nil {
				if status.Code(err) != tt.wantCode {
					t.Fatalf("err = %v, want code %s", err, tt.wantCode)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if !proto.Equal(got, tt.want) {
				t.Errorf("decision = %v, want %v", got, tt.want)
			}
		})
	}
}

func TestPhaseNotServed(t *testing.T) {
	t.Parallel()
	s := newServer(describeOnly{}, quiet())
	if _, err := s.OnRequest(t.Context(), &pb.RequestPhase{}); status.Code(err) != codes.Unimplemented {
		t.Errorf("OnRequest err = %v, want UNIMPLEMENTED", err)
	}
	if _, err := s.OnResponse(t.Context(), &pb.ResponsePhase{}); status.Code(err) != codes.Unimplemented {
		t.Errorf("OnResponse err = %v, want UNIMPLEMENTED", err)
	}
}

func TestDescribeWithoutName(t *testing.T) {
	t.Parallel()
	_, err := newServer(nameless{}, quiet()).Describe(t.Context(), &pb.DescribeRequest{})
	if status.Code(err) != codes.FailedPrecondition || !strings.Contains(err.Error(), "without a name") {
		t.Errorf("err = %v", err)
	}
}

type nameless struct{}

func (nameless) Describe() Capabilities { return Capabilities{} }

// Builders return new values: two decisions derived from one template never share headers.
func TestDecisionBuildersDoNotAlias(t *testing.T) {
	t.Parallel()
	base := Continue().SetHeader("X-Base", "1")
	a := base.SetHeader("X-A", "a")
	b := base.SetHeader("X-B", "b")
	if len(base.SetHeaders) != 1 || a.SetHeaders[1].Name != "X-A" || b.SetHeaders[1].Name != "X-B" {
		t.Errorf("base %v, a %v, b %v", base.SetHeaders, a.SetHeaders, b.SetHeaders)
	}
	reply := Respond(403, "no")
	r1 := reply.SetHeader("X-One", "1")
	r2 := reply.AddHeader("X-Two", "2")
	if len(reply.Reply.Headers) != 1 || len(r1.Reply.Headers) != 2 || r2.Reply.Headers[1].Name != "X-Two" {
		t.Errorf("reply %v, r1 %v, r2 %v", reply.Reply.Headers, r1.Reply.Headers, r2.Reply.Headers)
	}
	m := ResponseMutation{}.SetHeader("X-S", "1")
	m1, m2 := m.AddHeader("X-A", "1"), m.RemoveHeader("X-R")
	if len(m.AddHeaders) != 0 || len(m.RemoveHeaders) != 0 || len(m1.AddHeaders) != 1 || len(m2.RemoveHeaders) != 1 {
		t.Errorf("mutations alias: %+v %+v %+v", m, m1, m2)
	}
	if !reply.Responds() || base.Responds() {
		t.Error("Responds is wrong")
	}
}

func TestEqualFold(t *testing.T) {
	t.Parallel()
	for _, tt := range []struct {
		a, b string
		want bool
	}{
		{"X-Api-Key", "x-api-key", true},
		{"X-API-KEY", "x-api-key", true},
		{"x-api-key", "x-api-kez", false},
		{"k", "\u212a", false}, // Kelvin sign: Unicode folding would call it K
		{"", "", true},
		{"a", "ab", false},
	} {
		if got := equalFold(tt.a, tt.b); got != tt.want {
			t.Errorf("equalFold(%q, %q) = %v", tt.a, tt.b, got)
		}
	}
}

func TestMaxBodyBytes(t *testing.T) {
	t.Parallel()
	for _, tt := range []struct {
		parts RequestParts
		want  uint32
	}{
		{RequestParts{}, 0},
		{RequestParts{MaxBodyBytes: 100}, 0}, // no body asked for: nothing sent
		{RequestParts{Body: true}, DefaultMaxBodyBytes},
		{RequestParts{Body: true, MaxBodyBytes: 100}, 100},
		{RequestParts{Body: true, MaxBodyBytes: 1 << 30}, MaxBodyBytesLimit},
	} {
		if got := capabilitiesToProto(Capabilities{Request: tt.parts}).GetRequest().GetMaxBodyBytes(); got != tt.want {
			t.Errorf("%+v: max_body_bytes = %d, want %d", tt.parts, got, tt.want)
		}
	}
}
