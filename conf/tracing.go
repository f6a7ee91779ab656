package conf

import (
	"net/url"
	"slices"
	"strings"
	"time"
)

// Tracing is distributed tracing (docs/observability.md): a server span per request and a
// client span per upstream try, exported over OTLP/HTTP (protobuf) to a collector. Without the
// block nothing is traced and trace headers pass through untouched.
type Tracing struct {
	// Endpoint is the collector's OTLP/HTTP base URL (http://collector:4318); spans are POSTed
	// to Endpoint/v1/traces. Required.
	Endpoint string `yaml:"endpoint"`
	// SampleRatio is the share of traces without a parent's decision that are recorded, 0..1,
	// decided from the trace id so every hop agrees. Default 0.01 (a pointer: 0 is a setting).
	SampleRatio *float64 `yaml:"sample_ratio"`
	// SampleErrors also records the server span of a failed request (5xx, a gRPC error) that
	// was not sampled. Default false.
	SampleErrors bool `yaml:"sample_errors"`
	// Propagation lists the trace header formats: w3c, b3 (single header), b3multi (X-B3-*).
	// The first found on a request is its parent; all are sent upstream. Default [w3c].
	Propagation []string `yaml:"propagation"`
	// ServiceName is the service.name of the spans. Default identity.service, else "meshgate".
	ServiceName string `yaml:"service_name"`
	// QueueSize bounds the spans waiting for export (a full queue drops, counted). Default 2048.
	QueueSize int `yaml:"queue_size"`
	// BatchSize spans, or what BatchInterval gathered, go in one export. Defaults 512 and 5s.
	BatchSize     int      `yaml:"batch_size"`
	BatchInterval Duration `yaml:"batch_interval"`
	// ExportTimeout bounds one export request. Default 10s.
	ExportTimeout Duration `yaml:"export_timeout"`
}

// Tracing defaults; the mesh/tracing package has the same values for callers that set none.
const (
	defaultSampleRatio   = 0.01
	defaultTraceQueue    = 2048
	defaultTraceBatch    = 512
	defaultTraceInterval = 5 * time.Second
	defaultTraceTimeout  = 10 * time.Second
)

// TracingFormats are the propagation names tracing.propagation accepts.
var TracingFormats = []string{"w3c", "b3", "b3multi"}

func (c *Config) tracingDefaults() {
	t := c.Tracing
	if t == nil {
		return
	}
	if t.SampleRatio == nil {
		r := defaultSampleRatio
		t.SampleRatio = &r
	}
	if len(t.Propagation) == 0 {
		t.Propagation = []string{"w3c"}
	}
	if t.QueueSize == 0 {
		t.QueueSize = defaultTraceQueue
	}
	if t.BatchSize == 0 {
		t.BatchSize = min(defaultTraceBatch, t.QueueSize)
	}
	setDur(&t.BatchInterval, defaultTraceInterval)
	setDur(&t.ExportTimeout, defaultTraceTimeout)
}

func (v *validator) tracing(c *Config) {
	t := c.Tracing
	if t == nil {
		return
	}
	p := path{"tracing"}
	if u, err := url.Parse(t.Endpoint); t.Endpoint == "" {
		v.add(p.key("endpoint"), "the collector's OTLP/HTTP URL is required (http://collector:4318)")
	} else if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || u.RawQuery != "" || u.Fragment != "" {
		v.add(p.key("endpoint"), "%q: want http(s)://host:port, optionally with a path; spans go to its /v1/traces", t.Endpoint)
	} else if u.User != nil {
		// The config is shown by /config: a secret does not belong in a URL there.
		v.add(p.key("endpoint"), "credentials in the URL are not supported")
	}
	if r := t.SampleRatio; r != nil && (*r < 0 || *r > 1) {
		v.add(p.key("sample_ratio"), "must be 0..1 (got %g)", *r)
	}
	for i, f := range t.Propagation {
		switch {
		case !slices.Contains(TracingFormats, f):
			v.add(p.key("propagation").idx(i), "%q is not one of %s", f, strings.Join(TracingFormats, ", "))
		case slices.Index(t.Propagation, f) != i:
			v.add(p.key("propagation").idx(i), "%q is listed twice", f)
		}
	}
	if strings.ContainsAny(t.ServiceName, " \t\n") {
		v.add(p.key("service_name"), "%q: no spaces", t.ServiceName)
	}
	if t.QueueSize < 0 || t.QueueSize > 1<<20 {
		v.add(p.key("queue_size"), "must be 1..1048576 (got %d)", t.QueueSize)
	}
	if t.BatchSize < 0 || (t.QueueSize > 0 && t.BatchSize > t.QueueSize) {
		v.add(p.key("batch_size"), "must be 1..queue_size (got %d)", t.BatchSize)
	}
	v.nonNegDur(p.key("batch_interval"), t.BatchInterval)
	v.nonNegDur(p.key("export_timeout"), t.ExportTimeout)
}
