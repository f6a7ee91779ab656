package ship

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"google.golang.org/protobuf/encoding/protowire"
)

// Drop reasons of the OTLP publisher, counted by the Shipper from a *Rejected error.
const (
	// ReasonRejected: the collector took the request but reported these records rejected
	// (partial success). It said they are not worth sending again, so they are not.
	ReasonRejected = "rejected"
	// ReasonRefused: the collector answered 400 or 413, which means this request can never
	// succeed as it is; sending it again would only hold every later line behind it.
	ReasonRefused = "refused"
)

// Rejected is what a Publisher returns when the sink answered and will not take some (or all)
// of a batch however often it is sent. The Shipper treats the batch as done: the rest counts as
// shipped, Count lines as dropped with Reason, and nothing is spooled or retried.
type Rejected struct {
	Count  int
	Reason string // ReasonRejected or ReasonRefused
	Msg    string // the collector's words, for the error text
}

func (r *Rejected) Error() string {
	return fmt.Sprintf("ship: %d records %s: %s", r.Count, r.Reason, r.Msg)
}

// OTLPOptions configures an OTLP/HTTP logs publisher.
type OTLPOptions struct {
	// Endpoint is the collector's OTLP/HTTP base URL (http://collector:4318); batches are
	// POSTed to Endpoint + "/v1/logs", as tracing does with /v1/traces.
	Endpoint string
	// Headers are sent with every export (an auth token, a tenant id).
	Headers map[string]string
	// ServiceName and HostName are the resource's service.name and host.name.
	ServiceName string
	HostName    string
	// Client sends the requests; default a client of its own. The Shipper bounds each Publish
	// with AckTimeout through the context.
	Client *http.Client
}

// OTLP publishes batches as OTLP/HTTP protobuf ExportLogsServiceRequests, one LogRecord per
// line. Publish runs on the Shipper's publish goroutine, never on the request path; it is
// called from one goroutine at a time, so its buffers are reused without locks.
type OTLP struct {
	opts   OTLPOptions
	url    string
	client *http.Client
	body   []byte
	sc     logScratch
	resp   bytes.Buffer
}

// NewOTLP returns a publisher for the collector at o.Endpoint. It does not connect: a collector
// that is down when meshgate starts only makes the first batches go to the spool.
func NewOTLP(o OTLPOptions) (*OTLP, error) {
	u, err := url.Parse(o.Endpoint)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, fmt.Errorf("ship: otlp endpoint %q: want http(s)://host:port", o.Endpoint)
	}
	c := o.Client
	if c == nil {
		// A transport of its own so the idle connection to the collector is not shared with,
		// or closed by, anything else in the process.
		c = &http.Client{Transport: &http.Transport{Proxy: http.ProxyFromEnvironment, MaxIdleConnsPerHost: 2, IdleConnTimeout: time.Minute}}
	}
	return &OTLP{opts: o, url: logsURL(o.Endpoint), client: c}, nil
}

// logsURL appends /v1/logs to the base URL unless the path already ends with it, which lets a
// user paste the full signal URL a collector's docs show.
func logsURL(endpoint string) string {
	e := strings.TrimSuffix(endpoint, "/")
	if strings.HasSuffix(e, "/v1/logs") {
		return e
	}
	return e + "/v1/logs"
}

// Publish sends msgs in one request. nil: a 2xx with nothing rejected. *Rejected: a 2xx with a
// partial success, or a 400/413 (the whole batch). Any other error (no answer, 429, 5xx, and the
// other 4xx such as 401/403/404, which a config or credential fix cures) makes the Shipper
// spool the batch and send it again.
func (o *OTLP) Publish(ctx context.Context, msgs []Message) error {
	o.body = encodeLogs(o.body[:0], o.opts.ServiceName, o.opts.HostName, msgs, time.Now(), &o.sc)
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, o.url, bytes.NewReader(o.body))
	if err != nil {
		return fmt.Errorf("ship: otlp: %w", err)
	}
	for k, v := range o.opts.Headers {
		req.Header.Set(k, v)
	}
	req.Header.Set("Content-Type", "application/x-protobuf")
	resp, err := o.client.Do(req)
	if err != nil {
		return fmt.Errorf("ship: otlp: %w", err)
	}
	defer func() { _ = resp.Body.Close() }() // read-side close: the answer was read below
	o.resp.Reset()
	_, _ = io.Copy(&o.resp, io.LimitReader(resp.Body, 64<<10)) // read to the end keeps the connection reusable
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 1<<20))
	switch {
	case resp.StatusCode/100 == 2:
		if !strings.HasPrefix(resp.Header.Get("Content-Type"), "application/x-protobuf") {
			return nil // an empty or non-protobuf 2xx: accepted, nothing to learn from the body
		}
		rejected, msg := decodePartialSuccess(o.resp.Bytes())
		if rejected > 0 {
			return &Rejected{Count: int(min(rejected, int64(len(msgs)))), Reason: ReasonRejected, Msg: msg}
		}
		return nil
	case resp.StatusCode == http.StatusBadRequest || resp.StatusCode == http.StatusRequestEntityTooLarge:
		return &Rejected{Count: len(msgs), Reason: ReasonRefused, Msg: resp.Status + " " + statusMessage(o.resp.Bytes())}
	default:
		return fmt.Errorf("ship: otlp: collector answered %s", resp.Status)
	}
}

