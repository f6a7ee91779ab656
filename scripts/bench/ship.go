package main

import (
	"context"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// EDGE_SHIP=1: a meshgate whose access log also goes to a real nats-server (JetStream), what
// that costs beside the plain meshgate, whether every line reached the stream, and how fast the
// spool drains after the broker was down.

// The sink as meshgate-ship's config names it; the stream is created by meshgate.
const (
	shipSink    = "nats"
	shipSubject = "meshgate.access"
	shipStream  = "ACCESS"
)

// natsBroker is the nats-server of EDGE_SHIP: stopped and started again on the same port and
// store by the outage phase, so the process changes and the rest does not.
type natsBroker struct {
	proc          *proc
	port, monPort int
	dir, store    string
	starts        int
}

func (b *natsBroker) url() string { return fmt.Sprintf("nats://127.0.0.1:%d", b.port) }

// startNATS starts nats-server with JetStream on free loopback ports and a store in the temp dir.
func (h *harness) startNATS(ctx context.Context) (*natsBroker, error) {
	dir, err := h.dir("nats")
	if err != nil {
		return nil, err
	}
	ports, err := freePorts(2)
	if err != nil {
		return nil, err
	}
	b := &natsBroker{port: ports[0], monPort: ports[1], dir: dir, store: filepath.Join(dir, "store")}
	return b, h.runNATS(ctx, b)
}

// runNATS (re)starts b's process and waits until its JetStream answers /healthz.
func (h *harness) runNATS(ctx context.Context, b *natsBroker) error {
	b.starts++
	logName := "stderr.log"
	if b.starts > 1 {
		logName = fmt.Sprintf("stderr-%d.log", b.starts)
	}
	p, err := h.sup.start("nats-server", filepath.Join(b.dir, logName), nil, "nats-server",
		"-a", "127.0.0.1", "-p", strconv.Itoa(b.port), "-m", strconv.Itoa(b.monPort),
		"-js", "-sd", b.store, "-n", "meshgate-bench")
	if err != nil {
		return err
	}
	b.proc = p
	if err := waitReady(ctx, p, fmt.Sprintf("http://127.0.0.1:%d/healthz", b.monPort), h.readyTimeout(), nonEmptyOK); err != nil {
		return err
	}
	if c := comm(p.pid()); c != "nats-server" {
		return fmt.Errorf("pid %d is %q, not nats-server", p.pid(), c)
	}
	return nil
}

// shipSpec is the meshgate-ship target: meshgate's edge config with the same file log plus the
// nats sink and its spool.
func (h *harness) shipSpec(b *natsBroker) meshgateSpec {
	dir := filepath.Join(h.tmp, "meshgate-ship")
	ship := fmt.Sprintf(", sinks: [ { kind: nats, name: %s, url: %q, subject: %s, stream: %s } ], spool: { dir: %q }",
		shipSink, b.url(), shipSubject, shipStream, filepath.Join(dir, "spool"))
	return meshgateSpec{name: "meshgate-ship",
		note: "as meshgate (access log to a file), plus access_log.sinks: nats (JetStream stream " + shipStream + " on the harness's nats-server) and a spool dir",
		vals: map[string]string{"ACCESS_LOG": filepath.Join(dir, "access.log"), "TRACING": "", "SHIP": ship}}
}

// shipCounters is what meshgate's /metrics says about its access log and one sink.
type shipCounters struct {
	requests   float64 // meshgate_requests_total, every route and class: one line each
	logDropped float64 // meshgate_access_log_dropped_total: lost before the writer (and so the sinks)
	shipped    float64
	spooled    float64
	replayed   float64
	spoolBytes float64
	dropped    map[string]float64 // meshgate_access_log_ship_dropped_total by reason
}

func (c shipCounters) shipDropped() float64 {
	var n float64
	for _, v := range c.dropped {
		n += v
	}
	return n
}

// droppedCell lists the drops by reason, "0" without any.
func (c shipCounters) droppedCell() string {
	if c.shipDropped() == 0 {
		return "0"
	}
	reasons := make([]string, 0, len(c.dropped))
	for r := range c.dropped {
		reasons = append(reasons, r)
	}
	slices.Sort(reasons)
	parts := make([]string, 0, len(reasons))
	for _, r := range reasons {
		if c.dropped[r] != 0 {
			parts = append(parts, fmt.Sprintf("%s %.0f", r, c.dropped[r]))
		}
	}
	return strings.Join(parts, ", ")
}

// parseShipCounters reads one /metrics answer for sink.
func parseShipCounters(text, sink string) (shipCounters, error) {
	m, err := parseProm(text)
	if err != nil {
		return shipCounters{}, err
	}
	all := promDelta(nil, m) // the samples, sorted
	s := map[string]string{"sink": sink}
	c := shipCounters{
		requests:   promSum(all, "meshgate_requests_total", nil),
		logDropped: promSum(all, "meshgate_access_log_dropped_total", nil),
		shipped:    promSum(all, "meshgate_access_log_shipped_total", s),
		spooled:    promSum(all, "meshgate_access_log_spooled_total", s),
		replayed:   promSum(all, "meshgate_access_log_replayed_total", s),
		spoolBytes: promSum(all, "meshgate_access_log_spool_bytes", s),
		dropped:    map[string]float64{},
	}
	for _, x := range all {
		if x.name == "meshgate_access_log_ship_dropped_total" && x.labels["sink"] == sink {
			c.dropped[x.labels["reason"]] += x.value
		}
	}
	if _, ok := m[promKey("meshgate_access_log_spool_bytes", s)]; !ok {
		return c, fmt.Errorf("no meshgate_access_log_spool_bytes{sink=%q} in /metrics: is the sink configured?", sink)
	}
	return c, nil
}

func (h *harness) shipCounters(ctx context.Context, t *target) (shipCounters, string, error) {
	b, err := httpGet(ctx, t.adminURL("/metrics"))
	if err != nil {
		return shipCounters{}, "", fmt.Errorf("%s: cannot read /metrics: %w", t.name, err)
	}
	c, err := parseShipCounters(string(b), shipSink)
	return c, string(b), err
}

// deliveryCheck compares what meshgate served with what the stream holds.
type deliveryCheck struct {
	phase     string
	c         shipCounters
	stream    uint64
	streamErr error
	settled   bool // shipped + dropped caught up with the requests and the spool was empty
}

// verdict says whether every request's line is in the stream once. Lines in flight are not
// expected: the check runs once the counters have settled (or says it did not).
func (d deliveryCheck) verdict() string {
	if d.streamErr != nil {
		return "**FLAGGED**: stream not read (" + d.streamErr.Error() + ")"
	}
	var problems []string
	diff := float64(d.stream) - d.c.requests
	switch {
	case diff < 0:
		problems = append(problems, fmt.Sprintf("%.0f lines missing from the stream", -diff))
	case diff > 0:
		problems = append(problems, fmt.Sprintf("%.0f more messages than requests (duplicates)", diff))
	}
	if d.c.logDropped > 0 {
		problems = append(problems, fmt.Sprintf("%.0f lines dropped by the access log", d.c.logDropped))
	}
	if n := d.c.shipDropped(); n > 0 {
		problems = append(problems, fmt.Sprintf("%.0f lines dropped by the sink (%s)", n, d.c.droppedCell()))
	}
	if !d.settled {
		problems = append(problems, "counters had not settled")
	}
	if len(problems) == 0 {
		return "OK: one message per request"
	}
	return "**FLAGGED**: " + strings.Join(problems, "; ")
}

// settle polls /metrics until every line is accounted for (shipped or dropped, the spool
// empty) and the counters stop moving, or limit passes; then it reads the stream.
func (h *harness) settle(ctx context.Context, t *target, b *natsBroker, phase string, limit time.Duration) (deliveryCheck, error) {
	d := deliveryCheck{phase: phase}
	deadline := time.Now().Add(limit)
	var prev shipCounters
	for i := 0; ; i++ {
		c, raw, err := h.shipCounters(ctx, t)
		if err != nil {
			return d, err
		}
		d.c = c
		done := c.spoolBytes == 0 && c.shipped+c.shipDropped() >= c.requests-c.logDropped
		if done && i > 0 && c.shipped == prev.shipped && c.requests == prev.requests {
			d.settled = true
			_ = os.WriteFile(filepath.Join(h.rawDir(), "metrics-meshgate-ship-"+strings.ReplaceAll(phase, " ", "-")+".txt"), []byte(raw), 0o644)
			break
		}
		if time.Now().After(deadline) {
			break
		}
		prev = c
		if err := sleep(ctx, 200*time.Millisecond); err != nil {
			return d, err
		}
	}
	d.stream, d.streamErr = streamMessages(ctx, b.url(), shipStream)
	h.logf("ship check (%s): %.0f requests, %.0f shipped, stream %d: %s", phase, d.c.requests, d.c.shipped, d.stream, d.verdict())
	return d, nil
}

// streamMessages is the number of messages JetStream holds in stream.
func streamMessages(ctx context.Context, url, stream string) (uint64, error) {
	nc, err := nats.Connect(url, nats.Name("meshgate bench check"), nats.Timeout(5*time.Second))
	if err != nil {
		return 0, err
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		return 0, err
	}
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	s, err := js.Stream(ctx, stream)
	if err != nil {
		return 0, err
	}
	info, err := s.Info(ctx)
	if err != nil {
		return 0, err
	}
	return info.State.Msgs, nil
}

// drainPoint is one /metrics poll after the broker came back.
type drainPoint struct {
	at         time.Duration // since the restart of nats-server began
	replayed   float64
	spoolBytes float64
}

// drainResult is how the spool emptied.
type drainResult struct {
	lines       float64       // lines replayed during the drain
	firstReplay time.Duration // first poll that saw a replayed line
	empty       time.Duration // first poll, from firstReplay on, that saw the spool empty
	drained     bool
	rate        float64   // lines per second from the last poll before firstReplay to empty
	peak        float64   // highest rate over any window of at least one second
	perSecond   []float64 // lines replayed in each second since the restart began
}

// analyzeDrain computes the drain's figures from polls taken after the restart; base is
// replayed_total before it.
func analyzeDrain(points []drainPoint, base float64) drainResult {
	var r drainResult
	first := -1
	for i, p := range points {
		if p.replayed > base {
			first = i
			break
		}
	}
	if first < 0 {
		return r
	}
	r.firstReplay = points[first].at
	end := -1
	for i := first; i < len(points); i++ {
		if points[i].spoolBytes == 0 {
			end = i
			break
		}
	}
	last := points[len(points)-1]
	r.lines = last.replayed - base
	if end >= 0 {
		r.drained = true
		r.empty = points[end].at
		start := time.Duration(0)
		if first > 0 {
			start = points[first-1].at
		}
		if span := (r.empty - start).Seconds(); span > 0 {
			r.rate = (points[end].replayed - base) / span
		}
		last = points[end]
	}
	for i := range points {
		for j := i + 1; j < len(points); j++ {
			if span := (points[j].at - points[i].at).Seconds(); span >= 1 {
				r.peak = math.Max(r.peak, (points[j].replayed-points[i].replayed)/span)
				break
			}
		}
	}
	// Per second: the replayed count at each whole second (the last poll at or before it).
	prev, k := base, 0
	for sec := 1; time.Duration(sec-1)*time.Second < last.at; sec++ {
		v := prev
		for k < len(points) && points[k].at <= time.Duration(sec)*time.Second {
			v = points[k].replayed
			k++
		}
		r.perSecond = append(r.perSecond, v-prev)
		prev = v
	}
	return r
}

// shipOutage is the outage phase's record.
type shipOutage struct {
	before, down      sample
	atStop, atRestart shipCounters
	ready             time.Duration // from the restart's start to nats-server's /healthz
	drain             drainResult
	drainErr          string // why the drain was not measured to its end
	// CPU µs per replayed line over the drain, of meshgate and of the restarted nats-server
	// (its start-up included); NaN when nothing was replayed.
	drainCPU, drainBrokerCPU float64
	afterRounds, afterSpan   deliveryCheck
}

// shipPhase checks delivery after the rounds, then stops nats-server under load, starts it
// again on the same port and store, and polls meshgate's /metrics until the spool is empty.
func (h *harness) shipPhase(ctx context.Context, t *target, b *natsBroker) (*shipOutage, error) {
	o := &shipOutage{}
	var err error
	if o.afterRounds, err = h.settle(ctx, t, b, "after the rounds", 15*time.Second); err != nil {
		return nil, err
	}
	secs := int(h.opt.shipOutage.Seconds())
	h.logf("ship outage phase: %d s with the broker up, %d s with it down, then the drain", secs, secs)
	if o.before, err = h.wrkWindow(ctx, t, "broker up", "ship-broker-up.txt", secs, nil); err != nil {
		return nil, err
	}
	if o.atStop, _, err = h.shipCounters(ctx, t); err != nil {
		return nil, err
	}
	h.logf("stopping nats-server")
	h.sup.stop(b.proc, h.opt.stopTimeout)
	if o.down, err = h.wrkWindow(ctx, t, "broker down", "ship-broker-down.txt", secs, nil); err != nil {
		return nil, err
	}
	if o.atRestart, _, err = h.shipCounters(ctx, t); err != nil {
		return nil, err
	}
	h.logf("starting nats-server again (same port and store); %.0f lines spooled, %.1f MB in the spool",
		o.atRestart.spooled-o.atStop.spooled, o.atRestart.spoolBytes/1e6)
	mg0, err := h.ticks(t)
	if err != nil {
		return nil, err
	}
	start := time.Now()
	if err := h.runNATS(ctx, b); err != nil {
		return nil, err
	}
	o.ready = time.Since(start)
	var points []drainPoint
	var polls strings.Builder
	for {
		c, _, err := h.shipCounters(ctx, t)
		if err != nil {
			return nil, err
		}
		p := drainPoint{at: time.Since(start), replayed: c.replayed, spoolBytes: c.spoolBytes}
		points = append(points, p)
		fmt.Fprintf(&polls, "%.3f %.0f %.0f\n", p.at.Seconds(), p.replayed, p.spoolBytes)
		if c.spoolBytes == 0 && (c.replayed > o.atRestart.replayed || o.atRestart.spoolBytes == 0) {
			break
		}
		if p.at > h.opt.shipDrainTimeout {
			o.drainErr = fmt.Sprintf("the spool still held %.1f MB after SHIP_DRAIN_TIMEOUT=%s", c.spoolBytes/1e6, h.opt.shipDrainTimeout)
			break
		}
		if err := sleep(ctx, h.opt.shipPoll); err != nil {
			return nil, err
		}
	}
	mg1, err := h.ticks(t)
	if err != nil {
		return nil, err
	}
	bt, err := processTicks(b.proc.pid())
	if err != nil {
		return nil, err
	}
	_ = os.WriteFile(filepath.Join(h.rawDir(), "ship-drain-polls.txt"), []byte("# seconds since restart, replayed_total, spool_bytes\n"+polls.String()), 0o644)
	o.drain = analyzeDrain(points, o.atRestart.replayed)
	o.drainCPU, o.drainBrokerCPU = math.NaN(), math.NaN()
	if n := int64(o.drain.lines); n > 0 {
		o.drainCPU = cpuPerRequestMicros(mg1-mg0, h.clkTck, n)
		o.drainBrokerCPU = cpuPerRequestMicros(bt, h.clkTck, n)
	}
	h.logf("drain: %.0f lines replayed, spool empty after %s (%s), %.0f lines/s",
		o.drain.lines, o.drain.empty.Round(time.Millisecond), strconv.FormatBool(o.drain.drained), o.drain.rate)
	if o.afterSpan, err = h.settle(ctx, t, b, "after the outage and drain", 15*time.Second); err != nil {
		return nil, err
	}
	return o, nil
}

// shipReport is the report's section for EDGE_SHIP: cost beside meshgate, delivery, outage.
func (h *harness) shipReport(r rounds, o *shipOutage) string {
	var b strings.Builder
	m := func(name string, f func(sample) float64) float64 { return r.median(name, f) }
	both := func(s sample) float64 { return s.cpuUs + s.brokerCPUUs }
	b.WriteString("\n## Log shipping (EDGE_SHIP=1)\n\n")
	fmt.Fprintf(&b, "Median of %d rounds. meshgate-ship is meshgate with the same file log plus a nats sink; the broker's CPU is its own column, not in meshgate's.\n\n", h.opt.rounds)
	tb := newTable("target", ">req/s", ">p99 ms", ">meshgate CPU µs/req", ">nats-server CPU µs/req", ">together µs/req")
	tb.add("meshgate", num(m("meshgate", rps), 0), num(m("meshgate", p99), 3), num(m("meshgate", cpuUs), 1), "—", num(m("meshgate", cpuUs), 1))
	tb.add("meshgate-ship", num(m("meshgate-ship", rps), 0), num(m("meshgate-ship", p99), 3), num(m("meshgate-ship", cpuUs), 1),
		num(m("meshgate-ship", brokerCPUUs), 1), num(m("meshgate-ship", both), 1))
	b.WriteString(tb.String())
	b.WriteString("\n| ratio (of medians) | value |\n|---|---:|\n")
	fmt.Fprintf(&b, "| meshgate-ship/meshgate CPU per request, meshgate alone (the shipping cost in the proxy) | %s |\n", ratio(m("meshgate-ship", cpuUs), m("meshgate", cpuUs)))
	fmt.Fprintf(&b, "| meshgate-ship/meshgate CPU per request, with nats-server | %s |\n", ratio(m("meshgate-ship", both), m("meshgate", cpuUs)))
	fmt.Fprintf(&b, "| meshgate-ship/meshgate req/s | %s |\n", ratio(m("meshgate-ship", rps), m("meshgate", rps)))
	fmt.Fprintf(&b, "| meshgate-ship/meshgate p99 (lower is better) | %s |\n", ratio(m("meshgate-ship", p99), m("meshgate", p99)))

	b.WriteString("\n### Delivery\n\n")
	b.WriteString("Every request makes one line; the stream (read with a JetStream client) must hold one message per request.\n\n")
	dt := newTable("checked", ">requests served", ">access-log drops", ">shipped", ">spooled", ">replayed", "sink drops", ">stream messages", "verdict")
	for _, d := range []deliveryCheck{o.afterRounds, o.afterSpan} {
		dt.add(d.phase, num(d.c.requests, 0), num(d.c.logDropped, 0), num(d.c.shipped, 0), num(d.c.spooled, 0),
			num(d.c.replayed, 0), d.c.droppedCell(), d.stream, d.verdict())
	}
	b.WriteString(dt.String())

	b.WriteString("\n### Broker outage and replay\n\n")
	secs := h.opt.shipOutage
	fmt.Fprintf(&b, "After the rounds: wrk %s against meshgate-ship with nats-server up, then nats-server stopped (SIGTERM) and wrk %s more, then nats-server started again on the same port and store with no load on meshgate, and meshgate's /metrics polled every %s until `meshgate_access_log_spool_bytes` was 0.\n\n",
		secs, secs, h.opt.shipPoll)
	ot := newTable("window", ">req/s", ">p50 ms", ">p99 ms", ">meshgate CPU µs/req", "non-2xx/socket errors", ">lines spooled", ">spool MB at end")
	ot.add("broker up", num(o.before.wrk.rps, 0), num(o.before.wrk.p50ms, 3), num(o.before.wrk.p99ms, 3), num(o.before.cpuUs, 1),
		fmt.Sprintf("%d/%d", o.before.wrk.non2xx, o.before.wrk.socketErrs), num(o.atStop.spooled-o.afterRounds.c.spooled, 0), num(o.atStop.spoolBytes/1e6, 1))
	ot.add("broker down", num(o.down.wrk.rps, 0), num(o.down.wrk.p50ms, 3), num(o.down.wrk.p99ms, 3), num(o.down.cpuUs, 1),
		fmt.Sprintf("%d/%d", o.down.wrk.non2xx, o.down.wrk.socketErrs), num(o.atRestart.spooled-o.atStop.spooled, 0), num(o.atRestart.spoolBytes/1e6, 1))
	b.WriteString(ot.String())
	fmt.Fprintf(&b, "\n- during the outage: req/s %s of before, p99 %s of before, %s\n", ratio(o.down.wrk.rps, o.before.wrk.rps), ratio(o.down.wrk.p99ms, o.before.wrk.p99ms),
		errorsNote(o.before.wrk, o.down.wrk))
	d := o.drain
	fmt.Fprintf(&b, "- nats-server answered /healthz %s after its restart began\n", o.ready.Round(time.Millisecond))
	switch {
	case d.firstReplay == 0 && d.lines == 0:
		fmt.Fprintf(&b, "- **no line was replayed** (%s)\n", orText(o.drainErr, "the spool was empty at the restart"))
	case !d.drained:
		fmt.Fprintf(&b, "- first line replayed after %s; **spool not empty**: %s; %.0f lines replayed by then\n", d.firstReplay.Round(time.Millisecond), o.drainErr, d.lines)
	default:
		fmt.Fprintf(&b, "- first line replayed after %s; spool empty after %s (time to empty, from the restart)\n", d.firstReplay.Round(time.Millisecond), d.empty.Round(time.Millisecond))
		fmt.Fprintf(&b, "- **replay rate: %.0f lines/s** (%.0f lines, from the last poll before the first replayed line to the first that saw the spool empty); peak over 1 s: %.0f lines/s\n", d.rate, d.lines, d.peak)
	}
	if d.lines > 0 {
		fmt.Fprintf(&b, "- CPU per replayed line over the drain: meshgate %s µs, nats-server %s µs (its start-up included)\n", num(o.drainCPU, 1), num(o.drainBrokerCPU, 1))
	}
	if len(d.perSecond) > 0 {
		cells := make([]string, len(d.perSecond))
		for i, v := range d.perSecond {
			cells[i] = strconv.FormatFloat(v, 'f', 0, 64)
		}
		fmt.Fprintf(&b, "- lines replayed in each second since the restart began (the last second is partial): %s\n", strings.Join(cells, ", "))
	}
	fmt.Fprintf(&b, "- polls: %s/ship-drain-polls.txt\n", h.rawDir())

	b.WriteString("\n### Rounds (log shipping)\n\n")
	rt := newTable(">round", ">meshgate req/s", ">meshgate CPU µs/req", ">meshgate-ship req/s", ">meshgate-ship CPU µs/req", ">nats-server CPU µs/req")
	for i := range h.opt.rounds {
		if i >= len(r["meshgate"]) || i >= len(r["meshgate-ship"]) {
			continue
		}
		a, s := r["meshgate"][i], r["meshgate-ship"][i]
		rt.add(i+1, num(a.wrk.rps, 0), num(a.cpuUs, 1), num(s.wrk.rps, 0), num(s.cpuUs, 1), num(s.brokerCPUUs, 1))
	}
	b.WriteString(rt.String())
	return b.String()
}

// errorsNote compares the errors of two wrk windows.
func errorsNote(before, down wrkResult) string {
	if down.non2xx+down.socketErrs == 0 {
		if before.non2xx+before.socketErrs == 0 {
			return "no errors in either window"
		}
		return "no errors with the broker down"
	}
	return fmt.Sprintf("**FLAGGED**: %d non-2xx and %d socket errors with the broker down (before: %d and %d)",
		down.non2xx, down.socketErrs, before.non2xx, before.socketErrs)
}

func orText(s, def string) string {
	if s == "" {
		return def
	}
	return s
}
