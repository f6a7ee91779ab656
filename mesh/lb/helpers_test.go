package lb

import (
	"fmt"
	"math/rand/v2"
	"testing"
)

// testHosts builds hosts 10.0.0.<i+1>:8080 with the given weights.
func testHosts(weights ...int) []*Host {
	hs := make([]*Host, len(weights))
	for i, w := range weights {
		hs[i] = &Host{Address: fmt.Sprintf("10.0.0.%d:8080", i+1), Weight: w}
	}
	return hs
}

// equalHosts builds n hosts of weight 1.
func equalHosts(n int) []*Host {
	w := make([]int, n)
	for i := range w {
		w[i] = 1
	}
	return testHosts(w...)
}

type namedPolicy struct {
	name   string
	policy Policy
}

// allPolicies builds every policy through New, so the name mapping is exercised too.
func allPolicies(tb testing.TB) []namedPolicy {
	tb.Helper()
	var out []namedPolicy
	for _, name := range Names() {
		p, err := New(Options{Policy: name})
		if err != nil {
			tb.Fatalf("New(%q): %v", name, err)
		}
		out = append(out, namedPolicy{name: name, policy: p})
	}
	return out
}

// countPicks runs n picks with random hashes and returns how often each index came back.
func countPicks(tb testing.TB, p Picker, hosts int, n, exclude int) []int {
	tb.Helper()
	counts := make([]int, hosts)
	for range n {
		i := p.Pick(rand.Uint64(), exclude)
		if i < 0 || i >= hosts {
			tb.Fatalf("Pick returned %d, want [0, %d)", i, hosts)
		}
		counts[i]++
	}
	return counts
}

func markDown(hosts []*Host, idx ...int) {
	for _, i := range idx {
		hosts[i].SetDown(true)
	}
}

// sample records one finished request of duration ms milliseconds on h.
func sample(h *Host, ms, times int) {
	for range times {
		h.Begin()
		h.End(msDur(ms), false)
	}
}
