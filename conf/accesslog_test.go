package conf

import (
	"strings"
	"testing"
	"time"
)

const sinkBase = `listeners: [ { name: public, address: 127.0.0.1:8080 } ]
routes: [ { name: r, match: { path_prefix: / }, to: [ { service: api } ] } ]
discovery: { static: { api: [ 127.0.0.1:9000 ] } }
`

func TestAccessLogSinksErrors(t *testing.T) {
	t.Parallel()
	c, err := parse("test.yaml", []byte(sinkBase+`access_log:
  sinks:
    - kind: kafka
      url: kafka://x:9092
    - kind: nats
      url: "http://nats:4222"
      subject: "logs.*"
      stream: ""
    - kind: nats
      url: nats://nats
      stream: A.B
    - { name: nats, kind: nats, url: "nats://a:4222, nats://b", subject: logs, stream: S }
  spool:
    max_bytes: -1
    max_age: -5s
`), testEnv)
	if err == nil {
		t.Fatalf("no error; config %+v", c.AccessLog)
	}
	es, _ := AsErrors(err)
	for _, w := range []wantErr{
		{6, "access_log.sinks[0].kind", `"kafka" is not a sink kind: nats or otlp (kafka is not implemented)`},
		{9, "access_log.sinks[1].url", "scheme must be nats or tls"},
		{10, "access_log.sinks[1].subject", "no spaces or wildcards"},
		{11, "access_log.sinks[1].stream", "is required"},
		{12, "access_log.sinks[2].subject", "is required"}, // a missing key: the element's line
		{13, "access_log.sinks[2].url", "a port is required"},
		{14, "access_log.sinks[2].stream", "no spaces, dots"},
		{15, "access_log.sinks[3].url", `"nats://b": a port is required`},
		{15, "access_log.sinks[3].name", `duplicate sink name "nats"`},
		{16, "access_log.spool.dir", "is required with sinks"},
		{17, "access_log.spool.max_bytes", "must not be negative"},
		{18, "access_log.spool.max_age", "must not be negative"},
	} {
		if !hasErr(es, w) {
			t.Errorf("missing %d %s: %s in:\n%v", w.line, w.path, w.msg, err)
		}
	}
}

func TestAccessLogSinksDefaultsAndRedaction(t *testing.T) {
	t.Parallel()
	c := mustParse(t, sinkBase+`access_log:
  output: "off"
  sinks: [ { kind: nats, url: "nats://svc:SECRET@nats:4222,nats://nats2:4222", subject: meshgate.access, stream: ACCESS } ]
  spool: { dir: /var/lib/meshgate/spool }
`)
	a := c.AccessLog
	if len(a.Sinks) != 1 || a.Sinks[0].Name != "nats" || a.Spool.MaxBytes != 1<<30 || a.Spool.MaxAge.D().Hours() != 24 {
		t.Fatalf("defaults: %+v", a)
	}
	if !a.Equal(c.clone().AccessLog) || a.Equal(AccessLog{}) {
		t.Fatal("Equal")
	}
	out, err := Marshal(Redacted(c))
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(string(out), "SECRET") || !strings.Contains(string(out), "nats://(redacted)@nats:4222,nats://nats2:4222") {
		t.Fatalf("sink url not redacted:\n%s", out)
	}
	plain := mustParse(t, sinkBase)
	if plain.AccessLog.Spool != (LogSpool{}) {
		t.Fatalf("spool defaults without sinks: %+v", plain.AccessLog.Spool)
	}
}

