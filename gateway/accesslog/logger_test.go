package accesslog

import (
	"bufio"
	"bytes"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	"go.uber.org/goleak"

	"github.com/meshgate/meshgate/internal/await"
	"github.com/meshgate/meshgate/internal/syncbuf"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

func counterValue(t *testing.T, c prometheus.Counter) float64 {
	t.Helper()
	var m dto.Metric
	if err := c.Write(&m); err != nil {
		t.Fatalf("read counter: %v", err)
	}
	return m.GetCounter().GetValue()
}

const waitLimit = 5 * time.Second

// waitFor polls cond until it holds or the deadline passes; it replaces sleeps as synchronisation.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	await.Until(t, waitLimit, what, cond)
}

func newLogger(t *testing.T, opts Options) *Logger {
	t.Helper()
	l, err := New(opts)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	t.Cleanup(func() { _ = l.Close() })
	return l
}

func readLines(t *testing.T, path string) []string {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("read %s: %v", path, err)
	}
	var lines []string
	sc := bufio.NewScanner(bytes.NewReader(data))
	for sc.Scan() {
		decodeLine(t, append(sc.Bytes(), '\n'))
		lines = append(lines, sc.Text())
	}
	return lines
}

func TestNewErrors(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		opts    Options
		wantErr string
	}{
		{"negative buffer", Options{Writer: io.Discard, BufferSize: -1}, "buffer size -1"},
		{"negative timeout", Options{Writer: io.Discard, DrainTimeout: -time.Second}, "drain timeout"},
		{"missing dir", Options{Output: filepath.Join(t.TempDir(), "nope", "access.log")}, "accesslog: open"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			l, err := New(tt.opts)
			if err == nil {
				_ = l.Close()
				t.Fatalf("New succeeded, want error containing %q", tt.wantErr)
			}
			if !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("error %q does not contain %q", err, tt.wantErr)
			}
		})
	}
}

func TestOffAndNil(t *testing.T) {
	t.Parallel()
	off := newLogger(t, Options{Output: OutputOff})
	var nilLogger *Logger
	for name, l := range map[string]*Logger{"off": off, "nil": nilLogger} {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			e := fullEntry()
			l.Log(&e)
			l.Log(nil)
			if err := l.Reopen(); err != nil {
				t.Errorf("Reopen: %v", err)
			}
			if got := l.Dropped(); got != 0 {
				t.Errorf("Dropped = %d, want 0", got)
			}
			if err := l.Close(); err != nil {
				t.Errorf("Close: %v", err)
			}
		})
	}
}

func TestFileCloseDrainsEverything(t *testing.T) {
	t.Parallel()
	path := filepath.Join(t.TempDir(), "access.log")
	l := newLogger(t, Options{Output: path, BufferSize: 1000})
	const n = 500
	var wg sync.WaitGroup
	for g := range 5 {
		wg.Go(func() {
			for i := range n / 5 {
				e := fullEntry()
				e.Status = 200 + g
				e.Attempts = i
				l.Log(&e)
			}
		})
	}
	wg.Wait()
	if err := l.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	if got := len(readLines(t, path)); got != n-int(l.Dropped()) || l.Dropped() != 0 {
		t.Fatalf("file has %d lines, dropped %d, want %d lines", got, l.Dropped(), n)
	}
	e := fullEntry()
	l.Log(&e) // after Close: must neither panic nor write
	if got := len(readLines(t, path)); got != n {
		t.Fatalf("Log after Close wrote: %d lines", got)
	}
	if err := l.Reopen(); !errors.Is(err, ErrClosed) {
		t.Fatalf("Reopen after Close = %v, want ErrClosed", err)
	}
}

func TestFlushesWithoutClose(t *testing.T) {
	t.Parallel()
	path := filepath.Join(t.TempDir(), "access.log")
	l := newLogger(t, Options{Output: path})
	e := fullEntry()
	l.Log(&e)
	// A quiet gateway's line must reach the file promptly, not sit in the 64 KiB buffer.
	waitFor(t, "line flushed", func() bool {
		data, _ := os.ReadFile(path)
		return bytes.Count(data, []byte("\n")) == 1
	})
}

func TestReopenAfterRotation(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	path := filepath.Join(dir, "access.log")
	rotated := filepath.Join(dir, "access.log.1")
	l := newLogger(t, Options{Output: path})

	e := fullEntry()
	e.Route = "before"
	l.Log(&e)
	waitFor(t, "first line", func() bool {
		data, _ := os.ReadFile(path)
		return len(data) > 0
	})
	if err := os.Rename(path, rotated); err != nil {
		t.Fatalf("rename: %v", err)
	}
	if err := l.Reopen(); err != nil {
		t.Fatalf("Reopen: %v", err)
	}
	e.Route = "after"
	l.Log(&e)
	if err := l.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}

	for file, want := range map[string]string{rotated: `"route":"before"`, path: `"route":"after"`} {
		lines := readLines(t, file)
		if len(lines) != 1 || !strings.Contains(lines[0], want) {
			t.Errorf("%s: lines %q, want one containing %s", filepath.Base(file), lines, want)
		}
	}
}

