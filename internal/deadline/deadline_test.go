package deadline

import (
	"errors"
	"net"
	"os"
	"sync"
	"testing"
	"time"
)

// recorder is a real loopback connection that remembers every deadline armed on it.
type recorder struct {
	net.Conn
	mu   sync.Mutex
	read []time.Time
}

func (r *recorder) SetReadDeadline(t time.Time) error {
	r.mu.Lock()
	r.read = append(r.read, t)
	r.mu.Unlock()
	return r.Conn.SetReadDeadline(t)
}

func (r *recorder) armed() []time.Time {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]time.Time(nil), r.read...)
}

// pair returns both ends of a loopback TCP connection; the first is wrapped in a recorder.
func pair(t *testing.T) (*recorder, net.Conn) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	accepted := make(chan net.Conn, 1)
	go func() {
		c, _ := ln.Accept()
		accepted <- c
	}()
	c, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	peer := <-accepted
	if peer == nil {
		t.Fatal("accept failed")
	}
	t.Cleanup(func() { _ = c.Close(); _ = peer.Close() })
	return &recorder{Conn: c}, peer
}

// readUnder sets dl as c's read deadline, has peer send a byte and reads it through s, and
// returns the deadline last armed on the socket.
func readUnder(t *testing.T, s *State, c *recorder, peer net.Conn, dl time.Time) time.Time {
	t.Helper()
	if err := s.SetReadDeadline(c, dl); err != nil {
		t.Fatal(err)
	}
	if _, err := peer.Write([]byte{'x'}); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Read(c, make([]byte, 1)); err != nil {
		t.Fatal(err)
	}
	armed := c.armed()
	if len(armed) == 0 {
		return time.Time{}
	}
	return armed[len(armed)-1]
}

// A keep-alive connection's deadlines, each a little later than the one before, arm the
// socket once per slack rather than once per request, and the armed one is never earlier
// than what was asked.
func TestLaterDeadlinesShareOneArming(t *testing.T) {
	c, peer := pair(t)
	var s State
	s.Init(time.Second)
	base := time.Now().Add(time.Minute)
	for i := range 100 {
		want := base.Add(time.Duration(i) * time.Millisecond)
		if got := readUnder(t, &s, c, peer, want); got.Before(want) {
			t.Fatalf("request %d: armed %v, earlier than the %v asked for", i, got, want)
		}
	}
	if n := len(c.armed()); n > 2 {
		t.Fatalf("100 requests armed the socket %d times, want at most 2 (a first exact arming, one with the slack)", n)
	}
}

// Deadlines set and replaced without a read in between (a head that arrived whole never waits
// under its head and body deadlines) never reach the socket.
func TestUnusedDeadlinesAreNotArmed(t *testing.T) {
	c, _ := pair(t)
	var s State
	s.Init(time.Second)
	now := time.Now()
	for _, d := range []time.Duration{time.Minute, 10 * time.Second, 30 * time.Second} {
		if err := s.SetReadDeadline(c, now.Add(d)); err != nil {
			t.Fatal(err)
		}
	}
	if n := len(c.armed()); n != 0 {
		t.Fatalf("armed %d times without a read, want 0", n)
	}
}

// A deadline that moves earlier by more than the slack is armed exactly, and a zero one
// clears the armed deadline.
func TestEarlierAndZeroDeadlinesAreExact(t *testing.T) {
	c, peer := pair(t)
	var s State
	s.Init(time.Second)
	read := func(dl time.Time) time.Time { return readUnder(t, &s, c, peer, dl) }
	now := time.Now()
	read(now.Add(time.Minute))
	read(now.Add(time.Minute + time.Millisecond)) // armed with the slack
	early := now.Add(10 * time.Second)
	if got := read(early); !got.Equal(early) {
		t.Fatalf("an earlier deadline was armed as %v, want exactly %v", got, early)
	}
	if got := read(time.Time{}); !got.IsZero() {
		t.Fatalf("a zero deadline was armed as %v, want zero", got)
	}
}

// A deadline in the past set while a Read waits (how a session is torn down) ends that Read
// at once, and an expired deadline still fails a Read that has nothing to read.
func TestPastDeadlineEndsAWaitingRead(t *testing.T) {
	c, _ := pair(t)
	var s State
	s.Init(100 * time.Millisecond)
	done := make(chan error, 1)
	started := make(chan struct{})
	go func() {
		close(started)
		_, err := s.Read(c, make([]byte, 1))
		done <- err
	}()
	<-started
	// The Read may not have marked itself busy yet; either way it must end: a Set that does
	// not see it busy leaves the value for its arming.
	if err := s.SetReadDeadline(c, time.Unix(1, 0)); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-done:
		if !errors.Is(err, os.ErrDeadlineExceeded) {
			t.Fatalf("read ended with %v, want a deadline error", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("a past deadline did not end the waiting read")
	}

	if err := s.SetReadDeadline(c, time.Now().Add(20*time.Millisecond)); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	_, err := s.Read(c, make([]byte, 1))
	if !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("read without data ended with %v, want a deadline error", err)
	}
	if took := time.Since(start); took < 15*time.Millisecond {
		t.Fatalf("the deadline fired after %v, before the 20ms asked for", took)
	}
}

func TestWriteDeadline(t *testing.T) {
	c, _ := pair(t)
	var s State
	s.Init(0)
	if err := s.SetWriteDeadline(c, time.Unix(1, 0)); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Write(c, []byte("x")); !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("write after a past deadline: %v, want a deadline error", err)
	}
	if err := s.SetDeadline(c, time.Time{}); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Write(c, []byte("x")); err != nil {
		t.Fatalf("write after clearing the deadline: %v", err)
	}
}
