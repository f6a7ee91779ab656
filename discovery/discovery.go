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

// Upstream protocols a source can report in Set.Protocol. They are spelled like the values of
// meshgate's services.<name>.protocol, so a consumer can use either without translating.
const (
	ProtocolHTTP1 = "http1"
	ProtocolHTTP2 = "http2"
	ProtocolGRPC  = "grpc"
)

// Set is the complete endpoint list of one service at one moment.
type Set struct {
	Service   string
	Endpoints []Endpoint
	// Source names where the set came from ("static", "consul", "snapshot") for /clusters and logs.
	Source string
	// Protocol is what the registry says the service speaks (ProtocolHTTP1, ProtocolHTTP2 or
	// ProtocolGRPC), or "" when it says nothing meshgate can use: the consumer then applies its
	// own default. It travels with the endpoints, rather than through a separate interface,
	// because both describe how to reach the service and arrive through the same callback: a
	// consumer never sees endpoints paired with a protocol from another moment. Only
	// discovery/consul fills it (from service-defaults); an explicit protocol in meshgate's
	// config takes precedence over it.
	Protocol string
}

// Equal reports whether two sets have the same endpoints in any order and the same protocol;
// consumers use it to skip no-op updates instead of rebuilding pickers (a protocol change needs
// a rebuild: it changes the transport). Source is not compared.
func (s Set) Equal(o Set) bool {
	if s.Service != o.Service || s.Protocol != o.Protocol || len(s.Endpoints) != len(o.Endpoints) {
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
