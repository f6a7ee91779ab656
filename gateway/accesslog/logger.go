package accesslog

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// Special values of Options.Output.
const (
	OutputStdout = "stdout"
	OutputStderr = "stderr"
	OutputOff    = "off"
)

const (
	defaultBufferSize   = 8192
	defaultDrainTimeout = 5 * time.Second
	defaultFlush        = time.Second
	drainInterval       = 20 * time.Millisecond
	writeBufferSize     = 64 << 10
	fileMode            = 0o644
)

// Sentinel errors, for errors.Is.
var (
	// ErrTimeout means the writer goroutine did not respond in time, typically because the output
	// is blocked (a full pipe, a hung network filesystem).
	ErrTimeout = errors.New("accesslog: writer did not respond in time")
	// ErrClosed is returned by Reopen after Close.
	ErrClosed = errors.New("accesslog: logger closed")
)

// Options configures a Logger. The edge and sidecar assemblies translate conf into it.
type Options struct {
	// Output is "stdout" (also used when empty), "stderr", "off", or a file path. A file is
	// opened with O_APPEND|O_CREATE and mode 0644, so external rotation (rename, then Reopen)
	// and several writers appending to one file both work.
	Output string
	// BufferSize is how many encoded lines may wait for the writer before new ones are dropped.
	// Default 8192.
	BufferSize int
	// Dropped, if set, is incremented for every line dropped because the buffer was full.
	Dropped prometheus.Counter
	// WriteErrors, if set, is incremented for every failed write or flush to the output.
	WriteErrors prometheus.Counter
	// Writer, if set, replaces Output (tests, or an embedding program's own sink). The Logger
	// never closes it and Reopen leaves it in place.
	Writer io.Writer
	// DrainTimeout bounds how long Close and Reopen wait for the writer goroutine. Default 5s.
	DrainTimeout time.Duration
	// FlushInterval bounds how long a line may wait in the writer's buffer before it is
	// written to the output (a full buffer is written at once). Default 1s. Sinks get each
	// line when it is drained from the queue, whatever this is.
	FlushInterval time.Duration
	// onIdle, when set (tests), is called on the writer goroutine each time it stops its
	// ticker.
	onIdle func()
	// Sinks receive every line the writer goroutine writes, after the local output (log
	// shipping, package accesslog/ship). With Output "off" they are the only destination.
	// The Logger does not close them: close them after the Logger, so its last lines reach them.
	Sinks []Sink
}

// Sink is a destination besides the local output. Offer is called on the writer goroutine, never
// on the request path, with a line (ending in '\n') that is reused after the call: it must copy
// what it keeps and must not block, or it would hold up the local log.
type Sink interface {
	Offer(line []byte)
}

// Logger writes access-log lines asynchronously. Log is safe for concurrent use and never
// blocks; a nil *Logger, and the Logger for Output "off", discard everything.
type Logger struct {
	ch           chan *[]byte
	pool         sync.Pool
	path         string // non-empty only when the output is a file we own
	drainTimeout time.Duration
	flushEvery   time.Duration
	droppedTotal prometheus.Counter
	writeErrors  prometheus.Counter
	sinks        []Sink

	dropped atomic.Uint64
	closed  atomic.Bool

	closeOnce sync.Once
	closeErr  error
	quit      chan struct{} // closed by Close
	stopped   chan struct{} // closed by the writer goroutine on exit
	reopen    chan reopenReq

	// file is the output file when the Logger owns one. The writer goroutine swaps it on
	// Reopen; Close reads it, which is why it is atomic rather than goroutine-owned.
	file atomic.Pointer[os.File]

	// Owned by the writer goroutine after New returns.
	out io.Writer
	bw  *bufio.Writer
	// bufferedSince is when the oldest line in bw was written to it (zero: bw is empty).
	bufferedSince time.Time
	onIdle        func()
}

