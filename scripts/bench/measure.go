package main

import (
	"context"
	"fmt"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
)

// sample is one wrk round against one target.
type sample struct {
	wrk   wrkResult
	cpuUs float64 // CPU µs per request of the target's process; NaN when it has none
	// brokerCPUUs is the CPU µs per request of the target's broker (meshgate-ship's
	// nats-server), reported beside cpuUs and not in it; NaN (or 0 in tests) without one.
	brokerCPUUs float64
}

// rounds holds every target's samples, by round (index 0 is round 1).
type rounds map[string][]sample

func (r rounds) median(name string, f func(sample) float64) float64 {
	vals := make([]float64, 0, len(r[name]))
	for _, s := range r[name] {
		if v := f(s); !math.IsNaN(v) {
			vals = append(vals, v)
		}
	}
	return median(vals)
}

func rps(s sample) float64         { return s.wrk.rps }
func p50(s sample) float64         { return s.wrk.p50ms }
func p99(s sample) float64         { return s.wrk.p99ms }
func cpuUs(s sample) float64       { return s.cpuUs }
func brokerCPUUs(s sample) float64 { return s.brokerCPUUs }

// errorsCell summarises errors over all rounds; any error flags the target.
func (r rounds) errorsCell(name string) string {
	var non2xx, sock int64
	for _, s := range r[name] {
		non2xx += s.wrk.non2xx
		sock += s.wrk.socketErrs
	}
	if non2xx+sock == 0 {
		return "none"
	}
	return fmt.Sprintf("**FLAGGED**: %d non-2xx, %d socket", non2xx, sock)
}

// rotate is the order of round (1-based): shifted by one target per round, so
// that drift (thermal, noisy neighbours) spreads over all targets instead of
// penalising whichever runs last.
func rotate[T any](ts []T, round int) []T {
	out := make([]T, len(ts))
	for i := range ts {
		out[i] = ts[(i+round-1)%len(ts)]
	}
	return out
}

func (h *harness) rawDir() string { return filepath.Join(h.tmp, "raw") }

// wrk runs wrk (THREADS, CONNS) into out and returns its text.
func (h *harness) wrk(ctx context.Context, out string, seconds int, latency bool, extra []string, url string) (string, error) {
	return h.wrkWith(ctx, out, h.opt.threads, h.opt.conns, seconds, latency, extra, url)
}

// wrkWith runs wrk with threads and conns into out and returns its text.
func (h *harness) wrkWith(ctx context.Context, out string, threads, conns, seconds int, latency bool, extra []string, url string) (string, error) {
	args := []string{"-t" + strconv.Itoa(threads), "-c" + strconv.Itoa(conns), "-d" + strconv.Itoa(seconds) + "s"}
	if latency {
		args = append(args, "--latency")
	}
	args = append(append(args, extra...), url)
	b, err := exec.CommandContext(ctx, "wrk", args...).CombinedOutput()
	if werr := os.WriteFile(out, b, 0o644); werr != nil && err == nil {
		err = werr
	}
	return string(b), err
}

// warmUp loads every target once, unrecorded.
func (h *harness) warmUp(ctx context.Context, ts []*target, extra []string) error {
	if err := os.MkdirAll(h.rawDir(), 0o755); err != nil {
		return err
	}
	for _, t := range ts {
		h.logf("warming up %s (%s)", t.name, h.opt.warmup)
		out := filepath.Join(h.rawDir(), t.name+"-warmup.txt")
		if _, err := h.wrk(ctx, out, int(h.opt.warmup.Seconds()), false, extra, t.url("/")); err != nil {
			return fmt.Errorf("warm-up of %s failed (%s): %w", t.name, out, err)
		}
	}
	return nil
}

// wrkRound runs one measured wrk window against t, reading the CPU time of
// t's process (and its children) before and after.
func (h *harness) wrkRound(ctx context.Context, t *target, round int, extra []string) (sample, error) {
	return h.wrkWindow(ctx, t, fmt.Sprintf("round %d", round), fmt.Sprintf("%s-round%d.txt", t.name, round),
		int(h.opt.duration.Seconds()), extra)
}

// wrkWindow is one recorded wrk run of seconds against t into raw/file, with the CPU of t's
// processes (and of its broker, if it has one) read before and after; label names it in the log.
func (h *harness) wrkWindow(ctx context.Context, t *target, label, file string, seconds int, extra []string) (sample, error) {
	out := filepath.Join(h.rawDir(), file)
	t0, err := h.ticks(t)
	if err != nil {
		return sample{}, err
	}
	b0, err := h.brokerTicks(t)
	if err != nil {
		return sample{}, err
	}
	text, werr := h.wrk(ctx, out, seconds, true, extra, t.url("/"))
	t1, err := h.ticks(t)
	if err != nil {
		return sample{}, err
	}
	b1, err := h.brokerTicks(t)
	if err != nil {
		return sample{}, err
	}
	s := sample{cpuUs: math.NaN(), brokerCPUUs: math.NaN()}
	if s.wrk, err = parseWrk(text); err != nil {
		if ctx.Err() != nil {
			return s, ctx.Err()
		}
		return s, fmt.Errorf("could not parse wrk output for %s %s (%s; wrk: %v): %w\n%s", t.name, label, out, werr, err, text)
	}
	if len(t.cpuProcs()) > 0 {
		s.cpuUs = cpuPerRequestMicros(t1-t0, h.clkTck, s.wrk.requests)
	}
	if t.broker != nil && !t.broker.exited() {
		s.brokerCPUUs = cpuPerRequestMicros(b1-b0, h.clkTck, s.wrk.requests)
	}
	if s.wrk.non2xx != 0 || s.wrk.socketErrs != 0 {
		h.logf("%s %s: %d non-2xx/3xx, %d socket errors", t.name, label, s.wrk.non2xx, s.wrk.socketErrs)
	}
	cpu := num(s.cpuUs, 1) + " µs/req"
	if t.broker != nil {
		cpu += fmt.Sprintf(" (+ %s %s)", t.broker.name, num(s.brokerCPUUs, 1))
	}
	h.logf("%-9s %s: %10.0f req/s  p50 %7.3f ms  p99 %7.3f ms  CPU %s", t.name, label, s.wrk.rps, s.wrk.p50ms, s.wrk.p99ms, cpu)
	return s, nil
}

