package await

import (
	"errors"
	"testing"
	"time"

	"go.uber.org/goleak"
)

// Until polls cond every millisecond until it holds, and fails t with what if timeout passes
// first. A fixed sleep would be either flaky on a loaded 2-core CI machine or slow everywhere.
func Until(t testing.TB, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s", timeout, what)
		}
		time.Sleep(time.Millisecond)
	}
}

// ErrStillRunning is Returns' error when f has not returned within the bound.
var ErrStillRunning = errors.New("still running")

// Returns runs f on a goroutine of its own and gives its error, or ErrStillRunning once
// timeout passes first (f then runs on; a test holding a lock f waits for releases it after).
// It is for asserting that something does not wait for what the test is holding.
func Returns(timeout time.Duration, f func() error) error {
	done := make(chan error, 1)
	go func() { done <- f() }()
	t := time.NewTimer(timeout)
	defer t.Stop()
	select {
	case err := <-done:
		return err
	case <-t.C:
		return ErrStillRunning
	}
}

// IgnoreFasthttp is fasthttp's process-wide workers: the coarse server clock, client
// connection cleaners, the DNS-cache cleaner and the worker pool's idle reaper, which notices
// Stop only after its own sleep. None of them belongs to a test.
func IgnoreFasthttp() []goleak.Option {
	return []goleak.Option{
		goleak.IgnoreAnyFunction("github.com/valyala/fasthttp.updateServerDate.func1"),
		goleak.IgnoreAnyFunction("github.com/valyala/fasthttp.(*HostClient).connsCleaner"),
		goleak.IgnoreAnyFunction("github.com/valyala/fasthttp.(*TCPDialer).tcpAddrsClean"),
		goleak.IgnoreAnyFunction("github.com/valyala/fasthttp.(*workerPool).Start.func2"),
	}
}

// IgnoreIdleConns is goroutines parked on idle keep-alive connections (net/http's client loops
// and anything blocked in the poller) that a test's servers close asynchronously after it ends.
func IgnoreIdleConns() []goleak.Option {
	return []goleak.Option{
		goleak.IgnoreTopFunction("internal/poll.runtime_pollWait"),
		goleak.IgnoreTopFunction("net/http.(*persistConn).writeLoop"),
		goleak.IgnoreAnyFunction("net/http.(*persistConn).readLoop"),
	}
}
