package otlptest

import (
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"sync"
	"testing"
	"time"

	collogspb "go.opentelemetry.io/proto/otlp/collector/logs/v1"
	coltracepb "go.opentelemetry.io/proto/otlp/collector/trace/v1"
	commonpb "go.opentelemetry.io/proto/otlp/common/v1"
	logspb "go.opentelemetry.io/proto/otlp/logs/v1"
	tracepb "go.opentelemetry.io/proto/otlp/trace/v1"
	"google.golang.org/protobuf/proto"

	"github.com/meshgate/meshgate/internal/testport"
)

// Span is one received span with the service.name of its resource.
type Span struct {
	*tracepb.Span
	Service string
}

// TraceID is the trace id in lower-case hex, as traceparent spells it.
func (s Span) TraceID() string { return hex.EncodeToString(s.TraceId) }

// SpanID is the span id in lower-case hex.
func (s Span) SpanID() string { return hex.EncodeToString(s.SpanId) }

// ParentID is the parent span id in lower-case hex (empty for a root).
func (s Span) ParentID() string { return hex.EncodeToString(s.ParentSpanId) }

// Attr is the attribute key's value as a string or an int64 (nil when absent).
func (s Span) Attr(key string) any { return attr(s.Attributes, key) }

// Log is one received log record with its resource's attributes and the request it came in
// (its position among the accepted /v1/logs requests, from 0), which tells a resent batch's
// copies from the first.
type Log struct {
	*logspb.LogRecord
	Resource []*commonpb.KeyValue
	Request  int
}

// Attr is the record attribute key's value as a string or an int64 (nil when absent).
func (l Log) Attr(key string) any { return attr(l.Attributes, key) }

// ResourceAttr is the resource attribute key's value as a string or an int64.
func (l Log) ResourceAttr(key string) any { return attr(l.Resource, key) }

// Line is the record's body when it is a string (an access-log line).
func (l Log) Line() string { return l.LogRecord.GetBody().GetStringValue() }

func attr(kvs []*commonpb.KeyValue, key string) any {
	for _, kv := range kvs {
		if kv.Key != key {
			continue
		}
		switch v := kv.Value.GetValue().(type) {
		case *commonpb.AnyValue_StringValue:
			return v.StringValue
		case *commonpb.AnyValue_IntValue:
			return v.IntValue
		}
	}
	return nil
}

// Receiver is the server. It answers POST /v1/traces and POST /v1/logs.
type Receiver struct {
	URL  string // base URL: the exporter's endpoint
	addr string // host:port, kept across Stop and Restart

	mu       sync.Mutex
	srv      *http.Server
	done     chan struct{} // closed when srv's Serve returned
	got      []Span
	logs     []Log
	logReqs  int
	headers  http.Header // of the last logs request
	reqs     int
	bad      int
	status   int   // non-zero: answer every request with it, keeping nothing
	rejectN  int64 // partial success: reject this many records of each logs request
	rejectMs string
	hold     chan struct{} // non-nil: handlers wait for it to close
}

// Start runs a receiver on a free loopback port until the test ends. The port is below the
// ephemeral range (internal/testport), so Restart after Stop finds it free again.
func Start(t testing.TB) *Receiver {
	t.Helper()
	ln, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", testport.Restartable(t)))
	if err != nil {
		t.Fatal(err)
	}
	r := &Receiver{addr: ln.Addr().String()}
	r.URL = "http://" + r.addr
	r.serveOn(ln)
	t.Cleanup(r.Close)
	return r
}

func (r *Receiver) serveOn(ln net.Listener) {
	srv := &http.Server{Handler: http.HandlerFunc(r.serve), ReadHeaderTimeout: 10 * time.Second}
	done := make(chan struct{})
	r.mu.Lock()
	r.srv, r.done = srv, done
	r.mu.Unlock()
	go func() {
		defer close(done)
		_ = srv.Serve(ln) // returns ErrServerClosed on Stop
	}()
}

// Close releases held requests and stops the server.
func (r *Receiver) Close() {
	r.Release()
	r.Stop()
}

// Stop closes the listener and every connection, as a collector that went down: exports fail
// to connect until Restart. Safe to call when stopped.
func (r *Receiver) Stop() {
	r.mu.Lock()
	srv, done := r.srv, r.done
	r.srv = nil
	r.mu.Unlock()
	if srv == nil {
		return
	}
	_ = srv.Close()
	<-done
}

// Restart listens on the same port again after Stop. Listening on a port just closed works on
// the systems tests run on (Go sets SO_REUSEADDR), and no outgoing connection can have taken
// it meanwhile: it is outside the ephemeral range.
func (r *Receiver) Restart(t testing.TB) {
	t.Helper()
	ln, err := net.Listen("tcp", r.addr)
	if err != nil {
		t.Fatalf("otlptest: restart on %s: %v", r.addr, err)
	}
	r.serveOn(ln)
}