// measure warms every target up, then runs ROUNDS rounds in rotating order.
func (h *harness) measure(ctx context.Context, ts []*target, extra []string) (rounds, error) {
	if err := h.warmUp(ctx, ts, extra); err != nil {
		return nil, err
	}
	r := rounds{}
	for round := 1; round <= h.opt.rounds; round++ {
		for _, t := range rotate(ts, round) {
			s, err := h.wrkRound(ctx, t, round, extra)
			if err != nil {
				return nil, err
			}
			r[t.name] = append(r[t.name], s)
		}
	}
	return r, nil
}

// resultsTable is the medians over rounds, one row per target.
func (h *harness) resultsTable(r rounds, names []string) string {
	tb := newTable("target", ">req/s", ">p50 ms", ">p99 ms", ">CPU µs/req", "errors")
	for _, n := range names {
		tb.add(n, num(r.median(n, rps), 0), num(r.median(n, p50), 3), num(r.median(n, p99), 3),
			num(r.median(n, cpuUs), 1), r.errorsCell(n))
	}
	return fmt.Sprintf("## Results (median of %d rounds)\n\n%s\n", h.opt.rounds, tb)
}

// roundsTable is every round's figures.
func (h *harness) roundsTable(title string, r rounds, names []string) string {
	tb := newTable(">round", "target", ">req/s", ">p50 ms", ">p99 ms", ">CPU µs/req", "non-2xx/socket errors")
	for i := range h.opt.rounds {
		for _, n := range names {
			if i >= len(r[n]) {
				continue
			}
			s := r[n][i]
			tb.add(i+1, n, num(s.wrk.rps, 2), num(s.wrk.p50ms, 3), num(s.wrk.p99ms, 3), num(s.cpuUs, 1),
				fmt.Sprintf("%d/%d", s.wrk.non2xx, s.wrk.socketErrs))
		}
	}
	return fmt.Sprintf("## %s\n\n%s\n", title, tb)
}

// labelPid names one process whose CPU rateload samples.
type labelPid struct {
	label string
	pid   int
}

// rateRound runs one fixed-rate rateload window through t, sampling the CPU of
// procs, and returns its figures.
func (h *harness) rateRound(ctx context.Context, t *target, round int, procs []labelPid) (rateResult, error) {
	out := filepath.Join(h.rawDir(), fmt.Sprintf("rate-%s-round%d.txt", t.name, round))
	args := []string{"-url", t.url("/"), "-rate", strconv.Itoa(h.opt.rate),
		"-duration", h.opt.rateDuration.String(), "-warmup", h.opt.rateWarmup.String(),
		"-conns", strconv.Itoa(h.opt.rateConns), "-clk-tck", strconv.Itoa(h.clkTck)}
	for _, p := range procs {
		args = append(args, "-pid", fmt.Sprintf("%s=%d", p.label, p.pid))
	}
	cmd := exec.CommandContext(ctx, h.bins.rateload, args...)
	var stderr strings.Builder
	cmd.Stderr = &stderr
	b, err := cmd.Output()
	_ = os.WriteFile(out, b, 0o644)
	_ = os.WriteFile(out+".stderr", []byte(stderr.String()), 0o644)
	if err != nil {
		return rateResult{}, fmt.Errorf("rateload through %s failed (%s.stderr): %w\n%s", t.name, out, err, stderr.String())
	}
	r := parseRateload(string(b))
	if len(r.failures) > 0 {
		h.logf("%s fixed-rate round %d: failures:\n  %s", t.name, round, strings.Join(r.failures, "\n  "))
	}
	var total float64
	for _, p := range procs {
		total += r.per1k(p.label)
	}
	h.logf("%-9s rate round %d: %7.1f req/s  p50 %7.3f ms  p99 %7.3f ms  proxies %.4f vCPU per 1000 req/s",
		t.name, round, r.get("achieved_rps"), r.get("p50_ms"), r.get("p99_ms"), total)
	return r, nil
}

// warmupRequests is what wrk completed in a target's warm-up.
func (h *harness) warmupRequests(name string) int64 {
	b, _ := os.ReadFile(filepath.Join(h.rawDir(), name+"-warmup.txt"))
	return wrkRequestCount(string(b))
}

// brokerTicks is the CPU time of t's broker (and its children); 0 without one, or once it has
// stopped (the outage phase stops it on purpose).
func (h *harness) brokerTicks(t *target) (uint64, error) {
	if t.broker == nil || t.broker.exited() {
		return 0, nil
	}
	return processTicks(t.broker.pid())
}

// ticks sums the CPU time of the processes a target is charged for.
func (h *harness) ticks(t *target) (uint64, error) {
	var sum uint64
	for _, p := range t.cpuProcs() {
		n, err := processTicks(p.pid())
		if err != nil {
			return 0, err
		}
		sum += n
	}
	return sum, nil
}