func TestReopenErrorKeepsOldFile(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	path := filepath.Join(dir, "logs", "access.log")
	if err := os.Mkdir(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	l := newLogger(t, Options{Output: path})
	if err := os.Rename(filepath.Dir(path), filepath.Join(dir, "moved")); err != nil {
		t.Fatal(err)
	}
	if err := l.Reopen(); err == nil || !strings.Contains(err.Error(), "accesslog: open") {
		t.Fatalf("Reopen = %v, want open error", err)
	}
	e := fullEntry()
	l.Log(&e)
	if err := l.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	if got := readLines(t, filepath.Join(dir, "moved", "access.log")); len(got) != 1 {
		t.Fatalf("old file has %d lines, want 1", len(got))
	}
}

// stuckWriter blocks every Write until released, like stdout piped into a process that stopped
// reading.
type stuckWriter struct {
	entered     chan struct{}
	release     chan struct{}
	enteredOnce sync.Once
}

func newStuckWriter() *stuckWriter {
	return &stuckWriter{entered: make(chan struct{}), release: make(chan struct{})}
}

func (w *stuckWriter) Write(p []byte) (int, error) {
	w.enteredOnce.Do(func() { close(w.entered) })
	<-w.release
	return len(p), nil
}

func TestLogNeverBlocksOnStuckWriter(t *testing.T) {
	t.Parallel()
	const bufSize, n = 4, 1000
	w := newStuckWriter()
	dropped := prometheus.NewCounter(prometheus.CounterOpts{Name: "meshgate_test_dropped_total"})
	l, err := New(Options{Writer: w, BufferSize: bufSize, Dropped: dropped, DrainTimeout: 50 * time.Millisecond})
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	t.Cleanup(func() {
		close(w.release)
		<-l.stopped // for goleak: the writer exits once unblocked
	})

	e := fullEntry()
	l.Log(&e)
	select {
	case <-w.entered:
	case <-time.After(waitLimit):
		t.Fatal("writer never called")
	}

	done := make(chan struct{})
	go func() {
		defer close(done)
		for range n {
			l.Log(&e)
		}
	}()
	select {
	case <-done:
	case <-time.After(waitLimit):
		t.Fatal("Log blocked on a stuck writer")
	}

	// The writer holds the first line inside Write; the queue holds bufSize more.
	if got, want := l.Dropped(), uint64(n-bufSize); got != want {
		t.Errorf("Dropped() = %d, want %d", got, want)
	}
	if got := counterValue(t, dropped); got != float64(l.Dropped()) {
		t.Errorf("dropped counter = %v, want %d", got, l.Dropped())
	}

	start := time.Now()
	if err := l.Close(); !errors.Is(err, ErrTimeout) {
		t.Errorf("Close = %v, want ErrTimeout", err)
	}
	if d := time.Since(start); d > waitLimit {
		t.Errorf("Close took %s despite a 50ms drain timeout", d)
	}
}

// flakyWriter fails its first write, then records everything.
type flakyWriter struct {
	mu     sync.Mutex
	failed bool
	buf    bytes.Buffer
}

func (w *flakyWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if !w.failed {
		w.failed = true
		return 0, errors.New("disk full")
	}
	return w.buf.Write(p)
}

func (w *flakyWriter) String() string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.buf.String()
}

func TestRecoversAfterWriteError(t *testing.T) {
	t.Parallel()
	w := &flakyWriter{}
	errs := prometheus.NewCounter(prometheus.CounterOpts{Name: "meshgate_test_write_errors_total"})
	l := newLogger(t, Options{Writer: w, WriteErrors: errs})
	e := fullEntry()
	e.Route = "lost"
	l.Log(&e)
	waitFor(t, "write error counted", func() bool { return counterValue(t, errs) == 1 })
	e.Route = "kept"
	l.Log(&e)
	if err := l.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	if out := w.String(); !strings.Contains(out, `"route":"kept"`) || strings.Contains(out, "lost") {
		t.Fatalf("output after transient error = %q, want only the second line", out)
	}
}

