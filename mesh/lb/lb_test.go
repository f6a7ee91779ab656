package lb

import (
	"errors"
	"math"
	"math/rand/v2"
	"sync"
	"testing"
	"time"
)

func msDur(ms int) time.Duration { return time.Duration(ms) * time.Millisecond }

func TestNew(t *testing.T) {
	t.Parallel()
	tests := []struct {
		opts    Options
		want    string
		wantErr error
	}{
		{opts: Options{}, want: RoundRobinName},
		{opts: Options{Policy: "round_robin"}, want: RoundRobinName},
		{opts: Options{Policy: "random"}, want: RandomName},
		{opts: Options{Policy: "least_request"}, want: LeastRequestName},
		{opts: Options{Policy: "p2c_ewma"}, want: P2CEWMAName},
		{opts: Options{Policy: "ring_hash"}, want: RingHashName},
		{opts: Options{Policy: "ring_hash", VirtualNodes: 160}, want: RingHashName},
		{opts: Options{Policy: "ring_hash", VirtualNodes: -1}, wantErr: ErrInvalidOptions},
		{opts: Options{Policy: "ring_hash", VirtualNodes: MaxVirtualNodes + 1}, wantErr: ErrInvalidOptions},
		{opts: Options{Policy: "Round_Robin"}, wantErr: ErrUnknownPolicy},
		{opts: Options{Policy: "maglev"}, wantErr: ErrUnknownPolicy},
	}
	for _, tt := range tests {
		t.Run(tt.opts.Policy, func(t *testing.T) {
			t.Parallel()
			p, err := New(tt.opts)
			if tt.wantErr != nil {
				if !errors.Is(err, tt.wantErr) {
					t.Fatalf("New(%+v) error = %v, want %v", tt.opts, err, tt.wantErr)
				}
				if p != nil {
					t.Fatalf("New(%+v) returned a policy with an error", tt.opts)
				}
				return
			}
			if err != nil {
				t.Fatalf("New(%+v): %v", tt.opts, err)
			}
			named, ok := p.(interface{ Name() string })
			if !ok || named.Name() != tt.want {
				t.Fatalf("New(%+v) = %T, want policy %q", tt.opts, p, tt.want)
			}
		})
	}
}

func TestNewRingHashVirtualNodes(t *testing.T) {
	t.Parallel()
	r, err := NewRingHash(0)
	if err != nil || r.VirtualNodes() != DefaultVirtualNodes {
		t.Fatalf("NewRingHash(0) = %v, %v; want %d virtual nodes", r, err, DefaultVirtualNodes)
	}
	r, err = NewRingHash(7)
	if err != nil {
		t.Fatal(err)
	}
	p := r.NewPicker(testHosts(1, 3)).(*ringPicker)
	if got := len(p.hashes); got != 7*(1+3) {
		t.Fatalf("ring size %d, want %d", got, 28)
	}
}

func TestZeroValuePolicies(t *testing.T) {
	t.Parallel()
	for _, pol := range []Policy{&RoundRobin{}, &Random{}, &LeastRequest{}, &P2CEWMA{}, &RingHash{}} {
		p := pol.NewPicker(equalHosts(3))
		if i := p.Pick(7, -1); i < 0 || i > 2 {
			t.Errorf("%T zero value: Pick = %d", pol, i)
		}
	}
}

func TestPickEmpty(t *testing.T) {
	t.Parallel()
	for _, np := range allPolicies(t) {
		t.Run(np.name, func(t *testing.T) {
			t.Parallel()
			for _, hosts := range [][]*Host{nil, {}} {
				p := np.policy.NewPicker(hosts)
				for _, ex := range []int{-1, 0, 3} {
					if got := p.Pick(42, ex); got != -1 {
						t.Fatalf("Pick on empty set (exclude %d) = %d, want -1", ex, got)
					}
				}
			}
		})
	}
}

func TestPickSingleHost(t *testing.T) {
	t.Parallel()
	for _, np := range allPolicies(t) {
		t.Run(np.name, func(t *testing.T) {
			t.Parallel()
			hosts := equalHosts(1)
			p := np.policy.NewPicker(hosts)
			for _, down := range []bool{false, true} {
				hosts[0].SetDown(down)
				for _, ex := range []int{-1, 0} {
					if got := p.Pick(rand.Uint64(), ex); got != 0 {
						t.Fatalf("down=%v exclude=%d: Pick = %d, want 0", down, ex, got)
					}
				}
			}
		})
	}
}

