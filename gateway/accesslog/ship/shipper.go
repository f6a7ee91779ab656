package ship

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"strconv"
	"sync"
	"time"

	"github.com/cespare/xxhash/v2"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/meshgate/meshgate/gateway/accesslog/spool"
)

// Drop reasons besides the spool's (max_bytes, max_age, corrupt).
const (
	ReasonQueueFull  = "queue_full"  // the shipper's queue was full when the logger offered a line
	ReasonSpoolError = "spool_error" // the spool could not take a line (disk full, permissions)
)

const (
	defaultQueueSize     = 8192
	defaultBatchSize     = 256
	defaultFlushInterval = 50 * time.Millisecond
	defaultAckTimeout    = 5 * time.Second
	defaultRetryInterval = time.Second
	defaultCloseTimeout  = 5 * time.Second
	maxBatchBytes        = 1 << 20
)

// Message is one line as the sink receives it.
type Message struct {
	ID   string // de-duplication id: the request id
	Data []byte // the JSON line without its newline
}

// Publisher delivers a batch. Publish returns nil only when the sink acknowledged every message;
// any error makes the Shipper spool the batch and send it again later, so a Publisher may have
// delivered some of the messages when it fails. It is called from one goroutine.
type Publisher interface {
	Publish(ctx context.Context, msgs []Message) error
	Close() error
}

// Options configures a Shipper.
type Options struct {
	// Name labels the metrics (sink="...") and the spool's subdirectory is the caller's choice.
	Name      string
	Publisher Publisher
	// Spool is where lines wait while the sink fails. Its OnDrop is set by the Shipper.
	Spool spool.Options
	// QueueSize is how many lines may wait for the shipper goroutine. Default 8192.
	QueueSize int
	// BatchSize is the most lines per Publish. Default 256.
	BatchSize int
	// FlushInterval is how long a partial batch waits for more lines. Default 50ms.
	FlushInterval time.Duration
	// AckTimeout bounds one Publish. Default 5s.
	AckTimeout time.Duration
	// RetryInterval is the wait between replay attempts while the sink fails. Default 1s.
	RetryInterval time.Duration
	// CloseTimeout bounds Close's last publish of what is queued; what does not make it stays
	// in the spool for the next start. Default 5s.
	CloseTimeout time.Duration
	// Metrics, if set, counts what the Shipper does.
	Metrics *Metrics
}

// Shipper sends access-log lines to one sink. Offer is safe for concurrent use and never blocks.
type Shipper struct {
	opts Options
	ch   chan []byte
	sp   *spool.Spool
	m    sinkMetrics

	quit      chan struct{}
	stopped   chan struct{}
	closeOnce sync.Once
	closeErr  error

	// Owned by the shipper goroutine.
	spooling bool
	nextTry  time.Time
	batch    [][]byte
	held     [][]byte  // lines that arrived while a direct batch waited for its acks
	msgs     []Message // owned by the Publisher while a publish is in flight
}

// New opens the spool and starts the shipper goroutine. Call Close to stop it.
func New(opts Options) (*Shipper, error) {
	if opts.Publisher == nil {
		return nil, errors.New("ship: a publisher is required")
	}
	if opts.QueueSize < 0 || opts.BatchSize < 0 || opts.FlushInterval < 0 || opts.AckTimeout < 0 || opts.RetryInterval < 0 || opts.CloseTimeout < 0 {
		return nil, errors.New("ship: sizes and intervals must not be negative")
	}
	opts.QueueSize = orDefault(opts.QueueSize, defaultQueueSize)
	opts.BatchSize = orDefault(opts.BatchSize, defaultBatchSize)
	opts.FlushInterval = orDefault(opts.FlushInterval, defaultFlushInterval)
	opts.AckTimeout = orDefault(opts.AckTimeout, defaultAckTimeout)
	opts.RetryInterval = orDefault(opts.RetryInterval, defaultRetryInterval)
	opts.CloseTimeout = orDefault(opts.CloseTimeout, defaultCloseTimeout)
	s := &Shipper{
		opts:    opts,
		ch:      make(chan []byte, opts.QueueSize),
		m:       opts.Metrics.forSink(opts.Name),
		quit:    make(chan struct{}),
		stopped: make(chan struct{}),
	}
	so := opts.Spool
	so.OnDrop = func(reason string, n int) { s.m.dropped(reason, n) }
	sp, err := spool.Open(so)
	if err != nil {
		return nil, fmt.Errorf("ship %s: %w", opts.Name, err)
	}
	s.sp = sp
	// A backlog from before the restart goes out before anything new.
	s.spooling = !sp.Empty()
	s.m.spoolBytes(sp.Bytes())
	go s.run()
	return s, nil
}

