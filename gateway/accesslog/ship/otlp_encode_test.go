package ship

import (
	"testing"
	"time"

	collogspb "go.opentelemetry.io/proto/otlp/collector/logs/v1"
	commonpb "go.opentelemetry.io/proto/otlp/common/v1"
	logspb "go.opentelemetry.io/proto/otlp/logs/v1"
	resourcepb "go.opentelemetry.io/proto/otlp/resource/v1"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"

	"github.com/meshgate/meshgate/gateway/accesslog"
)

func strKV(k, v string) *commonpb.KeyValue {
	return &commonpb.KeyValue{Key: k, Value: &commonpb.AnyValue{Value: &commonpb.AnyValue_StringValue{StringValue: v}}}
}

func intKV(k string, v int64) *commonpb.KeyValue {
	return &commonpb.KeyValue{Key: k, Value: &commonpb.AnyValue{Value: &commonpb.AnyValue_IntValue{IntValue: v}}}
}

// TestEncodeLogsMatchesProto: the hand-written encoding decodes, with the generated collector
// types, to exactly the request built field by field from what the lines say.
func TestEncodeLogsMatchesProto(t *testing.T) {
	t.Parallel()
	t0 := time.Date(2026, 12, 2, 18, 0, 0, 123456789, time.UTC)
	now := time.Unix(1_800_000_000, 42)
	lines := [][]byte{
		accesslog.AppendJSON(nil, &accesslog.Entry{Time: t0, Status: 200, Method: []byte("GET"), Path: []byte("/orders/1"),
			Route: "orders", Service: "orders-svc", RequestID: []byte("req-1")}),
		accesslog.AppendJSON(nil, &accesslog.Entry{Time: t0.Add(time.Millisecond), Status: 404, Method: []byte("POST"),
			Path: []byte(`/a"b\c`), RequestID: []byte(`id"with\escapes`)}),
		accesslog.AppendJSON(nil, &accesslog.Entry{Time: t0.Add(time.Second), Status: 503, Method: []byte("DELETE"), Route: "r"}),
		[]byte(`not json at all`), // no time, no status: observed time only, INFO, the body
	}
	msgs := make([]Message, len(lines))
	for i, l := range lines {
		msgs[i] = Message{ID: MessageID(l), Data: l}
	}
	rec := func(ts time.Time, sev logspb.SeverityNumber, text string, body []byte, attrs ...*commonpb.KeyValue) *logspb.LogRecord {
		r := &logspb.LogRecord{SeverityNumber: sev, SeverityText: text, Attributes: attrs,
			Body: &commonpb.AnyValue{Value: &commonpb.AnyValue_StringValue{StringValue: string(body)}}}
		if ts.IsZero() {
			r.ObservedTimeUnixNano = uint64(now.UnixNano())
		} else {
			r.TimeUnixNano, r.ObservedTimeUnixNano = uint64(ts.UnixNano()), uint64(ts.UnixNano())
		}
		return r
	}
	want := &collogspb.ExportLogsServiceRequest{ResourceLogs: []*logspb.ResourceLogs{{
		Resource: &resourcepb.Resource{Attributes: []*commonpb.KeyValue{
			strKV("service.name", "edge"), strKV("host.name", "gw-1"), strKV("telemetry.sdk.name", "meshgate"),
		}},
		ScopeLogs: []*logspb.ScopeLogs{{
			Scope: &commonpb.InstrumentationScope{Name: "github.com/meshgate/meshgate/gateway/accesslog"},
			LogRecords: []*logspb.LogRecord{
				rec(t0, logspb.SeverityNumber_SEVERITY_NUMBER_INFO, "INFO", lines[0],
					strKV(AttrRequestID, "req-1"), strKV(AttrRoute, "orders"), strKV(AttrService, "orders-svc"),
					intKV(AttrStatus, 200), strKV(AttrMethod, "GET"), strKV(AttrPath, "/orders/1")),
				rec(t0.Add(time.Millisecond), logspb.SeverityNumber_SEVERITY_NUMBER_WARN, "WARN", lines[1],
					strKV(AttrRequestID, `id"with\escapes`), intKV(AttrStatus, 404), strKV(AttrMethod, "POST"), strKV(AttrPath, `/a"b\c`)),
				rec(t0.Add(time.Second), logspb.SeverityNumber_SEVERITY_NUMBER_ERROR, "ERROR", lines[2],
					strKV(AttrRoute, "r"), intKV(AttrStatus, 503), strKV(AttrMethod, "DELETE")),
				rec(time.Time{}, logspb.SeverityNumber_SEVERITY_NUMBER_INFO, "INFO", lines[3]),
			},
		}},
	}}}
	var sc logScratch
	var buf []byte
	for range 2 { // the second time through reused buffers
		buf = encodeLogs(buf[:0], "edge", "gw-1", msgs, now, &sc)
		got := &collogspb.ExportLogsServiceRequest{}
		if err := proto.Unmarshal(buf, got); err != nil {
			t.Fatalf("the encoding does not decode: %v", err)
		}
		if !proto.Equal(got, want) {
			t.Fatalf("decoded\n%v\nwant\n%v", got, want)
		}
		// Field by field too, so a failure says which one (and proto.Equal is not all we trust).
		recs := got.ResourceLogs[0].ScopeLogs[0].LogRecords
		if len(recs) != len(lines) {
			t.Fatalf("%d records, want %d", len(recs), len(lines))
		}
		for i, r := range recs {
			w := want.ResourceLogs[0].ScopeLogs[0].LogRecords[i]
			if r.TimeUnixNano != w.TimeUnixNano || r.ObservedTimeUnixNano != w.ObservedTimeUnixNano ||
				r.SeverityNumber != w.SeverityNumber || r.SeverityText != w.SeverityText ||
				r.GetBody().GetStringValue() != string(lines[i]) || len(r.Attributes) != len(w.Attributes) ||
				len(r.TraceId) != 0 || len(r.SpanId) != 0 {
				t.Fatalf("record %d: %v, want %v", i, r, w)
			}
		}
	}
	// The same batch encodes to the same bytes (a resend is byte-identical, observed time too).
	if again := encodeLogs(nil, "edge", "gw-1", msgs[:3], now.Add(time.Hour), &sc); string(again) != string(encodeLogs(nil, "edge", "gw-1", msgs[:3], now, &sc)) {
		t.Fatal("the encoding of lines with a ts depends on the time of sending")
	}
}

