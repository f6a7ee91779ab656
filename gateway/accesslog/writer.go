package accesslog

import (
	"os"
	"time"
)

// run is the writer goroutine: the only code that touches l.out and l.bw.
//
// While lines arrive it wakes on a ticker and drains the whole queue each time rather than
// receiving line by line: under load a per-line receive wakes this goroutine (and flushed a
// write syscall) for every request, which measured at ~10% of the proxy's CPU. A line waits
// at most one tick in the queue, and the queue (BufferSize lines) absorbs a tick's worth of
// traffic.
//
// Drained lines go into a 64 KiB buffer, written out when it fills or when its oldest line
// has waited FlushInterval. A write per tick cost the edge ~15% of its CPU at 1000 req/s: an
// append to a file from a CPU that was idle a moment before costs ~60 µs here, against ~8 µs
// back to back. At saturation the buffer fills several times a tick, so nothing changes there.
//
// A tick that finds nothing queued and nothing buffered stops the ticker, and the goroutine
// then waits for the next line itself: an idle proxy is not woken 50 times a second.
func (l *Logger) run() {
	defer close(l.stopped)
	ticker := time.NewTicker(drainInterval)
	defer ticker.Stop()
	ticking := true
	for {
		var waiting chan *[]byte // a line is received here only while the ticker is stopped
		if !ticking {
			waiting = l.ch
		}
		select {
		case bp := <-waiting:
			l.write(bp)
			l.noteBuffered(time.Now())
			ticker.Reset(drainInterval)
			ticking = true
		case now := <-ticker.C:
			l.drainQueued()
			l.noteBuffered(now)
			if l.bw.Buffered() > 0 && now.Sub(l.bufferedSince) >= l.flushEvery {
				l.flush()
			}
			if len(l.ch) == 0 && l.bw.Buffered() == 0 {
				ticker.Stop()
				ticking = false
				if l.onIdle != nil {
					l.onIdle()
				}
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

// noteBuffered records when the buffer, empty until now, received its first line.
func (l *Logger) noteBuffered(now time.Time) {
	if l.bufferedSince.IsZero() && l.bw.Buffered() > 0 {
		l.bufferedSince = now
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
	l.bufferedSince = time.Time{}
}

// writeFailed recovers from a write error. bufio.Writer is sticky: after one error it rejects all
// further writes, so a single transient failure (disk briefly full) would otherwise silence the
// access log until restart. Resetting drops what was buffered and lets the next line try again.
func (l *Logger) writeFailed() {
	if l.writeErrors != nil {
		l.writeErrors.Inc()
	}
	l.bw.Reset(l.out)
	l.bufferedSince = time.Time{}
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
