package sdk

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"math"
	"net"
	"os"
	"runtime/debug"
	"strconv"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/go-plugin"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	pb "github.com/meshgate/meshgate/plugins/proto"
)

// Serve runs p as a plugin process and returns when the host is done with it. Call it from
// main; started by hand (without the host's handshake) the binary explains that it is a plugin
// and exits 1. It serves over gRPC only, with the mTLS certificates the host negotiates
// (go-plugin's AutoMTLS), and, when the host passed it a socketpair (SocketFDEnv), serves the
// per-request calls there too: nothing for the plugin's author to do.
func Serve(p Plugin, opts ...ServeOption) {
	var o serveOptions
	for _, opt := range opts {
		opt(&o)
	}
	logger := NewLogger()
	s := newServer(p, logger)
	if !o.noSocket {
		conn, err := socketFromEnv(os.Getenv)
		switch {
		case err != nil:
			// The host falls back to gRPC when Describe does not claim the socket.
			logger.Warn("not serving the host's socket", "error", err)
		case conn != nil:
			s.socket = true
			go s.serveSocket(conn)
		}
	}
	plugin.Serve(&plugin.ServeConfig{
		HandshakeConfig: Handshake(),
		Plugins:         plugin.PluginSet{PluginName: &GRPCPlugin{server: s}},
		GRPCServer:      plugin.DefaultGRPCServer,
		Logger:          logger,
	})
}

// ServeOption changes how Serve serves a plugin.
type ServeOption func(*serveOptions)

type serveOptions struct {
	noSocket bool
}

// WithoutSocket serves every call over gRPC, ignoring the socket the host offers, as a plugin
// built before the socket transport does. It exists to exercise the host's fallback (the
// tests, comparisons); a plugin has no reason to use it otherwise.
func WithoutSocket() ServeOption {
	return func(o *serveOptions) { o.noSocket = true }
}

// socketFromEnv opens the plugin's end of the host's socketpair; nil, nil when the host
// passed none (an older host, or a platform without socketpairs).
func socketFromEnv(getenv func(string) string) (net.Conn, error) {
	v := getenv(SocketFDEnv)
	if v == "" {
		return nil, nil
	}
	fd, err := strconv.Atoi(v)
	if err != nil || fd < 3 {
		return nil, fmt.Errorf("%s=%q is not an inherited descriptor", SocketFDEnv, v)
	}
	f := os.NewFile(uintptr(fd), "meshgate-socket")
	defer func() { _ = f.Close() }() // FileConn holds its own duplicate
	conn, err := net.FileConn(f)
	if err != nil {
		return nil, fmt.Errorf("%s=%d: %w", SocketFDEnv, fd, err)
	}
	return conn, nil
}

// notHandled answers a call for a phase the plugin does not take part in; the host only makes
// one if it ignored Describe.
const notHandled = "plugin does not take part in this phase"

// server adapts a Plugin to the generated gRPC service: proto in, sdk types to the plugin,
// proto out. It keeps no per-request state, so one value serves every concurrent call.
type server struct {
	pb.UnimplementedPluginServer

	plugin   Plugin
	conf     Configurer      // nil: the plugin takes no configuration
	request  RequestHandler  // nil: no request phase
	response ResponseHandler // nil: no response phase
	phases   Phase
	log      hclog.Logger
	// socket is set when the process serves the host's socket too (Describe says so).
	socket bool
}

var _ pb.PluginServer = (*server)(nil)

func newServer(p Plugin, log hclog.Logger) *server {
	s := &server{plugin: p, log: log}
	s.conf, _ = p.(Configurer)
	if h, ok := p.(RequestHandler); ok {
		s.request = h
		s.phases |= PhaseRequest
	}
	if h, ok := p.(ResponseHandler); ok {
		s.response = h
		s.phases |= PhaseResponse
	}
	return s
}

// recoverTo turns a panic in plugin code into an INTERNAL error for that one call: the host
// applies its failure policy to the request, and the process (with every other in-flight
// request) lives on.
func (s *server) recoverTo(err *error, method string) {
	if v := recover(); v != nil {
		s.log.Error("plugin panicked", "method", method, "panic", fmt.Sprint(v), "stack", string(debug.Stack()))
		*err = status.Errorf(codes.Internal, "plugin panicked in %s: %v", method, v)
	}
}

func (s *server) Describe(context.Context, *pb.DescribeRequest) (_ *pb.Capabilities, err error) {
	defer s.recoverTo(&err, "Describe")
	return s.describe()
}

func (s *server) describe() (*pb.Capabilities, error) {
	caps := s.plugin.Describe()
	if caps.Name == "" {
		return nil, status.Error(codes.FailedPrecondition, "plugin describes itself without a name")
	}
	// A plugin may narrow its phases to what its configuration uses (a stamper with no
	// response headers has no response phase), saving the host a call per request; it can
	// never claim a phase it has no handler for.
	if caps.Phases != 0 {
		caps.Phases &= s.phases
	} else {
		caps.Phases = s.phases
	}
	pc := capabilitiesToProto(caps)
	pc.SocketTransport = s.socket
	return pc, nil
}

