package sdk

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	pb "github.com/meshgate/meshgate/plugins/proto"
)

// The socket transport in process: a Client on one end of a socketpair, the server on the
// other, as the host and a plugin process have them. process_test.go and the host's tests
// run it across a real exec.

// echo answers each request with its own path in X-Echo, after the delay its query asks for
// (or at its deadline with ctx's error for "hang"), or fails when the path is /fail.
type echo struct{}

func (echo) Describe() Capabilities {
	return Capabilities{Name: "echo", Request: RequestParts{Query: true}}
}

func (echo) OnRequest(ctx context.Context, r *Request) (Decision, error) {
	if r.Path == "/fail" {
		return Decision{}, errors.New("told to fail")
	}
	if r.Path == "/big" { // the body back, as a reply of many socket reads
		return Respond(200, string(r.Body)), nil
	}
	if r.Query == "hang" { // until the call's deadline: its answer is always ctx's error
		<-ctx.Done()
		return Decision{}, ctx.Err()
	}
	if d, err := time.ParseDuration(r.Query); err == nil {
		select {
		case <-time.After(d):
		case <-ctx.Done():
			return Decision{}, ctx.Err()
		}
	}
	return Continue().SetHeader("X-Echo", r.Path), nil
}

func (echo) OnResponse(_ context.Context, r *Response) (ResponseMutation, error) {
	return ResponseMutation{SetHeaders: []Header{{Name: "X-Status", Value: fmt.Sprint(r.Status)}}}, nil
}

