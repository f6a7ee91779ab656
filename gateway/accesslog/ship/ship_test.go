package ship_test

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/goleak"

	"github.com/meshgate/meshgate/gateway/accesslog"
	"github.com/meshgate/meshgate/gateway/accesslog/ship"
	"github.com/meshgate/meshgate/gateway/accesslog/spool"
	"github.com/meshgate/meshgate/internal/await"
	"github.com/meshgate/meshgate/internal/testport"
)

// The scenario is "NATS down for 30 s under load". The outage is a parameter so the
// default run stays short: go test ./gateway/accesslog/ship -run Outage -nats-outage=30s
// reproduces it as written.
var outage = flag.Duration("nats-outage", 300*time.Millisecond, "how long the NATS server stays down in TestOutageUnderLoad")

const (
	subject = "meshgate.access"
	stream  = "ACCESS"
	wait    = 20 * time.Second // bound on every await; a healthy run takes well under a second each
)

// broker is a real nats-server with JetStream, in this process, that a test can stop and start
// again on the same port and store.
type broker struct {
	t     *testing.T
	port  int
	store string
	srv   *server.Server
}

func newBroker(t *testing.T) *broker {
	t.Helper()
	// A port outside the ephemeral range: while the broker is down, no connection of a
	// parallel test can take it (internal/testport).
	b := &broker{t: t, port: testport.Restartable(t), store: t.TempDir()}
	b.start()
	t.Cleanup(b.stop)
	return b
}

func (b *broker) start() {
	b.t.Helper()
	s, err := server.NewServer(&server.Options{
		Host: "127.0.0.1", Port: b.port, JetStream: true, StoreDir: b.store, NoLog: true, NoSigs: true,
	})
	if err != nil {
		b.t.Fatal(err)
	}
	s.Start()
	if !s.ReadyForConnections(wait) {
		b.t.Fatal("nats-server did not start")
	}
	b.srv = s
}

func (b *broker) stop() {
	if b.srv != nil {
		b.srv.Shutdown()
		b.srv.WaitForShutdown()
		b.srv = nil
	}
}

func (b *broker) url() string { return fmt.Sprintf("nats://127.0.0.1:%d", b.port) }

// shipper is a Shipper on the broker with its own metrics registry.
type shipper struct {
	*ship.Shipper
	reg *prometheus.Registry
	m   *ship.Metrics
}

func newShipper(t *testing.T, b *broker, dir string, wrap func(ship.Publisher) ship.Publisher, tune func(*ship.Options)) *shipper {
	t.Helper()
	pub, err := ship.DialNATS(ship.NATSOptions{
		URL: b.url(), Subject: subject, Stream: stream, ReconnectWait: 10 * time.Millisecond, AckTimeout: time.Second,
	})
	if err != nil {
		t.Fatal(err)
	}
	var p ship.Publisher = pub
	if wrap != nil {
		p = wrap(pub)
	}
	reg := prometheus.NewRegistry()
	m, err := ship.NewMetrics(reg)
	if err != nil {
		t.Fatal(err)
	}
	opts := ship.Options{
		Name: "nats", Publisher: p, Spool: spool.Options{Dir: dir}, Metrics: m,
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

func (s *shipper) counter(t *testing.T, name string, labels ...string) int {
	t.Helper()
	mfs, err := s.reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	total := 0.0
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
	metrics:
		for _, m := range mf.GetMetric() {
			for i := 0; i+1 < len(labels); i += 2 {
				found := false
				for _, lp := range m.GetLabel() {
					if lp.GetName() == labels[i] && lp.GetValue() == labels[i+1] {
						found = true
					}
				}
				if !found {
					continue metrics
				}
			}
			if c := m.GetCounter(); c != nil {
				total += c.GetValue()
			}
			if g := m.GetGauge(); g != nil {
				total += g.GetValue()
			}
		}
	}
	return int(total)
}

func (s *shipper) shipped(t *testing.T) int {
	t.Helper()
	return s.counter(t, "meshgate_access_log_shipped_total")
}

func (s *shipper) spooled(t *testing.T) int {
	t.Helper()
	return s.counter(t, "meshgate_access_log_spooled_total")
}

func (s *shipper) replayed(t *testing.T) int {
	t.Helper()
	return s.counter(t, "meshgate_access_log_replayed_total")
}

func (s *shipper) dropped(t *testing.T) int {
	t.Helper()
	return s.counter(t, "meshgate_access_log_ship_dropped_total")
}

func (s *shipper) spoolBytes(t *testing.T) int {
	t.Helper()
	return s.counter(t, "meshgate_access_log_spool_bytes")
}

func reqID(i int) string { return fmt.Sprintf("req-%06d", i) }

// line is the access-log line for request i, as the logger encodes it.
func line(i int) []byte {
	return accesslog.AppendJSON(nil, entry(i))
}

func entry(i int) *accesslog.Entry {
	return &accesslog.Entry{
		Time: time.Unix(1_700_000_000, int64(i)), Status: 200, Method: []byte("GET"),
		Path: []byte("/orders/42"), Host: []byte("api.example"), RequestID: []byte(reqID(i)),
		Route: "orders", Service: "orders", Duration: time.Millisecond,
	}
}

// streamIDs reads the whole stream with a JetStream consumer and returns each message's
// Nats-Msg-Id, checking that it matches the request id in the body.
func streamIDs(t *testing.T, b *broker) []string {
	t.Helper()
	nc, err := nats.Connect(b.url())
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), wait)
	defer cancel()
	st, err := js.Stream(ctx, stream)
	if err != nil {
		t.Fatal(err)
	}
	info, err := st.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	cons, err := st.OrderedConsumer(ctx, jetstream.OrderedConsumerConfig{})
	if err != nil {
		t.Fatal(err)
	}
	var ids []string
	for uint64(len(ids)) < info.State.Msgs {
		batch, err := cons.Fetch(500, jetstream.FetchMaxWait(time.Second))
		if err != nil {
			t.Fatal(err)
		}
		n := 0
		for m := range batch.Messages() {
			n++
			id := m.Headers().Get(jetstream.MsgIDHeader)
			if got := ship.MessageID(m.Data()); got != id {
				t.Fatalf("message %d: Nats-Msg-Id %q, request id in the body %q", len(ids), id, got)
			}
			rid, _, _ := strings.Cut(id, ".") // the request id, without the line's hash
			ids = append(ids, rid)
		}
		if err := batch.Error(); err != nil && !errors.Is(err, nats.ErrTimeout) {
			t.Fatal(err)
		}
		if n == 0 {
			t.Fatalf("consumer stalled after %d of %d messages", len(ids), info.State.Msgs)
		}
	}
	return ids
}

