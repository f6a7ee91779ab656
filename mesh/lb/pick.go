package lb

import "math/rand/v2"

// maxWeight bounds a host's weight so that weight arithmetic (sums, products with ring sizes)
// cannot overflow whatever discovery hands us; larger weights are clamped, not rejected,
// because NewPicker has no error path.
const maxWeight = 1 << 16

// weightOf is the host weight the pickers use: at least 1, at most maxWeight.
func weightOf(h *Host) int {
	switch {
	case h.Weight < 1:
		return 1
	case h.Weight > maxWeight:
		return maxWeight
	default:
		return h.Weight
	}
}

// snapshot copies hosts so a caller reusing its slice cannot change a live picker, and
// replaces nil entries with a placeholder that is always Down, so that Pick never
// dereferences nil and indices still line up with the caller's slice.
func snapshot(hosts []*Host) []*Host {
	out := make([]*Host, len(hosts))
	for i, h := range hosts {
		if h == nil {
			h = &Host{Weight: 1}
			h.SetDown(true)
		}
		out[i] = h
	}
	return out
}

// emptyPicker serves an empty host set.
type emptyPicker struct{}

func (emptyPicker) Pick(uint64, int) int { return -1 }

// availability is what a slow-path Pick may choose from once its first candidate was Down or
// excluded. Computing it costs one pass over the hosts, which only happens off the fast path.
type availability uint8

const (
	// availOthers: some host other than exclude is up, so skip Down hosts and exclude.
	availOthers availability = iota
	// availExcludeOnly: the excluded host is the only one up. Retrying it beats sending the
	// request to a host we believe is down.
	availExcludeOnly
	// availPanic: every host is Down. Health information that condemns the whole cluster is
	// more likely wrong than the cluster is, so ignore Down (still avoiding exclude) rather
	// than fail every request.
	availPanic
)

func availabilityOf(hosts []*Host, exclude int) availability {
	excludeUp := false
	for i, h := range hosts {
		if h.Down() {
			continue
		}
		if i != exclude {
			return availOthers
		}
		excludeUp = true
	}
	if excludeUp {
		return availExcludeOnly
	}
	return availPanic
}

// usable reports whether index i may be returned: never exclude, and not Down unless the
// cluster is in panic mode.
func usable(h *Host, i, exclude int, panicMode bool) bool {
	return i != exclude && (panicMode || !h.Down())
}

// randomDistinct returns two different indices in [0, n) for n >= 2. Drawing the second from
// n-1 values and skipping over the first keeps both uniform without a retry loop.
func randomDistinct(n int) (int, int) {
	i := rand.IntN(n)
	j := rand.IntN(n - 1)
	if j >= i {
		j++
	}
	return i, j
}