// Respond makes every request answer code (429, 503, 400...) and keep nothing; 0 goes back to
// accepting.
func (r *Receiver) Respond(code int) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.status = code
}

// RejectLogs makes each accepted logs request report a partial success: the first n records
// rejected with msg (they are not kept). 0 goes back to full success.
func (r *Receiver) RejectLogs(n int64, msg string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.rejectN, r.rejectMs = n, msg
}

// Hold makes every request wait (a slow collector) until Release.
func (r *Receiver) Hold() {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.hold == nil {
		r.hold = make(chan struct{})
	}
}

// Release lets held requests go on.
func (r *Receiver) Release() {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.hold != nil {
		close(r.hold)
		r.hold = nil
	}
}

var errNotExport = errors.New("not an OTLP/HTTP protobuf export")

func (r *Receiver) serve(w http.ResponseWriter, req *http.Request) {
	r.mu.Lock()
	hold, status := r.hold, r.status
	r.reqs++
	r.mu.Unlock()
	if hold != nil {
		select {
		case <-hold:
		case <-req.Context().Done():
			return
		}
	}
	body, err := io.ReadAll(req.Body)
	if err == nil && (req.Method != http.MethodPost || req.Header.Get("Content-Type") != "application/x-protobuf") {
		err = errNotExport
	}
	if err == nil && status != 0 {
		http.Error(w, http.StatusText(status), status)
		return
	}
	var out proto.Message
	switch {
	case err != nil:
	case req.URL.Path == "/v1/traces":
		var msg coltracepb.ExportTraceServiceRequest
		if err = proto.Unmarshal(body, &msg); err == nil {
			r.keepSpans(&msg)
			out = &coltracepb.ExportTraceServiceResponse{}
		}
	case req.URL.Path == "/v1/logs":
		var msg collogspb.ExportLogsServiceRequest
		if err = proto.Unmarshal(body, &msg); err == nil {
			out = r.keepLogs(&msg, req.Header)
		}
	default:
		err = errNotExport
	}
	if err != nil {
		r.mu.Lock()
		r.bad++
		r.mu.Unlock()
		http.Error(w, "bad export", http.StatusBadRequest)
		return
	}
	b, _ := proto.Marshal(out)
	w.Header().Set("Content-Type", "application/x-protobuf")
	_, _ = w.Write(b)
}

func (r *Receiver) keepSpans(msg *coltracepb.ExportTraceServiceRequest) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, rs := range msg.ResourceSpans {
		svc, _ := attr(rs.GetResource().GetAttributes(), "service.name").(string)
		for _, ss := range rs.ScopeSpans {
			for _, s := range ss.Spans {
				r.got = append(r.got, Span{Span: s, Service: svc})
			}
		}
	}
}

func (r *Receiver) keepLogs(msg *collogspb.ExportLogsServiceRequest, h http.Header) *collogspb.ExportLogsServiceResponse {
	r.mu.Lock()
	defer r.mu.Unlock()
	n := r.logReqs
	r.logReqs++
	r.headers = h.Clone()
	skip := r.rejectN
	for _, rl := range msg.ResourceLogs {
		res := rl.GetResource().GetAttributes()
		for _, sl := range rl.ScopeLogs {
			for _, lr := range sl.LogRecords {
				if skip > 0 {
					skip--
					continue
				}
				r.logs = append(r.logs, Log{LogRecord: lr, Resource: res, Request: n})
			}
		}
	}
	resp := &collogspb.ExportLogsServiceResponse{}
	if r.rejectN > 0 {
		resp.PartialSuccess = &collogspb.ExportLogsPartialSuccess{RejectedLogRecords: r.rejectN - skip, ErrorMessage: r.rejectMs}
	}
	return resp
}

// Spans is every span received so far.
func (r *Receiver) Spans() []Span {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]Span(nil), r.got...)
}

// Logs is every log record kept so far, in the order received.
func (r *Receiver) Logs() []Log {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]Log(nil), r.logs...)
}

// LogHeader is header key of the last accepted logs request.
func (r *Receiver) LogHeader(key string) string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.headers.Get(key)
}

// Requests counts export requests received (held ones and those answered with Respond's code
// included); Bad those refused as not an OTLP/HTTP protobuf export.
func (r *Receiver) Requests() (n, bad int) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.reqs, r.bad
}

// Trace is the received spans of one trace (hex id).
func (r *Receiver) Trace(id string) []Span {
	var out []Span
	for _, s := range r.Spans() {
		if s.TraceID() == id {
			out = append(out, s)
		}
	}
	return out
}
