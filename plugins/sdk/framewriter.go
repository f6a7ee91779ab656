package sdk

import (
	"errors"
	"net"
	"os"
	"runtime"
	"sync"
	"time"
)

// frameWriter writes whole frames to one end of the socket, one writer at a time. A frame
// handed to it while a write is under way is queued, and the writer under way sends
// everything queued in one more write before it returns: with many calls in flight (a busy
// proxy), N frames cost one system call, and on loopback one wake-up of the other process,
// instead of N. A lone frame is written at once, by its own caller, as before.
//
// This is group commit, as databases do it for their log: no goroutine of its own and no
// timer, so nothing waits for a batch to fill.
type frameWriter struct {
	conn net.Conn

	mu       sync.Mutex
	writing  bool      // a writer is sending; frames handed over meanwhile go to queued
	queued   []byte    // whole frames, in the order they were handed over
	queuedBy time.Time // the latest deadline of the queued frames (zero: none)
	spare    []byte    // the previous write's batch, reused for the next queue
	iov      [2][]byte // own and batch, for writev
	iovs     net.Buffers
}

// errNotSent says that none of the caller's frame went out before its deadline: the stream of
// frames is intact, and the caller's call has timed out.
var errNotSent = errors.New("frame not sent before the deadline")

// send writes frame (whole frames), bounded by deadline (zero: none), or queues it for the
// write under way. With yield, a writer first lets the other runnable goroutines run, so that
// frames finishing at the same moment join its write (see socketWriter).
//
// It returns nil once the frame is written or queued; errNotSent when its deadline passed
// before any of it went out; any other error means part of a frame may be on the wire, so
// nothing after it can be framed. Each write is bounded by the latest deadline of the frames
// in it: a frame is never dropped before its own deadline because another call's passed. A
// write that sends nothing by then drops its frames; their calls have timed out, as each
// would have had it waited for the socket itself. frame is not kept after send returns.
func (w *frameWriter) send(frame []byte, deadline time.Time, yield bool) error {
	w.mu.Lock()
	if w.writing {
		w.queued = append(w.queued, frame...)
		w.queuedBy = latest(w.queuedBy, deadline, len(w.queued) == len(frame))
		w.mu.Unlock()
		return nil
	}
	w.writing = true
	w.mu.Unlock()
	if yield {
		runtime.Gosched()
	}
	own := frame
	var result error
	for {
		w.mu.Lock()
		if own == nil && len(w.queued) == 0 {
			w.writing = false
			w.mu.Unlock()
			return result
		}
		batch, by := w.queued, w.queuedBy
		w.queued, w.queuedBy = w.spare[:0], time.Time{}
		w.mu.Unlock()
		switch {
		case own == nil:
		case len(batch) == 0:
			by = deadline
		default:
			by = latest(by, deadline, false)
		}
		err := w.conn.SetWriteDeadline(by)
		var n int64
		if err == nil {
			n, err = w.write(own, batch)
		}
		if cap(batch) > keepBuffer {
			batch = nil // after a large message, go back to a small queue
		}
		w.spare = batch
		if err != nil {
			if n != 0 || !errors.Is(err, os.ErrDeadlineExceeded) {
				w.mu.Lock()
				w.writing = false
				w.queued = w.queued[:0] // the socket is done: nothing more can be framed
				w.mu.Unlock()
				return err
			}
			// Nothing went out by the latest deadline in this write: the stream is intact,
			// and every frame in it has timed out. Frames queued since go on.
			if own != nil {
				result = errNotSent
			}
		}
		own = nil
	}
}

// latest is the later of two write deadlines, where zero is none (so later than any); first
// says a is not a deadline yet (the queue was empty).
func latest(a, b time.Time, first bool) time.Time {
	switch {
	case first:
		return b
	case a.IsZero() || b.IsZero():
		return time.Time{}
	case b.After(a):
		return b
	}
	return a
}

// write sends own and batch (either may be empty) in one system call.
func (w *frameWriter) write(own, batch []byte) (int64, error) {
	switch {
	case len(batch) == 0:
		n, err := w.conn.Write(own)
		return int64(n), err
	case len(own) == 0:
		n, err := w.conn.Write(batch)
		return int64(n), err
	}
	// Fields, not locals: WriteTo takes a pointer to the slice (it consumes it), which would
	// move a local to the heap on every call.
	w.iov = [2][]byte{own, batch}
	w.iovs = w.iov[:]
	n, err := w.iovs.WriteTo(w.conn)
	w.iov = [2][]byte{}
	return n, err
}