func (s *server) Configure(_ context.Context, in *pb.ConfigureRequest) (_ *pb.ConfigureResponse, err error) {
	defer s.recoverTo(&err, "Configure")
	if s.conf == nil {
		if !emptyConfig(in.GetConfig()) {
			return nil, status.Error(codes.InvalidArgument, "this plugin takes no configuration")
		}
	} else if err := s.conf.Configure(in.GetConfig()); err != nil {
		return nil, status.Error(codes.InvalidArgument, err.Error())
	}
	caps, err := s.describe()
	if err != nil {
		return nil, err
	}
	return &pb.ConfigureResponse{Capabilities: caps}, nil
}

// emptyConfig is what the host sends for a plugin the user wrote no config for.
func emptyConfig(b []byte) bool {
	switch string(bytes.TrimSpace(b)) {
	case "", "null", "{}":
		return true
	}
	return false
}

func (s *server) OnRequest(ctx context.Context, in *pb.RequestPhase) (_ *pb.RequestDecision, err error) {
	defer s.recoverTo(&err, "OnRequest")
	if s.request == nil {
		return nil, status.Error(codes.Unimplemented, notHandled)
	}
	r := requestFromProto(in)
	d, err := s.request.OnRequest(ctx, &r)
	if err != nil {
		return nil, handlerError(ctx, err)
	}
	return decisionToProto(d)
}

func (s *server) OnResponse(ctx context.Context, in *pb.ResponsePhase) (_ *pb.ResponseMutation, err error) {
	defer s.recoverTo(&err, "OnResponse")
	if s.response == nil {
		return nil, status.Error(codes.Unimplemented, notHandled)
	}
	r := Response{
		RequestID: string(in.GetRequestId()),
		Route:     in.GetRoute(),
		Status:    int(in.GetStatus()),
		Headers:   headersFromProto(in.GetHeaders()),
	}
	m, err := s.response.OnResponse(ctx, &r)
	if err != nil {
		return nil, handlerError(ctx, err)
	}
	return &pb.ResponseMutation{
		SetHeaders:    headersToProto(m.SetHeaders),
		AddHeaders:    headersToProto(m.AddHeaders),
		RemoveHeaders: namesToProto(m.RemoveHeaders),
	}, nil
}

// handlerError keeps a context error recognisable to the host (DEADLINE_EXCEEDED, CANCELED);
// anything else is the plugin failing.
func handlerError(ctx context.Context, err error) error {
	if ctx.Err() != nil && errors.Is(err, ctx.Err()) {
		return status.FromContextError(err).Err()
	}
	return status.Error(codes.Unknown, err.Error())
}

func requestFromProto(in *pb.RequestPhase) Request {
	r := Request{
		RequestID:     string(in.GetRequestId()),
		Route:         in.GetRoute(),
		Method:        string(in.GetMethod()),
		Path:          string(in.GetPath()),
		Query:         string(in.GetQuery()),
		Headers:       headersFromProto(in.GetHeaders()),
		Body:          in.GetBody(), // the message is this call's own: protobuf copies bytes on unmarshal
		BodyTruncated: in.GetBodyTruncated(),
		ClientIP:      in.GetClientIp(),
	}
	if p := in.GetPeer(); p != nil {
		r.Peer = Identity{Service: p.GetService(), SPIFFEID: p.GetSpiffeId(), Consumer: p.GetConsumer()}
	}
	return r
}

func headersFromProto(in []*pb.Header) []Header {
	if len(in) == 0 {
		return nil
	}
	out := make([]Header, len(in))
	for i, h := range in {
		out[i] = Header{Name: string(h.GetName()), Value: string(h.GetValue())}
	}
	return out
}

func headersToProto(in []Header) []*pb.Header {
	if len(in) == 0 {
		return nil
	}
	// One backing array for all headers instead of one allocation each.
	hs := make([]pb.Header, len(in))
	out := make([]*pb.Header, len(in))
	for i, h := range in {
		hs[i].Name = []byte(h.Name)
		hs[i].Value = []byte(h.Value)
		out[i] = &hs[i]
	}
	return out
}

func namesToProto(in []string) [][]byte {
	if len(in) == 0 {
		return nil
	}
	out := make([][]byte, len(in))
	for i, n := range in {
		out[i] = []byte(n)
	}
	return out
}

