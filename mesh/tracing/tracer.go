package tracing

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/rs/zerolog"
)

// Defaults of the export pipeline.
const (
	DefaultSampleRatio   = 0.01
	DefaultQueueSize     = 2048
	DefaultBatchSize     = 512
	DefaultBatchInterval = 5 * time.Second
	DefaultExportTimeout = 10 * time.Second
	// closeFlushTimeout bounds the last export at shutdown: a dead collector must not hold
	// up a drain.
	closeFlushTimeout = 2 * time.Second
)

// Options configures a Tracer.
type Options struct {
	// Endpoint is the collector's OTLP/HTTP base URL (http://collector:4318); spans are POSTed
	// to Endpoint + "/v1/traces".
	Endpoint    string
	ServiceName string
	// SampleRatio is the share of traces without a parent's decision that are recorded (0..1).
	SampleRatio float64
	// SampleErrors records a request's server span when it fails (5xx, or a gRPC error) even
	// if the trace was not sampled.
	SampleErrors bool
	// Propagation lists the formats read (the first found is the parent) and all written
	// upstream. Empty: W3C.
	Propagation []Format
	// QueueSize bounds the spans waiting for export; BatchSize spans, or what BatchInterval
	// gathered, go in one request; ExportTimeout bounds one. Zero: the Default* values.
	QueueSize     int
	BatchSize     int
	BatchInterval time.Duration
	ExportTimeout time.Duration
	// Registerer receives the export metrics (required).
	Registerer prometheus.Registerer
	Logger     zerolog.Logger
}

// Tracer starts server spans and exports recorded spans. It is safe for concurrent use; the
// request path only touches its immutable settings and, for a recorded span, one append to
// the queue's current batch under a lock held for that append.
type Tracer struct {
	opts     Options
	url      string
	sampler  Sampler
	inject   struct{ w3c, b3, b3multi bool }
	batches  *batcher
	client   *http.Client
	exported prometheus.Counter
	dropFull prometheus.Counter
	dropFail prometheus.Counter
	failures prometheus.Counter
	body     []byte        // the export request, reused by the exporter goroutine
	scratch  encodeScratch // its nested messages

	ctx      context.Context // cancelled by Close: an export in flight is abandoned
	cancel   context.CancelFunc
	stop     chan struct{}
	done     chan struct{}
	once     sync.Once
	start    sync.Once
	launched bool // set inside start.Do: read after it, so ordered by the Once
}

// New builds a Tracer; Start begins exporting.
func New(opts Options) (*Tracer, error) {
	if opts.Registerer == nil {
		return nil, errors.New("tracing: a metrics registerer is required")
	}
	u, err := url.Parse(opts.Endpoint)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, fmt.Errorf("tracing: endpoint %q: want http(s)://host:port", opts.Endpoint)
	}
	if opts.ServiceName == "" {
		opts.ServiceName = "meshgate"
	}
	if len(opts.Propagation) == 0 {
		opts.Propagation = []Format{W3C}
	}
	if opts.QueueSize <= 0 {
		opts.QueueSize = DefaultQueueSize
	}
	if opts.BatchSize <= 0 {
		opts.BatchSize = DefaultBatchSize
	}
	if opts.BatchInterval <= 0 {
		opts.BatchInterval = DefaultBatchInterval
	}
	if opts.ExportTimeout <= 0 {
		opts.ExportTimeout = DefaultExportTimeout
	}
	t := &Tracer{opts: opts, url: strings.TrimSuffix(opts.Endpoint, "/") + "/v1/traces",
		sampler: NewSampler(opts.SampleRatio), batches: newBatcher(opts.QueueSize, opts.BatchSize),
		// Its own transport, so Close can release its connections and nothing is shared with
		// the process's other clients.
		client: &http.Client{Transport: &http.Transport{MaxIdleConns: 2, IdleConnTimeout: 90 * time.Second}},
		stop:   make(chan struct{}), done: make(chan struct{})}
	t.ctx, t.cancel = context.WithCancel(context.Background())
	for _, f := range opts.Propagation {
		switch f {
		case W3C:
			t.inject.w3c = true
		case B3:
			t.inject.b3 = true
		case B3Multi:
			t.inject.b3multi = true
		}
	}
	dropped := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "meshgate_tracing_spans_dropped_total",
		Help: "Recorded spans not delivered, by reason: queue_full (the exporter fell behind) or export_failed (the collector refused or was unreachable).",
	}, []string{"reason"})
	t.dropFull, t.dropFail = dropped.WithLabelValues("queue_full"), dropped.WithLabelValues("export_failed")
	exported := prometheus.NewCounter(prometheus.CounterOpts{
		Name: "meshgate_tracing_spans_exported_total", Help: "Spans the collector accepted.",
	})
	failures := prometheus.NewCounter(prometheus.CounterOpts{
		Name: "meshgate_tracing_export_failures_total", Help: "Export requests that failed (unreachable collector, timeout, non-2xx answer).",
	})
	t.exported, t.failures = exported, failures
	for _, c := range []prometheus.Collector{dropped, exported, failures} {
		if err := opts.Registerer.Register(c); err != nil {
			return nil, fmt.Errorf("tracing: register metrics: %w", err)
		}
	}
	return t, nil
}

// Start begins the export goroutine (once).
func (t *Tracer) Start() {
	t.start.Do(func() {
		t.launched = true
		go t.run()
	})
}

// Close stops exporting: an export in flight is abandoned, what is queued gets one last try
// bounded by a short timeout, and the connections are released. Safe to call more than once,
// and without Start.
func (t *Tracer) Close() {
	t.once.Do(func() {
		t.cancel()
		close(t.stop)
		t.start.Do(func() {}) // a Start after Close must not launch the loop
		if t.launched {
			<-t.done
		}
		t.client.CloseIdleConnections()
	})
}

