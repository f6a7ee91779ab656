package main

import (
	"fmt"
	"io"
	"math"
	"slices"
	"time"
)

// Targets from the issue.
const (
	targetP99   = 250 * time.Millisecond
	targetRSSMB = 60.0
)

// usage is one process's cost over the idle window.
type usage struct {
	window time.Duration
	cpu    float64 // cores: 1 = one core fully busy
	mem    memory
}

type results struct {
	setupStart   time.Time
	registerTook time.Duration
	syncedAfter  time.Duration

	idle       usage
	consulIdle usage
	haveConsul bool

	seq         []time.Duration // per converged sequential change
	seqAPI      []time.Duration // the deregister + register calls of each
	seqTimeouts int

	burstN         int
	burst          []time.Duration // per converged service, from its own change
	burstFromStart []time.Duration // per converged service, from the burst's start
	burstGaps      []time.Duration // per service, between its last two probes
	burstAPI       []time.Duration // per converged service, its deregister + register calls
	burstIssue     time.Duration
	burstDone      time.Duration
	burstTimeouts  int

	probeErrors   int64
	beforeTraffic memory
	after         memory
	metrics       metricsSnapshot
}

// percentile is the nearest-rank percentile (p in 0..100) of ds; 0 when empty.
func percentile(ds []time.Duration, p float64) time.Duration {
	if len(ds) == 0 {
		return 0
	}
	s := slices.Clone(ds)
	slices.Sort(s)
	rank := int(math.Ceil(p / 100 * float64(len(s))))
	return s[min(max(rank, 1), len(s))-1]
}

func ms(d time.Duration) string { return fmt.Sprintf("%.1f", float64(d)/float64(time.Millisecond)) }

func round(d time.Duration) time.Duration {
	if d < time.Second {
		return d.Round(100 * time.Microsecond)
	}
	return d.Round(time.Millisecond)
}

// latencyVerdict judges p99 against the target; a change that never showed fails it, since
// its true latency is beyond anything measured.
func latencyVerdict(ds []time.Duration, timeouts int) string {
	switch {
	case len(ds) == 0:
		return "**no data**"
	case timeouts > 0:
		return fmt.Sprintf("**MISSES** (%d never converged)", timeouts)
	case percentile(ds, 99) <= targetP99:
		return "meets"
	}
	return "**MISSES**"
}

