package conf

import (
	"strings"
	"testing"
)

func TestTracingConfig(t *testing.T) {
	t.Parallel()
	base := `
listeners: [ { name: public, address: "127.0.0.1:0" } ]
routes: [ { name: all, match: { path_prefix: / }, to: [ { service: s } ] } ]
discovery: { static: { s: [ "127.0.0.1:9000" ] } }
`
	cfg, err := Parse("t.yaml", []byte(base+"tracing: { endpoint: http://collector:4318 }\n"))
	if err != nil {
		t.Fatal(err)
	}
	tr := cfg.Tracing
	if *tr.SampleRatio != 0.01 || len(tr.Propagation) != 1 || tr.Propagation[0] != "w3c" || tr.QueueSize != 2048 ||
		tr.BatchSize != 512 || tr.BatchInterval.D().Seconds() != 5 || tr.ExportTimeout.D().Seconds() != 10 {
		t.Errorf("defaults: %+v", tr)
	}
	// An explicit 0 is a setting, not "use the default".
	cfg, err = Parse("t.yaml", []byte(base+"tracing: { endpoint: http://collector:4318, sample_ratio: 0 }\n"))
	if err != nil || *cfg.Tracing.SampleRatio != 0 {
		t.Fatalf("sample_ratio 0: %v", err)
	}
	if cfg, _ := Parse("t.yaml", []byte(base)); cfg.Tracing != nil {
		t.Error("tracing on without the block")
	}

	for _, c := range []struct{ block, want string }{
		{"tracing: { sample_ratio: 0.5 }", "t.yaml:5: tracing.endpoint: the collector's OTLP/HTTP URL is required"},
		{"tracing: { endpoint: collector:4318 }", `t.yaml:5: tracing.endpoint: "collector:4318": want http(s)://host:port`},
		{"tracing: { endpoint: \"http://u:p@c:4318\" }", "tracing.endpoint: credentials in the URL are not supported"},
		{"tracing:\n  endpoint: http://c:4318\n  sample_ratio: 1.5", "t.yaml:7: tracing.sample_ratio: must be 0..1 (got 1.5)"},
		{"tracing:\n  endpoint: http://c:4318\n  propagation: [w3c, jaeger]", `t.yaml:7: tracing.propagation[1]: "jaeger" is not one of w3c, b3, b3multi`},
		{"tracing: { endpoint: http://c:4318, propagation: [b3, b3] }", `tracing.propagation[1]: "b3" is listed twice`},
		{"tracing: { endpoint: http://c:4318, queue_size: 10, batch_size: 20 }", "tracing.batch_size: must be 1..queue_size (got 20)"},
		{"tracing: { endpoint: http://c:4318, batch_interval: -1s }", "tracing.batch_interval: must not be negative"},
	} {
		_, err := Parse("t.yaml", []byte(base+c.block+"\n"))
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s:\n got %v\nwant %s", c.block, err, c.want)
		}
	}
}
