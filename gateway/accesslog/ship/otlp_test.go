package ship_test

import (
	"io"
	"net/http"
	"strconv"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	logspb "go.opentelemetry.io/proto/otlp/logs/v1"

	"github.com/meshgate/meshgate/gateway/accesslog"
	"github.com/meshgate/meshgate/gateway/accesslog/ship"
	"github.com/meshgate/meshgate/gateway/accesslog/spool"
	"github.com/meshgate/meshgate/internal/await"
	"github.com/meshgate/meshgate/internal/otlptest"
)

// newOTLPShipper is a Shipper on an OTLP publisher to rcv with its own metrics registry.
func newOTLPShipper(t *testing.T, rcv *otlptest.Receiver, tune func(*ship.Options)) *shipper {
	t.Helper()
	pub, err := ship.NewOTLP(ship.OTLPOptions{
		Endpoint: rcv.URL, Headers: map[string]string{"Authorization": "Bearer t0ken"}, ServiceName: "edge", HostName: "gw-1",
	})
	if err != nil {
		t.Fatal(err)
	}
	reg := prometheus.NewRegistry()
	m, err := ship.NewMetrics(reg)
	if err != nil {
		t.Fatal(err)
	}
	opts := ship.Options{
		Name: "otlp", Publisher: pub, Spool: spool.Options{Dir: t.TempDir()}, Metrics: m,
		BatchSize: 64, FlushInterval: 5 * time.Millisecond, AckTimeout: time.Second, RetryInterval: 20 * time.Millisecond,
		QueueSize: 1 << 16,
	}
	if tune != nil {
		tune(&opts)
	}
	s, err := ship.New(opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.Close() })
	return &shipper{Shipper: s, reg: reg, m: m}
}

// checkLogs fails unless the records are reqID(from)..reqID(to-1) in order, at least once:
// each request's records are a run of consecutive lines, and dropping the copies of lines
// already received leaves the sequence with no gap. It returns how many copies there were; a
// copy only comes from a batch that was sent again, which the run check makes sure of.
func checkLogs(t *testing.T, logs []otlptest.Log, from, to int) (dups int) {
	t.Helper()
	next := from
	for i, l := range logs {
		id, _ := l.Attr(ship.AttrRequestID).(string)
		if i > 0 && logs[i-1].Request == l.Request {
			prev, _ := logs[i-1].Attr(ship.AttrRequestID).(string)
			if n, _ := strconv.Atoi(prev[4:]); id != reqID(n+1) {
				t.Fatalf("record %d is %s after %s in the same request: not a run", i, id, prev)
			}
		}
		switch n, err := strconv.Atoi(id[min(4, len(id)):]); {
		case err != nil:
			t.Fatalf("record %d: request id %q", i, id)
		case n == next:
			next++
		case n < next:
			dups++
		default:
			t.Fatalf("record %d is %s, want %s: lines lost or reordered", i, id, reqID(next))
		}
	}
	if next != to {
		t.Fatalf("received up to %s, want up to %s", reqID(next-1), reqID(to-1))
	}
	return dups
}

// TestOTLPShipsInOrderWithFields: every line arrives once, in order, as a record with the
// line's time, severity, attributes and the line itself as its body, under the gateway's
// resource, with the configured header.
func TestOTLPShipsInOrderWithFields(t *testing.T) {
	t.Parallel()
	rcv := otlptest.Start(t)
	s := newOTLPShipper(t, rcv, nil)
	const n = 1000
	for i := range n {
		s.Offer(append(line(i), '\n'))
	}
	await.Until(t, wait, "every line shipped", func() bool { return s.shipped(t) >= n })
	if s.spooled(t) != 0 || s.dropped(t) != 0 {
		t.Fatalf("healthy sink: spooled %d, dropped %d, want 0", s.spooled(t), s.dropped(t))
	}
	logs := rcv.Logs()
	if dups := checkLogs(t, logs, 0, n); dups != 0 {
		t.Fatalf("%d copies from a healthy sink", dups)
	}
	if got := rcv.LogHeader("Authorization"); got != "Bearer t0ken" {
		t.Fatalf("Authorization %q", got)
	}
	for i, l := range logs {
		e := entry(i)
		if l.Line() != string(line(i)) || l.TimeUnixNano != uint64(e.Time.UnixNano()) || l.ObservedTimeUnixNano != l.TimeUnixNano ||
			l.SeverityNumber != logspb.SeverityNumber_SEVERITY_NUMBER_INFO || l.SeverityText != "INFO" ||
			l.Attr(ship.AttrStatus) != int64(200) || l.Attr(ship.AttrMethod) != "GET" || l.Attr(ship.AttrRoute) != "orders" ||
			l.Attr(ship.AttrService) != "orders" || l.Attr(ship.AttrPath) != "/orders/42" ||
			l.ResourceAttr("service.name") != "edge" || l.ResourceAttr("host.name") != "gw-1" {
			t.Fatalf("record %d: %v (resource %v), line %s", i, l.LogRecord, l.Resource, line(i))
		}
	}
}