// checkSequence fails unless ids are exactly reqID(from) .. reqID(to-1), in order.
func checkSequence(t *testing.T, ids []string, from, to int) {
	t.Helper()
	if len(ids) != to-from {
		t.Errorf("stream holds %d messages, want %d (%s..%s)", len(ids), to-from, reqID(from), reqID(to-1))
	}
	for i, id := range ids {
		if id != reqID(from+i) {
			t.Fatalf("message %d is %s, want %s (lost, reordered or duplicated)", i, id, reqID(from+i))
		}
	}
}

func TestShipsInOrderWithMsgID(t *testing.T) {
	t.Parallel()
	b := newBroker(t)
	s := newShipper(t, b, t.TempDir(), nil, nil)
	const n = 1000
	for i := range n {
		s.Offer(line(i))
	}
	await.Until(t, wait, "every line shipped", func() bool { return s.shipped(t) >= n })
	if s.spooled(t) != 0 || s.dropped(t) != 0 {
		t.Fatalf("healthy sink: spooled %d, dropped %d, want 0", s.spooled(t), s.dropped(t))
	}
	checkSequence(t, streamIDs(t, b), 0, n)
}

// TestOutageUnderLoad stops the broker while the logger is fed continuously, keeps it down for
// -nats-outage, and starts it again on the same port and store: every line must be in the
// stream once, in order, and requests (Log calls) must never have waited.
func TestOutageUnderLoad(t *testing.T) {
	t.Parallel()
	b := newBroker(t)
	s := newShipper(t, b, t.TempDir(), nil, nil)
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
	b.stop()
	downAt := logged.Load()
	upAfter := time.Now().Add(*outage)
	await.Until(t, wait+*outage, "the outage's lines spooled", func() bool {
		return s.spooled(t) >= 200 && time.Now().After(upAfter)
	})
	b.start()
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
	t.Logf("%d lines, %d spooled, %d replayed, outage %s", n, s.spooled(t), s.replayed(t), *outage)
	checkSequence(t, streamIDs(t, b), 0, n)
}

// failAfter lets ok batches through to the real publisher, then fails: a shipper that dies halfway
// through a replay.
type failAfter struct {
	ship.Publisher
	ok atomic.Int32
}

func (f *failAfter) Publish(ctx context.Context, msgs []ship.Message) error {
	if f.ok.Load() <= 0 {
		return errors.New("stopped mid-replay")
	}
	err := f.Publisher.Publish(ctx, msgs)
	if err == nil {
		f.ok.Add(-1)
	}
	return err
}

