package discovery

import (
	"context"
	"errors"
	"slices"
	"strings"
)

// ErrUnknownService is returned by a Source that cannot resolve a service at all (as opposed to
// resolving it to an empty set).
var ErrUnknownService = errors.New("unknown service")

// Endpoint is one instance of a service.
type Endpoint struct {
	Address string // host:port
	Weight  int    // >= 1
}

// Set is the complete endpoint list of one service at one moment.
type Set struct {
	Service   string
	Endpoints []Endpoint
	// Source names where the set came from ("static", "consul", "snapshot") for /clusters and logs.
	Source string
}

// Equal reports whether two sets have the same endpoints in any order; consumers use it to skip
// no-op updates instead of rebuilding pickers.
func (s Set) Equal(o Set) bool {
	if s.Service != o.Service || len(s.Endpoints) != len(o.Endpoints) {
		return false
	}
	a, b := s.sorted(), o.sorted()
	return slices.Equal(a, b)
}

func (s Set) sorted() []Endpoint {
	out := slices.Clone(s.Endpoints)
	slices.SortFunc(out, func(x, y Endpoint) int { return strings.Compare(x.Address, y.Address) })
	return out
}

// Source resolves services to endpoint sets.
type Source interface {
	// Watch calls fn with the current set as soon as it is known and again on every change, from
	// a goroutine of the Source's, until ctx ends. fn must not block. Watch returns
	// ErrUnknownService (wrapped) when the source does not serve the service; otherwise it
	// returns nil immediately and delivers asynchronously.
	Watch(ctx context.Context, service string, fn func(Set)) error
}
