package tracing

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"time"

	coltracepb "go.opentelemetry.io/proto/otlp/collector/trace/v1"
	commonpb "go.opentelemetry.io/proto/otlp/common/v1"
	resourcepb "go.opentelemetry.io/proto/otlp/resource/v1"
	tracepb "go.opentelemetry.io/proto/otlp/trace/v1"
	"google.golang.org/protobuf/proto"
)

// run is the exporter: it gathers spans from the queue and sends a batch when BatchSize are
// waiting or BatchInterval has passed since the last send. One goroutine, one export at a
// time: a slow collector backs the queue up (and spans are dropped at enqueue), it never
// grows the number of requests in flight.
func (t *Tracer) run() {
	defer close(t.done)
	batch := make([]SpanData, 0, t.opts.BatchSize)
	tick := time.NewTicker(t.opts.BatchInterval)
	defer tick.Stop()
	for {
		select {
		case sd := <-t.queue:
			batch = append(batch, sd)
			if len(batch) >= t.opts.BatchSize {
				batch = t.flush(t.ctx, batch)
			}
		case <-tick.C:
			if len(batch) > 0 {
				batch = t.flush(t.ctx, batch)
			}
		case <-t.stop:
			for {
				select {
				case sd := <-t.queue:
					batch = append(batch, sd)
					continue
				default:
				}
				break
			}
			if len(batch) > 0 {
				ctx, cancel := context.WithTimeout(context.Background(), min(closeFlushTimeout, t.opts.ExportTimeout))
				t.flush(ctx, batch)
				cancel()
			}
			return
		}
	}
}

// flush exports batch and returns it emptied; the outcome is counted, never returned: there
// is nobody to tell but the metrics and the log.
func (t *Tracer) flush(ctx context.Context, batch []SpanData) []SpanData {
	err := t.export(ctx, batch)
	if err != nil {
		t.failures.Inc()
		t.dropFail.Add(float64(len(batch)))
		t.opts.Logger.Debug().Err(err).Int("spans", len(batch)).Msg("tracing: export failed")
	} else {
		t.exported.Add(float64(len(batch)))
	}
	clear(batch) // let the attributes go
	return batch[:0]
}

func (t *Tracer) export(ctx context.Context, batch []SpanData) error {
	body, err := proto.Marshal(t.request(batch))
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, t.opts.ExportTimeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, t.url, bytes.NewReader(body))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/x-protobuf")
	resp, err := t.client.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10)) // keep the connection reusable
	if resp.StatusCode/100 != 2 {
		return fmt.Errorf("collector answered %s", resp.Status)
	}
	return nil
}

// request is batch as one OTLP ExportTraceServiceRequest: one resource (this process, by
// service.name), one instrumentation scope (meshgate).
func (t *Tracer) request(batch []SpanData) *coltracepb.ExportTraceServiceRequest {
	spans := make([]*tracepb.Span, len(batch))
	for i := range batch {
		spans[i] = otlpSpan(&batch[i])
	}
	return &coltracepb.ExportTraceServiceRequest{ResourceSpans: []*tracepb.ResourceSpans{{
		Resource: &resourcepb.Resource{Attributes: []*commonpb.KeyValue{
			strAttr("service.name", t.opts.ServiceName),
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
