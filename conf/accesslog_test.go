package conf

import (
	"strings"
	"testing"
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
		{6, "access_log.sinks[0].kind", `"kafka" is not a sink kind: nats (otlp and kafka are not implemented)`},
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