func orDefault[T int | time.Duration](v, d T) T {
	if v == 0 {
		return d
	}
	return v
}

// Offer queues a copy of line (the logger reuses its buffer). It never blocks: when the queue
// is full the line is dropped and counted.
func (s *Shipper) Offer(line []byte) {
	line = bytes.TrimSuffix(line, []byte{'\n'})
	select {
	case <-s.quit:
		return
	default:
	}
	select {
	case s.ch <- bytes.Clone(line):
	default:
		s.m.dropped(ReasonQueueFull, 1)
	}
}

// Close stops the goroutine. What is queued is published once more (bounded by CloseTimeout)
// or spooled, then the spool and the publisher are closed. Safe to call more than once.
func (s *Shipper) Close() error {
	s.closeOnce.Do(func() {
		close(s.quit)
		<-s.stopped // bounded: the goroutine's last publish has CloseTimeout
		if err := s.sp.Close(); err != nil {
			s.closeErr = err
		}
		if err := s.opts.Publisher.Close(); err != nil && s.closeErr == nil {
			s.closeErr = err
		}
	})
	return s.closeErr
}

func (s *Shipper) run() {
	defer close(s.stopped)
	ticker := time.NewTicker(s.opts.FlushInterval)
	defer ticker.Stop()
	for {
		select {
		case line := <-s.ch:
			s.take(line)
		case <-ticker.C:
			s.tick()
		case <-s.quit:
			s.shutdown()
			return
		}
	}
}

// take routes one line: into the spool while spooling, else into the batch.
func (s *Shipper) take(line []byte) {
	if s.spooling {
		s.toSpool(line)
		return
	}
	s.batch = append(s.batch, line)
	if len(s.batch) >= s.opts.BatchSize {
		s.sendBatch(s.opts.AckTimeout)
	}
}

func (s *Shipper) tick() {
	if len(s.batch) > 0 {
		s.sendBatch(s.opts.AckTimeout)
	}
	if s.spooling && !time.Now().Before(s.nextTry) {
		s.replay()
	}
	s.sp.Expire()
	s.m.spoolBytes(s.sp.Bytes())
}

// sendBatch publishes the direct batch; on failure the batch starts the spool. Lines that
// arrived while it waited for acks (held) come after it: they become the next batch, or
// follow it into the spool.
func (s *Shipper) sendBatch(timeout time.Duration) {
	for len(s.batch) > 0 {
		done := s.settle(s.publish(s.batch, timeout), len(s.batch), false)
		switch {
		case s.spooling:
			// publish spilled the batch and the held lines to the spool while it waited; if
			// the batch was acknowledged after all, its replay is de-duplicated by message id.
			if !done {
				s.nextTry = time.Now().Add(s.opts.RetryInterval)
			}
		case done:
		default:
			s.spooling = true
			s.nextTry = time.Now().Add(s.opts.RetryInterval)
			for _, line := range s.batch {
				s.toSpool(line)
			}
			s.spillHeld()
		}
		clear(s.batch)
		s.batch, s.held = s.held, s.batch[:0]
		if s.spooling || len(s.batch) < s.opts.BatchSize {
			return // a partial batch waits for the next tick or for more lines
		}
	}
}

func (s *Shipper) spillHeld() {
	for _, line := range s.held {
		s.toSpool(line)
	}
	clear(s.held)
	s.held = s.held[:0]
}

func (s *Shipper) toSpool(line []byte) {
	if err := s.sp.Append(line); err != nil {
		s.m.dropped(ReasonSpoolError, 1)
		return
	}
	s.m.spoolBytes(s.sp.Bytes()) // before the count, so a reader seeing the count sees the bytes
	s.m.spooled(1)
}

