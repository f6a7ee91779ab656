package main

import (
	"bufio"
	"math"
	"strconv"
	"strings"
)

// rateResult is rateload's "key value" report: figures by key, and the
// failure lines apart (their value is free text).
type rateResult struct {
	vals     map[string]float64
	failures []string
}

func parseRateload(out string) rateResult {
	r := rateResult{vals: map[string]float64{}}
	sc := bufio.NewScanner(strings.NewReader(out))
	for sc.Scan() {
		k, v, ok := strings.Cut(sc.Text(), " ")
		if !ok {
			continue
		}
		if k == "failure" {
			r.failures = append(r.failures, v)
			continue
		}
		if f, err := strconv.ParseFloat(v, 64); err == nil {
			r.vals[k] = f
		}
	}
	return r
}

// get is one figure, NaN when rateload did not report it.
func (r rateResult) get(key string) float64 {
	if v, ok := r.vals[key]; ok {
		return v
	}
	return math.NaN()
}

// per1k is the vCPU one process label spent per 1000 req/s achieved.
func (r rateResult) per1k(label string) float64 {
	rps := r.get("achieved_rps")
	if !(rps > 0) {
		return 0
	}
	return r.get("vcpu."+label) / (rps / 1000)
}