// socketPair returns the two ends of a unix socketpair as connections.
func socketPair(t *testing.T) (host, plugin net.Conn) {
	t.Helper()
	fds, err := syscall.Socketpair(syscall.AF_UNIX, syscall.SOCK_STREAM|syscall.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	conns := make([]net.Conn, 2)
	for i, fd := range fds {
		f := os.NewFile(uintptr(fd), "socket")
		c, err := net.FileConn(f)
		_ = f.Close()
		if err != nil {
			t.Fatal(err)
		}
		conns[i] = c
	}
	return conns[0], conns[1]
}

// socketClient returns a Client whose per-request calls go over a socket to p, served in
// process, and a func that ends the serving side as a plugin process exiting would.
func socketConnect(t *testing.T, p Plugin) (*Client, func()) {
	t.Helper()
	hostEnd, pluginEnd := socketPair(t)
	s := newServer(p, quiet())
	s.socket = true
	served := make(chan struct{})
	go func() {
		defer close(served)
		s.serveSocket(pluginEnd)
	}()
	c := NewClient(failingConn{}, nil)
	c.OfferSocket(hostEnd)
	caps, err := s.describe()
	if err != nil {
		t.Fatal(err)
	}
	if !caps.GetSocketTransport() {
		t.Fatal("describe does not claim the socket")
	}
	c.negotiate(caps)
	if c.Transport() != TransportSocket {
		t.Fatalf("transport = %s", c.Transport())
	}
	var once sync.Once
	exit := func() {
		once.Do(func() {
			_ = pluginEnd.Close()
			<-served
		})
	}
	t.Cleanup(func() {
		c.Close()
		exit()
	})
	return c, exit
}

func onRequest(c *Client, timeout time.Duration, path, query string) (*pb.RequestDecision, error) {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	var out pb.RequestDecision
	err := c.OnRequest(ctx, &pb.RequestPhase{Path: []byte(path), Query: []byte(query)}, &out)
	return &out, err
}

func echoed(d *pb.RequestDecision) string {
	if hs := d.GetProceed().GetSetHeaders(); len(hs) == 1 {
		return string(hs[0].GetValue())
	}
	return ""
}

// TestSocketConcurrentCallsMatched: many calls in flight at once, answered out of order (each
// waits a different time), every reply reaches its own caller.
func TestSocketConcurrentCallsMatched(t *testing.T) {
	t.Parallel()
	c, _ := socketConnect(t, echo{})
	const workers, each = 32, 40
	var wg sync.WaitGroup
	errs := make(chan error, workers)
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range each {
				path := fmt.Sprintf("/w%d/c%d", w, i)
				d, err := onRequest(c, 5*time.Second, path, fmt.Sprintf("%dus", (w*7+i*13)%500))
				if err != nil {
					errs <- fmt.Errorf("%s: %w", path, err)
					return
				}
				if got := echoed(d); got != path {
					errs <- fmt.Errorf("%s got the reply for %s", path, got)
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}

	// The response phase on the same socket.
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	var m pb.ResponseMutation
	if err := c.OnResponse(ctx, &pb.ResponsePhase{Status: 204}, &m); err != nil {
		t.Fatal(err)
	}
	if hs := m.GetSetHeaders(); len(hs) != 1 || string(hs[0].GetValue()) != "204" {
		t.Errorf("mutation = %v", &m)
	}
}

// TestSocketErrorsClassified: a plugin's error is ErrFailed, a call past its deadline is
// context.DeadlineExceeded (and its late reply does not reach the next call), and a plugin
// gone mid-call is ErrUnavailable for that call and every later one: as on the streams.
func TestSocketErrorsClassified(t *testing.T) {
	t.Parallel()
	c, exit := socketConnect(t, echo{})

	if _, err := onRequest(c, time.Second, "/fail", ""); !errors.Is(err, ErrFailed) {
		t.Errorf("failing handler: %v, want ErrFailed", err)
	}
	// The handler waits for its deadline (the plugin gets it in timeout_nanos).
	if _, err := onRequest(c, 20*time.Millisecond, "/slow", "hang"); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("slow call: %v, want DeadlineExceeded", err)
	}
	for i := range 5 {
		d, err := onRequest(c, time.Second, fmt.Sprintf("/after/%d", i), "")
		if err != nil || echoed(d) != fmt.Sprintf("/after/%d", i) {
			t.Fatalf("call %d after a timeout: %v %v", i, echoed(d), err)
		}
	}

	// The plugin's end closes while calls wait: each fails at once with ErrUnavailable.
	const waiting = 8
	errs := make(chan error, waiting)
	for i := range waiting {
		go func() {
			_, err := onRequest(c, 10*time.Second, fmt.Sprintf("/wait/%d", i), "hang")
			errs <- err
		}()
	}
	time.Sleep(50 * time.Millisecond) // let them reach the plugin
	start := time.Now()
	exit()
	for range waiting {
		if err := <-errs; !errors.Is(err, ErrUnavailable) {
			t.Errorf("waiting call: %v, want ErrUnavailable", err)
		}
	}
	if took := time.Since(start); took > 5*time.Second {
		t.Errorf("waiting calls failed after %s, want at once", took)
	}
	if _, err := onRequest(c, time.Second, "/later", ""); !errors.Is(err, ErrUnavailable) {
		t.Errorf("call after the plugin's end closed: %v, want ErrUnavailable", err)
	}
}

// TestSocketNotClaimed: a socket offered to a plugin that does not claim it stays unused.
func TestSocketNotClaimed(t *testing.T) {
	t.Parallel()
	hostEnd, pluginEnd := socketPair(t)
	defer func() { _ = pluginEnd.Close() }()
	c := NewClient(failingConn{}, nil)
	c.OfferSocket(hostEnd)
	defer c.Close()
	c.negotiate(&pb.Capabilities{Name: "old"})
	if c.Transport() != TransportGRPC {
		t.Errorf("transport = %s, want grpc", c.Transport())
	}
}

// TestSocketFromEnv: no variable is no socket; a variable that names no inherited
// descriptor is an error, not a crash.
func TestSocketFromEnv(t *testing.T) {
	t.Parallel()
	env := func(v string) func(string) string {
		return func(k string) string {
			if k == SocketFDEnv {
				return v
			}
			return ""
		}
	}
	if c, err := socketFromEnv(env("")); c != nil || err != nil {
		t.Errorf("no variable: %v %v", c, err)
	}
	for _, v := range []string{"x", "1", "-3"} {
		if _, err := socketFromEnv(env(v)); err == nil {
			t.Errorf("%s=%s: no error", SocketFDEnv, v)
		}
	}
}

// TestSocketTokenPassesOnTimeout: calls that time out while holding the reading token hand it
// on, and a frame cut by a deadline is finished by the next holder: the calls with time left
// all get their own replies.
func TestSocketTokenPassesOnTimeout(t *testing.T) {
	t.Parallel()
	c, _ := socketConnect(t, echo{})
	const workers, each = 16, 30
	var wg sync.WaitGroup
	errs := make(chan error, workers)
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range each {
				path := fmt.Sprintf("/w%d/c%d", w, i)
				if w%2 == 0 { // gives up long before its reply
					if _, err := onRequest(c, 2*time.Millisecond, path, "hang"); !errors.Is(err, context.DeadlineExceeded) {
						errs <- fmt.Errorf("%s: %w, want DeadlineExceeded", path, err)
						return
					}
					continue
				}
				d, err := onRequest(c, 10*time.Second, path, fmt.Sprintf("%dus", (w*11+i*17)%3000))
				if err != nil || echoed(d) != path {
					errs <- fmt.Errorf("%s: reply for %q, %w", path, echoed(d), err)
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
}

// TestSocketLargeMessages: messages far larger than one read (the read buffer grows for them
// and shrinks back), interleaved with small ones on the same socket.
func TestSocketLargeMessages(t *testing.T) {
	t.Parallel()
	c, _ := socketConnect(t, echo{})
	body := strings.Repeat("0123456789abcdef", 1<<16) // 1 MiB
	var wg sync.WaitGroup
	errs := make(chan error, 8)
	for w := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 4 {
				ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
				var out pb.RequestDecision
				path := "/big"
				if w%2 == 1 {
					path = fmt.Sprintf("/small/%d/%d", w, i)
				}
				err := c.OnRequest(ctx, &pb.RequestPhase{Path: []byte(path), Body: []byte(body)}, &out)
				cancel()
				switch {
				case err != nil:
					errs <- fmt.Errorf("%s: %w", path, err)
					return
				case path == "/big" && string(out.GetRespond().GetBody()) != body:
					errs <- fmt.Errorf("%s: a body of %d bytes back, want %d", path, len(out.GetRespond().GetBody()), len(body))
					return
				case path != "/big" && echoed(&out) != path:
					errs <- fmt.Errorf("%s: reply for %q", path, echoed(&out))
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
}
