package accesslog

import (
	"os"
	"time"
)

// run is the writer goroutine: the only code that touches l.out and l.bw. It batches lines in
// bufio and flushes when the queue runs dry, so a quiet gateway's lines appear immediately and a
// busy one's go out in 64 KiB writes; the ticker bounds latency when the queue never empties.
func (l *Logger) run() {
	defer close(l.stopped)
	ticker := time.NewTicker(flushInterval)
	defer ticker.Stop()
	for {
		select {
		case bp := <-l.ch:
			l.write(bp)
			if len(l.ch) == 0 {
				l.flush()
			}
		case <-ticker.C:
			if l.bw.Buffered() > 0 {
				l.flush()
			}
		case f := <-l.reopen:
			l.swap(f)
		case <-l.quit:
			l.drain()
			return
		}
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
