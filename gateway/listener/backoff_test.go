package listener

import (
	"errors"
	"fmt"
	"net"
	"os"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/rs/zerolog"
	"go.uber.org/goleak"

	"github.com/meshgate/meshgate/internal/await"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m, append(await.IgnoreFasthttp(), await.IgnoreIdleConns()...)...)
}

// failingListener wraps a real listener and fails Accept with err, as net.TCPListener
// would, the first n times (n < 0: until closed). Once closed it behaves like the real one.
type failingListener struct {
	net.Listener
	err    error
	left   atomic.Int64
	closed atomic.Bool
	calls  atomic.Int64
}

func newFailing(t *testing.T, errno error, n int) *failingListener {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = ln.Close() })
	f := &failingListener{Listener: ln,
		err: &net.OpError{Op: "accept", Net: "tcp", Addr: ln.Addr(), Err: os.NewSyscallError("accept4", errno)}}
	f.left.Store(int64(n))
	return f
}

func (f *failingListener) Accept() (net.Conn, error) {
	f.calls.Add(1)
	if !f.closed.Load() && f.left.Load() != 0 {
		f.left.Add(-1)
		return nil, f.err
	}
	return f.Listener.Accept()
}

func (f *failingListener) Close() error {
	f.closed.Store(true)
	return f.Listener.Close()
}

func wrap(inner net.Listener, errs prometheus.Counter) *backoffListener {
	return &backoffListener{Listener: inner, done: make(chan struct{}), log: zerolog.Nop(), errs: errs}
}

func TestBackoffRidesOutExhaustion(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name  string
		errno syscall.Errno
		n     int
	}{
		{"emfile once", syscall.EMFILE, 1},
		{"emfile", syscall.EMFILE, 4},
		{"enfile", syscall.ENFILE, 3},
		{"enobufs", syscall.ENOBUFS, 2},
		{"enomem", syscall.ENOMEM, 2},
		{"econnaborted", syscall.ECONNABORTED, 2},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			f := newFailing(t, tt.errno, tt.n)
			errs := prometheus.NewCounter(prometheus.CounterOpts{Name: "accept_errors"})
			b := wrap(f, errs)
			defer b.Close()

			// The connection waits in the backlog while Accept backs off.
			client, err := net.Dial("tcp", f.Addr().String())
			if err != nil {
				t.Fatal(err)
			}
			defer client.Close()

			c, err := b.Accept()
			if err != nil {
				t.Fatalf("Accept: %v", err)
			}
			defer c.Close()
			if c.RemoteAddr().String() != client.LocalAddr().String() {
				t.Fatalf("accepted %v, want the client %v", c.RemoteAddr(), client.LocalAddr())
			}
			if got := testutil.ToFloat64(errs); got != float64(tt.n) {
				t.Fatalf("AcceptErrors = %v, want %d", got, tt.n)
			}
			if got := f.calls.Load(); got != int64(tt.n+1) {
				t.Fatalf("inner Accept calls = %d, want %d", got, tt.n+1)
			}
		})
	}
}