// TestNilHostNeverPicked: a nil entry is a caller bug, but it must not crash the request path.
func TestNilHostNeverPicked(t *testing.T) {
	t.Parallel()
	for _, np := range allPolicies(t) {
		t.Run(np.name, func(t *testing.T) {
			t.Parallel()
			hosts := equalHosts(3)
			hosts[1] = nil
			p := np.policy.NewPicker(hosts)
			counts := countPicks(t, p, 3, 2000, -1)
			if counts[1] != 0 {
				t.Fatalf("nil host picked %d times", counts[1])
			}
		})
	}
}

func TestWeightDistribution(t *testing.T) {
	t.Parallel()
	weights := []int{1, 2, 3, 4}
	const picks = 100_000
	tests := []struct {
		name string
		// maxDev is the allowed |observed share - weight share|.
		maxDev float64
		// loaded: Begin on every pick without End, so the load-aware policies spread by
		// weight through in-flight counts (at rest they would always take the heaviest).
		loaded bool
		picks  int
	}{
		{name: RoundRobinName, maxDev: 0, picks: picks}, // exact: picks is a whole number of cycles
		{name: RandomName, maxDev: 0.01, picks: picks},
		{name: RingHashName, maxDev: 0.04, picks: picks},
		{name: LeastRequestName, maxDev: 0.005, loaded: true, picks: 10_000},
		{name: P2CEWMAName, maxDev: 0.005, loaded: true, picks: 10_000},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			pol, err := New(Options{Policy: tt.name})
			if err != nil {
				t.Fatal(err)
			}
			hosts := testHosts(weights...)
			p := pol.NewPicker(hosts)
			counts := make([]int, len(hosts))
			for k := range tt.picks {
				// Deterministic keys for ring_hash so its (ring-dependent) spread is stable.
				i := p.Pick(HashString("key-"+itoa(k)), -1)
				counts[i]++
				if tt.loaded {
					hosts[i].Begin()
				}
			}
			for i, w := range weights {
				want := float64(w) / 10
				got := float64(counts[i]) / float64(tt.picks)
				if math.Abs(got-want) > tt.maxDev+1e-12 {
					t.Errorf("host %d (weight %d): share %.4f, want %.4f ± %.4f (counts %v)",
						i, w, got, want, tt.maxDev, counts)
				}
			}
		})
	}
}

func itoa(k int) string {
	var b [20]byte
	i := len(b)
	for {
		i--
		b[i] = byte('0' + k%10)
		k /= 10
		if k == 0 {
			return string(b[i:])
		}
	}
}

// TestRoundRobinSmooth checks the schedule is interleaved, not blocky: over every window of
// every length, each host's count stays within 2 of its weighted share.
func TestRoundRobinSmooth(t *testing.T) {
	t.Parallel()
	tests := [][]int{{1, 1, 1}, {5, 1}, {3, 2, 1}, {1, 2, 3, 4}, {7, 5, 3, 1, 1}, {100, 1, 37}, {4, 6}}
	for _, ws := range tests {
		t.Run(itoa(len(ws))+"hosts", func(t *testing.T) {
			t.Parallel()
			s := schedule(reducedWeights(testHosts(ws...)))
			red := reducedWeights(testHosts(ws...))
			total := 0
			for _, w := range red {
				total += w
			}
			if len(s) != total {
				t.Fatalf("schedule length %d, want %d", len(s), total)
			}
			for L := 1; L <= len(s); L++ {
				for start := range s {
					c := make([]int, len(ws))
					for k := range L {
						c[s[(start+k)%len(s)]]++
					}
					for i, w := range red {
						if d := math.Abs(float64(c[i]) - float64(L*w)/float64(total)); d >= 2 {
							t.Fatalf("weights %v: window %d@%d gives host %d %d turns, want %.1f",
								ws, L, start, i, c[i], float64(L*w)/float64(total))
						}
					}
				}
			}
		})
	}
	// Equal weights are a plain rotation: any n consecutive picks hit every host once.
	p := NewRoundRobin().NewPicker(equalHosts(4))
	for range 10 {
		seen := make([]bool, 4)
		for range 4 {
			seen[p.Pick(0, -1)] = true
		}
		for i, ok := range seen {
			if !ok {
				t.Fatalf("host %d missing from a window of 4 picks", i)
			}
		}
	}
}