// TestOTLPOutageUnderLoad stops the collector while the logger is fed continuously and starts
// it again on the same port: the outage's lines are spooled, and every line arrives, in order,
// with no gap (a copy only where a batch was sent again).
func TestOTLPOutageUnderLoad(t *testing.T) {
	t.Parallel()
	rcv := otlptest.Start(t)
	s := newOTLPShipper(t, rcv, nil)
	lg, err := accesslog.New(accesslog.Options{Writer: io.Discard, BufferSize: 1 << 16, Sinks: []accesslog.Sink{s}})
	if err != nil {
		t.Fatal(err)
	}
	var logged atomic.Int64
	stop, done := make(chan struct{}), make(chan struct{})
	go func() { // the load: one request every 100µs, logged as the proxy does
		defer close(done)
		tick := time.NewTicker(100 * time.Microsecond)
		defer tick.Stop()
		for i := 0; ; i++ {
			select {
			case <-stop:
				return
			case <-tick.C:
			}
			lg.Log(entry(i))
			logged.Add(1)
		}
	}()

	await.Until(t, wait, "300 lines shipped before the outage", func() bool { return s.shipped(t) >= 300 })
	rcv.Stop()
	downAt := logged.Load()
	upAfter := time.Now().Add(*outage)
	await.Until(t, wait+*outage, "the outage's lines spooled", func() bool {
		return s.spooled(t) >= 200 && time.Now().After(upAfter)
	})
	rcv.Restart(t)
	await.Until(t, wait, "the spool replayed and drained", func() bool {
		return s.replayed(t) > 0 && s.spoolBytes(t) == 0 && logged.Load() > downAt+200
	})
	after := s.shipped(t)
	await.Until(t, wait, "direct shipping again", func() bool { return s.shipped(t) >= after+200 })
	close(stop)
	<-done
	if err := lg.Close(); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	n := int(logged.Load())
	if lg.Dropped() != 0 || s.dropped(t) != 0 {
		t.Fatalf("dropped: logger %d, shipper %d", lg.Dropped(), s.dropped(t))
	}
	dups := checkLogs(t, rcv.Logs(), 0, n)
	t.Logf("%d lines, %d spooled, %d replayed, %d copies, outage %s", n, s.spooled(t), s.replayed(t), dups, *outage)
}

// TestOTLPRetriesThrottlingAndServerErrors: while the collector answers 429, 503 or 401 (a
// credential an operator will fix) the lines are spooled, not dropped, and once it accepts
// again they all arrive in order.
func TestOTLPRetriesThrottlingAndServerErrors(t *testing.T) {
	t.Parallel()
	for _, code := range []int{http.StatusTooManyRequests, http.StatusServiceUnavailable, http.StatusInternalServerError, http.StatusUnauthorized} {
		t.Run(strconv.Itoa(code), func(t *testing.T) {
			t.Parallel()
			rcv := otlptest.Start(t)
			rcv.Respond(code)
			s := newOTLPShipper(t, rcv, nil)
			const n = 300
			for i := range n {
				s.Offer(line(i))
			}
			await.Until(t, wait, "the lines spooled and retried", func() bool {
				reqs, _ := rcv.Requests()
				return s.spooled(t) == n && reqs >= 3
			})
			if s.shipped(t) != 0 || s.dropped(t) != 0 {
				t.Fatalf("while answering %d: shipped %d, dropped %d", code, s.shipped(t), s.dropped(t))
			}
			rcv.Respond(0)
			await.Until(t, wait, "the spool replayed", func() bool { return s.replayed(t) >= n && s.spoolBytes(t) == 0 })
			checkLogs(t, rcv.Logs(), 0, n)
		})
	}
}

// TestOTLPPartialSuccessCounted: the records a collector reports rejected are counted as
// dropped (reason rejected), the rest as shipped, and the batch is not sent again.
func TestOTLPPartialSuccessCounted(t *testing.T) {
	t.Parallel()
	rcv := otlptest.Start(t)
	rcv.RejectLogs(3, "timestamp too old")
	// One batch of exactly 10: a full batch goes out at once, the long interval never fires.
	s := newOTLPShipper(t, rcv, func(o *ship.Options) { o.BatchSize, o.FlushInterval = 10, time.Hour })
	for i := range 10 {
		s.Offer(line(i))
	}
	await.Until(t, wait, "the batch settled", func() bool { return s.shipped(t)+s.dropped(t) >= 10 })
	if got := s.counter(t, "meshgate_access_log_ship_dropped_total", "reason", ship.ReasonRejected); got != 3 {
		t.Fatalf("rejected %d, want 3", got)
	}
	if s.shipped(t) != 7 || s.spooled(t) != 0 || s.dropped(t) != 3 {
		t.Fatalf("shipped %d spooled %d dropped %d, want 7 0 3", s.shipped(t), s.spooled(t), s.dropped(t))
	}
	if reqs, _ := rcv.Requests(); reqs != 1 {
		t.Fatalf("%d requests: a partial success was sent again", reqs)
	}
	checkLogs(t, rcv.Logs(), 3, 10)
}

// TestOTLPBadRequestDroppedNotRetried: a 400 says the request can never succeed; the batch is
// counted as dropped (reason refused) rather than holding every later line behind it.
func TestOTLPBadRequestDroppedNotRetried(t *testing.T) {
	t.Parallel()
	rcv := otlptest.Start(t)
	rcv.Respond(http.StatusBadRequest)
	s := newOTLPShipper(t, rcv, func(o *ship.Options) { o.BatchSize, o.FlushInterval = 5, time.Hour })
	for i := range 5 {
		s.Offer(line(i))
	}
	await.Until(t, wait, "the batch refused", func() bool {
		return s.counter(t, "meshgate_access_log_ship_dropped_total", "reason", ship.ReasonRefused) == 5
	})
	rcv.Respond(0)
	for i := 5; i < 10; i++ {
		s.Offer(line(i))
	}
	await.Until(t, wait, "the next batch shipped", func() bool { return s.shipped(t) == 5 })
	if s.spooled(t) != 0 {
		t.Fatalf("spooled %d after a 400", s.spooled(t))
	}
	if reqs, _ := rcv.Requests(); reqs != 2 {
		t.Fatalf("%d requests, want 2: the refused batch was sent again", reqs)
	}
	checkLogs(t, rcv.Logs(), 5, 10)
}
