package static

import (
	"context"
	"fmt"

	"github.com/meshgate/meshgate/discovery"
)

// Options lists the services this source knows.
type Options struct {
	Services map[string][]discovery.Endpoint
}

// Source is a discovery.Source over a fixed map.
type Source struct {
	sets map[string]discovery.Set
}

var _ discovery.Source = (*Source)(nil)

// New copies opts so later changes to the caller's map cannot race with readers.
func New(opts Options) (*Source, error) {
	sets := make(map[string]discovery.Set, len(opts.Services))
	for name, eps := range opts.Services {
		cp := make([]discovery.Endpoint, len(eps))
		for i, ep := range eps {
			if ep.Address == "" {
				return nil, fmt.Errorf("static service %q: endpoint %d has no address", name, i)
			}
			if ep.Weight <= 0 {
				ep.Weight = 1
			}
			cp[i] = ep
		}
		sets[name] = discovery.Set{Service: name, Endpoints: cp, Source: "static"}
	}
	return &Source{sets: sets}, nil
}

// Has reports whether service is listed.
func (s *Source) Has(service string) bool {
	_, ok := s.sets[service]
	return ok
}

// Watch delivers the fixed set once, synchronously: there is nothing to wait for, and callers
// get a populated cluster before the first request is served.
func (s *Source) Watch(_ context.Context, service string, fn func(discovery.Set)) error {
	set, ok := s.sets[service]
	if !ok {
		return fmt.Errorf("static: %q: %w", service, discovery.ErrUnknownService)
	}
	fn(set)
	return nil
}