// replay sends the spool from its checkpoint, batch by batch, until it is empty (back to
// direct mode) or a batch fails (try again after RetryInterval). Lines queued meanwhile go into
// the spool first, so none overtakes an older one.
func (s *Shipper) replay() {
	for {
		s.moveQueued()
		b, err := s.sp.ReadBatch(s.opts.BatchSize, maxBatchBytes)
		if err != nil {
			s.nextTry = time.Now().Add(s.opts.RetryInterval)
			return
		}
		if len(b.Records) == 0 {
			s.spooling = false
			return
		}
		if !s.settle(s.publish(b.Records, s.opts.AckTimeout), len(b.Records), true) {
			s.nextTry = time.Now().Add(s.opts.RetryInterval)
			return
		}
		// The checkpoint may fail to persist; the records were acknowledged either way, and an
		// old checkpoint only means they are sent (and de-duplicated) again after a restart.
		_ = s.sp.Commit(b)
		s.m.spoolBytes(s.sp.Bytes())
	}
}

// settle counts the outcome of publishing n lines and reports whether they are done with:
// acknowledged, or refused by a sink that said sending them again would not help (*Rejected:
// those are counted as dropped with its reason, the rest as shipped). Any other error means
// the lines must be sent again.
func (s *Shipper) settle(err error, n int, replayed bool) bool {
	dropped := 0
	if r, ok := asRejected(err); ok {
		if dropped = min(max(r.Count, 0), n); dropped > 0 {
			s.m.dropped(r.Reason, dropped)
		}
	} else if err != nil {
		return false
	}
	shipped := n - dropped
	if replayed {
		s.m.shipped(shipped, shipped)
	} else {
		s.m.shipped(shipped, 0)
	}
	return true
}

func (s *Shipper) moveQueued() {
	for range len(s.ch) {
		s.toSpool(<-s.ch)
	}
}

// shutdown handles what is still queued when Close is called: one bounded attempt to publish it
// when the sink was healthy, else (or if that fails) it is spooled for the next start.
func (s *Shipper) shutdown() {
	deadline := time.Now().Add(s.opts.CloseTimeout)
	for {
		select {
		case line := <-s.ch:
			if s.spooling {
				s.toSpool(line)
				continue
			}
			s.batch = append(s.batch, line)
			if len(s.batch) >= s.opts.BatchSize {
				s.sendBatch(max(time.Until(deadline), time.Millisecond))
			}
		default:
			if len(s.batch) > 0 {
				s.sendBatch(max(time.Until(deadline), time.Millisecond))
			}
			return
		}
	}
}

// publish sends lines and waits for the outcome. The Publisher runs on a goroutine of its own
// meanwhile, so that waiting for acks (up to timeout, with a hung broker) does not stop this
// goroutine from taking lines off the queue: they go to the spool while spooling, else they
// are held in memory, up to QueueSize, for the next batch, and beyond that spilled to the spool.
func (s *Shipper) publish(lines [][]byte, timeout time.Duration) error {
	s.msgs = s.msgs[:0]
	for _, line := range lines {
		s.msgs = append(s.msgs, Message{ID: MessageID(line), Data: line})
	}
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	done := make(chan error, 1)
	go func(msgs []Message) { done <- s.opts.Publisher.Publish(ctx, msgs) }(s.msgs)
	for {
		select {
		case err := <-done:
			clear(s.msgs)
			return err
		case line := <-s.ch:
			switch {
			case s.spooling:
				s.toSpool(line)
			case len(s.held) < s.opts.QueueSize:
				s.held = append(s.held, line)
			default:
				// The sink is slow enough that memory would have to grow: spill now. The
				// batch in flight goes first, then what was held, so order is kept whatever
				// its outcome; the Publisher only reads the lines, so sharing them is safe.
				s.spooling = true
				for _, l := range lines {
					s.toSpool(l)
				}
				s.spillHeld()
				s.toSpool(line)
			}
		}
	}
}

// requestIDKey is how the access log encodes the request id (accesslog.FieldRequestID). A
// quote inside a JSON string is escaped, so its first occurrence is the key.
var requestIDKey = []byte(`"request_id":"`)

