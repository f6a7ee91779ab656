package gateway

import (
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/meshgate/meshgate/conf"
	"github.com/meshgate/meshgate/gateway/accesslog/ship"
	"github.com/meshgate/meshgate/gateway/accesslog/spool"
)

// TestTranslateLogSinks: each sink's kind-specific keys reach its publisher and its shipper
// keys reach ship.Options (defaults included, from conf), and the OTLP resource takes the
// service name tracing would use.
func TestTranslateLogSinks(t *testing.T) {
	t.Parallel()
	cfg, err := conf.Parse("test.yaml", []byte(strings.Replace(minimal("127.0.0.1:9"), `access_log: { output: "off" }`, `access_log:
  output: "off"
  sinks:
    - { kind: nats, url: "nats://n:4222", subject: s, stream: S, ack_timeout: 2s }
    - { kind: otlp, endpoint: "http://c:4318", headers: { Authorization: "Bearer x" }, batch_size: 32, flush_interval: 1s, ack_timeout: 3s, queue_size: 64 }
  spool: { dir: /spool }
tracing: { endpoint: "http://c:4318", service_name: edge }
`, 1)))
	if err != nil {
		t.Fatal(err)
	}
	got := logSinkOptions(cfg)
	want := []logSink{
		{Kind: "nats", NATS: ship.NATSOptions{URL: "nats://n:4222", Subject: "s", Stream: "S", AckTimeout: 2 * time.Second},
			Ship: ship.Options{Name: "nats", Spool: spool.Options{Dir: filepath.Join("/spool", "nats"), MaxBytes: 1 << 30, MaxAge: 24 * time.Hour},
				QueueSize: 8192, BatchSize: 256, FlushInterval: 50 * time.Millisecond, AckTimeout: 2 * time.Second}},
		{Kind: "otlp", OTLP: ship.OTLPOptions{Endpoint: "http://c:4318", Headers: map[string]string{"Authorization": "Bearer x"}, ServiceName: "edge"},
			Ship: ship.Options{Name: "otlp", Spool: spool.Options{Dir: filepath.Join("/spool", "otlp"), MaxBytes: 1 << 30, MaxAge: 24 * time.Hour},
				QueueSize: 64, BatchSize: 32, FlushInterval: time.Second, AckTimeout: 3 * time.Second}},
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("got\n%+v\nwant\n%+v", got, want)
	}
	cfg.Tracing = nil
	cfg.Identity = &conf.Identity{Service: "edge-svc"}
	if n := logServiceName(cfg); n != "edge-svc" {
		t.Fatalf("without tracing: service.name %q, want identity.service", n)
	}
	cfg.Identity = nil
	if n := logServiceName(cfg); n != "meshgate" {
		t.Fatalf("service.name %q, want meshgate", n)
	}
}
