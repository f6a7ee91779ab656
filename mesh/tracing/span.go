package tracing

import (
	"math/rand/v2"
	"time"
)

// Kind is a span's role in its hop.
type Kind uint8

// The kinds meshgate records: the request it served and each try it sent upstream.
const (
	Server Kind = iota + 1
	Client
)

// Status is a span's outcome as OTLP reports it.
type Status uint8

// Unset is the default (the span says nothing); Error marks a failed request or try.
const (
	Unset Status = iota
	OK
	Error
)

// Attr is one span attribute: a string, or an integer when IsInt.
type Attr struct {
	Key   string
	Str   string
	Int   int64
	IsInt bool
}

// SpanData is a finished span as the exporter sends it.
type SpanData struct {
	TraceID       TraceID
	SpanID        SpanID
	Parent        SpanID // zero: a root span
	Name          string
	Kind          Kind
	Start, End    time.Time
	Attrs         []Attr
	Status        Status
	StatusMessage string
}

// Span is one span being recorded. It is plain memory the caller owns (the engine keeps the
// server span in its pooled per-request scratch), so starting one allocates nothing; only a
// recording span's name and attributes do. A Span that was never started, or whose trace is
// not sampled, ignores every setter, so callers need not ask first.
type Span struct {
	t         *Tracer
	sc        SpanContext
	parent    SpanID
	start     time.Time
	started   bool
	recording bool
	// w3cParent: the parent came from traceparent, so the request's tracestate belongs to the
	// trace we continue and may travel on.
	w3cParent bool

	name   string
	kind   Kind
	attrs  []Attr
	status Status
	msg    string
}

// Started reports whether the span was started (tracing is on for this request).
func (sp *Span) Started() bool { return sp.started }

// Recording reports whether the span will be exported (its trace is sampled, or it was
// promoted).
func (sp *Span) Recording() bool { return sp.recording }

// Context is the span's own context: what a child, or the next hop, names as its parent.
func (sp *Span) Context() SpanContext { return sp.sc }

// Parent is the span's parent id (zero for a root).
func (sp *Span) Parent() SpanID { return sp.parent }

// Tracer is the tracer that started the span.
func (sp *Span) Tracer() *Tracer { return sp.t }

// SetName names a recording span.
func (sp *Span) SetName(name string) {
	if sp.recording {
		sp.name = name
	}
}

// SetString adds a string attribute to a recording span.
func (sp *Span) SetString(key, v string) {
	if sp.recording {
		sp.attrs = append(sp.attrs, Attr{Key: key, Str: v})
	}
}

// SetInt adds an integer attribute to a recording span.
func (sp *Span) SetInt(key string, v int64) {
	if sp.recording {
		sp.attrs = append(sp.attrs, Attr{Key: key, Int: v, IsInt: true})
	}
}

// SetStatus sets a recording span's outcome.
func (sp *Span) SetStatus(s Status, msg string) {
	if sp.recording {
		sp.status, sp.msg = s, msg
	}
}

// Promote makes a started span that is not sampled record after all (tracing.sample_errors:
// a failed request is exported whatever the ratio said). Its children were not recorded, and
// the next hop was told "not sampled", so the trace holds this span alone.
func (sp *Span) Promote() {
	if sp.started && !sp.recording {
		sp.recording = true
	}
}

// StartChild starts child as a span of kind k under sp, in the same trace, at start. An
// unrecorded parent gives an unrecorded child (sampling is per trace); no parent at all gives
// a child that was never started.
func (sp *Span) StartChild(child *Span, name string, k Kind, start time.Time) {
	child.Reset()
	if !sp.started {
		return
	}
	attrs := child.attrs
	*child = Span{t: sp.t, parent: sp.sc.SpanID, start: start, started: true, recording: sp.recording,
		sc: SpanContext{TraceID: sp.sc.TraceID, SpanID: newSpanID(), Sampled: sp.sc.Sampled}, kind: k, attrs: attrs}
	if child.recording {
		child.name = name
	}
}

// End finishes the span at end: a recording span goes to the export queue (never blocking;
// dropped and counted when the queue is full). The Span may be reused after End.
func (sp *Span) End(end time.Time) {
	if sp.recording && sp.t != nil {
		sp.t.enqueue(sp, SpanData{TraceID: sp.sc.TraceID, SpanID: sp.sc.SpanID, Parent: sp.parent, Name: sp.name,
			Kind: sp.kind, Start: sp.start, End: end, Status: sp.status, StatusMessage: sp.msg})
	}
	sp.Reset()
}

// Reset makes sp a span that was never started, keeping the attribute slice it grew: the
// Span lives in pooled memory, so the next recording span reuses it instead of growing a new
// one (the queue copied what it held).
func (sp *Span) Reset() {
	clear(sp.attrs)
	*sp = Span{attrs: sp.attrs[:0]}
}

func newSpanID() SpanID {
	for {
		if v := rand.Uint64(); v != 0 {
			var id SpanID
			for i := range id {
				id[i] = byte(v >> (56 - 8*i))
			}
			return id
		}
	}
}

func newTraceID() TraceID {
	var id TraceID
	for !id.IsValid() {
		hi, lo := rand.Uint64(), rand.Uint64()
		for i := range 8 {
			id[i] = byte(hi >> (56 - 8*i))
			id[8+i] = byte(lo >> (56 - 8*i))
		}
	}
	return id
}