// Close lets the idle connections go.
func (o *OTLP) Close() error {
	o.client.CloseIdleConnections()
	return nil
}

// OTLP field numbers (opentelemetry-proto: collector/logs/v1, logs/v1, common/v1, resource/v1,
// google.rpc.Status) of what encodeLogs writes and decodePartialSuccess reads.
const (
	fExportResourceLogs  = 1 // ExportLogsServiceRequest.resource_logs
	fResource            = 1 // ResourceLogs.resource
	fScopeLogs           = 2 // ResourceLogs.scope_logs
	fResourceAttrs       = 1 // Resource.attributes
	fScope               = 1 // ScopeLogs.scope
	fLogRecords          = 2 // ScopeLogs.log_records
	fScopeName           = 1 // InstrumentationScope.name
	fTimeUnixNano        = 1 // LogRecord.time_unix_nano ...
	fSeverityNumber      = 2
	fSeverityText        = 3
	fBody                = 5
	fAttributes          = 6
	fObservedTimeUnix    = 11
	fKey                 = 1 // KeyValue.key
	fValue               = 2 // KeyValue.value
	fStringValue         = 1 // AnyValue.string_value
	fIntValue            = 3 // AnyValue.int_value
	fPartialSuccess      = 1 // ExportLogsServiceResponse.partial_success
	fRejectedLogRecords  = 1 // ExportLogsPartialSuccess.rejected_log_records
	fPartialErrorMessage = 2 // ExportLogsPartialSuccess.error_message
	fRPCStatusMessage    = 2 // google.rpc.Status.message (a 4xx body)

	severityInfo  = 9 // SeverityNumber
	severityWarn  = 13
	severityError = 17
	logScopeName  = "github.com/meshgate/meshgate/gateway/accesslog"
)

// Attribute keys of a record: OpenTelemetry's semantic conventions where one fits, meshgate.*
// for what is meshgate's own (a route and a service are names in its config, not URL templates).
const (
	AttrRequestID = "meshgate.request_id"
	AttrRoute     = "meshgate.route"
	AttrService   = "meshgate.service"
	AttrStatus    = "http.response.status_code"
	AttrMethod    = "http.request.method"
	AttrPath      = "url.path"
)

// logScratch holds the nested messages while encodeLogs builds them; the publisher keeps one,
// so a batch costs little allocation once the buffers grew.
type logScratch struct {
	rec, recs, scope, attrs, resource []byte
	f                                 lineFields
}

// encodeLogs appends msgs as one ExportLogsServiceRequest: one resource (this gateway, by
// service.name and host.name), one scope, a LogRecord per line in order. Written with protowire
// as tracing's encoder is, for the same reason (no message trees and reflection per line);
// TestEncodeLogsMatchesProto checks the bytes against the generated types.
func encodeLogs(dst []byte, service, host string, msgs []Message, now time.Time, sc *logScratch) []byte {
	sc.recs = sc.recs[:0]
	for i := range msgs {
		sc.f.parse(msgs[i].Data)
		sc.rec = appendLogRecord(sc.rec[:0], msgs[i].Data, &sc.f, now)
		sc.recs = appendBytes(sc.recs, fLogRecords, sc.rec)
	}
	sc.scope = appendMessageHead(sc.scope[:0], fScope, protowire.SizeTag(fScopeName)+protowire.SizeBytes(len(logScopeName)))
	sc.scope = appendString(sc.scope, fScopeName, logScopeName)
	sc.scope = append(sc.scope, sc.recs...)

	sc.attrs = appendStrAttr(sc.attrs[:0], fResourceAttrs, "service.name", service)
	if host != "" {
		sc.attrs = appendStrAttr(sc.attrs, fResourceAttrs, "host.name", host)
	}
	sc.attrs = appendStrAttr(sc.attrs, fResourceAttrs, "telemetry.sdk.name", "meshgate")
	sc.resource = appendBytes(sc.resource[:0], fResource, sc.attrs)
	sc.resource = appendBytes(sc.resource, fScopeLogs, sc.scope)
	return appendBytes(dst, fExportResourceLogs, sc.resource)
}

