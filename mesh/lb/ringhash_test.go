package lb

import (
	"fmt"
	"math/rand/v2"
	"testing"
)

func TestHashKey(t *testing.T) {
	t.Parallel()
	// Published xxhash64 (seed 0) values: a changed hash would remap every session in a
	// rolling upgrade, so pin them.
	tests := []struct {
		in   string
		want uint64
	}{
		{in: "", want: 0xef46db3751d8e999},
		{in: "abc", want: 0x44bc2cf5ad770999},
	}
	for _, tt := range tests {
		if got := HashKey([]byte(tt.in)); got != tt.want {
			t.Errorf("HashKey(%q) = %#x, want %#x", tt.in, got, tt.want)
		}
		if got := HashString(tt.in); got != tt.want {
			t.Errorf("HashString(%q) = %#x, want %#x", tt.in, got, tt.want)
		}
	}
}

func TestHashStringAllocs(t *testing.T) {
	// Not parallel: AllocsPerRun measures process-wide allocations.
	if n := testing.AllocsPerRun(100, func() { _ = HashString("session=abc123") }); n != 0 {
		t.Errorf("HashString allocates %.1f times", n)
	}
}

// TestRingHashPinned fixes the key→host mapping of a small ring. It can only change if the
// point positions change, which would move sticky sessions across meshgate versions.
func TestRingHashPinned(t *testing.T) {
	t.Parallel()
	hosts := equalHosts(5)
	p := mustRing(t, 0).NewPicker(hosts)
	want := map[string]string{
		"user-1":  "10.0.0.2:8080",
		"user-2":  "10.0.0.1:8080",
		"user-3":  "10.0.0.4:8080",
		"user-42": "10.0.0.3:8080",
		"alice":   "10.0.0.1:8080",
	}
	for key, addr := range want {
		if got := hosts[p.Pick(HashString(key), -1)].Address; got != addr {
			t.Errorf("key %q → %s, want %s", key, got, addr)
		}
	}
}

func TestRingHashOrderIndependent(t *testing.T) {
	t.Parallel()
	hosts := testHosts(1, 2, 3, 1, 1, 2)
	shuffled := append([]*Host(nil), hosts...)
	rand.Shuffle(len(shuffled), func(i, j int) { shuffled[i], shuffled[j] = shuffled[j], shuffled[i] })
	// A second policy instance stands in for another meshgate process.
	a := mustRing(t, 0).NewPicker(hosts)
	b := mustRing(t, 0).NewPicker(shuffled)
	for k := range 5000 {
		key := HashString(fmt.Sprint("key-", k))
		if ga, gb := hosts[a.Pick(key, -1)].Address, shuffled[b.Pick(key, -1)].Address; ga != gb {
			t.Fatalf("key %d → %s in one order, %s in another", k, ga, gb)
		}
	}
}

func TestRingHashStability(t *testing.T) {
	t.Parallel()
	const keys = 10_000
	base := equalHosts(10)
	removed := 3
	without := append(append([]*Host(nil), base[:removed]...), base[removed+1:]...)
	added := append(append([]*Host(nil), base...), &Host{Address: "10.0.0.11:8080", Weight: 1})

	mapping := func(hosts []*Host, exclude int) []string {
		p := mustRing(t, 0).NewPicker(hosts)
		out := make([]string, keys)
		for k := range out {
			out[k] = hosts[p.Pick(HashString(fmt.Sprint("key-", k)), exclude)].Address
		}
		return out
	}
	before := mapping(base, -1)

	tests := []struct {
		name  string
		after []string
		// movedOK says whether a key may move from host `from` to host `to`.
		movedOK func(from, to string) bool
	}{
		{
			name:    "remove one of ten",
			after:   mapping(without, -1),
			movedOK: func(from, _ string) bool { return from == base[removed].Address },
		},
		{
			name:    "add an eleventh",
			after:   mapping(added, -1),
			movedOK: func(_, to string) bool { return to == "10.0.0.11:8080" },
		},
		{
			// Excluding a host must behave exactly like removing it, so a retry lands where
			// the key would go if that host were gone.
			name:    "exclude one",
			after:   mapping(base, removed),
			movedOK: func(from, _ string) bool { return from == base[removed].Address },
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			moved := 0
			for k := range keys {
				if before[k] == tt.after[k] {
					continue
				}
				moved++
				if !tt.movedOK(before[k], tt.after[k]) {
					t.Fatalf("key %d moved %s → %s, which should not happen", k, before[k], tt.after[k])
				}
			}
			if frac := float64(moved) / keys; frac >= 0.15 || moved == 0 {
				t.Fatalf("%.1f%% of keys moved, want (0, 15%%)", frac*100)
			}
		})
	}

	// Marking a host Down is the same as removing it, and recovery restores every key.
	t.Run("down equals removed", func(t *testing.T) {
		t.Parallel()
		hosts := equalHosts(10)
		p := mustRing(t, 0).NewPicker(hosts)
		want := mapping(without, -1)
		hosts[removed].SetDown(true)
		for k := range keys {
			if got := hosts[p.Pick(HashString(fmt.Sprint("key-", k)), -1)].Address; got != want[k] {
				t.Fatalf("key %d → %s with host Down, %s with host removed", k, got, want[k])
			}
		}
		hosts[removed].SetDown(false)
		for k := range keys {
			if got := hosts[p.Pick(HashString(fmt.Sprint("key-", k)), -1)].Address; got != before[k] {
				t.Fatalf("key %d → %s after recovery, %s before", k, got, before[k])
			}
		}
	})
}

func TestRingHashSizeBounded(t *testing.T) {
	t.Parallel()
	const limit = 20_000
	hosts := testHosts(maxWeight, maxWeight, 1)
	r := mustRing(t, MaxVirtualNodes)
	r.maxPoints = limit
	p := r.NewPicker(hosts).(*ringPicker)
	if n := len(p.hashes); n > limit+len(hosts) || n < limit*9/10 {
		t.Fatalf("ring has %d points, want about %d", n, limit)
	}
	counts := make([]int, len(hosts))
	for _, o := range p.owner {
		counts[o]++
	}
	if counts[2] < 1 || counts[0] < limit*4/10 {
		t.Fatalf("scaled ring points per host %v: every host needs ≥ 1, weights kept", counts)
	}
}

func mustRing(tb testing.TB, vnodes int) *RingHash {
	tb.Helper()
	r, err := NewRingHash(vnodes)
	if err != nil {
		tb.Fatal(err)
	}
	return r
}

func BenchmarkRingHashNewPicker(b *testing.B) {
	for _, n := range []int{10, 100, 1000} {
		b.Run(itoa(n)+"hosts", func(b *testing.B) {
			hosts := equalHosts(n)
			r := mustRing(b, 0)
			b.ReportAllocs()
			for b.Loop() {
				_ = r.NewPicker(hosts)
			}
		})
	}
}
