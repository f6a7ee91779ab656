package grpcecho

import (
	"context"
	"errors"
	"io"
	"net"
	"strconv"
	"sync/atomic"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	testpb "google.golang.org/grpc/interop/grpc_testing"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
)

// Request metadata the service acts on.
const (
	// MDFailCode makes a call fail with this gRPC code number and message "requested".
	MDFailCode = "x-fail-code"
	// MDSleepMS makes a call wait this long (or until cancelled) before answering.
	MDSleepMS = "x-sleep-ms"
	// HeaderEcho and TrailerEcho are sent back on every unary call.
	HeaderEcho  = "x-echo-header"
	TrailerEcho = "x-echo-trailer"
)

// Service implements the interop TestService.
type Service struct {
	testpb.UnimplementedTestServiceServer
	// Name goes into every unary response's ServerId, so a test can tell instances apart.
	Name string
	// Cancelled counts calls whose context ended before they answered (client cancel, reset
	// or deadline), as seen by this upstream.
	Cancelled atomic.Int64
	// Calls counts every call.
	Calls atomic.Int64
	// FailCode, when non-zero, makes every call of this instance fail with that gRPC code
	// and message "failing" (a sick instance, for retry tests). A client-streaming call
	// reads its whole input first, so its failure comes after the request body ended.
	FailCode atomic.Int32
}

// Start serves s on a loopback port (h2c, as gRPC servers usually run behind a proxy or
// sidecar) until the returned stop is called.
func Start(s *Service) (addr string, stop func(), err error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", nil, err
	}
	srv := grpc.NewServer()
	testpb.RegisterTestServiceServer(srv, s)
	go func() { _ = srv.Serve(ln) }()
	return ln.Addr().String(), srv.Stop, nil
}

// Serve registers s on srv, for callers that own the server (the demo origin).
func Serve(srv *grpc.Server, s *Service) { testpb.RegisterTestServiceServer(srv, s) }

// prelude applies the metadata the service acts on, then FailCode.
func (s *Service) prelude(ctx context.Context) error {
	if err := s.applyMetadata(ctx); err != nil {
		return err
	}
	return s.failing()
}

// applyMetadata counts the call and applies the metadata the service acts on.
func (s *Service) applyMetadata(ctx context.Context) error {
	s.Calls.Add(1)
	md, _ := metadata.FromIncomingContext(ctx)
	if v := md.Get(MDSleepMS); len(v) > 0 {
		ms, _ := strconv.Atoi(v[0])
		t := time.NewTimer(time.Duration(ms) * time.Millisecond)
		defer t.Stop()
		select {
		case <-t.C:
		case <-ctx.Done():
			s.Cancelled.Add(1)
			return status.FromContextError(ctx.Err()).Err()
		}
	}
	if v := md.Get(MDFailCode); len(v) > 0 {
		n, _ := strconv.Atoi(v[0])
		return status.Error(codes.Code(n), "requested")
	}
	return nil
}

func (s *Service) failing() error {
	if c := s.FailCode.Load(); c != 0 {
		return status.Error(codes.Code(c), "failing")
	}
	return nil
}

// UnaryCall echoes the payload (or a zero payload of ResponseSize) with a header and trailer.
func (s *Service) UnaryCall(ctx context.Context, in *testpb.SimpleRequest) (*testpb.SimpleResponse, error) {
	if err := s.prelude(ctx); err != nil {
		return nil, err
	}
	_ = grpc.SetHeader(ctx, metadata.Pairs(HeaderEcho, "h-"+s.Name))
	_ = grpc.SetTrailer(ctx, metadata.Pairs(TrailerEcho, "t-"+s.Name))
	body := in.GetPayload().GetBody()
	if n := in.GetResponseSize(); n > 0 {
		body = make([]byte, n)
	}
	return &testpb.SimpleResponse{Payload: &testpb.Payload{Body: body}, ServerId: s.Name}, nil
}

// StreamingOutputCall sends one message per ResponseParameters entry, of its size, waiting
// IntervalUs before each.
func (s *Service) StreamingOutputCall(in *testpb.StreamingOutputCallRequest, st grpc.ServerStreamingServer[testpb.StreamingOutputCallResponse]) error {
	if err := s.prelude(st.Context()); err != nil {
		return err
	}
	for _, p := range in.GetResponseParameters() {
		if d := time.Duration(p.GetIntervalUs()) * time.Microsecond; d > 0 {
			t := time.NewTimer(d)
			select {
			case <-t.C:
			case <-st.Context().Done():
				t.Stop()
				s.Cancelled.Add(1)
				return st.Context().Err()
			}
		}
		if err := st.Send(&testpb.StreamingOutputCallResponse{Payload: &testpb.Payload{Body: make([]byte, p.GetSize())}}); err != nil {
			return err
		}
	}
	return nil
}

// StreamingInputCall sums the sizes of the payloads it receives.
func (s *Service) StreamingInputCall(st grpc.ClientStreamingServer[testpb.StreamingInputCallRequest, testpb.StreamingInputCallResponse]) error {
	// Not prelude: FailCode answers after the input (see Service).
	if err := s.applyMetadata(st.Context()); err != nil {
		return err
	}
	var total int32
	for {
		m, err := st.Recv()
		if errors.Is(err, io.EOF) {
			if err := s.failing(); err != nil {
				return err
			}
			return st.SendAndClose(&testpb.StreamingInputCallResponse{AggregatedPayloadSize: total})
		}
		if err != nil {
			return err
		}
		total += int32(len(m.GetPayload().GetBody()))
	}
}

// FullDuplexCall answers each message at once with a payload of the first requested size
// (or the request's own payload), so a client sees replies while it is still sending.
func (s *Service) FullDuplexCall(st grpc.BidiStreamingServer[testpb.StreamingOutputCallRequest, testpb.StreamingOutputCallResponse]) error {
	if err := s.prelude(st.Context()); err != nil {
		return err
	}
	for {
		m, err := st.Recv()
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			if st.Context().Err() != nil {
				s.Cancelled.Add(1)
			}
			return err
		}
		body := m.GetPayload().GetBody()
		if ps := m.GetResponseParameters(); len(ps) > 0 {
			body = make([]byte, ps[0].GetSize())
		}
		if err := st.Send(&testpb.StreamingOutputCallResponse{Payload: &testpb.Payload{Body: body}}); err != nil {
			return err
		}
	}
}