func appendLogRecord(b, line []byte, f *lineFields, now time.Time) []byte {
	// The line's ts is both when it happened and when meshgate observed it (it writes the line
	// as the request ends). A replayed line keeps both, so a resent batch encodes the same.
	if !f.time.IsZero() {
		ts := uint64(f.time.UnixNano())
		b = protowire.AppendTag(b, fTimeUnixNano, protowire.Fixed64Type)
		b = protowire.AppendFixed64(b, ts)
		b = protowire.AppendTag(b, fObservedTimeUnix, protowire.Fixed64Type)
		b = protowire.AppendFixed64(b, ts)
	} else {
		b = protowire.AppendTag(b, fObservedTimeUnix, protowire.Fixed64Type)
		b = protowire.AppendFixed64(b, uint64(now.UnixNano()))
	}
	num, text := uint64(severityInfo), "INFO"
	switch {
	case f.status >= 500:
		num, text = severityError, "ERROR"
	case f.status >= 400:
		num, text = severityWarn, "WARN"
	}
	b = appendVarint(b, fSeverityNumber, num)
	b = appendString(b, fSeverityText, text)
	// Body: the JSON line as a string value, so a backend shows exactly what the file has.
	val := protowire.SizeTag(fStringValue) + protowire.SizeBytes(len(line))
	b = appendMessageHead(b, fBody, val)
	b = protowire.AppendTag(b, fStringValue, protowire.BytesType)
	b = protowire.AppendBytes(b, line)
	if f.requestID != "" {
		b = appendStrAttr(b, fAttributes, AttrRequestID, f.requestID)
	}
	if f.route != "" {
		b = appendStrAttr(b, fAttributes, AttrRoute, f.route)
	}
	if f.service != "" {
		b = appendStrAttr(b, fAttributes, AttrService, f.service)
	}
	if f.status != 0 {
		b = appendIntAttr(b, fAttributes, AttrStatus, f.status)
	}
	if f.method != "" {
		b = appendStrAttr(b, fAttributes, AttrMethod, f.method)
	}
	if f.path != "" {
		b = appendStrAttr(b, fAttributes, AttrPath, f.path)
	}
	return b
}

// lineFields are the parts of an access-log line that become a record's time, severity and
// attributes. The line carries no trace or span id (accesslog.Entry has none), so records have
// none either; the request id attribute is what joins a record to the rest.
type lineFields struct {
	time                                    time.Time
	status                                  int64
	requestID, route, service, method, path string
}

// parse reads the fields from a line as accesslog.AppendJSON writes it. It looks each key up
// rather than decoding the whole object: a quote inside a JSON string is escaped, so the first
// `"key":` is the key, and the line has no nesting. A field that is missing or malformed is
// left empty: the record still carries the whole line as its body.
func (f *lineFields) parse(line []byte) {
	*f = lineFields{}
	if s := jsonString(line, `"ts":`); s != "" {
		if t, err := time.Parse(time.RFC3339Nano, s); err == nil {
			f.time = t
		}
	}
	if i := bytes.Index(line, []byte(`"status":`)); i >= 0 {
		rest := line[i+len(`"status":`):]
		j := 0
		for j < len(rest) && rest[j] >= '0' && rest[j] <= '9' {
			j++
		}
		f.status, _ = strconv.ParseInt(string(rest[:j]), 10, 64)
	}
	f.requestID = jsonString(line, `"request_id":`)
	f.route = jsonString(line, `"route":`)
	f.service = jsonString(line, `"service":`)
	f.method = jsonString(line, `"method":`)
	f.path = jsonString(line, `"path":`)
}

