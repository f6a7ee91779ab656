package gateway

import (
	"context"
	"fmt"
	"net/http"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/meshgate/meshgate/gateway/accesslog/ship"
	"github.com/meshgate/meshgate/internal/otlptest"
	"github.com/meshgate/meshgate/internal/testport"
)

// startNATS runs a real nats-server with JetStream in the test process on port (-1: any) and
// store; the caller stops it with Shutdown.
func startNATS(t *testing.T, port int, store string) *server.Server {
	t.Helper()
	s, err := server.NewServer(&server.Options{Host: "127.0.0.1", Port: port, JetStream: true, StoreDir: store, NoLog: true, NoSigs: true})
	if err != nil {
		t.Fatal(err)
	}
	s.Start()
	if !s.ReadyForConnections(10 * time.Second) {
		t.Fatal("nats-server did not start")
	}
	return s
}

func stopNATS(s *server.Server) {
	s.Shutdown()
	s.WaitForShutdown()
}

// metricSum adds up the samples of name whose labels contain label (e.g. `sink="nats"`).
func metricSum(t *testing.T, e *edgeUnderTest, name, label string) int {
	t.Helper()
	re := regexp.MustCompile(`(?m)^` + name + `\{([^}]*)\} (\S+)$`)
	total := 0.0
	for _, m := range re.FindAllStringSubmatch(metricsOf(t, e), -1) {
		if strings.Contains(m[1], label) {
			v, _ := strconv.ParseFloat(m[2], 64)
			total += v
		}
	}
	return int(total)
}

// TestEdgeShipsAccessLogThroughOutage: requests through a real edge succeed while its NATS sink
// is down (their lines are spooled), and once the broker is back every line reaches the stream,
// once, with its request id as Nats-Msg-Id. Latency is not asserted: a loaded CI machine would
// make that flaky, and the design (the request path only queues) is what keeps it flat.
func TestEdgeShipsAccessLogThroughOutage(t *testing.T) {
	t.Parallel()
	store := t.TempDir()
	// The broker goes down and comes back on this port: one outside the ephemeral range, so no
	// connection of a parallel test can take it meanwhile.
	port := testport.Restartable(t)
	up, _ := startUpstream(t, "origin", nil)
	e := startEdge(t, strings.Replace(minimal(hostport(up)), `access_log: { output: "off" }`, fmt.Sprintf(`access_log:
  output: "off"
  sinks: [ { kind: nats, url: "nats://127.0.0.1:%d", subject: meshgate.access, stream: ACCESS } ]
  spool: { dir: %q }
`, port, t.TempDir()), 1))

	const n = 50
	for i := range n {
		r, _ := get(t, e.url+"/orders/"+strconv.Itoa(i), nil)
		if r.StatusCode != 200 {
			t.Fatalf("request %d with the sink down: status %d", i, r.StatusCode)
		}
	}
	waitFor(t, "the lines spooled", func() bool {
		return metricSum(t, e, "meshgate_access_log_spooled_total", `sink="nats"`) == n
	})
	if metricSum(t, e, "meshgate_access_log_spool_bytes", `sink="nats"`) == 0 {
		t.Fatal("spool_bytes is 0 with lines spooled")
	}

	ns := startNATS(t, port, store)
	defer stopNATS(ns)
	waitFor(t, "the spool replayed", func() bool {
		return metricSum(t, e, "meshgate_access_log_replayed_total", `sink="nats"`) >= n &&
			metricSum(t, e, "meshgate_access_log_spool_bytes", `sink="nats"`) == 0
	})
	r, _ := get(t, e.url+"/after", nil)
	if r.StatusCode != 200 {
		t.Fatalf("status %d", r.StatusCode)
	}
	waitFor(t, "a line shipped directly", func() bool {
		return metricSum(t, e, "meshgate_access_log_shipped_total", `sink="nats"`) >= n+1
	})
	if d := metricSum(t, e, "meshgate_access_log_ship_dropped_total", ""); d != 0 {
		t.Fatalf("%d lines dropped", d)
	}
	e.stop(t)

	nc, err := nats.Connect(ns.ClientURL())
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js, _ := jetstream.New(nc)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	st, err := js.Stream(ctx, "ACCESS")
	if err != nil {
		t.Fatal(err)
	}
	cons, err := st.OrderedConsumer(ctx, jetstream.OrderedConsumerConfig{})
	if err != nil {
		t.Fatal(err)
	}
	batch, err := cons.FetchNoWait(1000)
	if err != nil {
		t.Fatal(err)
	}
	seen := map[string]bool{}
	var paths []string
	for m := range batch.Messages() {
		id := m.Headers().Get(jetstream.MsgIDHeader)
		if id == "" || id != ship.MessageID(m.Data()) || strings.HasPrefix(id, "h-") || seen[id] {
			t.Fatalf("message %d: Nats-Msg-Id %q (body %s)", len(paths), id, m.Data())
		}
		seen[id] = true
		p := regexp.MustCompile(`"path":"([^"]*)"`).FindSubmatch(m.Data())
		paths = append(paths, string(p[1]))
	}
	if len(paths) != n+1 || paths[0] != "/orders/0" || paths[n-1] != "/orders/"+strconv.Itoa(n-1) || paths[n] != "/after" {
		t.Fatalf("stream holds %d lines, want %d in request order: %v", len(paths), n+1, paths)
	}
	for i := range n {
		if paths[i] != "/orders/"+strconv.Itoa(i) {
			t.Fatalf("line %d is %s", i, paths[i])
		}
	}
}

