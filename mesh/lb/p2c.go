package lb

// p2cTries is how many random pairs a slow-path Pick draws before scanning.
const p2cTries = 4

// LeastRequest sends each request to the less loaded of two randomly chosen hosts ("power of
// two choices"). Comparing two random hosts instead of scanning for the global minimum costs
// O(1), needs no shared state, and avoids the herd effect where every concurrent request sees
// the same least-loaded host and piles onto it.
type LeastRequest struct{}

// NewLeastRequest returns the least_request policy.
func NewLeastRequest() *LeastRequest { return &LeastRequest{} }

// Name returns the configuration name of the policy.
func (*LeastRequest) Name() string { return LeastRequestName }

// NewPicker builds a power-of-two-choices picker comparing (in-flight+1)/weight.
func (*LeastRequest) NewPicker(hosts []*Host) Picker { return newP2C(hosts, false) }

// P2CEWMA is power of two choices on expected latency: cost = EWMA latency × (in-flight+1).
// It sends work to the instance that answers fastest right now, so a host that slows down
// (GC pauses, a noisy neighbour, a cold cache) sheds load within a few requests, before any
// health check or outlier detector would notice. This is the Finagle/Linkerd "peak EWMA" idea
// with the decay handled by Host's 1/8 moving average.
type P2CEWMA struct{}

// NewP2CEWMA returns the p2c_ewma policy.
func NewP2CEWMA() *P2CEWMA { return &P2CEWMA{} }

// Name returns the configuration name of the policy.
func (*P2CEWMA) Name() string { return P2CEWMAName }

// NewPicker builds a power-of-two-choices picker comparing latency × (in-flight+1) / weight.
func (*P2CEWMA) NewPicker(hosts []*Host) Picker { return newP2C(hosts, true) }

func newP2C(hosts []*Host, ewma bool) Picker {
	if len(hosts) == 0 {
		return emptyPicker{}
	}
	hosts = snapshot(hosts)
	w := make([]float64, len(hosts))
	for i, h := range hosts {
		w[i] = float64(weightOf(h))
	}
	return &p2cPicker{hosts: hosts, weight: w, ewma: ewma}
}

type p2cPicker struct {
	hosts  []*Host
	weight []float64
	ewma   bool
}

func (p *p2cPicker) Pick(_ uint64, exclude int) int {
	n := len(p.hosts)
	if n == 1 {
		return 0
	}
	i, j := randomDistinct(n)
	if usable(p.hosts[i], i, exclude, false) && usable(p.hosts[j], j, exclude, false) {
		return p.better(i, j)
	}
	return p.slow(i, j, exclude)
}

func (p *p2cPicker) slow(i, j, exclude int) int {
	switch availabilityOf(p.hosts, exclude) {
	case availExcludeOnly:
		return exclude
	case availPanic:
		// As if nothing were Down: compare the pair already drawn, minus exclude.
		switch {
		case i != exclude && j != exclude:
			return p.better(i, j)
		case i != exclude:
			return i
		default:
			return j
		}
	}
	// Redraw pairs so the comparison still happens among the hosts left; remember a lone
	// usable host in case every pair has a bad half (few hosts up).
	single := -1
	for range p2cTries {
		a, b := randomDistinct(len(p.hosts))
		ua := usable(p.hosts[a], a, exclude, false)
		ub := usable(p.hosts[b], b, exclude, false)
		switch {
		case ua && ub:
			return p.better(a, b)
		case ua:
			single = a
		case ub:
			single = b
		}
	}
	if single >= 0 {
		return single
	}
	return scanFrom(p.hosts, i, exclude, false)
}

// better returns whichever of i and j is cheaper; i wins ties (it is already random).
func (p *p2cPicker) better(i, j int) int {
	a, b := p.hosts[i], p.hosts[j]
	// Load is clamped at zero: an End without a matching Begin must not make a host look
	// better than idle.
	la := float64(max(a.InFlight(), 0)+1) / p.weight[i]
	lb := float64(max(b.InFlight(), 0)+1) / p.weight[j]
	if p.ewma {
		ea, eb := a.ewma.Load(), b.ewma.Load()
		// A host with no sample yet is assumed to be exactly as fast as the host it is
		// compared with. It then wins when it is no busier, so new or recovered hosts get
		// explored straight away, but its own in-flight count still limits how many requests
		// it attracts before its first answer, so a slow newcomer cannot swallow a burst.
		// When neither has a sample this is least_request.
		switch {
		case ea == 0 && eb == 0:
		case ea == 0:
			if la <= lb {
				return i
			}
			return j
		case eb == 0:
			if lb <= la {
				return j
			}
			return i
		default:
			la *= float64(ea)
			lb *= float64(eb)
		}
	}
	if lb < la {
		return j
	}
	return i
}