func TestReducedWeights(t *testing.T) {
	t.Parallel()
	tests := []struct {
		in   []int
		want []int
	}{
		{in: []int{2, 4, 6}, want: []int{1, 2, 3}},
		{in: []int{0, -3, 1}, want: []int{1, 1, 1}},
		{in: []int{maxWeight * 4, 1}, want: []int{maxWeight - 1, 1}},
	}
	for _, tt := range tests {
		got := reducedWeights(testHosts(tt.in...))
		for i := range got {
			if got[i] != tt.want[i] {
				t.Errorf("reducedWeights(%v) = %v, want %v", tt.in, got, tt.want)
				break
			}
		}
	}
}

func TestDownSkipped(t *testing.T) {
	t.Parallel()
	for _, np := range allPolicies(t) {
		t.Run(np.name, func(t *testing.T) {
			t.Parallel()
			hosts := testHosts(1, 5, 1, 5, 1)
			p := np.policy.NewPicker(hosts)
			markDown(hosts, 1, 3)
			counts := countPicks(t, p, len(hosts), 6000, -1)
			for _, i := range []int{1, 3} {
				if counts[i] != 0 {
					t.Errorf("down host %d picked %d times (%v)", i, counts[i], counts)
				}
			}
			for _, i := range []int{0, 2, 4} {
				if counts[i] < 1000 {
					t.Errorf("up host %d picked only %d of 6000 times (%v)", i, counts[i], counts)
				}
			}
			// Recovery needs no new picker: Down is read on every Pick.
			hosts[1].SetDown(false)
			if c := countPicks(t, p, len(hosts), 6000, -1); c[1] == 0 {
				t.Errorf("recovered host 1 never picked (%v)", c)
			}
		})
	}
}

func TestAllDownPanicMode(t *testing.T) {
	t.Parallel()
	for _, np := range allPolicies(t) {
		t.Run(np.name, func(t *testing.T) {
			t.Parallel()
			hosts := equalHosts(4)
			p := np.policy.NewPicker(hosts)
			before := make([]int, 500)
			for k := range before {
				before[k] = p.Pick(uint64(k)*0x9e3779b97f4a7c15, -1)
			}
			markDown(hosts, 0, 1, 2, 3)
			counts := countPicks(t, p, len(hosts), 4000, -1)
			for i, c := range counts {
				if c < 500 {
					t.Errorf("panic mode: host %d picked %d of 4000 times, want an even spread (%v)", i, c, counts)
				}
			}
			if np.name == RingHashName {
				// Panic mode must keep the key→host mapping, or a cluster-wide health blip
				// would reshuffle every session.
				for k, want := range before {
					if got := p.Pick(uint64(k)*0x9e3779b97f4a7c15, -1); got != want {
						t.Fatalf("key %d maps to %d in panic mode, %d normally", k, got, want)
					}
				}
			}
		})
	}
}

func TestExclude(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		down    []int
		exclude int
		// never must not be returned; only, if >= 0, must be the only index returned.
		never []int
		only  int
	}{
		{name: "all up", exclude: 2, never: []int{2}, only: -1},
		{name: "some down", down: []int{0, 1}, exclude: 2, never: []int{0, 1, 2}, only: -1},
		{name: "exclude is last up", down: []int{0, 1, 3}, exclude: 2, only: 2},
		{name: "all down", down: []int{0, 1, 2, 3}, exclude: 2, never: []int{2}, only: -1},
		{name: "excluded down, one up", down: []int{0, 2, 3}, exclude: 2, only: 1},
		{name: "out of range", exclude: 17, only: -1},
		{name: "negative", exclude: -5, only: -1},
	}
	for _, np := range allPolicies(t) {
		for _, tt := range tests {
			t.Run(np.name+"/"+tt.name, func(t *testing.T) {
				t.Parallel()
				hosts := equalHosts(4)
				p := np.policy.NewPicker(hosts)
				markDown(hosts, tt.down...)
				counts := countPicks(t, p, len(hosts), 2000, tt.exclude)
				for _, i := range tt.never {
					if counts[i] != 0 {
						t.Errorf("host %d picked %d times (%v)", i, counts[i], counts)
					}
				}
				if tt.only >= 0 && counts[tt.only] != 2000 {
					t.Errorf("want only host %d, got %v", tt.only, counts)
				}
			})
		}
	}
}