// TestEdgeShipsAccessLogOverOTLP: requests through a real edge succeed while its OTLP
// collector is down (their lines are spooled); once it is back every line arrives, in request
// order, as a record with the request id attribute (what de-duplicates downstream: OTLP has no
// message id), the status and the edge's service.name.
func TestEdgeShipsAccessLogOverOTLP(t *testing.T) {
	t.Parallel()
	rcv := otlptest.Start(t)
	// Failing before the edge starts: it must start anyway. A 503 rather than a stopped
	// receiver: a closed port may be taken by another test's listener in this busy package
	// (which then takes the lines); a refused connection is covered in gateway/accesslog/ship.
	rcv.Respond(http.StatusServiceUnavailable)
	up, _ := startUpstream(t, "origin", nil)
	e := startEdge(t, strings.Replace(minimal(hostport(up)), `access_log: { output: "off" }`, fmt.Sprintf(`access_log:
  output: "off"
  sinks: [ { kind: otlp, endpoint: %q, headers: { Authorization: "Bearer t" }, flush_interval: 5ms } ]
  spool: { dir: %q }
`, rcv.URL, t.TempDir()), 1))

	const n = 30
	for i := range n {
		r, _ := get(t, e.url+"/orders/"+strconv.Itoa(i), nil)
		if r.StatusCode != 200 {
			t.Fatalf("request %d with the sink down: status %d", i, r.StatusCode)
		}
	}
	waitFor(t, "the lines spooled", func() bool {
		return metricSum(t, e, "meshgate_access_log_spooled_total", `sink="otlp"`) == n
	})
	if got := len(rcv.Logs()); got != 0 {
		t.Fatalf("the failing collector kept %d records", got)
	}
	rcv.Respond(0) // accepting again
	waitFor(t, "the spool replayed", func() bool {
		return metricSum(t, e, "meshgate_access_log_replayed_total", `sink="otlp"`) >= n &&
			metricSum(t, e, "meshgate_access_log_spool_bytes", `sink="otlp"`) == 0
	})
	if r, _ := get(t, e.url+"/after", nil); r.StatusCode != 200 {
		t.Fatalf("status %d", r.StatusCode)
	}
	waitFor(t, "a line shipped directly", func() bool { return len(rcv.Logs()) >= n+1 })
	if d := metricSum(t, e, "meshgate_access_log_ship_dropped_total", ""); d != 0 {
		t.Fatalf("%d lines dropped", d)
	}
	e.stop(t)

	seen := map[string]bool{}
	var paths []string
	for _, l := range rcv.Logs() {
		id, _ := l.Attr(ship.AttrRequestID).(string)
		if id == "" || !strings.HasPrefix(ship.MessageID([]byte(l.Line())), id+".") || l.Attr(ship.AttrStatus) != int64(200) ||
			l.ResourceAttr("service.name") != "meshgate" || l.Attr(ship.AttrRoute) == nil {
			t.Fatalf("record %d: %v", len(paths), l.LogRecord)
		}
		if seen[id] {
			continue // a batch sent again: at least once
		}
		seen[id] = true
		paths = append(paths, l.Attr(ship.AttrPath).(string))
	}
	if len(paths) != n+1 || paths[n] != "/after" {
		t.Fatalf("received %d lines, want %d in request order: %v", len(paths), n+1, paths)
	}
	for i := range n {
		if paths[i] != "/orders/"+strconv.Itoa(i) {
			t.Fatalf("line %d is %s", i, paths[i])
		}
	}
	if rcv.LogHeader("Authorization") != "Bearer t" {
		t.Fatal("the configured header was not sent")
	}
}
