package deadline

import (
	"net"
	"sync"
	"sync/atomic"
	"time"
)

// never is the pending or armed value of "no deadline": later than any real one.
const never = int64(^uint64(0) >> 1)

// State is the deadlines of one connection. The zero value is not ready: use Init. Its
// methods take the connection they act on, so a wrapper type can embed State next to its own
// fields and stay free of allocations.
type State struct {
	slack int64 // nanoseconds a deadline may fire late
	read  side
	write side
}

// side is one direction's deadline. pending is what the caller asked for; armed is what the
// socket holds, written only under mu, so a Set racing an in-progress Read's own arming can
// never leave an older value on the socket.
type side struct {
	pending atomic.Int64
	armed   atomic.Int64
	busy    atomic.Bool // a Read (Write) is in progress: a new deadline must reach it now
	mu      sync.Mutex
}

// Init readies s with the slack a deadline may fire late (<= 0: exact deadlines, armed lazily).
func (s *State) Init(slack time.Duration) {
	s.slack = max(int64(slack), 0)
	s.read.pending.Store(never)
	s.read.armed.Store(never)
	s.write.pending.Store(never)
	s.write.armed.Store(never)
}

func nanos(t time.Time) int64 {
	if t.IsZero() {
		return never
	}
	return t.UnixNano()
}

// SetReadDeadline records t for c's reads (c is the connection s belongs to).
func (s *State) SetReadDeadline(c net.Conn, t time.Time) error {
	return s.set(&s.read, c, t, false)
}

// SetWriteDeadline records t for c's writes.
func (s *State) SetWriteDeadline(c net.Conn, t time.Time) error {
	return s.set(&s.write, c, t, true)
}

// SetDeadline records t for both directions.
func (s *State) SetDeadline(c net.Conn, t time.Time) error {
	if err := s.SetReadDeadline(c, t); err != nil {
		return err
	}
	return s.SetWriteDeadline(c, t)
}

func (s *State) set(d *side, c net.Conn, t time.Time, write bool) error {
	d.pending.Store(nanos(t))
	// A Read already waiting must see the change (sequentially consistent atomics: if busy is
	// not seen here, that Read's own arming sees the pending value stored above).
	if d.busy.Load() {
		return s.arm(d, c, write)
	}
	return nil
}

// Read arms c's read deadline if it must, then reads.
func (s *State) Read(c net.Conn, b []byte) (int, error) {
	s.read.busy.Store(true)
	defer s.read.busy.Store(false)
	if err := s.arm(&s.read, c, false); err != nil {
		return 0, err
	}
	return c.Read(b)
}

// Write arms c's write deadline if it must, then writes.
func (s *State) Write(c net.Conn, b []byte) (int, error) {
	s.write.busy.Store(true)
	defer s.write.busy.Store(false)
	if err := s.arm(&s.write, c, true); err != nil {
		return 0, err
	}
	return c.Write(b)
}

// covers reports that armed already serves pending: the same, or later by at most slack.
func (s *State) covers(armed, pending int64) bool {
	if pending == never {
		return armed == never
	}
	return armed >= pending && armed-pending <= s.slack
}

// arm brings the socket's deadline to what is pending, unless the armed one covers it.
func (s *State) arm(d *side, c net.Conn, write bool) error {
	if s.covers(d.armed.Load(), d.pending.Load()) {
		return nil
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	p, a := d.pending.Load(), d.armed.Load()
	if s.covers(a, p) {
		return nil
	}
	next := p // no deadline, or earlier than the armed one by more than the slack: exact
	if p != never && a != never && p > a {
		// Later: arm with the slack ahead, so the next requests' deadlines, each a little
		// later than this one, find it covering them.
		next = p + s.slack
	}
	var t time.Time
	if next != never {
		t = time.Unix(0, next)
	}
	var err error
	if write {
		err = c.SetWriteDeadline(t)
	} else {
		err = c.SetReadDeadline(t)
	}
	if err != nil {
		return err
	}
	d.armed.Store(next)
	return nil
}