// jsonString is the string value after key, unescaped ("" when absent or not a string).
func jsonString(line []byte, key string) string {
	i := bytes.Index(line, []byte(key))
	if i < 0 {
		return ""
	}
	rest := line[i+len(key):]
	if len(rest) == 0 || rest[0] != '"' {
		return ""
	}
	escaped := false
	for j := 1; j < len(rest); j++ {
		switch rest[j] {
		case '\\':
			escaped = true
			j++
		case '"':
			if !escaped {
				return string(rest[1:j])
			}
			var s string
			if json.Unmarshal(rest[:j+1], &s) != nil {
				return ""
			}
			return s
		}
	}
	return ""
}

// decodePartialSuccess reads ExportLogsServiceResponse.partial_success; a body it cannot read
// counts as full success, which is what a collector that sends no body means.
func decodePartialSuccess(b []byte) (rejected int64, msg string) {
	ps, ok := field(b, fPartialSuccess, protowire.BytesType)
	if !ok {
		return 0, ""
	}
	if v, ok := field(ps, fRejectedLogRecords, protowire.VarintType); ok {
		n, _ := protowire.ConsumeVarint(v)
		rejected = int64(n)
	}
	if v, ok := field(ps, fPartialErrorMessage, protowire.BytesType); ok {
		msg = string(v)
	}
	return rejected, msg
}

// statusMessage is the message of a google.rpc.Status error body, if the body is one.
func statusMessage(b []byte) string {
	if v, ok := field(b, fRPCStatusMessage, protowire.BytesType); ok && len(v) < 512 {
		return string(v)
	}
	return ""
}

// field returns the last occurrence of field num of type typ in the message b: for a varint its
// encoding, for bytes its contents.
func field(b []byte, num protowire.Number, typ protowire.Type) ([]byte, bool) {
	var out []byte
	found := false
	for len(b) > 0 {
		n, t, l := protowire.ConsumeTag(b)
		if l < 0 {
			return nil, false
		}
		b = b[l:]
		vl := protowire.ConsumeFieldValue(n, t, b)
		if vl < 0 {
			return nil, false
		}
		if n == num && t == typ {
			out, found = b[:vl], true
			if t == protowire.BytesType {
				v, _ := protowire.ConsumeBytes(b)
				out = v
			}
		}
		b = b[vl:]
	}
	return out, found
}

// asRejected tells a *Rejected apart for the Shipper, however it was wrapped.
func asRejected(err error) (*Rejected, bool) {
	var r *Rejected
	ok := errors.As(err, &r)
	return r, ok
}

// appendStrAttr and appendIntAttr write one KeyValue as field num, sized up front so the
// value needs no buffer of its own (as in mesh/tracing/export.go).
func appendStrAttr(b []byte, num protowire.Number, k, v string) []byte {
	// A oneof member is written even when it holds its zero value: that is what tells "" from unset.
	val := protowire.SizeTag(fStringValue) + protowire.SizeBytes(len(v))
	b = appendMessageHead(b, num, protowire.SizeTag(fKey)+protowire.SizeBytes(len(k))+protowire.SizeTag(fValue)+protowire.SizeBytes(val))
	b = appendString(b, fKey, k)
	b = appendMessageHead(b, fValue, val)
	b = protowire.AppendTag(b, fStringValue, protowire.BytesType)
	return protowire.AppendString(b, v)
}

func appendIntAttr(b []byte, num protowire.Number, k string, v int64) []byte {
	val := protowire.SizeTag(fIntValue) + protowire.SizeVarint(uint64(v))
	b = appendMessageHead(b, num, protowire.SizeTag(fKey)+protowire.SizeBytes(len(k))+protowire.SizeTag(fValue)+protowire.SizeBytes(val))
	b = appendString(b, fKey, k)
	b = appendMessageHead(b, fValue, val)
	return appendVarint(b, fIntValue, uint64(v))
}

func appendMessageHead(b []byte, num protowire.Number, size int) []byte {
	b = protowire.AppendTag(b, num, protowire.BytesType)
	return protowire.AppendVarint(b, uint64(size))
}

func appendBytes(b []byte, num protowire.Number, v []byte) []byte {
	b = protowire.AppendTag(b, num, protowire.BytesType)
	return protowire.AppendBytes(b, v)
}

func appendString(b []byte, num protowire.Number, v string) []byte {
	if v == "" {
		return b
	}
	b = protowire.AppendTag(b, num, protowire.BytesType)
	return protowire.AppendString(b, v)
}

func appendVarint(b []byte, num protowire.Number, v uint64) []byte {
	b = protowire.AppendTag(b, num, protowire.VarintType)
	return protowire.AppendVarint(b, v)
}