func TestLeastRequestPrefersIdle(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name     string
		weights  []int
		inflight []int
		// want is the expected share of each host, within tol.
		want []float64
		tol  float64
	}{
		{name: "two hosts", weights: []int{1, 1}, inflight: []int{5, 0}, want: []float64{0, 1}},
		{name: "weighted", weights: []int{3, 1}, inflight: []int{2, 1}, want: []float64{1, 0}},
		{name: "weighted busy", weights: []int{3, 1}, inflight: []int{9, 1}, want: []float64{0, 1}},
		// One idle host among five busy ones is in a random pair 2/5 of the time and always
		// wins it; each busy host wins only against... nobody but other busy hosts.
		{
			name: "one idle of five", weights: []int{1, 1, 1, 1, 1}, inflight: []int{10, 10, 0, 10, 10},
			want: []float64{0.15, 0.15, 0.4, 0.15, 0.15}, tol: 0.03,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			hosts := testHosts(tt.weights...)
			for i, n := range tt.inflight {
				for range n {
					hosts[i].Begin()
				}
			}
			p := NewLeastRequest().NewPicker(hosts)
			const n = 20_000
			counts := countPicks(t, p, len(hosts), n, -1)
			for i, want := range tt.want {
				if got := float64(counts[i]) / n; math.Abs(got-want) > tt.tol {
					t.Errorf("host %d share %.3f, want %.3f ± %.3f (%v)", i, got, want, tt.tol, counts)
				}
			}
		})
	}
}

func TestP2CEWMAPrefersFast(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name     string
		latency  []int // ms per sample; 0 = no sample
		inflight []int
		want     []float64
		tol      float64
	}{
		{name: "fast beats slow", latency: []int{10, 1}, inflight: []int{0, 0}, want: []float64{0, 1}},
		// 1ms × 21 in flight costs more than 10ms × 1.
		{name: "busy fast loses", latency: []int{10, 1}, inflight: []int{0, 20}, want: []float64{1, 0}},
		{name: "slightly busy fast wins", latency: []int{10, 1}, inflight: []int{0, 5}, want: []float64{0, 1}},
		// An unexplored host is tried rather than starved...
		{name: "unexplored preferred", latency: []int{1, 0}, inflight: []int{0, 0}, want: []float64{0, 1}},
		// ...but its in-flight requests limit how much it attracts before answering.
		{name: "unexplored busy", latency: []int{1, 0}, inflight: []int{0, 1}, want: []float64{1, 0}},
		{name: "none sampled is least request", latency: []int{0, 0}, inflight: []int{3, 1}, want: []float64{0, 1}},
		{
			name: "one fast of five", latency: []int{20, 20, 1, 20, 20}, inflight: make([]int, 5),
			want: []float64{0.15, 0.15, 0.4, 0.15, 0.15}, tol: 0.03,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			hosts := equalHosts(len(tt.latency))
			for i, ms := range tt.latency {
				if ms > 0 {
					sample(hosts[i], ms, 20)
				}
				for range tt.inflight[i] {
					hosts[i].Begin()
				}
			}
			p := NewP2CEWMA().NewPicker(hosts)
			const n = 20_000
			counts := countPicks(t, p, len(hosts), n, -1)
			for i, want := range tt.want {
				if got := float64(counts[i]) / n; math.Abs(got-want) > tt.tol {
					t.Errorf("host %d share %.3f, want %.3f ± %.3f (%v)", i, got, want, tt.tol, counts)
				}
			}
		})
	}
}

// TestP2CEWMAShedsSlowHost drives a closed loop: each pick's host answers with its latency,
// and the one that turns slow must lose most of its traffic.
func TestP2CEWMAShedsSlowHost(t *testing.T) {
	t.Parallel()
	hosts := equalHosts(4)
	latency := []int{2, 2, 2, 50}
	p := NewP2CEWMA().NewPicker(hosts)
	counts := make([]int, len(hosts))
	for range 4000 {
		i := p.Pick(0, -1)
		counts[i]++
		sample(hosts[i], latency[i], 1)
	}
	if share := float64(counts[3]) / 4000; share > 0.05 {
		t.Fatalf("slow host got %.1f%% of traffic (%v), want < 5%%", share*100, counts)
	}
}