func TestAccessLogOTLPSinkErrors(t *testing.T) {
	t.Parallel()
	_, err := parse("test.yaml", []byte(sinkBase+`access_log:
  sinks:
    - kind: otlp
    - name: o2
      kind: otlp
      endpoint: "grpc://collector:4317"
      headers: { "Bad Name": x, Content-Type: text/plain }
      subject: logs
      batch_size: 100000
      queue_size: -1
      flush_interval: 2m
      ack_timeout: 1ms
    - name: o3
      kind: otlp
      endpoint: "https://user:pw@collector/otlp"
      batch_size: 500
      queue_size: 100
    - { name: n, kind: nats, url: "nats://a:4222", subject: s, stream: S, endpoint: "http://x:4318", ack_timeout: 10m }
  spool: { dir: /tmp/s }
`), testEnv)
	if err == nil {
		t.Fatal("no error")
	}
	es, _ := AsErrors(err)
	for _, w := range []wantErr{
		{6, "access_log.sinks[0].endpoint", "the collector's OTLP/HTTP URL is required"},
		{9, "access_log.sinks[1].endpoint", `"grpc://collector:4317": want http(s)://host:port`},
		{10, "access_log.sinks[1].headers.Bad Name", `"Bad Name" is not a valid header name`},
		{10, "access_log.sinks[1].headers.Content-Type", "Content-Type is set by the exporter"},
		{11, "access_log.sinks[1].subject", "is a nats sink key"},
		{12, "access_log.sinks[1].batch_size", "must be 1..65536 (got 100000)"},
		{13, "access_log.sinks[1].queue_size", "must be 1..1048576 (got -1)"},
		{14, "access_log.sinks[1].flush_interval", "at most 1m0s (got 2m0s)"},
		{15, "access_log.sinks[1].ack_timeout", "must be 10ms..5m0s (got 1ms)"},
		{18, "access_log.sinks[2].endpoint", "credentials in the URL are not supported"},
		{19, "access_log.sinks[2].batch_size", "must not exceed queue_size (500 > 100)"},
		{21, "access_log.sinks[3].endpoint", "is an otlp sink key"},
		{21, "access_log.sinks[3].ack_timeout", "must be 10ms..5m0s (got 10m0s)"},
	} {
		if !hasErr(es, w) {
			t.Errorf("missing %d %s: %s in:\n%v", w.line, w.path, w.msg, err)
		}
	}
}

func TestAccessLogOTLPSinkDefaultsAndRedaction(t *testing.T) {
	t.Parallel()
	c := mustParse(t, sinkBase+`access_log:
  output: "off"
  sinks:
    - { kind: otlp, endpoint: "http://collector:4318", headers: { Authorization: "Bearer SECRET" } }
    - { name: tuned, kind: otlp, endpoint: "http://collector:4318/v1/logs", batch_size: 32, flush_interval: 1s, ack_timeout: 2s, queue_size: 64 }
  spool: { dir: /var/lib/meshgate/spool }
`)
	a := c.AccessLog
	d, tuned := a.Sinks[0], a.Sinks[1]
	if d.Name != "otlp" || d.BatchSize != 256 || d.QueueSize != 8192 || d.FlushInterval.D() != 50*time.Millisecond || d.AckTimeout.D() != 5*time.Second {
		t.Fatalf("defaults: %+v", d)
	}
	if tuned.BatchSize != 32 || tuned.QueueSize != 64 || tuned.FlushInterval.D() != time.Second || tuned.AckTimeout.D() != 2*time.Second {
		t.Fatalf("set keys: %+v", tuned)
	}
	cl := c.clone().AccessLog
	if !a.Equal(cl) {
		t.Fatal("Equal to its clone")
	}
	cl.Sinks[0].Headers["Authorization"] = "other"
	if a.Equal(cl) || a.Sinks[0].Headers["Authorization"] != "Bearer SECRET" {
		t.Fatal("a header change is not a change, or the clone shares the map")
	}
	out, err := Marshal(Redacted(c))
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(string(out), "SECRET") || !strings.Contains(string(out), "Authorization:") {
		t.Fatalf("sink headers not redacted:\n%s", out)
	}
	if c.AccessLog.Sinks[0].Headers["Authorization"] != "Bearer SECRET" {
		t.Fatal("Redacted changed the config")
	}
}

func TestAccessLogFlushInterval(t *testing.T) {
	t.Parallel()
	if d := mustParse(t, sinkBase).AccessLog.FlushInterval.D(); d != time.Second {
		t.Fatalf("default flush_interval = %s, want 1s", d)
	}
	c := mustParse(t, sinkBase+"access_log: { output: /var/log/meshgate/access.log, flush_interval: 100ms }\n")
	if d := c.AccessLog.FlushInterval.D(); d != 100*time.Millisecond {
		t.Fatalf("flush_interval = %s, want 100ms", d)
	}
	other := c.clone().AccessLog
	other.FlushInterval = Duration(time.Second)
	if c.AccessLog.Equal(other) {
		t.Fatal("access logs with different flush intervals are Equal")
	}
	_, err := parse("test.yaml", []byte(sinkBase+"access_log:\n  flush_interval: 2m\n"), testEnv)
	es, _ := AsErrors(err)
	if w := (wantErr{5, "access_log.flush_interval", "at most 1m0s (got 2m0s)"}); !hasErr(es, w) {
		t.Fatalf("missing %d %s: %s in:\n%v", w.line, w.path, w.msg, err)
	}
}
