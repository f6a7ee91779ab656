package upstream

import (
	"errors"
	"io"
	"sync"
	"time"

	"github.com/valyala/fasthttp"
)

// DefaultRetryBufferBytes bounds how much of a streamed request body a BodyRecorder keeps for
// a retry (Envoy's per_request_buffer_limit_bytes plays the same part). A body that grows past
// it is not replayed: its request is retried only where nothing was read of it (a connect
// failure before the first byte), as any streamed body.
const DefaultRetryBufferBytes = 64 << 10

// replayGrace is how long a retry decision waits for a recorder that has not seen the end of
// its body yet. A gRPC client sends a unary call's message with END_STREAM, but the HTTP/2
// transport writes the message before its next read of the body returns io.EOF, so an
// upstream that answers at once can beat that read by microseconds. The wait is bounded and
// only taken when the answer would otherwise be retried: a stream the client keeps open (a
// bidirectional call) is still answered, as before, after at most this long.
const replayGrace = 10 * time.Millisecond

// recordBufs holds record buffers; they start small (most gRPC requests are a few hundred
// bytes) and grow as a body needs.
var recordBufs = sync.Pool{New: func() any { b := make([]byte, 0, 4<<10); return &b }}

// recordBufMaxPooled: larger buffers are dropped rather than pooled.
const recordBufMaxPooled = 2 * DefaultRetryBufferBytes

var errReplayReleased = errors.New("upstream: request body recording released")

// BodyRecorder records a streamed request body as the transport reads it, up to a bound, so
// that a try whose answer is retryable can be sent again with exactly the same bytes. It is
// the request's body stream for the first try; Cluster.Do asks it, once an answer's head has
// arrived, whether the whole body was recorded (the transport read io.EOF within the bound)
// and then sends a Replay of it. A body that passed the bound, failed, or has not ended (a
// stream the client keeps open) makes the request as unreplayable as any streamed body.
//
// Read is called by the transport (on HTTP/2, on a goroutine of its own, which may still be
// running after the response head arrived) and never holds the lock while the source blocks;
// Complete, Replay and Release may be called from any goroutine.
type BodyRecorder struct {
	r     io.Reader
	limit int

	mu       sync.Mutex
	buf      *[]byte // pooled; nil once over the bound or released
	read     int     // bytes read through
	eof      bool    // the source reported io.EOF within the bound
	final    bool    // eof, over the bound or failed: nothing more will be recorded
	released bool
	done     chan struct{} // made by a waiting awaitComplete, closed when final
}

// NewBodyRecorder records what is read of r, up to limit bytes (<= 0: DefaultRetryBufferBytes).
func NewBodyRecorder(r io.Reader, limit int) *BodyRecorder {
	if limit <= 0 {
		limit = DefaultRetryBufferBytes
	}
	return &BodyRecorder{r: r, limit: limit, buf: recordBufs.Get().(*[]byte)}
}

// Read implements io.Reader: it reads the source and records what it returned.
func (b *BodyRecorder) Read(p []byte) (int, error) {
	n, err := b.r.Read(p) // unlocked: a stream's source may block until its client sends
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.final || b.released {
		return n, err
	}
	b.read += n
	if n > 0 && b.buf != nil {
		if b.read > b.limit {
			b.finish(false)
			return n, err
		}
		*b.buf = append(*b.buf, p[:n]...)
	}
	switch {
	case errors.Is(err, io.EOF):
		b.finish(true)
	case err != nil:
		b.finish(false)
	}
	return n, err
}

// finish ends the recording; a body that cannot be replayed gives its buffer back at once.
func (b *BodyRecorder) finish(eof bool) {
	b.final, b.eof = true, eof
	if !eof {
		b.putBuf()
	}
	if b.done != nil {
		close(b.done)
	}
}

func (b *BodyRecorder) putBuf() {
	if b.buf == nil {
		return
	}
	if cap(*b.buf) <= recordBufMaxPooled {
		*b.buf = (*b.buf)[:0]
		recordBufs.Put(b.buf)
	}
	b.buf = nil
}

// Complete reports whether the whole body was recorded: the source reached io.EOF within the
// bound, and the recording was not released.
func (b *BodyRecorder) Complete() bool {
	if b == nil {
		return false
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.eof && !b.released
}

// awaitComplete is Complete, waiting up to grace for a body that is still within the bound and
// has not ended yet (see replayGrace).
func (b *BodyRecorder) awaitComplete(grace time.Duration) bool {
	if b == nil {
		return false
	}
	b.mu.Lock()
	if b.final || b.released {
		defer b.mu.Unlock()
		return b.eof && !b.released
	}
	if b.done == nil {
		b.done = make(chan struct{})
	}
	done := b.done
	b.mu.Unlock()
	t := time.NewTimer(grace)
	defer t.Stop()
	select {
	case <-done:
	case <-t.C:
	}
	return b.Complete()
}

// touched reports whether the transport has read anything of the source: a try that failed
// after that cannot simply go on reading it.
func (b *BodyRecorder) touched() bool {
	if b == nil {
		return false
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.read > 0 || b.final
}

// Len is the number of bytes recorded.
func (b *BodyRecorder) Len() int {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.buf == nil {
		return 0
	}
	return len(*b.buf)
}

// Replay returns a reader of the recorded body for another try. It must only be used once
// Complete reported true. Each reader reads under the recorder's lock, so Release may come
// while a transport is still reading it: the reader then fails instead of reading a buffer
// that went back to the pool.
func (b *BodyRecorder) Replay() io.Reader { return &replayReader{b: b} }

type replayReader struct {
	b   *BodyRecorder
	off int
}

func (r *replayReader) Read(p []byte) (int, error) {
	b := r.b
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.released || b.buf == nil {
		return 0, errReplayReleased
	}
	if r.off >= len(*b.buf) {
		return 0, io.EOF
	}
	n := copy(p, (*b.buf)[r.off:])
	r.off += n
	return n, nil
}

// Release ends the recording and gives its buffer back: call it once the request is over
// (its response written), when no try will be made any more. Reads after it pass through
// without recording; replays fail. Safe on nil and more than once.
func (b *BodyRecorder) Release() {
	if b == nil {
		return
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.released {
		return
	}
	b.released = true
	b.putBuf()
	if !b.final {
		b.final = true
		if b.done != nil {
			close(b.done)
		}
	}
}

// replayable says whether call's body may be sent again: it is in memory, or its recorder
// holds all of it (waiting the short grace for the end of a body still within the bound).
func (call *Call) replayable() bool {
	return call.Replayable || call.Recorder.awaitComplete(replayGrace)
}

// rewind makes req's body the recorded one again before a retry, when the body was recorded;
// a body in memory needs nothing.
func (call *Call) rewind(req *fasthttp.Request) {
	rec := call.Recorder
	if call.Replayable || !rec.Complete() {
		return
	}
	size := req.Header.ContentLength()
	if size >= 0 {
		size = rec.Len()
	} else {
		size = -1
	}
	req.SetBodyStream(rec.Replay(), size)
}
