package otlptest

import (
	"encoding/hex"
	"io"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"

	coltracepb "go.opentelemetry.io/proto/otlp/collector/trace/v1"
	commonpb "go.opentelemetry.io/proto/otlp/common/v1"
	tracepb "go.opentelemetry.io/proto/otlp/trace/v1"
	"google.golang.org/protobuf/proto"
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
func (s Span) Attr(key string) any {
	for _, kv := range s.Attributes {
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

// Receiver is the server.
type Receiver struct {
	URL  string // base URL: the exporter's endpoint
	srv  *httptest.Server
	mu   sync.Mutex
	got  []Span
	reqs int
	bad  int
	hold chan struct{} // non-nil: handlers wait for it to close
}

// Start runs a receiver until the test ends.
func Start(t testing.TB) *Receiver {
	t.Helper()
	r := &Receiver{}
	r.srv = httptest.NewServer(http.HandlerFunc(r.serve))
	r.URL = r.srv.URL
	t.Cleanup(r.Close)
	return r
}

// Close releases held requests and stops the server.
func (r *Receiver) Close() {
	r.Release()
	r.srv.Close()
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

func (r *Receiver) serve(w http.ResponseWriter, req *http.Request) {
	r.mu.Lock()
	hold := r.hold
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
	var msg coltracepb.ExportTraceServiceRequest
	if err == nil && req.URL.Path == "/v1/traces" && req.Method == http.MethodPost &&
		req.Header.Get("Content-Type") == "application/x-protobuf" {
		err = proto.Unmarshal(body, &msg)
	} else if err == nil {
		err = io.ErrUnexpectedEOF
	}
	if err != nil {
		r.mu.Lock()
		r.bad++
		r.mu.Unlock()
		http.Error(w, "bad export", http.StatusBadRequest)
		return
	}
	r.mu.Lock()
	for _, rs := range msg.ResourceSpans {
		svc := ""
		for _, kv := range rs.GetResource().GetAttributes() {
			if kv.Key == "service.name" {
				svc = kv.Value.GetStringValue()
			}
		}
		for _, ss := range rs.ScopeSpans {
			for _, s := range ss.Spans {
				r.got = append(r.got, Span{Span: s, Service: svc})
			}
		}
	}
	r.mu.Unlock()
	out, _ := proto.Marshal(&coltracepb.ExportTraceServiceResponse{})
	w.Header().Set("Content-Type", "application/x-protobuf")
	_, _ = w.Write(out)
}

// Spans is every span received so far.
func (r *Receiver) Spans() []Span {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]Span(nil), r.got...)
}

// Requests counts export requests received (held ones included); Bad those refused as not
// an OTLP/HTTP protobuf trace export.
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