// MessageID is the de-duplication id of an access-log line: its request id as encoded (still
// JSON-escaped, which keeps it unique), a dot and a hash of the whole line; "h-" and the hash
// when it has no request id. The request id alone would not do: every hop of a request (the
// edge, each sidecar, a sidecar's inbound and upstream listeners) logs the same id, so a stream
// the hops share would keep one line per request. The hash tells the hops apart and stays the
// same when a line is sent again, since a resend (from the batch or the spool) is the same
// bytes; the request id in front keeps the id readable and groups a request's lines.
func MessageID(line []byte) string {
	var buf [128 + 1 + 16]byte
	id := buf[:0]
	if i := bytes.Index(line, requestIDKey); i >= 0 {
		rest := line[i+len(requestIDKey):]
	scan:
		for j := 0; j < len(rest); j++ {
			switch rest[j] {
			case '\\':
				j++
			case '"':
				if j > 0 {
					id = append(append(id, rest[:j]...), '.')
				}
				break scan
			}
		}
	}
	if len(id) == 0 {
		id = append(id, "h-"...)
	}
	return string(strconv.AppendUint(id, xxhash.Sum64(line), 16))
}

// Metrics are the shipping counters, labelled by sink. They are registered once per process by
// the assembly and shared by every Shipper.
type Metrics struct {
	shippedTotal  *prometheus.CounterVec
	spooledTotal  *prometheus.CounterVec
	replayedTotal *prometheus.CounterVec
	droppedTotal  *prometheus.CounterVec
	bytes         *prometheus.GaugeVec
}

// NewMetrics creates and registers the shipping metrics on reg.
func NewMetrics(reg prometheus.Registerer) (*Metrics, error) {
	m := &Metrics{
		shippedTotal: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "meshgate_access_log_shipped_total", Help: "Access-log lines the sink acknowledged (directly or replayed from the spool).",
		}, []string{"sink"}),
		spooledTotal: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "meshgate_access_log_spooled_total", Help: "Access-log lines written to the disk spool because the sink was failing or the spool was draining.",
		}, []string{"sink"}),
		replayedTotal: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "meshgate_access_log_replayed_total", Help: "Access-log lines the sink acknowledged from the spool.",
		}, []string{"sink"}),
		droppedTotal: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "meshgate_access_log_ship_dropped_total", Help: "Access-log lines lost to a sink: queue_full, spool_error, max_bytes, max_age, corrupt.",
		}, []string{"sink", "reason"}),
		bytes: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "meshgate_access_log_spool_bytes", Help: "Bytes in the sink's disk spool.",
		}, []string{"sink"}),
	}
	if reg != nil {
		for _, c := range []prometheus.Collector{m.shippedTotal, m.spooledTotal, m.replayedTotal, m.droppedTotal, m.bytes} {
			if err := reg.Register(c); err != nil {
				return nil, fmt.Errorf("ship: %w", err)
			}
		}
	}
	return m, nil
}

// sinkMetrics is Metrics curried for one sink; the zero value counts nothing.
type sinkMetrics struct {
	m                          *Metrics
	name                       string
	shippedC, spooledC, replay prometheus.Counter
	bytesG                     prometheus.Gauge
}

func (m *Metrics) forSink(name string) sinkMetrics {
	if m == nil {
		return sinkMetrics{}
	}
	return sinkMetrics{
		m: m, name: name,
		shippedC: m.shippedTotal.WithLabelValues(name),
		spooledC: m.spooledTotal.WithLabelValues(name),
		replay:   m.replayedTotal.WithLabelValues(name),
		bytesG:   m.bytes.WithLabelValues(name),
	}
}

func (sm sinkMetrics) shipped(n, replayed int) {
	if sm.m == nil {
		return
	}
	sm.shippedC.Add(float64(n))
	if replayed > 0 {
		sm.replay.Add(float64(replayed))
	}
}

func (sm sinkMetrics) spooled(n int) {
	if sm.m != nil {
		sm.spooledC.Add(float64(n))
	}
}

func (sm sinkMetrics) dropped(reason string, n int) {
	if sm.m != nil {
		sm.m.droppedTotal.WithLabelValues(sm.name, reason).Add(float64(n))
	}
}

func (sm sinkMetrics) spoolBytes(n int64) {
	if sm.m != nil {
		sm.bytesG.Set(float64(n))
	}
}