// New validates opts, opens the output and starts the writer goroutine. Call Close to stop it.
func New(opts Options) (*Logger, error) {
	if opts.BufferSize < 0 {
		return nil, fmt.Errorf("accesslog: buffer size %d must not be negative", opts.BufferSize)
	}
	if opts.DrainTimeout < 0 {
		return nil, fmt.Errorf("accesslog: drain timeout %s must not be negative", opts.DrainTimeout)
	}
	if opts.FlushInterval < 0 {
		return nil, fmt.Errorf("accesslog: flush interval %s must not be negative", opts.FlushInterval)
	}
	l := &Logger{
		drainTimeout: opts.DrainTimeout,
		flushEvery:   opts.FlushInterval,
		onIdle:       opts.onIdle,
		droppedTotal: opts.Dropped,
		writeErrors:  opts.WriteErrors,
		sinks:        opts.Sinks,
	}
	if l.drainTimeout == 0 {
		l.drainTimeout = defaultDrainTimeout
	}
	if l.flushEvery == 0 {
		l.flushEvery = defaultFlush
	}
	switch {
	case opts.Writer != nil:
		l.out = opts.Writer
	case opts.Output == OutputOff && len(opts.Sinks) > 0:
		l.out = io.Discard // the sinks still need the writer goroutine
	case opts.Output == OutputOff:
		l.closed.Store(true) // Log short-circuits on closed; no goroutine, nothing to close
		return l, nil
	case opts.Output == "" || opts.Output == OutputStdout:
		l.out = os.Stdout
	case opts.Output == OutputStderr:
		l.out = os.Stderr
	default:
		f, err := openFile(opts.Output)
		if err != nil {
			return nil, err
		}
		l.path, l.out = opts.Output, f
		l.file.Store(f)
	}
	size := opts.BufferSize
	if size == 0 {
		size = defaultBufferSize
	}
	l.ch = make(chan *[]byte, size)
	l.quit = make(chan struct{})
	l.stopped = make(chan struct{})
	l.reopen = make(chan reopenReq)
	l.bw = bufio.NewWriterSize(l.out, writeBufferSize)
	l.pool.New = func() any {
		b := make([]byte, 0, initialLineBufferSize)
		return &b
	}
	go l.run()
	return l, nil
}

func openFile(path string) (*os.File, error) {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND|os.O_CREATE, fileMode) //nolint:gosec // operator-chosen path
	if err != nil {
		return nil, fmt.Errorf("accesslog: open %q: %w", path, err)
	}
	return f, nil
}

// Log encodes e on the caller's goroutine and queues the line. It never blocks: when the queue is
// full the line is dropped and counted. It does not allocate once the buffer pool is warm, and it
// keeps no reference to e or to the slices it points at.
func (l *Logger) Log(e *Entry) {
	if l == nil || e == nil || l.closed.Load() {
		return
	}
	bp, _ := l.pool.Get().(*[]byte)
	*bp = AppendJSON((*bp)[:0], e)
	select {
	case l.ch <- bp:
	default:
		l.put(bp)
		l.dropped.Add(1)
		if l.droppedTotal != nil {
			l.droppedTotal.Inc()
		}
	}
}

// Dropped reports how many lines were dropped because the queue was full.
func (l *Logger) Dropped() uint64 {
	if l == nil {
		return 0
	}
	return l.dropped.Load()
}

func (l *Logger) put(bp *[]byte) {
	// One huge line must not pin a large buffer in the pool forever.
	if cap(*bp) <= maxLineBytesForReuse {
		l.pool.Put(bp)
	}
}

// Reopen reopens the output file at its configured path, so that after an external tool renamed
// the file (logrotate without copytruncate) new lines go to a fresh file. The new file is opened
// before the old one is closed, so on error logging continues to the old file. It is a no-op for
// stdout, stderr, a custom Writer, and "off".
func (l *Logger) Reopen() error {
	if l == nil || l.path == "" {
		return nil
	}
	if l.closed.Load() {
		return ErrClosed
	}
	f, err := openFile(l.path)
	if err != nil {
		return err
	}
	timer := time.NewTimer(l.drainTimeout)
	defer timer.Stop()
	queued := make(chan struct{})
	select {
	case l.reopen <- reopenReq{f: f, queued: queued}:
		// Wait until the writer has counted the lines queued before this call, so lines
		// logged after Reopen returns go to the new file and earlier ones to the old.
		<-queued
		return nil
	case <-l.stopped:
		_ = f.Close()
		return ErrClosed
	case <-timer.C:
		_ = f.Close()
		return fmt.Errorf("accesslog: reopen %q: %w", l.path, ErrTimeout)
	}
}

// Close stops accepting lines, waits up to DrainTimeout for the queued ones to be written, and
// closes the output file if the Logger opened it. Calling Close more than once is safe.
func (l *Logger) Close() error {
	if l == nil || l.quit == nil {
		return nil
	}
	l.closeOnce.Do(func() {
		l.closed.Store(true)
		close(l.quit)
		timer := time.NewTimer(l.drainTimeout)
		defer timer.Stop()
		select {
		case <-l.stopped:
		case <-timer.C:
			l.closeErr = fmt.Errorf("accesslog: close: %w", ErrTimeout)
			// Closing the file below usually unblocks a stuck write; the goroutine then exits
			// on its own, so it is not leaked for the life of the process.
		}
		if l.path != "" {
			if err := l.file.Load().Close(); err != nil && l.closeErr == nil {
				l.closeErr = fmt.Errorf("accesslog: close %q: %w", l.path, err)
			}
		}
	})
	return l.closeErr
}

// reopenReq hands a new output file to the writer goroutine.
type reopenReq struct {
	f      *os.File
	queued chan struct{} // closed once the writer has counted the lines for the old file
}
