package main

import (
	"bufio"
	"fmt"
	"math"
	"regexp"
	"slices"
	"strconv"
	"strings"
)

// The Prometheus text exposition, as far as meshgate's /metrics uses it: a
// sample line is name{labels} value; label values are quoted with escapes.
// Compiled once; never written after.
var (
	promLineRE  = regexp.MustCompile(`^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})?\s+(\S+)`)
	promLabelRE = regexp.MustCompile(`(\w+)="((?:[^"\\]|\\.)*)"`)
)

type promSample struct {
	name   string
	labels map[string]string
	value  float64
}

// promKey identifies a series independently of label order.
func promKey(name string, labels map[string]string) string {
	keys := make([]string, 0, len(labels))
	for k := range labels {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	var b strings.Builder
	b.WriteString(name)
	for _, k := range keys {
		fmt.Fprintf(&b, ",%s=%q", k, labels[k])
	}
	return b.String()
}

// parseProm reads every sample of a /metrics answer, keyed by promKey.
func parseProm(text string) (map[string]promSample, error) {
	out := map[string]promSample{}
	sc := bufio.NewScanner(strings.NewReader(text))
	sc.Buffer(make([]byte, 64<<10), 4<<20)
	for sc.Scan() {
		line := sc.Text()
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		m := promLineRE.FindStringSubmatch(line)
		if m == nil {
			continue
		}
		v, err := strconv.ParseFloat(m[3], 64)
		if err != nil {
			return nil, fmt.Errorf("metrics line %q: %w", line, err)
		}
		labels := map[string]string{}
		for _, l := range promLabelRE.FindAllStringSubmatch(m[2], -1) {
			labels[l[1]] = l[2]
		}
		out[promKey(m[1], labels)] = promSample{name: m[1], labels: labels, value: v}
	}
	return out, sc.Err()
}

// promDelta is after − before for every series of after: what happened in a
// window between two snapshots of monotonic counters.
func promDelta(before, after map[string]promSample) []promSample {
	keys := make([]string, 0, len(after))
	for k := range after {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	out := make([]promSample, 0, len(keys))
	for _, k := range keys {
		s := after[k]
		s.value -= before[k].value
		out = append(out, s)
	}
	return out
}

// promSum adds the samples named name whose labels include every pair of want.
func promSum(samples []promSample, name string, want map[string]string) float64 {
	var sum float64
	for _, s := range samples {
		if s.name != name {
			continue
		}
		match := true
		for k, v := range want {
			if s.labels[k] != v {
				match = false
				break
			}
		}
		if match {
			sum += s.value
		}
	}
	return sum
}

// histogram is one cumulative Prometheus histogram (its _bucket series by le).
type histogram map[float64]float64

// quantile interpolates linearly inside the bucket holding rank q, as
// Prometheus' histogram_quantile does; ok is false for an empty histogram.
// overflow is true when the rank falls in the +Inf bucket, whose upper end is
// unknown: the result is then the last finite bound.
func (h histogram) quantile(q float64) (v float64, overflow, ok bool) {
	les := make([]float64, 0, len(h))
	for le := range h {
		les = append(les, le)
	}
	slices.Sort(les)
	if len(les) == 0 || h[les[len(les)-1]] <= 0 {
		return 0, false, false
	}
	rank := q * h[les[len(les)-1]]
	lo, prev := 0.0, 0.0
	for _, le := range les {
		c := h[le]
		if c >= rank {
			if math.IsInf(le, 1) {
				return lo, true, true
			}
			if c == prev {
				return le, false, true
			}
			return lo + (le-lo)*(rank-prev)/(c-prev), false, true
		}
		lo, prev = le, c
	}
	return 0, false, false
}

// pluginCalls is what one window's metrics say about one plugin and phase (or
// every plugin of a phase, under the name "ALL").
type pluginCalls struct {
	buckets    histogram
	count, sum float64 // meshgate_plugin_call_duration_seconds
	ok, notOK  float64 // meshgate_plugin_calls_total by result
	notOKBy    map[string]float64
}

// pluginWindow is the meshgate side of one load window of the plugins scenario.
type pluginWindow struct {
	requests, non2xx float64 // meshgate_requests_total on route "all"
	calls            map[[2]string]*pluginCalls
}

func newPluginWindow(delta []promSample) pluginWindow {
	w := pluginWindow{calls: map[[2]string]*pluginCalls{}}
	w.requests = promSum(delta, "meshgate_requests_total", map[string]string{"route": "all"})
	w.non2xx = w.requests - promSum(delta, "meshgate_requests_total", map[string]string{"route": "all", "class": "2xx"})
	for _, s := range delta {
		plugin, okP := s.labels["plugin"]
		phase, okPh := s.labels["phase"]
		if !okP || !okPh {
			continue
		}
		for _, name := range []string{plugin, "ALL"} {
			key := [2]string{name, phase}
			c := w.calls[key]
			if c == nil {
				c = &pluginCalls{buckets: histogram{}, notOKBy: map[string]float64{}}
				w.calls[key] = c
			}
			switch s.name {
			case "meshgate_plugin_call_duration_seconds_bucket":
				le, err := strconv.ParseFloat(s.labels["le"], 64)
				if err == nil {
					c.buckets[le] += s.value
				}
			case "meshgate_plugin_call_duration_seconds_count":
				c.count += s.value
			case "meshgate_plugin_call_duration_seconds_sum":
				c.sum += s.value
			case "meshgate_plugin_calls_total":
				if r := s.labels["result"]; r == "ok" {
					c.ok += s.value
				} else {
					c.notOK += s.value
					c.notOKBy[r] += s.value
				}
			}
		}
	}
	return w
}

// notOK sums the calls of every real plugin (not "ALL") that were not "ok".
func (w pluginWindow) notOK() float64 {
	var n float64
	for k, c := range w.calls {
		if k[0] != "ALL" {
			n += c.notOK
		}
	}
	return n
}
