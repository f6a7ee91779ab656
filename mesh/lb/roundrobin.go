package lb

import (
	"math/rand/v2"
	"slices"
	"sync/atomic"
)

// maxSchedule bounds the round-robin schedule (one int32 per slot, so 256 KiB at most).
// Weight sets whose reduced sum exceeds it are scaled down proportionally.
const maxSchedule = 1 << 16

// RoundRobin is the default policy: hosts take turns in proportion to their weights.
type RoundRobin struct{}

// NewRoundRobin returns the round_robin policy.
func NewRoundRobin() *RoundRobin { return &RoundRobin{} }

// Name returns the configuration name of the policy.
func (*RoundRobin) Name() string { return RoundRobinName }

// NewPicker precomputes an interleaved schedule in which host i appears weight(i) times
// (after dividing all weights by their gcd), so Pick is one atomic add and one slice load.
func (*RoundRobin) NewPicker(hosts []*Host) Picker {
	if len(hosts) == 0 {
		return emptyPicker{}
	}
	hosts = snapshot(hosts)
	sched := schedule(reducedWeights(hosts))
	p := &rrPicker{hosts: hosts, sched: sched}
	// A random starting slot keeps a fleet of meshgate instances (and every picker rebuilt
	// after an endpoint change) from all sending their next request to host 0 at once.
	p.next.Store(rand.Uint64N(uint64(len(sched))))
	return p
}

type rrPicker struct {
	hosts []*Host
	sched []int32
	next  atomic.Uint64
}

func (p *rrPicker) Pick(_ uint64, exclude int) int {
	if len(p.hosts) == 1 {
		return 0
	}
	n := uint64(len(p.sched))
	pos := (p.next.Add(1) - 1) % n
	i := int(p.sched[pos])
	if usable(p.hosts[i], i, exclude, false) {
		return i
	}
	return p.slow(pos, i, exclude)
}

// slow replaces a turn that fell on a Down or excluded host. A random slot of the schedule
// is a weighted random draw, so the lost turn goes to the remaining hosts in proportion to
// their weights; walking to the next slot instead would hand it all to whichever host
// follows the Down one in the schedule. The walk is only the fallback when few hosts are
// left up.
func (p *rrPicker) slow(pos uint64, first, exclude int) int {
	var panicMode bool
	switch availabilityOf(p.hosts, exclude) {
	case availExcludeOnly:
		return exclude
	case availPanic:
		if first != exclude {
			return first // as if nothing were Down: keep the schedule
		}
		panicMode = true
	}
	n := uint64(len(p.sched))
	for range randomTries {
		if i := int(p.sched[rand.Uint64N(n)]); usable(p.hosts[i], i, exclude, panicMode) {
			return i
		}
	}
	for step := range n {
		i := int(p.sched[(pos+step)%n])
		if usable(p.hosts[i], i, exclude, panicMode) {
			return i
		}
	}
	// Only reachable if Down flags flipped during the walk; any valid index beats -1.
	return first
}

// reducedWeights divides every weight by their gcd and, if the sum still exceeds
// maxSchedule, scales them down proportionally (never below 1).
func reducedWeights(hosts []*Host) []int {
	w := make([]int, len(hosts))
	g := 0
	for i, h := range hosts {
		w[i] = weightOf(h)
		g = gcd(g, w[i])
	}
	sum := 0
	for i := range w {
		w[i] /= g
		sum += w[i]
	}
	if sum > maxSchedule {
		for i := range w {
			w[i] = max(1, w[i]*maxSchedule/sum)
		}
	}
	return w
}

func gcd(a, b int) int {
	for b != 0 {
		a, b = b, a%b
	}
	return a
}

// schedule interleaves the hosts by stride scheduling: host i's k-th turn is due at virtual
// time (2k+1)/(2·w_i), and turns are sorted by due time (ties by index). This spreads each
// host's turns evenly over the cycle, like nginx's smooth weighted round robin, without its
// O(hosts × sum) construction.
func schedule(w []int) []int32 {
	type turn struct {
		host int32
		k    int32
	}
	total := 0
	for _, x := range w {
		total += x
	}
	turns := make([]turn, 0, total)
	for i, x := range w {
		for k := range x {
			turns = append(turns, turn{host: int32(i), k: int32(k)})
		}
	}
	slices.SortFunc(turns, func(a, b turn) int {
		// Compare (2ka+1)/wa with (2kb+1)/wb exactly by cross-multiplying; both factors are
		// below 2^17, so the products fit easily.
		l := int64(2*a.k+1) * int64(w[b.host])
		r := int64(2*b.k+1) * int64(w[a.host])
		switch {
		case l < r:
			return -1
		case l > r:
			return 1
		default:
			return int(a.host - b.host)
		}
	})
	out := make([]int32, len(turns))
	for i, t := range turns {
		out[i] = t.host
	}
	return out
}
