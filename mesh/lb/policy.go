package lb

import (
	"errors"
	"fmt"
	"strings"
)

// Policy names as they appear in services.<name>.load_balancer.policy.
const (
	RoundRobinName   = "round_robin"
	RandomName       = "random"
	LeastRequestName = "least_request"
	P2CEWMAName      = "p2c_ewma"
	RingHashName     = "ring_hash"
)

// ErrUnknownPolicy is returned by New for a policy name it does not know.
var ErrUnknownPolicy = errors.New("unknown load balancing policy")

// ErrInvalidOptions is returned for out-of-range options (for example a negative ring size).
var ErrInvalidOptions = errors.New("invalid load balancer options")

// Options configures New. The zero value selects round_robin.
type Options struct {
	// Policy is one of the *Name constants; empty means round_robin.
	Policy string
	// VirtualNodes is ring_hash's number of ring points per unit of host weight; 0 means
	// DefaultVirtualNodes. Ignored by the other policies.
	VirtualNodes int
}

// Names lists every policy name New accepts, default first. It returns a fresh slice so
// callers (validation, help text) may keep or modify it.
func Names() []string {
	return []string{RoundRobinName, RandomName, LeastRequestName, P2CEWMAName, RingHashName}
}

// New maps a configured policy name to its Policy. It never panics; unknown names wrap
// ErrUnknownPolicy and bad numbers wrap ErrInvalidOptions.
func New(opts Options) (Policy, error) {
	switch opts.Policy {
	case "", RoundRobinName:
		return NewRoundRobin(), nil
	case RandomName:
		return NewRandom(), nil
	case LeastRequestName:
		return NewLeastRequest(), nil
	case P2CEWMAName:
		return NewP2CEWMA(), nil
	case RingHashName:
		r, err := NewRingHash(opts.VirtualNodes)
		if err != nil {
			return nil, err // not r: a typed nil would make the Policy non-nil
		}
		return r, nil
	default:
		return nil, fmt.Errorf("lb: %w %q (want one of %s)", ErrUnknownPolicy, opts.Policy,
			strings.Join(Names(), ", "))
	}
}

// Compile-time guards: every policy satisfies Policy.
var (
	_ Policy = (*RoundRobin)(nil)
	_ Policy = (*Random)(nil)
	_ Policy = (*LeastRequest)(nil)
	_ Policy = (*P2CEWMA)(nil)
	_ Policy = (*RingHash)(nil)
)