// TestRestartResumesFromCheckpoint: a shipper spools an outage, replays part of it, and stops;
// a new shipper on the same spool sends the rest, and only the rest.
func TestRestartResumesFromCheckpoint(t *testing.T) {
	t.Parallel()
	b := newBroker(t)
	dir := t.TempDir()
	var fa *failAfter
	s1 := newShipper(t, b, dir, func(p ship.Publisher) ship.Publisher {
		fa = &failAfter{Publisher: p}
		fa.ok.Store(1 << 30)
		return fa
	}, func(o *ship.Options) { o.BatchSize = 25 })
	for i := range 100 {
		s1.Offer(line(i))
	}
	await.Until(t, wait, "100 lines shipped", func() bool { return s1.shipped(t) == 100 })
	b.stop()
	for i := 100; i < 300; i++ {
		s1.Offer(line(i))
	}
	await.Until(t, wait, "200 lines spooled", func() bool { return s1.spooled(t) == 200 })
	fa.ok.Store(2) // two replayed batches of 25, then it "dies"
	b.start()
	await.Until(t, wait, "two batches replayed", func() bool { return s1.replayed(t) == 50 })
	if err := s1.Close(); err != nil {
		t.Fatal(err)
	}
	if files, _ := filepath.Glob(filepath.Join(dir, "*.seg")); len(files) == 0 {
		t.Fatal("the spool is empty after the first shipper stopped")
	}

	s2 := newShipper(t, b, dir, nil, func(o *ship.Options) { o.BatchSize = 25 })
	await.Until(t, wait, "the rest of the spool replayed", func() bool { return s2.spoolBytes(t) == 0 && s2.replayed(t) >= 150 })
	for i := 300; i < 350; i++ {
		s2.Offer(line(i))
	}
	await.Until(t, wait, "new lines shipped", func() bool { return s2.shipped(t) == 200 })
	if got := s2.replayed(t); got != 150 {
		t.Fatalf("second shipper replayed %d lines, want 150: it did not resume from the checkpoint", got)
	}
	if err := s2.Close(); err != nil {
		t.Fatal(err)
	}
	checkSequence(t, streamIDs(t, b), 0, 350)
}

// TestSpoolCapsDropOldest: with the broker down and a small spool, the oldest lines go and are
// counted; what reaches the stream afterwards is the newest lines, in order.
func TestSpoolCapsDropOldest(t *testing.T) {
	t.Parallel()
	b := newBroker(t)
	b.stop()
	dir := t.TempDir()
	s := newShipper(t, b, dir, nil, func(o *ship.Options) {
		o.Spool.MaxBytes = 32 << 10
		o.Spool.SegmentBytes = 8 << 10
	})
	const n = 2000 // ~250 bytes each: about 15 times the cap
	for i := range n {
		s.Offer(line(i))
	}
	await.Until(t, wait, "every line spooled", func() bool { return s.spooled(t) == n })
	if got := s.spoolBytes(t); got > 32<<10 || got == 0 {
		t.Fatalf("spool holds %d bytes, cap %d", got, 32<<10)
	}
	dropped := s.counter(t, "meshgate_access_log_ship_dropped_total", "reason", spool.ReasonMaxBytes)
	if dropped == 0 {
		t.Fatal("no max_bytes drops counted")
	}
	b.start()
	await.Until(t, wait, "the spool drained", func() bool { return s.spoolBytes(t) == 0 && s.replayed(t) > 0 })
	ids := streamIDs(t, b)
	if len(ids)+dropped != n {
		t.Fatalf("%d in the stream + %d dropped != %d offered", len(ids), dropped, n)
	}
	checkSequence(t, ids, n-len(ids), n)
	if _, err := os.Stat(dir); err != nil {
		t.Fatal(err)
	}
}

func TestMessageID(t *testing.T) {
	t.Parallel()
	id := ship.MessageID(line(7))
	if !strings.HasPrefix(id, reqID(7)+".") || len(id) <= len(reqID(7))+1 {
		t.Fatalf("MessageID = %q, want %q, a dot and the line's hash", id, reqID(7))
	}
	if again := ship.MessageID(line(7)); again != id {
		t.Fatalf("the same line twice: ids %q and %q; a resend must de-duplicate", id, again)
	}
	// Two hops of one request log the same request id: their lines must not de-duplicate.
	edge := accesslog.AppendJSON(nil, &accesslog.Entry{RequestID: []byte("r-1"), Listener: "public", Status: 200})
	side := accesslog.AppendJSON(nil, &accesslog.Entry{RequestID: []byte("r-1"), Listener: "inbound", Status: 200})
	if a, b := ship.MessageID(edge), ship.MessageID(side); a == b || !strings.HasPrefix(a, "r-1.") || !strings.HasPrefix(b, "r-1.") {
		t.Fatalf("two hops of request r-1: ids %q and %q, want distinct, both r-1.<hash>", a, b)
	}
	esc := accesslog.AppendJSON(nil, &accesslog.Entry{RequestID: []byte(`a"b\c`)})
	if got := ship.MessageID(esc); !strings.HasPrefix(got, `a\"b\\c.`) {
		t.Fatalf("escaped request id: %q", got)
	}
	none := accesslog.AppendJSON(nil, &accesslog.Entry{Status: 200})
	other := accesslog.AppendJSON(nil, &accesslog.Entry{Status: 404})
	if a, b := ship.MessageID(none), ship.MessageID(other); a == b || a[:2] != "h-" {
		t.Fatalf("lines without a request id: ids %q and %q, want distinct hashes", a, b)
	}
}

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m, await.IgnoreIdleConns()...)
}
