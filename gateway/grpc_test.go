package gateway

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	testpb "google.golang.org/grpc/interop/grpc_testing"
	"google.golang.org/grpc/metadata"
	grpcstatus "google.golang.org/grpc/status"

	"github.com/meshgate/meshgate/internal/grpcecho"
)

// startGRPC runs a real grpc-go server (the interop TestService) on loopback.
func startGRPC(t *testing.T, name string) (string, *grpcecho.Service) {
	t.Helper()
	svc := &grpcecho.Service{Name: name}
	addr, stop, err := grpcecho.Start(svc)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(stop)
	return addr, svc
}

// dialGRPC is a grpc-go client speaking h2c (prior knowledge) to addr.
func dialGRPC(t *testing.T, addr string) testpb.TestServiceClient {
	t.Helper()
	cc, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cc.Close() })
	return testpb.NewTestServiceClient(cc)
}

func grpcEdgeConfig(origin string, extra string) string {
	return fmt.Sprintf(`
admin: { address: 127.0.0.1:0 }
listeners:
  - name: public
    address: 127.0.0.1:0
routes:
  - name: grpc
    match: { path_prefix: /grpc.testing.TestService/ }
    to: [ { service: origin } ]
    timeout: 5s
%s
services:
  origin: { protocol: grpc }
discovery:
  static:
    origin: [ %s ]
access_log: { output: "off" }
`, extra, origin)
}

