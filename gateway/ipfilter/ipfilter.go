package ipfilter

import (
	"cmp"
	"errors"
	"fmt"
	"net/netip"
	"slices"

	"github.com/meshgate/meshgate/gateway/filter"
)

// ReasonDenied is the reason code rendered in the error body and the access log.
const ReasonDenied = "ip_denied"

// ErrNoRules is returned by New when both lists are empty: a policy that admits everything is
// almost certainly a config mistake (a list under the wrong key).
var ErrNoRules = errors.New("ipfilter: allow and deny are both empty")

// Options configures one IP policy.
type Options struct {
	Name string // policy name, for error messages
	// Allow, when non-empty, admits only clients inside one of these prefixes.
	Allow []netip.Prefix
	// Deny rejects clients inside one of these prefixes, even when Allow also covers them.
	Deny []netip.Prefix
}

// Filter rejects requests by client address. Immutable after New; safe for concurrent use.
type Filter struct {
	allow, deny ranges
	hasAllow    bool
}

var _ filter.Filter = (*Filter)(nil)

// New validates the prefixes and builds the lookup tables.
func New(opts Options) (*Filter, error) {
	if len(opts.Allow) == 0 && len(opts.Deny) == 0 {
		return nil, fmt.Errorf("policy %q: %w", opts.Name, ErrNoRules)
	}
	allow, err := build(opts.Allow)
	if err != nil {
		return nil, fmt.Errorf("ipfilter: policy %q: allow: %w", opts.Name, err)
	}
	deny, err := build(opts.Deny)
	if err != nil {
		return nil, fmt.Errorf("ipfilter: policy %q: deny: %w", opts.Name, err)
	}
	return &Filter{allow: allow, deny: deny, hasAllow: len(opts.Allow) > 0}, nil
}

// Request admits or rejects r by r.ClientIP.
func (f *Filter) Request(r *filter.Request) filter.Verdict {
	if !f.Allowed(r.ClientIP) {
		return filter.Verdict{Status: 403, Reason: ReasonDenied}
	}
	return filter.Verdict{}
}

// Allowed reports whether addr passes the policy. An invalid (unknown) address passes only a
// deny-only policy: with an allow list we fail closed, because "not known to be allowed" must
// not mean allowed.
func (f *Filter) Allowed(addr netip.Addr) bool {
	if !addr.IsValid() {
		return !f.hasAllow
	}
	addr = addr.Unmap().WithZone("")
	if f.deny.contains(addr) {
		return false
	}
	return !f.hasAllow || f.allow.contains(addr)
}

// span is an inclusive address range of one family.
type span struct{ first, last netip.Addr }

// ranges holds sorted, non-overlapping spans per family.
type ranges struct{ v4, v6 []span }

func (rs *ranges) contains(a netip.Addr) bool {
	s := rs.v6
	if a.Is4() {
		s = rs.v4
	}
	// The last span whose first address is <= a is the only candidate, because spans are
	// sorted and disjoint.
	lo, hi := 0, len(s)
	for lo < hi {
		m := int(uint(lo+hi) >> 1)
		if s[m].first.Compare(a) <= 0 {
			lo = m + 1
		} else {
			hi = m
		}
	}
	return lo > 0 && a.Compare(s[lo-1].last) <= 0
}

func build(prefixes []netip.Prefix) (ranges, error) {
	var rs ranges
	for _, p := range prefixes {
		if !p.IsValid() {
			return ranges{}, fmt.Errorf("invalid prefix %q", p)
		}
		p = unmapPrefix(p).Masked()
		sp := span{first: p.Addr(), last: lastAddr(p)}
		if sp.first.Is4() {
			rs.v4 = append(rs.v4, sp)
		} else {
			rs.v6 = append(rs.v6, sp)
		}
	}
	rs.v4, rs.v6 = merge(rs.v4), merge(rs.v6)
	return rs, nil
}

// unmapPrefix turns ::ffff:a.b.c.d/n (n ≥ 96) into a.b.c.d/(n-96), so mapped and plain IPv4
// rules land in the same table as the unmapped client addresses they are compared with.
func unmapPrefix(p netip.Prefix) netip.Prefix {
	if p.Addr().Is4In6() && p.Bits() >= 96 {
		return netip.PrefixFrom(p.Addr().Unmap(), p.Bits()-96)
	}
	return p
}

// lastAddr is the highest address inside the masked prefix p.
func lastAddr(p netip.Prefix) netip.Addr {
	b := p.Addr().As16()
	bits := p.Bits()
	if p.Addr().Is4() {
		bits += 96
	}
	for i := range 16 {
		switch {
		case bits >= 8:
			bits -= 8
		case bits > 0:
			b[i] |= 0xff >> bits
			bits = 0
		default:
			b[i] = 0xff
		}
	}
	a := netip.AddrFrom16(b)
	if p.Addr().Is4() {
		a = a.Unmap()
	}
	return a
}

// merge sorts spans and joins overlapping or adjacent ones, so lookups can binary search.
func merge(s []span) []span {
	if len(s) == 0 {
		return nil
	}
	slices.SortFunc(s, func(a, b span) int { return cmp.Or(a.first.Compare(b.first), a.last.Compare(b.last)) })
	out := s[:1]
	for _, sp := range s[1:] {
		cur := &out[len(out)-1]
		next := cur.last.Next()
		if sp.first.Compare(cur.last) <= 0 || (next.IsValid() && sp.first == next) {
			if sp.last.Compare(cur.last) > 0 {
				cur.last = sp.last
			}
			continue
		}
		out = append(out, sp)
	}
	return slices.Clip(out)
}