// Not parallel: AllocsPerRun counts every goroutine's allocations.
func TestLogDoesNotAllocate(t *testing.T) {
	if raceEnabled {
		t.Skip("sync.Pool drops items under -race; run without -race")
	}
	l := newLogger(t, Options{Writer: io.Discard, BufferSize: 64})
	e := fullEntry()
	for range 1000 { // warm the pool
		l.Log(&e)
	}
	if allocs := testing.AllocsPerRun(10000, func() { l.Log(&e) }); allocs != 0 {
		t.Fatalf("Log allocates %v times per call, want 0", allocs)
	}
	off := newLogger(t, Options{Output: OutputOff})
	if allocs := testing.AllocsPerRun(100, func() { off.Log(&e) }); allocs != 0 {
		t.Fatalf("off Log allocates %v times per call, want 0", allocs)
	}
	buf := make([]byte, 0, 2048)
	if allocs := testing.AllocsPerRun(1000, func() { buf = AppendJSON(buf[:0], &e) }); allocs != 0 {
		t.Fatalf("AppendJSON allocates %v times per call, want 0", allocs)
	}
}

func BenchmarkLog(b *testing.B) {
	l, err := New(Options{Writer: io.Discard})
	if err != nil {
		b.Fatal(err)
	}
	defer func() { _ = l.Close() }()
	e := fullEntry()
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			l.Log(&e)
		}
	})
}

func BenchmarkAppendJSON(b *testing.B) {
	e := fullEntry()
	buf := make([]byte, 0, 2048)
	b.ReportAllocs()
	for b.Loop() {
		buf = AppendJSON(buf[:0], &e)
	}
}

// collectSink is a Sink that keeps copies of what it is offered.
type collectSink struct {
	mu    sync.Mutex
	lines []string
}

func (c *collectSink) Offer(line []byte) {
	c.mu.Lock()
	c.lines = append(c.lines, string(line)) // a copy: the logger reuses line's buffer
	c.mu.Unlock()
}

func (c *collectSink) got() []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]string(nil), c.lines...)
}

// TestSinksGetEveryLineInOrder: with Output "off" the sinks are the only destination and still
// get every line, in order, including those queued when Close is called.
func TestSinksGetEveryLineInOrder(t *testing.T) {
	t.Parallel()
	a, b := &collectSink{}, &collectSink{}
	l, err := New(Options{Output: OutputOff, Sinks: []Sink{a, b}})
	if err != nil {
		t.Fatal(err)
	}
	const n = 500
	for i := range n {
		l.Log(&Entry{Status: 200 + i%100, RequestID: []byte("r" + string(rune('a'+i%26)))})
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	for _, s := range []*collectSink{a, b} {
		got := s.got()
		if len(got) != n {
			t.Fatalf("sink got %d lines, want %d", len(got), n)
		}
		for i, line := range got {
			want := string(AppendJSON(nil, &Entry{Status: 200 + i%100, RequestID: []byte("r" + string(rune('a'+i%26)))}))
			// ts differs (zero means now); compare from the status on.
			if line[strings.Index(line, `"status"`):] != want[strings.Index(want, `"status"`):] {
				t.Fatalf("line %d: %s, want %s", i, line, want)
			}
		}
	}
}

// TestFlushWaitsForTheInterval: drained lines stay in the buffer until the oldest has waited
// FlushInterval, instead of costing a write on every tick. The sink sees each line when it is
// drained; by the time it sees the second, drained on a later tick than the first, a writer
// flushing per tick would have written the first.
func TestFlushWaitsForTheInterval(t *testing.T) {
	t.Parallel()
	w, sink := &syncbuf.Buffer{}, &collectSink{}
	l := newLogger(t, Options{Writer: w, Sinks: []Sink{sink}, FlushInterval: time.Hour})
	e := fullEntry()
	l.Log(&e)
	waitFor(t, "first line drained", func() bool { return len(sink.got()) == 1 })
	l.Log(&e)
	waitFor(t, "second line drained", func() bool { return len(sink.got()) == 2 })
	if n := strings.Count(w.String(), "\n"); n != 0 {
		t.Fatalf("%d lines written before the flush interval passed, want 0", n)
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	if n := strings.Count(w.String(), "\n"); n != 2 {
		t.Fatalf("%d lines written by Close, want 2", n)
	}
}

// TestIdleWriterWakesForTheNextLine: with nothing queued and nothing buffered the writer
// stops its ticker (an idle proxy is not woken 50 times a second), and the next line still
// reaches the output, after which it goes idle again.
func TestIdleWriterWakesForTheNextLine(t *testing.T) {
	t.Parallel()
	w := &syncbuf.Buffer{}
	idle := make(chan struct{}, 1)
	l := newLogger(t, Options{Writer: w, FlushInterval: time.Millisecond, onIdle: func() {
		select {
		case idle <- struct{}{}:
		default:
		}
	}})
	e := fullEntry()
	for i := 1; i <= 3; i++ {
		select {
		case <-idle:
		case <-time.After(waitLimit):
			t.Fatalf("line %d: the writer did not go idle", i)
		}
		l.Log(&e)
		waitFor(t, "line written after idle", func() bool { return strings.Count(w.String(), "\n") == i })
	}
}