func TestConcurrentPickBeginEnd(t *testing.T) {
	t.Parallel()
	for _, np := range allPolicies(t) {
		t.Run(np.name, func(t *testing.T) {
			t.Parallel()
			hosts := testHosts(1, 2, 3, 1, 2, 3, 1, 2)
			p := np.policy.NewPicker(hosts)
			stop := make(chan struct{})
			var flipper sync.WaitGroup
			flipper.Go(func() {
				for k := 0; ; k++ {
					select {
					case <-stop:
						return
					default:
					}
					h := hosts[k%len(hosts)]
					h.SetDown(!h.Down())
				}
			})
			var wg sync.WaitGroup
			for g := range 8 {
				wg.Go(func() {
					for k := range 5000 {
						ex := -1
						if k%3 == 0 {
							ex = g % len(hosts)
						}
						i := p.Pick(rand.Uint64(), ex)
						if i < 0 || i >= len(hosts) {
							t.Errorf("Pick = %d", i)
							return
						}
						hosts[i].Begin()
						hosts[i].End(time.Duration(1+k%7)*time.Millisecond, k%11 == 0)
					}
				})
			}
			wg.Wait()
			close(stop)
			flipper.Wait()
			var total uint64
			for i, h := range hosts {
				if n := h.InFlight(); n != 0 {
					t.Errorf("host %d in-flight %d after all requests ended", i, n)
				}
				total += h.Requests.Load()
			}
			if total != 8*5000 {
				t.Errorf("recorded %d requests, want %d", total, 8*5000)
			}
		})
	}
}

func TestPickAllocs(t *testing.T) {
	// Not parallel: AllocsPerRun measures process-wide allocations.
	scenarios := []struct {
		name    string
		down    []int
		exclude int
	}{
		{name: "fast", exclude: -1},
		{name: "exclude", exclude: 3},
		{name: "some down", down: []int{0, 1, 2, 3, 4, 5}, exclude: 6},
		{name: "exclude only up", down: []int{0, 1, 2, 3, 4, 5, 7}, exclude: 6},
		{name: "all down", down: []int{0, 1, 2, 3, 4, 5, 6, 7}, exclude: 2},
	}
	for _, np := range allPolicies(t) {
		for _, sc := range scenarios {
			t.Run(np.name+"/"+sc.name, func(t *testing.T) {
				hosts := testHosts(1, 2, 3, 4, 1, 2, 3, 4)
				for i := range hosts {
					sample(hosts[i], i+1, 3)
				}
				markDown(hosts, sc.down...)
				p := np.policy.NewPicker(hosts)
				var key uint64
				allocs := testing.AllocsPerRun(2000, func() {
					key += 0x9e3779b97f4a7c15
					_ = p.Pick(key, sc.exclude)
				})
				if allocs != 0 {
					t.Fatalf("Pick allocates %.1f times per call, want 0", allocs)
				}
			})
		}
	}
}

func BenchmarkPick(b *testing.B) {
	for _, np := range allPolicies(b) {
		b.Run(np.name, func(b *testing.B) {
			hosts := equalHosts(16)
			p := np.policy.NewPicker(hosts)
			b.ReportAllocs()
			var key uint64
			for b.Loop() {
				key += 0x9e3779b97f4a7c15
				_ = p.Pick(key, -1)
			}
		})
	}
}

// BenchmarkPickParallel shows contention: round_robin shares one counter, the others share
// nothing but the hosts' cache lines.
func BenchmarkPickParallel(b *testing.B) {
	for _, np := range allPolicies(b) {
		b.Run(np.name, func(b *testing.B) {
			hosts := equalHosts(16)
			p := np.policy.NewPicker(hosts)
			b.ReportAllocs()
			b.RunParallel(func(pb *testing.PB) {
				key := rand.Uint64()
				for pb.Next() {
					key += 0x9e3779b97f4a7c15
					i := p.Pick(key, -1)
					hosts[i].Begin()
					hosts[i].End(time.Millisecond, false)
				}
			})
		})
	}
}