// ServiceName is the service.name spans are exported under.
func (t *Tracer) ServiceName() string { return t.opts.ServiceName }

// SampleErrors reports whether failed requests are recorded whatever the ratio said.
func (t *Tracer) SampleErrors() bool { return t.opts.SampleErrors }

// StartServer starts sp as the server span of the request whose headers are h, at start: its
// parent is the first trace context found in the configured formats' order, its sampling the
// parent's decision or else the ratio of the trace id. h is nil when the caller knows the
// request carries no trace field (its header scan found none): nothing is looked up then.
func (t *Tracer) StartServer(sp *Span, h Carrier, start time.Time) {
	var parent SpanContext
	var has, deferred, w3c bool
	if h != nil {
		parent, has, deferred, w3c = t.extract(h)
	}
	*sp = Span{t: t, start: start, started: true, kind: Server, w3cParent: w3c, attrs: sp.attrs[:0]}
	if has {
		sp.sc.TraceID, sp.parent = parent.TraceID, parent.SpanID
	} else {
		sp.sc.TraceID = newTraceID()
	}
	sp.sc.SpanID = newSpanID()
	sp.sc.Sampled = t.sampler.Sample(sp.sc.TraceID, parent, has, deferred)
	sp.recording = sp.sc.Sampled
}

func (t *Tracer) extract(h Carrier) (sc SpanContext, has, deferred, w3c bool) {
	for _, f := range t.opts.Propagation {
		switch f {
		case W3C:
			if v := h.Peek(HeaderTraceparent); len(v) > 0 {
				if sc, ok := ParseTraceparent(v); ok {
					return sc, true, false, true
				}
			}
		case B3, B3Multi: // either spelling is read whichever is configured
			if v := h.Peek(HeaderB3); len(v) > 0 {
				if sc, def, ok := ParseB3(v); ok {
					return sc, true, def, false
				}
			}
			if tid := h.Peek(HeaderB3TraceID); len(tid) > 0 {
				if sc, def, ok := ParseB3Multi(tid, h.Peek(HeaderB3SpanID), h.Peek(HeaderB3Sampled), h.Peek(HeaderB3Flags)); ok {
					return sc, true, def, false
				}
			}
		}
	}
	return SpanContext{}, false, false, false
}

// Propagate makes out's trace headers the gateway's: every trace header the client sent is
// removed (traceparent and the b3 ones are owned: sent once, with our value) and sp's context
// is written in every configured format. tracestate travels on only with the W3C parent it
// belongs to. buf is scratch for the values; the grown buffer is returned. clean says out
// holds none of those headers (the caller's scan of the request found none), which saves the
// removals: each is a scan of the header.
func (t *Tracer) Propagate(out Carrier, sp *Span, buf []byte, clean bool) []byte {
	if clean {
		return t.Inject(out, sp.sc, buf)
	}
	for _, k := range [...]string{HeaderTraceparent, HeaderB3, HeaderB3TraceID, HeaderB3SpanID,
		HeaderB3ParentID, HeaderB3Sampled, HeaderB3Flags} {
		out.Del(k)
	}
	if !sp.w3cParent || !t.inject.w3c {
		out.Del(HeaderTracestate)
	} else if v := out.Peek(HeaderTracestate); len(v) > maxTracestateLength {
		out.Del(HeaderTracestate) // a client's oversized state is not ours to forward
	}
	return t.Inject(out, sp.sc, buf)
}

// Inject writes sc into h in every configured format, replacing what was there (the try's
// span as the parent, per try). buf is scratch; the grown buffer is returned.
func (t *Tracer) Inject(h Carrier, sc SpanContext, buf []byte) []byte {
	cs, _ := h.(canonicalSetter)
	if t.inject.w3c {
		buf = AppendTraceparent(buf[:0], sc)
		set(h, cs, HeaderTraceparent, keyTraceparent, buf)
	}
	if t.inject.b3 {
		buf = AppendB3(buf[:0], sc)
		set(h, cs, HeaderB3, keyB3, buf)
	}
	if t.inject.b3multi {
		buf = appendHex(buf[:0], sc.TraceID[:])
		set(h, cs, HeaderB3TraceID, keyB3TraceID, buf)
		buf = appendHex(buf[:0], sc.SpanID[:])
		set(h, cs, HeaderB3SpanID, keyB3SpanID, buf)
		if sc.Sampled {
			set(h, cs, HeaderB3Sampled, keyB3Sampled, one)
		} else {
			set(h, cs, HeaderB3Sampled, keyB3Sampled, zero)
		}
	}
	return buf
}

// canonicalSetter is a Carrier that takes a name already in canonical form as it is
// (fasthttp's RequestHeader): SetBytesV would normalise a copy of the name every time.
type canonicalSetter interface {
	SetCanonical(key, value []byte)
}

// The header names as bytes, for SetCanonical (they are canonical).
var (
	keyTraceparent = []byte(HeaderTraceparent)
	keyB3          = []byte(HeaderB3)
	keyB3TraceID   = []byte(HeaderB3TraceID)
	keyB3SpanID    = []byte(HeaderB3SpanID)
	keyB3Sampled   = []byte(HeaderB3Sampled)
)

func set(h Carrier, cs canonicalSetter, name string, key, value []byte) {
	if cs != nil {
		cs.SetCanonical(key, value)
		return
	}
	h.SetBytesV(name, value)
}

var one, zero = []byte("1"), []byte("0")

// enqueue hands sp, finished as sd, to the exporter without ever waiting: a full queue drops
// it.
func (t *Tracer) enqueue(sp *Span, sd SpanData) {
	if !t.batches.add(sp, sd) {
		t.dropFull.Inc()
	}
}
