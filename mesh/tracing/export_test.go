package tracing

import (
	"bytes"
	"testing"
	"time"

	coltracepb "go.opentelemetry.io/proto/otlp/collector/trace/v1"
	commonpb "go.opentelemetry.io/proto/otlp/common/v1"
	resourcepb "go.opentelemetry.io/proto/otlp/resource/v1"
	tracepb "go.opentelemetry.io/proto/otlp/trace/v1"
	"google.golang.org/protobuf/proto"
)

// referenceRequest builds with the generated OTLP types what encodeRequest writes by hand:
// the exporter's first version, kept as the reference the encoding must decode to.
func referenceRequest(service string, batch []SpanData) *coltracepb.ExportTraceServiceRequest {
	spans := make([]*tracepb.Span, len(batch))
	for i := range batch {
		spans[i] = otlpSpan(&batch[i])
	}
	return &coltracepb.ExportTraceServiceRequest{ResourceSpans: []*tracepb.ResourceSpans{{
		Resource: &resourcepb.Resource{Attributes: []*commonpb.KeyValue{
			strAttr("service.name", service),
			strAttr("telemetry.sdk.name", "meshgate"),
		}},
		ScopeSpans: []*tracepb.ScopeSpans{{
			Scope: &commonpb.InstrumentationScope{Name: "github.com/meshgate/meshgate/mesh/tracing"},
			Spans: spans,
		}},
	}}}
}

func otlpSpan(sd *SpanData) *tracepb.Span {
	s := &tracepb.Span{
		TraceId:           append([]byte(nil), sd.TraceID[:]...),
		SpanId:            append([]byte(nil), sd.SpanID[:]...),
		Name:              sd.Name,
		StartTimeUnixNano: uint64(sd.Start.UnixNano()),
		EndTimeUnixNano:   uint64(sd.End.UnixNano()),
		Flags:             1, // W3C trace flags: sampled (only recorded spans are exported)
		Status:            &tracepb.Status{Message: sd.StatusMessage},
	}
	if sd.Parent.IsValid() {
		s.ParentSpanId = append([]byte(nil), sd.Parent[:]...)
	}
	switch sd.Kind {
	case Server:
		s.Kind = tracepb.Span_SPAN_KIND_SERVER
	case Client:
		s.Kind = tracepb.Span_SPAN_KIND_CLIENT
	}
	switch sd.Status {
	case OK:
		s.Status.Code = tracepb.Status_STATUS_CODE_OK
	case Error:
		s.Status.Code = tracepb.Status_STATUS_CODE_ERROR
	}
	s.Attributes = make([]*commonpb.KeyValue, len(sd.Attrs))
	for i, a := range sd.Attrs {
		if a.IsInt {
			s.Attributes[i] = &commonpb.KeyValue{Key: a.Key, Value: &commonpb.AnyValue{Value: &commonpb.AnyValue_IntValue{IntValue: a.Int}}}
		} else {
			s.Attributes[i] = strAttr(a.Key, a.Str)
		}
	}
	return s
}

func strAttr(k, v string) *commonpb.KeyValue {
	return &commonpb.KeyValue{Key: k, Value: &commonpb.AnyValue{Value: &commonpb.AnyValue_StringValue{StringValue: v}}}
}

func TestEncodeRequestMatchesProto(t *testing.T) {
	t.Parallel()
	t0 := time.Unix(1700000000, 123456789)
	batch := []SpanData{
		{TraceID: TraceID{1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16}, SpanID: SpanID{1, 1, 1, 1, 1, 1, 1, 1},
			Name: "GET api", Kind: Server, Start: t0, End: t0.Add(time.Millisecond), Status: Error, StatusMessage: "upstream 503",
			Attrs: []Attr{{Key: "http.route", Str: "api"}, {Key: "http.response.status_code", Int: 503, IsInt: true},
				{Key: "empty", Str: ""}, {Key: "zero", IsInt: true}}},
		{TraceID: TraceID{1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16}, SpanID: SpanID{2, 2, 2, 2, 2, 2, 2, 2},
			Parent: SpanID{1, 1, 1, 1, 1, 1, 1, 1}, Name: "api", Kind: Client, Start: t0, End: t0.Add(time.Microsecond),
			Status: OK, Attrs: []Attr{{Key: "attempt", Int: -1, IsInt: true}}},
		{TraceID: TraceID{9}, SpanID: SpanID{3}, Name: "", Start: t0, End: t0},
	}
	var sc encodeScratch
	for range 2 { // the second time through reused buffers
		got := &coltracepb.ExportTraceServiceRequest{}
		if err := proto.Unmarshal(encodeRequest(nil, "edge", batch, &sc), got); err != nil {
			t.Fatalf("the encoding does not decode: %v", err)
		}
		want := referenceRequest("edge", batch)
		if !proto.Equal(got, want) {
			t.Fatalf("decoded\n%v\nwant\n%v", got, want)
		}
		// Byte for byte too: the sizes written ahead of the nested messages are the ones the
		// generated code computes (a wrong one can still decode when it errs inside a field).
		if ref, err := (proto.MarshalOptions{Deterministic: true}).Marshal(want); err != nil || !bytes.Equal(encodeRequest(nil, "edge", batch, &sc), ref) {
			t.Fatalf("the encoding differs from proto.Marshal's (err %v)", err)
		}
	}
}

func TestEncodeRequestAllocations(t *testing.T) { // not parallel: AllocsPerRun counts the process
	batch := make([]SpanData, 64)
	for i := range batch {
		batch[i] = SpanData{Name: "GET api", Kind: Server, Attrs: []Attr{{Key: "http.route", Str: "api"}}}
	}
	var sc encodeScratch
	buf := encodeRequest(nil, "edge", batch, &sc)
	if n := testing.AllocsPerRun(20, func() { buf = encodeRequest(buf[:0], "edge", batch, &sc) }); n > 1 {
		t.Fatalf("encodeRequest allocates %.0f times per batch once its buffers grew, want at most 1", n)
	}
}
