package sdk

import (
	"context"
	"errors"
	"net"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	pb "github.com/meshgate/meshgate/plugins/proto"
)

// The Client's stream pool against an in-process gRPC server on a unix socket.

// connect serves p (all of the service, or the unary methods only) and returns a Client.
func connect(t *testing.T, p Plugin, unaryOnly bool) *Client {
	t.Helper()
	l, err := net.Listen("unix", filepath.Join(t.TempDir(), "plugin.sock"))
	if err != nil {
		t.Fatal(err)
	}
	s := grpc.NewServer()
	desc := pb.Plugin_ServiceDesc
	if unaryOnly {
		desc.Streams = nil // what a plugin built with another SDK may serve
	}
	s.RegisterService(&desc, newServer(p, quiet()))
	served := make(chan struct{})
	go func() {
		defer close(served)
		_ = s.Serve(l)
	}()
	conn, err := grpc.NewClient("unix://"+l.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = conn.Close()
		s.Stop()
		<-served
	})
	return NewClient(conn, nil)
}

// deadlines records the deadline each call's ctx carried; "fail" and "hang" misbehave.
type deadlines struct {
	mu   sync.Mutex
	seen []time.Duration // time left when the handler ran; -1 for none
}

func (*deadlines) Describe() Capabilities { return Capabilities{Name: "deadlines"} }

func (d *deadlines) OnRequest(ctx context.Context, r *Request) (Decision, error) {
	left := time.Duration(-1)
	if dl, ok := ctx.Deadline(); ok {
		left = time.Until(dl)
	}
	d.mu.Lock()
	d.seen = append(d.seen, left)
	d.mu.Unlock()
	switch r.Path {
	case "fail":
		return Decision{}, errors.New("failing")
	case "hang":
		<-ctx.Done()
		return Decision{}, ctx.Err()
	}
	return Continue().SetHeader("X-Path", r.Path), nil
}

func (d *deadlines) OnResponse(context.Context, *Response) (ResponseMutation, error) {
	return ResponseMutation{}.SetHeader("X-Seen", "yes"), nil
}

func callPath(t *testing.T, c *Client, timeout time.Duration, path string) (*pb.RequestDecision, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), timeout)
	defer cancel()
	var out pb.RequestDecision
	err := c.OnRequest(ctx, &pb.RequestPhase{Path: []byte(path)}, &out)
	return &out, err
}

func TestStreamsAreReused(t *testing.T) {
	t.Parallel()
	p := &deadlines{}
	c := connect(t, p, false)
	for range 10 {
		out, err := callPath(t, c, 10*time.Second, "/a")
		if err != nil {
			t.Fatal(err)
		}
		if got := out.GetProceed().GetSetHeaders(); len(got) != 1 || string(got[0].GetValue()) != "/a" {
			t.Fatalf("decision = %v", out)
		}
	}
	if n := len(c.requests.idle); n != 1 {
		t.Errorf("%d idle streams after sequential calls, want 1 (reused)", n)
	}
	if c.unaryOnly.Load() {
		t.Error("fell back to unary calls against a plugin with streams")
	}
	// The deadline travels in the message and becomes the handler's ctx deadline.
	p.mu.Lock()
	left := p.seen[len(p.seen)-1]
	p.mu.Unlock()
	if left <= 0 || left > 10*time.Second {
		t.Errorf("handler saw %s left, want (0, 10s]", left)
	}

	var m pb.ResponseMutation
	if err := c.OnResponse(t.Context(), &pb.ResponsePhase{Status: 200}, &m); err != nil || len(m.GetSetHeaders()) != 1 {
		t.Fatalf("OnResponse = %v, %v", &m, err)
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if len(p.seen) != 10 {
		t.Errorf("%d request calls reached the plugin, want 10", len(p.seen))
	}
}

func TestStreamWithoutDeadline(t *testing.T) {
	t.Parallel()
	p := &deadlines{}
	c := connect(t, p, false)
	var out pb.RequestDecision
	if err := c.OnRequest(t.Context(), &pb.RequestPhase{Path: []byte("/")}, &out); err != nil {
		t.Fatal(err)
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.seen[0] != -1 {
		t.Errorf("handler saw a deadline (%s left) the call did not have", p.seen[0])
	}
}

func TestFailedStreamsAreDiscarded(t *testing.T) {
	t.Parallel()
	c := connect(t, &deadlines{}, false)
	if _, err := callPath(t, c, 10*time.Second, "/ok"); err != nil {
		t.Fatal(err)
	}
	if _, err := callPath(t, c, 10*time.Second, "fail"); !errors.Is(err, ErrFailed) {
		t.Errorf("fail: err = %v, want ErrFailed", err)
	}
	if _, err := callPath(t, c, 100*time.Millisecond, "hang"); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("hang: err = %v, want DeadlineExceeded", err)
	}
	if n := len(c.requests.idle); n != 0 {
		t.Errorf("%d idle streams after two failed calls, want 0 (both discarded)", n)
	}
	// A fresh stream serves the next call.
	if _, err := callPath(t, c, 10*time.Second, "/ok"); err != nil {
		t.Fatal(err)
	}
	if n := len(c.requests.idle); n != 1 {
		t.Errorf("%d idle streams, want 1", n)
	}
}

func TestConcurrentCallsOpenStreams(t *testing.T) {
	t.Parallel()
	c := connect(t, &deadlines{}, false)
	var wg sync.WaitGroup
	errs := make(chan error, 16)
	for range 16 {
		wg.Go(func() {
			for range 20 {
				if _, err := callPath(t, c, 10*time.Second, "/c"); err != nil {
					errs <- err
					return
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	if n := len(c.requests.idle); n < 1 || n > 16 {
		t.Errorf("%d idle streams after 16 concurrent callers, want 1..16", n)
	}
}

func TestFallsBackToUnary(t *testing.T) {
	t.Parallel()
	p := &deadlines{}
	c := connect(t, p, true)
	for range 3 {
		out, err := callPath(t, c, 10*time.Second, "/u")
		if err != nil {
			t.Fatal(err)
		}
		if len(out.GetProceed().GetSetHeaders()) != 1 {
			t.Fatalf("decision = %v", out)
		}
	}
	if !c.unaryOnly.Load() {
		t.Error("still trying streams against a plugin without them")
	}
	if _, err := callPath(t, c, 10*time.Second, "fail"); !errors.Is(err, ErrFailed) {
		t.Errorf("unary fail: err = %v, want ErrFailed", err)
	}
	var m pb.ResponseMutation
	if err := c.OnResponse(t.Context(), &pb.ResponsePhase{}, &m); err != nil || len(m.GetSetHeaders()) != 1 {
		t.Errorf("unary OnResponse = %v, %v", &m, err)
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if left := p.seen[0]; left <= 0 {
		t.Errorf("unary call: handler saw %s left, want gRPC's deadline", left)
	}
}
