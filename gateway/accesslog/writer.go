package accesslog

import (
	"os"
	"time"
)

// run is the writer goroutine: the only code that touches l.out and l.bw. It wakes on a ticker
// and drains the whole queue each time rather than receiving line by line: under load a
// per-line receive wakes this goroutine (and flushed a write syscall) for every request, which
// measured at ~10% of the proxy's CPU. Batching bounds that to one wake-up per tick and 64 KiB
// writes; a line waits at most one tick, and the queue (BufferSize lines) absorbs a tick's worth
// of traffic.
func (l *Logger) run() {
	defer close(l.stopped)
	ticker := time.NewTicker(drainInterval)
	defer ticker.Stop()
	for {
		select {
		case <-ticker.C:
			l.drainQueued()
			if l.bw.Buffered() > 0 {
				l.flush()
			}
		case r := <-l.reopen:
			n := len(l.ch)
			close(r.queued)
			for range n {
				l.write(<-l.ch)
			}
			l.swap(r.f)
		case <-l.quit:
			l.drain()
			return
		}
	}
}

// drainQueued writes every line queued right now, without waiting for more.
func (l *Logger) drainQueued() {
	for range len(l.ch) {
		l.write(<-l.ch)
	}
}

// drain writes whatever is queued at shutdown. Close bounds how long it waits for this.
func (l *Logger) drain() {
	for {
		select {
		case bp := <-l.ch:
			l.write(bp)
		default:
			l.flush()
			return
		}
	}
}

func (l *Logger) write(bp *[]byte) {
	if _, err := l.bw.Write(*bp); err != nil {
		l.writeFailed()
	}
	for _, s := range l.sinks {
		s.Offer(*bp)
	}
	l.put(bp)
}

func (l *Logger) flush() {
	if err := l.bw.Flush(); err != nil {
		l.writeFailed()
	}
}

// writeFailed recovers from a write error. bufio.Writer is sticky: after one error it rejects all
// further writes, so a single transient failure (disk briefly full) would otherwise silence the
// access log until restart. Resetting drops what was buffered and lets the next line try again.
func (l *Logger) writeFailed() {
	if l.writeErrors != nil {
		l.writeErrors.Inc()
	}
	l.bw.Reset(l.out)
}

// swap moves output to f, flushing what was buffered for the old file into the old file first.
func (l *Logger) swap(f *os.File) {
	l.flush()
	old := l.file.Swap(f)
	l.out = f
	l.bw.Reset(f)
	if old != nil {
		_ = old.Close() // its lines are flushed; an error here has nowhere useful to go
	}
}