func callCtx(t *testing.T) context.Context {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// TestGRPCThroughEdge: the four kinds of call, metadata and trailers, and an error status
// from the upstream, through a plaintext (h2c) listener to an h2c gRPC upstream.
func TestGRPCThroughEdge(t *testing.T) {
	addr, svc := startGRPC(t, "a")
	e := startEdge(t, grpcEdgeConfig(addr, ""))
	c := dialGRPC(t, e.addr)

	t.Run("unary with header and trailer", func(t *testing.T) {
		var hdr, trl metadata.MD
		resp, err := c.UnaryCall(callCtx(t), &testpb.SimpleRequest{Payload: &testpb.Payload{Body: []byte("ping")}},
			grpc.Header(&hdr), grpc.Trailer(&trl))
		if err != nil {
			t.Fatal(err)
		}
		if string(resp.GetPayload().GetBody()) != "ping" || resp.GetServerId() != "a" {
			t.Fatalf("response = %v", resp)
		}
		if got := hdr.Get(grpcecho.HeaderEcho); len(got) != 1 || got[0] != "h-a" {
			t.Fatalf("header %s = %v (all: %v)", grpcecho.HeaderEcho, got, hdr)
		}
		if got := trl.Get(grpcecho.TrailerEcho); len(got) != 1 || got[0] != "t-a" {
			t.Fatalf("trailer %s = %v (all: %v)", grpcecho.TrailerEcho, got, trl)
		}
		if got := hdr.Get("x-request-id"); len(got) != 1 {
			t.Fatalf("x-request-id = %v, want exactly one", got)
		}
	})

	t.Run("large unary", func(t *testing.T) {
		resp, err := c.UnaryCall(callCtx(t), &testpb.SimpleRequest{ResponseSize: 1 << 20,
			Payload: &testpb.Payload{Body: make([]byte, 1<<20)}})
		if err != nil {
			t.Fatal(err)
		}
		if len(resp.GetPayload().GetBody()) != 1<<20 {
			t.Fatalf("got %d bytes", len(resp.GetPayload().GetBody()))
		}
	})

	t.Run("server streaming", func(t *testing.T) {
		req := &testpb.StreamingOutputCallRequest{}
		for i := range 5 {
			req.ResponseParameters = append(req.ResponseParameters, &testpb.ResponseParameters{Size: int32(10 * (i + 1))})
		}
		st, err := c.StreamingOutputCall(callCtx(t), req)
		if err != nil {
			t.Fatal(err)
		}
		for i := range 5 {
			m, err := st.Recv()
			if err != nil {
				t.Fatalf("message %d: %v", i, err)
			}
			if len(m.GetPayload().GetBody()) != 10*(i+1) {
				t.Fatalf("message %d has %d bytes", i, len(m.GetPayload().GetBody()))
			}
		}
		if _, err := st.Recv(); !errors.Is(err, io.EOF) {
			t.Fatalf("end of stream: %v", err)
		}
	})

	t.Run("client streaming", func(t *testing.T) {
		st, err := c.StreamingInputCall(callCtx(t))
		if err != nil {
			t.Fatal(err)
		}
		for i := range 10 {
			if err := st.Send(&testpb.StreamingInputCallRequest{Payload: &testpb.Payload{Body: make([]byte, 1000+i)}}); err != nil {
				t.Fatal(err)
			}
		}
		resp, err := st.CloseAndRecv()
		if err != nil {
			t.Fatal(err)
		}
		if want := int32(10*1000 + 45); resp.GetAggregatedPayloadSize() != want {
			t.Fatalf("aggregated = %d, want %d", resp.GetAggregatedPayloadSize(), want)
		}
	})

	t.Run("bidirectional: replies arrive while the client still sends", func(t *testing.T) {
		st, err := c.FullDuplexCall(callCtx(t))
		if err != nil {
			t.Fatal(err)
		}
		for i := range 5 {
			// One message, then its reply, before the next: a gateway that buffered the request
			// until its end would hang here.
			if err := st.Send(&testpb.StreamingOutputCallRequest{Payload: &testpb.Payload{Body: []byte{byte(i)}}}); err != nil {
				t.Fatal(err)
			}
			m, err := st.Recv()
			if err != nil {
				t.Fatalf("reply %d: %v", i, err)
			}
			if b := m.GetPayload().GetBody(); len(b) != 1 || b[0] != byte(i) {
				t.Fatalf("reply %d = %v", i, b)
			}
		}
		if err := st.CloseSend(); err != nil {
			t.Fatal(err)
		}
		if _, err := st.Recv(); !errors.Is(err, io.EOF) {
			t.Fatalf("end of stream: %v", err)
		}
	})

	t.Run("upstream error status passes through", func(t *testing.T) {
		ctx := metadata.AppendToOutgoingContext(callCtx(t), grpcecho.MDFailCode, fmt.Sprint(int(codes.NotFound)))
		_, err := c.UnaryCall(ctx, &testpb.SimpleRequest{})
		if s, _ := grpcstatus.FromError(err); s.Code() != codes.NotFound || s.Message() != "requested" {
			t.Fatalf("status = %v, want NotFound \"requested\"", err)
		}
	})

	t.Run("deadline: grpc-timeout cuts the call and reaches the upstream", func(t *testing.T) {
		before := svc.Cancelled.Load()
		ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
		defer cancel()
		ctx = metadata.AppendToOutgoingContext(ctx, grpcecho.MDSleepMS, "5000")
		start := time.Now()
		_, err := c.UnaryCall(ctx, &testpb.SimpleRequest{})
		if s, _ := grpcstatus.FromError(err); s.Code() != codes.DeadlineExceeded {
			t.Fatalf("status = %v, want DeadlineExceeded", err)
		}
		if took := time.Since(start); took > 3*time.Second {
			t.Fatalf("took %v: the deadline did not cut the call", took)
		}
		waitFor(t, "upstream sees its call end", func() bool { return svc.Cancelled.Load() > before })
	})

	t.Run("cancel resets the upstream stream", func(t *testing.T) {
		before := svc.Cancelled.Load()
		ctx, cancel := context.WithCancel(callCtx(t))
		st, err := c.FullDuplexCall(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if err := st.Send(&testpb.StreamingOutputCallRequest{Payload: &testpb.Payload{Body: []byte("x")}}); err != nil {
			t.Fatal(err)
		}
		if _, err := st.Recv(); err != nil {
			t.Fatal(err)
		}
		cancel()
		waitFor(t, "upstream sees the cancel", func() bool { return svc.Cancelled.Load() > before })
	})
}

// TestGRPCGatewayErrorsAreStatuses: what the gateway itself answers a gRPC client is a gRPC
// status in a Trailers-Only response, mapped from the reason.
func TestGRPCGatewayErrorsAreStatuses(t *testing.T) {
	addr, _ := startGRPC(t, "a")
	cfg := fmt.Sprintf(`
admin: { address: 127.0.0.1:0 }
listeners:
  - name: public
    address: 127.0.0.1:0
routes:
  - name: denied
    match: { path_prefix: /grpc.testing.TestService/EmptyCall }
    to: [ { service: origin } ]
    policies: [ deny-all ]
  - name: limited
    match: { path_prefix: /grpc.testing.TestService/CacheableUnaryCall }
    to: [ { service: origin } ]
    policies: [ one-per-minute ]
  - name: dead
    match: { path_prefix: /grpc.testing.TestService/UnimplementedCall }
    to: [ { service: dead } ]
  - name: unary
    match: { path_prefix: /grpc.testing.TestService/UnaryCall }
    to: [ { service: origin } ]
policies:
  deny-all: { ip: { deny: [ 127.0.0.0/8 ] } }
  one-per-minute: { rate_limit: { requests: 1, per: 1m, key: client_ip } }
services:
  origin: { protocol: grpc }
  dead: { protocol: grpc }
discovery:
  static:
    origin: [ %s ]
    dead: [ 127.0.0.1:1 ]
access_log: { output: "off" }
`, addr)
	e := startEdge(t, cfg)
	c := dialGRPC(t, e.addr)

	check := func(t *testing.T, err error, want codes.Code) {
		t.Helper()
		s, ok := grpcstatus.FromError(err)
		if !ok || s.Code() != want {
			t.Fatalf("status = %v, want %v", err, want)
		}
		// A JSON or HTML body would have made grpc-go report Internal/Unknown with the
		// content-type in the message.
		if strings.Contains(s.Message(), "content-type") {
			t.Fatalf("not a Trailers-Only answer: %v", s.Message())
		}
	}
	t.Run("ip deny is PERMISSION_DENIED", func(t *testing.T) {
		_, err := c.EmptyCall(callCtx(t), &testpb.Empty{})
		check(t, err, codes.PermissionDenied)
	})
	t.Run("rate limit is RESOURCE_EXHAUSTED", func(t *testing.T) {
		if _, err := c.CacheableUnaryCall(callCtx(t), &testpb.SimpleRequest{}); err != nil {
			// Unimplemented by the service, but it went through the limiter and upstream.
			if s, _ := grpcstatus.FromError(err); s.Code() != codes.Unimplemented {
				t.Fatalf("first call: %v", err)
			}
		}
		_, err := c.CacheableUnaryCall(callCtx(t), &testpb.SimpleRequest{})
		check(t, err, codes.ResourceExhausted)
	})
	t.Run("no healthy upstream is UNAVAILABLE", func(t *testing.T) {
		_, err := c.UnimplementedCall(callCtx(t), &testpb.Empty{})
		check(t, err, codes.Unavailable)
	})
	t.Run("no route is UNIMPLEMENTED", func(t *testing.T) {
		_, err := c.StreamingInputCall(callCtx(t))
		if err == nil {
			st, _ := c.StreamingInputCall(callCtx(t))
			_, err = st.CloseAndRecv()
		}
		check(t, err, codes.Unimplemented)
	})
}

// TestGRPCRetryByStatus: retry.on names a gRPC status, one of two instances answers it, and
// grpc-go's requests (HTTP/2 without content-length, so their bodies are streamed) are
// retried on the other with their recorded body, unless the body passed the retry buffer
// (upstream.DefaultRetryBufferBytes) or had not ended (a bidirectional stream still open).
func TestGRPCRetryByStatus(t *testing.T) {
	addrA, a := startGRPC(t, "a")
	addrB, b := startGRPC(t, "b")
	a.FailCode.Store(int32(codes.Unavailable))
	cfg := fmt.Sprintf(`
admin: { address: 127.0.0.1:0 }
listeners:
  - name: public
    address: 127.0.0.1:0
routes:
  - name: grpc
    match: { path_prefix: /grpc.testing.TestService/ }
    to: [ { service: origin } ]
    timeout: 5s
services:
  origin:
    protocol: grpc
    retry: { attempts: 2, on: [unavailable] }
    outlier_detection: { disabled: true }
    circuit_breaker: { disabled: true }
discovery:
  static:
    origin: [ %s, %s ]
access_log: { output: "off" }
`, addrA, addrB)
	e := startEdge(t, cfg)
	c := dialGRPC(t, e.addr)

	t.Run("unary: a failing instance's answer is retried on the other", func(t *testing.T) {
		a0, b0 := a.Calls.Load(), b.Calls.Load()
		const n = 6
		for i := range n {
			body := []byte(fmt.Sprintf("ping-%d", i))
			resp, err := c.UnaryCall(callCtx(t), &testpb.SimpleRequest{Payload: &testpb.Payload{Body: body}})
			if err != nil {
				t.Fatalf("call %d: %v", i, err)
			}
			// The echo proves the retry carried the same body.
			if resp.GetServerId() != "b" || string(resp.GetPayload().GetBody()) != string(body) {
				t.Fatalf("call %d: response %v", i, resp)
			}
		}
		// Round robin sends every other first try to a; each of those was retried on b.
		if got := a.Calls.Load() - a0; got < 1 {
			t.Fatalf("failing instance got %d calls: nothing was retried", got)
		}
		if got := b.Calls.Load() - b0; got != n {
			t.Fatalf("healthy instance got %d calls, want %d", got, n)
		}
	})

	// stream sends size bytes in 1000-byte messages on a client stream until a call reaches
	// the failing instance; it returns the calls the healthy one got meanwhile and that call's
	// error. Calls that reached b first must succeed.
	stream := func(t *testing.T, size int) (int64, error) {
		t.Helper()
		for range 4 {
			a0, b0 := a.Calls.Load(), b.Calls.Load()
			st, err := c.StreamingInputCall(callCtx(t))
			if err != nil {
				t.Fatal(err)
			}
			for sent := 0; sent < size; sent += 1000 {
				if err := st.Send(&testpb.StreamingInputCallRequest{Payload: &testpb.Payload{Body: make([]byte, 1000)}}); err != nil {
					break // the answer came; CloseAndRecv reports it
				}
			}
			resp, err := st.CloseAndRecv()
			if a.Calls.Load() == a0 {
				if err != nil || int(resp.GetAggregatedPayloadSize()) < size {
					t.Fatalf("call to the healthy instance: %v, %v", resp, err)
				}
				continue
			}
			if err == nil && int(resp.GetAggregatedPayloadSize()) < size {
				t.Fatalf("aggregated %d bytes, sent %d", resp.GetAggregatedPayloadSize(), size)
			}
			return b.Calls.Load() - b0, err
		}
		t.Fatal("no call reached the failing instance")
		return 0, nil
	}

	t.Run("client stream within the retry buffer is retried", func(t *testing.T) {
		onB, err := stream(t, 20_000)
		if err != nil || onB != 1 {
			t.Fatalf("error %v, healthy instance got %d calls: want a retry that succeeded", err, onB)
		}
	})

	t.Run("client stream past the retry buffer is not retried", func(t *testing.T) {
		onB, err := stream(t, 100_000) // > 64 KiB
		if s, _ := grpcstatus.FromError(err); s.Code() != codes.Unavailable || s.Message() != "failing" {
			t.Fatalf("status = %v, want the instance's UNAVAILABLE", err)
		}
		if onB != 0 {
			t.Fatalf("healthy instance got %d calls: the oversized body was retried", onB)
		}
	})

	t.Run("open bidirectional stream is answered, not retried", func(t *testing.T) {
		for range 4 {
			a0, b0 := a.Calls.Load(), b.Calls.Load()
			st, err := c.FullDuplexCall(callCtx(t))
			if err != nil {
				t.Fatal(err)
			}
			if err := st.Send(&testpb.StreamingOutputCallRequest{Payload: &testpb.Payload{Body: []byte("x")}}); err != nil {
				t.Fatal(err)
			}
			start := time.Now()
			_, err = st.Recv() // the send side stays open: nothing may wait for its end
			if a.Calls.Load() == a0 {
				if err != nil {
					t.Fatalf("call to the healthy instance: %v", err)
				}
				_ = st.CloseSend()
				continue
			}
			if s, _ := grpcstatus.FromError(err); s.Code() != codes.Unavailable {
				t.Fatalf("status = %v, want UNAVAILABLE", err)
			}
			if took := time.Since(start); took > 2*time.Second {
				t.Fatalf("answer took %v", took)
			}
			if got := b.Calls.Load() - b0; got != 0 {
				t.Fatalf("healthy instance got %d calls: an open stream was retried", got)
			}
			return
		}
		t.Fatal("no call reached the failing instance")
	})
}