// Without a counter (AcceptErrors is optional) the backoff still works.
func TestBackoffWithoutCounter(t *testing.T) {
	t.Parallel()
	f := newFailing(t, syscall.EMFILE, 2)
	b := wrap(f, nil)
	defer b.Close()
	client, err := net.Dial("tcp", f.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer client.Close()
	c, err := b.Accept()
	if err != nil {
		t.Fatalf("Accept: %v", err)
	}
	_ = c.Close()
}

func TestBackoffCloseInterruptsWait(t *testing.T) {
	t.Parallel()
	f := newFailing(t, syscall.EMFILE, -1)
	errs := prometheus.NewCounter(prometheus.CounterOpts{Name: "accept_errors"})
	b := wrap(f, errs)

	type result struct {
		c   net.Conn
		err error
	}
	done := make(chan result, 1)
	go func() {
		c, err := b.Accept()
		done <- result{c, err}
	}()
	// After 7 failures Accept sleeps 320ms (5ms doubling): long enough that returning at
	// once can only be the close interrupting the wait.
	deadline := time.Now().Add(5 * time.Second)
	for testutil.ToFloat64(errs) < 7 {
		if time.Now().After(deadline) {
			t.Fatalf("only %v accept errors so far", testutil.ToFloat64(errs))
		}
		time.Sleep(time.Millisecond)
	}
	start := time.Now()
	if err := b.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	select {
	case r := <-done:
		if r.c != nil || !errors.Is(r.err, net.ErrClosed) {
			t.Fatalf("Accept after Close = %v, %v; want net.ErrClosed", r.c, r.err)
		}
		if took := time.Since(start); took > 200*time.Millisecond {
			t.Fatalf("Accept returned %v after Close; it should not finish its backoff", took)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Accept did not return after Close")
	}
	// Close is idempotent: fasthttp closes the listener again after Shutdown did.
	if err := b.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
}

// A close while blocked in the real Accept (no backoff involved) also ends Accept.
func TestBackoffCloseWhileAccepting(t *testing.T) {
	t.Parallel()
	f := newFailing(t, syscall.EMFILE, 0)
	b := wrap(f, nil)
	done := make(chan error, 1)
	go func() {
		_, err := b.Accept()
		done <- err
	}()
	deadline := time.Now().Add(5 * time.Second)
	for f.calls.Load() == 0 && time.Now().Before(deadline) {
		time.Sleep(time.Millisecond)
	}
	_ = b.Close()
	select {
	case err := <-done:
		if !errors.Is(err, net.ErrClosed) {
			t.Fatalf("err = %v, want net.ErrClosed", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Accept did not return after Close")
	}
}

func TestBackoffReturnsPermanentErrors(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		err  error
	}{
		{"einval", syscall.EINVAL},
		{"ebadf", syscall.EBADF},
		{"eperm", syscall.EPERM},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			f := newFailing(t, tt.err, -1)
			errs := prometheus.NewCounter(prometheus.CounterOpts{Name: "accept_errors"})
			b := wrap(f, errs)
			defer b.Close()
			c, err := b.Accept()
			if c != nil || !errors.Is(err, tt.err) {
				t.Fatalf("Accept = %v, %v; want %v", c, err, tt.err)
			}
			if f.calls.Load() != 1 || testutil.ToFloat64(errs) != 0 {
				t.Fatalf("calls %d errors %v; a permanent error must not be retried", f.calls.Load(), testutil.ToFloat64(errs))
			}
		})
	}
}

type timeoutErr struct{}

func (timeoutErr) Error() string   { return "i/o timeout" }
func (timeoutErr) Timeout() bool   { return true }
func (timeoutErr) Temporary() bool { return true }

func TestRetryableAccept(t *testing.T) {
	t.Parallel()
	op := func(err error) error {
		return &net.OpError{Op: "accept", Net: "tcp", Err: os.NewSyscallError("accept4", err)}
	}
	tests := []struct {
		err  error
		want bool
	}{
		{op(syscall.EMFILE), true},
		{op(syscall.ENFILE), true},
		{op(syscall.ENOBUFS), true},
		{op(syscall.ENOMEM), true},
		{op(syscall.ECONNABORTED), true},
		{syscall.EMFILE, true},
		{&net.OpError{Op: "accept", Net: "tcp", Err: timeoutErr{}}, true},
		{op(syscall.EINVAL), false},
		{&net.OpError{Op: "accept", Net: "tcp", Err: net.ErrClosed}, false},
		{net.ErrClosed, false},
		{errors.New("boom"), false},
	}
	for _, tt := range tests {
		t.Run(fmt.Sprint(tt.err), func(t *testing.T) {
			t.Parallel()
			if got := retryableAccept(tt.err); got != tt.want {
				t.Fatalf("retryableAccept(%v) = %v, want %v", tt.err, got, tt.want)
			}
		})
	}
}

// Concurrent Close calls (Shutdown and fasthttp's own) are safe and all succeed.
func TestBackoffConcurrentClose(t *testing.T) {
	t.Parallel()
	f := newFailing(t, syscall.EMFILE, 0)
	b := wrap(f, nil)
	var wg sync.WaitGroup
	for range 4 {
		wg.Go(func() {
			if err := b.Close(); err != nil {
				t.Errorf("Close: %v", err)
			}
		})
	}
	wg.Wait()
	if !b.closed() {
		t.Fatal("not closed")
	}
}