// decisionToProto leaves a plain Continue empty: zero bytes on the wire for the common case.
func decisionToProto(d Decision) (*pb.RequestDecision, error) {
	if r := d.Reply; r != nil {
		// A final status: 1xx are not final, and net/http and fasthttp refuse what is past 599.
		if r.Status < 200 || r.Status > 599 {
			return nil, status.Errorf(codes.Unknown, "plugin responded with invalid status %d", r.Status)
		}
		return &pb.RequestDecision{Action: &pb.RequestDecision_Respond{Respond: &pb.Respond{
			Status:  uint32(r.Status),
			Headers: headersToProto(r.Headers),
			Body:    r.Body,
		}}}, nil
	}
	if len(d.SetHeaders) == 0 && len(d.AddHeaders) == 0 && len(d.RemoveHeaders) == 0 &&
		d.RewritePath == "" && d.Consumer == "" {
		return &pb.RequestDecision{}, nil
	}
	return &pb.RequestDecision{Action: &pb.RequestDecision_Proceed{Proceed: &pb.Continue{
		SetHeaders:    headersToProto(d.SetHeaders),
		AddHeaders:    headersToProto(d.AddHeaders),
		RemoveHeaders: namesToProto(d.RemoveHeaders),
		RewritePath:   []byte(d.RewritePath),
		Consumer:      d.Consumer,
	}}}, nil
}

func capabilitiesToProto(c Capabilities) *pb.Capabilities {
	maxBody := 0
	if c.Request.Body {
		maxBody = c.Request.MaxBodyBytes
		if maxBody <= 0 {
			maxBody = DefaultMaxBodyBytes
		}
		maxBody = min(maxBody, MaxBodyBytesLimit)
	}
	return &pb.Capabilities{
		Name:       c.Name,
		Version:    c.Version,
		OnRequest:  c.Phases&PhaseRequest != 0,
		OnResponse: c.Phases&PhaseResponse != 0,
		Request: &pb.RequestParts{
			Headers:      headerSetToProto(c.Request.Headers),
			Body:         c.Request.Body,
			MaxBodyBytes: uint32(maxBody),
			Peer:         c.Request.Peer,
			ClientIp:     c.Request.ClientIP,
			Query:        c.Request.Query,
		},
		Response: &pb.ResponseParts{Headers: headerSetToProto(c.Response.Headers)},
		CanDeny:  c.CanDeny,
	}
}

func headerSetToProto(h HeaderSet) *pb.HeaderSelection {
	return &pb.HeaderSelection{All: h.All, Names: h.Names}
}

func capabilitiesFromProto(in *pb.Capabilities) Capabilities {
	c := Capabilities{
		Name:    in.GetName(),
		Version: in.GetVersion(),
		CanDeny: in.GetCanDeny(),
		Request: RequestParts{
			Headers:      headerSetFromProto(in.GetRequest().GetHeaders()),
			Body:         in.GetRequest().GetBody(),
			MaxBodyBytes: int(in.GetRequest().GetMaxBodyBytes()),
			Peer:         in.GetRequest().GetPeer(),
			ClientIP:     in.GetRequest().GetClientIp(),
			Query:        in.GetRequest().GetQuery(),
		},
		Response: ResponseParts{Headers: headerSetFromProto(in.GetResponse().GetHeaders())},
	}
	if in.GetOnRequest() {
		c.Phases |= PhaseRequest
	}
	if in.GetOnResponse() {
		c.Phases |= PhaseResponse
	}
	return c
}

func headerSetFromProto(in *pb.HeaderSelection) HeaderSet {
	return HeaderSet{All: in.GetAll(), Names: in.GetNames()}
}

// OnRequestStream serves OnRequest calls arriving on one stream, one at a time; the host opens
// as many streams as it has calls in flight.
func (s *server) OnRequestStream(st grpc.BidiStreamingServer[pb.RequestPhase, pb.RequestDecision]) error {
	return serveStream(st, s.OnRequest, (*pb.RequestPhase).GetTimeoutNanos)
}

// OnResponseStream serves OnResponse calls like OnRequestStream.
func (s *server) OnResponseStream(st grpc.BidiStreamingServer[pb.ResponsePhase, pb.ResponseMutation]) error {
	return serveStream(st, s.OnResponse, (*pb.ResponsePhase).GetTimeoutNanos)
}

// serveStream answers each message with one message. A failed call ends the stream with its
// status, which is what the host's Client expects (it discards that stream); the host ending
// the stream (io.EOF, or a cancel when it gave up on a call) ends it quietly.
func serveStream[In, Out any](st grpc.BidiStreamingServer[In, Out],
	call func(context.Context, *In) (*Out, error), timeout func(*In) uint64,
) error {
	for {
		in, err := st.Recv()
		if err != nil {
			return nil
		}
		ctx, cancel := st.Context(), context.CancelFunc(nil)
		if t := timeout(in); t > 0 {
			// The deadline the unary call would have carried in its gRPC header.
			ctx, cancel = context.WithTimeout(ctx, time.Duration(min(t, math.MaxInt64)))
		}
		out, err := call(ctx, in)
		if cancel != nil {
			cancel()
		}
		if err != nil {
			return err
		}
		if err := st.Send(out); err != nil {
			return err
		}
	}
}