func TestDecodePartialSuccess(t *testing.T) {
	t.Parallel()
	b, err := proto.Marshal(&collogspb.ExportLogsServiceResponse{PartialSuccess: &collogspb.ExportLogsPartialSuccess{RejectedLogRecords: 7, ErrorMessage: "too old"}})
	if err != nil {
		t.Fatal(err)
	}
	if n, msg := decodePartialSuccess(b); n != 7 || msg != "too old" {
		t.Fatalf("got %d %q", n, msg)
	}
	for _, b := range [][]byte{nil, {0xff}, protowire.AppendTag(nil, 1, protowire.BytesType)} {
		if n, _ := decodePartialSuccess(b); n != 0 {
			t.Fatalf("%x: %d rejected, want 0", b, n)
		}
	}
}

func TestLogsURL(t *testing.T) {
	t.Parallel()
	for in, want := range map[string]string{
		"http://c:4318":            "http://c:4318/v1/logs",
		"http://c:4318/":           "http://c:4318/v1/logs",
		"https://c/otlp":           "https://c/otlp/v1/logs",
		"http://c:4318/v1/logs":    "http://c:4318/v1/logs",
		"http://c:4318/x/v1/logs/": "http://c:4318/x/v1/logs",
	} {
		if got := logsURL(in); got != want {
			t.Errorf("%s: %s, want %s", in, got, want)
		}
	}
}