func (r *results) report(w io.Writer, o runOptions) {
	p := func(format string, args ...any) { fmt.Fprintf(w, format+"\n", args...) }
	m := r.metrics
	p("## Setup")
	p("")
	p("- services: %d, two instances each (agent registrations with distinct IDs) on one `consul agent -dev`;"+
		" instances point at %d origin listeners inside consulbench, whose number is the identity they answer with",
		o.services, o.origins)
	p("- meshgate: one host route per service (sNNNN.bench), every service from Consul, snapshot_dir on;"+
		" %.0f blocking queries running (meshgate_discovery_consul_watches)", m.watches)
	p("- registration: %d agent API registrations (%d concurrent) took %s; meshgate had both endpoints of"+
		" every service %s after registration began", 2*o.services, o.workers, round(r.registerTook), round(r.syncedAfter))
	p("- a change: deregister the service's oldest instance, then register one on an origin neither of its" +
		" instances uses. Propagation: from just before the deregister call to the completion of the first" +
		" answer through meshgate from the new origin (agent API, agent→catalog sync, blocking query, apply)")
	p("")
	p("## Propagation (catalog change → traffic)")
	p("")
	p("| measure | n | p50 ms | p99 ms | max ms | target | verdict |")
	p("|---|---:|---:|---:|---:|---|---|")
	row := func(name string, ds []time.Duration, target, verdict string) {
		p("| %s | %d | %s | %s | %s | %s | %s |", name, len(ds),
			ms(percentile(ds, 50)), ms(percentile(ds, 99)), ms(percentile(ds, 100)), target, verdict)
	}
	row(fmt.Sprintf("%d sequential changes (route probed every %s)", o.changes, o.poll),
		r.seq, "p99 ≤ 250 ms", latencyVerdict(r.seq, r.seqTimeouts))
	row(fmt.Sprintf("burst of %d: each service from its own change", r.burstN),
		r.burst, "p99 ≤ 250 ms", latencyVerdict(r.burst, r.burstTimeouts))
	row(fmt.Sprintf("burst of %d: each service from the burst's start", r.burstN),
		r.burstFromStart, "—", "(context)")
	p("")
	p("- sequential: the two agent API calls took p50 %s ms, p99 %s ms of each figure",
		ms(percentile(r.seqAPI, 50)), ms(percentile(r.seqAPI, 99)))
	p("- burst: the %d changes (%d concurrent API call pairs) were issued in %s; the last service answered"+
		" from its new instance %s after the burst began. %d goroutines probed the changed services, so one"+
		" service's probes were p50 %s ms (p99 %s ms) apart: the resolution of the burst figures",
		r.burstN, o.workers, round(r.burstIssue), round(r.burstDone), o.pollers,
		ms(percentile(r.burstGaps, 50)), ms(percentile(r.burstGaps, 99)))
	p("- burst: each service's two agent API calls took p50 %s ms, p99 %s ms of its figure (the agent"+
		" queues concurrent calls)", ms(percentile(r.burstAPI, 50)), ms(percentile(r.burstAPI, 99)))
	p("- never converged: %d sequential (limit %s each), %d in the burst (limit %s); probe errors (non-200"+
		" or transport): %d", r.seqTimeouts, o.timeout, r.burstTimeouts, o.burstTimeout, r.probeErrors)
	p("- meshgate health queries over the run: %.0f successful, %.0f failed; degraded now: %.0f",
		m.queryOK, m.queryErrors, m.degraded)
	if m.queryErrors > 0 {
		p("- **FLAGGED**: failed health queries (agent connection limit? see docs/consul.md, Limits)")
	}
	p("")
	p("## Resources while idle (%s window, %s after the warm-up probes; no traffic, no changes)",
		round(r.idle.window), o.settle)
	p("")
	p("| process | RSS MB (VmRSS) | peak RSS MB (VmHWM) | CPU, %% of one core | target | verdict |")
	p("|---|---:|---:|---:|---|---|")
	verdict := "meets"
	if megabytes(r.idle.mem.RSSKB) > targetRSSMB {
		verdict = "**MISSES**"
	}
	p("| meshgate | %.1f | %.1f | %.2f | RSS ≤ 60 MB | %s |", megabytes(r.idle.mem.RSSKB),
		megabytes(r.idle.mem.HWMKB), 100*r.idle.cpu, verdict)
	if r.haveConsul {
		p("| consul agent (context) | %.1f | %.1f | %.2f | — | — |", megabytes(r.consulIdle.mem.RSSKB),
			megabytes(r.consulIdle.mem.HWMKB), 100*r.consulIdle.cpu)
	}
	p("")
	p("- meshgate once every endpoint was known, before any traffic (watches only, no upstream"+
		" connections): RSS %.1f MB. The idle window follows probes of every instance, so meshgate then"+
		" also holds its upstream connections, as a proxy in use does", megabytes(r.beforeTraffic.RSSKB))
	p("- meshgate after all the changes: RSS %.1f MB, peak %.1f MB (MB = 10^6 bytes)",
		megabytes(r.after.RSSKB), megabytes(r.after.HWMKB))
}

func (r *results) summary() string {
	return fmt.Sprintf("sequential p50 %s ms p99 %s ms; burst p50 %s ms p99 %s ms (done after %s); idle RSS %.1f MB, CPU %.2f%%",
		ms(percentile(r.seq, 50)), ms(percentile(r.seq, 99)), ms(percentile(r.burst, 50)), ms(percentile(r.burst, 99)),
		round(r.burstDone), megabytes(r.idle.mem.RSSKB), 100*r.idle.cpu)
}
