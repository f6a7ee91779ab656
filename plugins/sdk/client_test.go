package sdk

import (
	"context"
	"errors"
	"strings"
	"testing"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	pb "github.com/meshgate/meshgate/plugins/proto"
)

// failingConn answers every call with err.
type failingConn struct{ err error }

func (c failingConn) Invoke(context.Context, string, any, any, ...grpc.CallOption) error {
	return c.err
}

// NewStream says what a plugin without the streams says, so calls fall back to Invoke.
func (failingConn) NewStream(context.Context, *grpc.StreamDesc, string, ...grpc.CallOption) (grpc.ClientStream, error) {
	return nil, status.Error(codes.Unimplemented, "unknown method")
}

func TestClientErrors(t *testing.T) {
	t.Parallel()
	closed := make(chan struct{})
	close(closed)
	tests := []struct {
		name      string
		err       error
		exited    <-chan struct{}
		cancelled bool
		configure bool
		want      error
		wantText  string
	}{
		{name: "process gone", err: status.Error(codes.Unavailable, "connection refused"), want: ErrUnavailable, wantText: "connection refused"},
		{name: "connection closed mid-call", err: status.Error(codes.Canceled, "grpc: the client connection is closing"), want: ErrUnavailable},
		{name: "deadline", err: status.Error(codes.DeadlineExceeded, "context deadline exceeded"), want: context.DeadlineExceeded},
		{name: "our ctx cancelled", err: status.Error(codes.Canceled, "context canceled"), cancelled: true, want: context.Canceled},
		{name: "plugin error", err: status.Error(codes.Unknown, "boom"), want: ErrFailed, wantText: "OnRequest: plugin failed: boom"},
		{name: "plugin error after exit", err: status.Error(codes.Unknown, "boom"), exited: closed, want: ErrUnavailable},
		{name: "bad config", err: status.Error(codes.InvalidArgument, "keys[0]: bad"), configure: true, want: ErrInvalidConfig,
			wantText: "invalid plugin configuration: keys[0]: bad"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			c := NewClient(failingConn{err: tt.err}, nil)
			ctx, cancel := context.WithCancel(t.Context())
			defer cancel()
			if tt.cancelled {
				cancel()
			}
			var err error
			if tt.configure {
				_, err = c.Configure(ctx, []byte("{}"))
			} else {
				// exited only matters once a call has failed: the fast path is checked below.
				c.exited = tt.exited
				if tt.exited != nil {
					err = c.callError(ctx, "OnRequest", tt.err)
				} else {
					err = c.OnRequest(ctx, &pb.RequestPhase{}, &pb.RequestDecision{})
				}
			}
			if !errors.Is(err, tt.want) {
				t.Fatalf("err = %v, want errors.Is %v", err, tt.want)
			}
			if !strings.Contains(err.Error(), tt.wantText) {
				t.Errorf("err = %q, want it to contain %q", err, tt.wantText)
			}
		})
	}
}

func TestClientFailsFastAfterExit(t *testing.T) {
	t.Parallel()
	exited := make(chan struct{})
	close(exited)
	called := false
	c := NewClient(recordingConn{called: &called}, exited)
	err := c.OnRequest(t.Context(), &pb.RequestPhase{}, &pb.RequestDecision{})
	if !errors.Is(err, ErrUnavailable) || called {
		t.Errorf("err = %v, called = %v; want ErrUnavailable without a call", err, called)
	}
	if c.Exited() == nil {
		t.Error("Exited() is nil")
	}
}

type recordingConn struct{ called *bool }

func (c recordingConn) Invoke(context.Context, string, any, any, ...grpc.CallOption) error {
	*c.called = true
	return nil
}

func (c recordingConn) NewStream(context.Context, *grpc.StreamDesc, string, ...grpc.CallOption) (grpc.ClientStream, error) {
	*c.called = true
	return nil, status.Error(codes.Unimplemented, "unknown method")
}
