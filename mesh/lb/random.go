package lb

import "math/rand/v2"

// randomTries is how many fresh draws a slow-path Pick makes before scanning. With half the
// weight Down, four draws all miss only 1/16 of the time.
const randomTries = 4

// Random picks a host at random, in proportion to weight. It needs no shared state at all,
// so it is the cheapest policy under heavy concurrency.
type Random struct{}

// NewRandom returns the random policy.
func NewRandom() *Random { return &Random{} }

// Name returns the configuration name of the policy.
func (*Random) Name() string { return RandomName }

// NewPicker precomputes cumulative weights so a weighted draw is one random number and a
// binary search; equal weights skip even that.
func (*Random) NewPicker(hosts []*Host) Picker {
	if len(hosts) == 0 {
		return emptyPicker{}
	}
	hosts = snapshot(hosts)
	p := &randomPicker{hosts: hosts}
	uniform := true
	cum := make([]uint64, len(hosts))
	var total uint64
	for i, h := range hosts {
		w := weightOf(h)
		if w != weightOf(hosts[0]) {
			uniform = false
		}
		total += uint64(w)
		cum[i] = total
	}
	if !uniform {
		p.cum = cum
	}
	return p
}

type randomPicker struct {
	hosts []*Host
	cum   []uint64 // nil when all weights are equal
}

// draw returns one weighted random index.
func (p *randomPicker) draw() int {
	if p.cum == nil {
		return rand.IntN(len(p.hosts))
	}
	return searchCum(p.cum, rand.Uint64N(p.cum[len(p.cum)-1]))
}

// searchCum returns the first index whose cumulative weight exceeds r.
func searchCum(cum []uint64, r uint64) int {
	lo, hi := 0, len(cum)
	for lo < hi {
		m := int(uint(lo+hi) >> 1)
		if cum[m] <= r {
			lo = m + 1
		} else {
			hi = m
		}
	}
	return lo
}

func (p *randomPicker) Pick(_ uint64, exclude int) int {
	if len(p.hosts) == 1 {
		return 0
	}
	i := p.draw()
	if usable(p.hosts[i], i, exclude, false) {
		return i
	}
	var panicMode bool
	switch availabilityOf(p.hosts, exclude) {
	case availExcludeOnly:
		return exclude
	case availPanic:
		if i != exclude {
			return i // as if nothing were Down
		}
		panicMode = true
	}
	// Redraw first so the weights still hold among the hosts that are left.
	for range randomTries {
		if j := p.draw(); usable(p.hosts[j], j, exclude, panicMode) {
			return j
		}
	}
	return scanFrom(p.hosts, i, exclude, panicMode)
}

// scanFrom returns the first usable index at or after start (wrapping), or start if Down
// flags changed under us and none is usable any more.
func scanFrom(hosts []*Host, start, exclude int, panicMode bool) int {
	n := len(hosts)
	for step := range n {
		j := (start + step) % n
		if usable(hosts[j], j, exclude, panicMode) {
			return j
		}
	}
	return start
}
