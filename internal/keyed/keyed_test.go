package keyed

import (
	"strconv"
	"sync"
	"testing"
)

// A name gets one value however many goroutines ask at once, and All lists each value once,
// in creation order, while readers range over it concurrently (under -race).
func TestGetCreatesOncePerName(t *testing.T) {
	var s Set[int]
	created := 0
	var wg sync.WaitGroup
	stop := make(chan struct{})
	go func() {
		for {
			select {
			case <-stop:
				return
			default:
				for _, v := range s.All() {
					_ = *v
				}
			}
		}
	}()
	for g := range 8 {
		wg.Go(func() {
			for i := range 50 {
				v := s.Get(strconv.Itoa(i), func() *int { created++; n := i; return &n })
				if *v != i {
					t.Errorf("goroutine %d: Get(%d) = %d", g, i, *v)
				}
			}
		})
	}
	wg.Wait()
	close(stop)
	if created != 50 {
		t.Fatalf("created %d values for 50 names", created)
	}
	all := s.All()
	if len(all) != 50 {
		t.Fatalf("All has %d values, want 50", len(all))
	}
	seen := map[int]bool{}
	for _, v := range all {
		if seen[*v] {
			t.Fatalf("value %d listed twice", *v)
		}
		seen[*v] = true
	}
	var empty Set[int]
	if empty.All() != nil {
		t.Fatal("an empty set lists values")
	}
}
