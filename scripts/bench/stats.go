package main

import (
	"fmt"
	"math"
	"slices"
)

// median is the middle value, or the mean of the middle two for an even
// count; NaN for none, so a missing figure never reads as a zero.
func median(vals []float64) float64 {
	if len(vals) == 0 {
		return math.NaN()
	}
	s := slices.Clone(vals)
	slices.Sort(s)
	n := len(s)
	if n%2 == 1 {
		return s[n/2]
	}
	return (s[n/2-1] + s[n/2]) / 2
}

// ratio formats a/b with two decimals, "n/a" when b is not positive or
// either side is missing.
func ratio(a, b float64) string {
	if b <= 0 || math.IsNaN(a) || math.IsNaN(b) {
		return "n/a"
	}
	return fmt.Sprintf("%.2f", a/b)
}

// pctSaving is how much lower m is than c, in percent of c.
func pctSaving(c, m float64) string {
	if c <= 0 || math.IsNaN(c) || math.IsNaN(m) {
		return "n/a"
	}
	return fmt.Sprintf("%.0f%%", 100*(c-m)/c)
}

// cpuPerRequestMicros converts a CPU-tick delta over a window in which
// requests were served into microseconds of CPU per request.
func cpuPerRequestMicros(ticks uint64, clkTck int, requests int64) float64 {
	if requests <= 0 || clkTck <= 0 {
		return math.NaN()
	}
	return float64(ticks) / float64(clkTck) * 1e6 / float64(requests)
}

// num formats a figure with the given decimals, or "n/a" when it is missing.
func num(v float64, decimals int) string {
	if math.IsNaN(v) || math.IsInf(v, 0) {
		return "n/a"
	}
	return fmt.Sprintf("%.*f", decimals, v)
}

// signed formats a difference with an explicit sign, as the added-latency
// columns do.
func signed(v float64, decimals int) string {
	if math.IsNaN(v) {
		return "n/a"
	}
	return fmt.Sprintf("%+.*f", decimals, v)
}

// atMost is the verdict of a figure against an upper bound.
func atMost(v, limit float64) string {
	if !math.IsNaN(v) && v <= limit {
		return "meets"
	}
	return "**MISSES**"
}

// atLeast is the verdict of a figure against a lower bound.
func atLeast(v, limit float64) string {
	if !math.IsNaN(v) && v >= limit {
		return "meets"
	}
	return "**MISSES**"
}

// megabytes converts kB (KiB, as /proc says) to decimal MB, the unit of the
// targets; mebibytes to MiB.
func megabytes(kb int64) float64 { return float64(kb) * 1024 / 1e6 }
func mebibytes(kb int64) float64 { return float64(kb) / 1024 }
