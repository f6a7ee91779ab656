package keyed

import (
	"sync"
	"sync/atomic"
)

// Set is the values by name. The zero value is ready to use. Values are never removed: a name
// that comes back gets its old value, so counters in it never go back.
type Set[T any] struct {
	mu     sync.Mutex
	byName map[string]*T
	list   atomic.Pointer[[]*T] // byName's values in creation order, replaced under mu
}

// Get returns name's value, calling create for it the first time.
func (s *Set[T]) Get(name string, create func() *T) *T {
	s.mu.Lock()
	defer s.mu.Unlock()
	if v := s.byName[name]; v != nil {
		return v
	}
	if s.byName == nil {
		s.byName = map[string]*T{}
	}
	v := create()
	s.byName[name] = v
	var old []*T
	if p := s.list.Load(); p != nil {
		old = *p
	}
	// A new slice: a scrape may be ranging over the old one.
	all := append(append(make([]*T, 0, len(old)+1), old...), v)
	s.list.Store(&all)
	return v
}

// All is every value, in creation order. The caller must not modify the slice.
func (s *Set[T]) All() []*T {
	if p := s.list.Load(); p != nil {
		return *p
	}
	return nil
}
