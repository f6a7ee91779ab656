package main

import (
	"context"
	"fmt"
	"math"
	"path/filepath"
	"strings"
)

// pairResult is one paired window: two targets loaded at the same time, each by its own wrk
// with half the threads and connections, so that whatever else the machine does in that window
// (another tenant, a noisy neighbour) weighs on both alike.
type pairResult struct {
	base, other sample
}

func (p pairResult) ratio() float64 {
	if math.IsNaN(p.base.cpuUs) || math.IsNaN(p.other.cpuUs) || p.base.cpuUs == 0 {
		return math.NaN()
	}
	return p.other.cpuUs / p.base.cpuUs
}

// paired runs PAIRS windows of DURATION with base and other loaded at once and returns them.
// The rounds before alternate one target at a time, and on a shared 2-vCPU machine the speed
// of the machine moves between a target's window and the next one's by more than the
// differences measured; a pair shares its window.
func (h *harness) paired(ctx context.Context, base, other *target) ([]pairResult, error) {
	threads, conns := max(h.opt.threads/2, 1), max(h.opt.conns/2, 1)
	seconds := int(h.opt.duration.Seconds())
	var out []pairResult
	for i := 1; i <= h.opt.pairs; i++ {
		ts := [2]*target{base, other}
		var t0, t1 [2]uint64
		var texts [2]string
		var errs [2]error
		for j, t := range ts {
			var err error
			if t0[j], err = h.ticks(t); err != nil {
				return nil, err
			}
		}
		done := make(chan struct{}, 2)
		for j, t := range ts {
			go func() {
				file := filepath.Join(h.rawDir(), fmt.Sprintf("pair-%s-%s-%d-%s.txt", base.name, other.name, i, t.name))
				texts[j], errs[j] = h.wrkWith(ctx, file, threads, conns, seconds, true, nil, t.url("/"))
				done <- struct{}{}
			}()
		}
		<-done
		<-done
		var p [2]sample
		for j, t := range ts {
			var err error
			if t1[j], err = h.ticks(t); err != nil {
				return nil, err
			}
			p[j] = sample{cpuUs: math.NaN(), brokerCPUUs: math.NaN()}
			if p[j].wrk, err = parseWrk(texts[j]); err != nil {
				if ctx.Err() != nil {
					return nil, ctx.Err()
				}
				return nil, fmt.Errorf("paired window %d, %s: could not parse wrk (wrk: %w): %w", i, t.name, errs[j], err)
			}
			p[j].cpuUs = cpuPerRequestMicros(t1[j]-t0[j], h.clkTck, p[j].wrk.requests)
		}
		r := pairResult{base: p[0], other: p[1]}
		h.logf("pair %d: %s %.1f µs/req (%.0f req/s), %s %.1f µs/req (%.0f req/s): %.3f", i,
			base.name, r.base.cpuUs, r.base.wrk.rps, other.name, r.other.cpuUs, r.other.wrk.rps, r.ratio())
		out = append(out, r)
	}
	return out, nil
}

// pairedTable renders the paired windows of each pairing and the median of their ratios.
func (h *harness) pairedTable(base string, results map[string][]pairResult, order []string) string {
	if len(results) == 0 {
		return ""
	}
	var b strings.Builder
	fmt.Fprintf(&b, "## Side by side: CPU per request with both loaded at once\n\n"+
		"Each window loads %s and one meshgate target at the same time (wrk -t%d -c%d each, %s), so the\n"+
		"machine's own drift weighs on both; the ratio is the meshgate target's CPU per request over %s's\n"+
		"in the same window.\n\n", base, max(h.opt.threads/2, 1), max(h.opt.conns/2, 1), h.opt.duration, base)
	tb := newTable("target", "window", ">"+base+" µs/req", ">target µs/req", ">ratio")
	sum := newTable("ratio (median of the windows)", ">value", "target")
	for _, name := range order {
		rs := results[name]
		ratios := make([]float64, 0, len(rs))
		for i, r := range rs {
			tb.add(name, fmt.Sprint(i+1), num(r.base.cpuUs, 1), num(r.other.cpuUs, 1), num(r.ratio(), 3))
			if v := r.ratio(); !math.IsNaN(v) {
				ratios = append(ratios, v)
			}
		}
		want := ""
		if name == "meshgate" || name == "meshgate-trace0" {
			want = "≤ 1.10"
		}
		sum.add(name+"/"+base+" CPU per request", num(median(ratios), 3), want)
	}
	fmt.Fprintf(&b, "%s\n%s\n", sum, tb)
	return b.String()
}
