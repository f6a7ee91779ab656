package lb

import (
	"cmp"
	"fmt"
	"slices"
	"strconv"

	"github.com/cespare/xxhash/v2"
)

const (
	// DefaultVirtualNodes is ring_hash's ring points per unit of weight. About 100 keeps the
	// spread between hosts within roughly ±10-15% (Ketama's choice) at a few KiB per host.
	DefaultVirtualNodes = 100
	// MaxVirtualNodes bounds the per-weight ring points NewRingHash accepts.
	MaxVirtualNodes = 10000
	// maxRing bounds the whole ring (12 bytes per point, so 12 MiB). Larger rings are scaled
	// down proportionally, which only happens with very large weights × host counts.
	maxRing = 1 << 20
)

// HashKey hashes a request key (header value, cookie value, client IP) for Pick. It is
// xxhash64, which is seedless and stable, so every meshgate process (and every version that
// keeps this function) maps a key to the same ring position; hash/maphash is seeded per
// process and would break stickiness across a fleet. A request without a key (header or
// cookie absent) has no affinity to keep: pass a random value such as rand.Uint64() so such
// requests spread over the ring instead of all landing on the owner of one fixed hash.
func HashKey(b []byte) uint64 { return xxhash.Sum64(b) }

// HashString is HashKey for a string, without converting it to a byte slice.
func HashString(s string) uint64 { return xxhash.Sum64String(s) }

// RingHash is consistent hashing on a Ketama-style ring: requests with the same key go to the
// same host, and adding or removing one of N hosts moves only about 1/N of the keys. Use it for
// cache affinity or sticky sessions; it ignores load, so a hot key stays on one host.
type RingHash struct {
	vnodes    int
	maxPoints int // maxRing; a field so tests can exercise scaling on a small ring
}

// NewRingHash returns the ring_hash policy with virtualNodes ring points per unit of weight
// (0 means DefaultVirtualNodes).
func NewRingHash(virtualNodes int) (*RingHash, error) {
	if virtualNodes < 0 || virtualNodes > MaxVirtualNodes {
		return nil, fmt.Errorf("lb: ring_hash virtual nodes %d not in [0, %d]: %w",
			virtualNodes, MaxVirtualNodes, ErrInvalidOptions)
	}
	if virtualNodes == 0 {
		virtualNodes = DefaultVirtualNodes
	}
	return &RingHash{vnodes: virtualNodes, maxPoints: maxRing}, nil
}

// Name returns the configuration name of the policy.
func (*RingHash) Name() string { return RingHashName }

// VirtualNodes returns the ring points per unit of weight.
func (r *RingHash) VirtualNodes() int { return r.vnodes }

// NewPicker places weight × VirtualNodes points per host at xxhash64(Address + "#" + i).
// Positions depend only on the address, never on the host's index or on the other hosts, so
// the ring is identical in every process and a host set change only moves the keys whose
// nearest point was added or removed.
func (r *RingHash) NewPicker(hosts []*Host) Picker {
	if len(hosts) == 0 {
		return emptyPicker{}
	}
	hosts = snapshot(hosts)
	// A zero RingHash (not built by NewRingHash) gets the defaults rather than an empty ring.
	vnodes, limit := r.vnodes, r.maxPoints
	if vnodes <= 0 {
		vnodes = DefaultVirtualNodes
	}
	if limit <= 0 {
		limit = maxRing
	}
	counts := make([]int, len(hosts))
	total := 0
	for i, h := range hosts {
		counts[i] = weightOf(h) * vnodes
		total += counts[i]
	}
	if total > limit {
		// Scaling keeps each host's first points (i = 0, 1, …), so the ring that results is a
		// subset of the full one and stays mostly stable.
		for i := range counts {
			counts[i] = max(1, int(int64(counts[i])*int64(limit)/int64(total)))
		}
	}

	type point struct {
		hash uint64
		host int32
	}
	size := 0
	for _, c := range counts {
		size += c
	}
	points := make([]point, 0, size)
	var d xxhash.Digest
	var buf []byte
	for i, h := range hosts {
		buf = append(buf[:0], h.Address...)
		buf = append(buf, '#')
		prefix := len(buf)
		for k := range counts[i] {
			buf = strconv.AppendInt(buf[:prefix], int64(k), 10)
			d.Reset()
			_, _ = d.Write(buf) // Digest.Write never fails
			points = append(points, point{hash: d.Sum64(), host: int32(i)})
		}
	}
	// Ties (64-bit collisions, or duplicate addresses) are broken by address and then index,
	// so the order, and therefore the mapping, does not depend on map or goroutine order.
	slices.SortFunc(points, func(a, b point) int {
		if c := cmp.Compare(a.hash, b.hash); c != 0 {
			return c
		}
		if c := cmp.Compare(hosts[a.host].Address, hosts[b.host].Address); c != 0 {
			return c
		}
		return cmp.Compare(a.host, b.host)
	})
	p := &ringPicker{
		hosts:  hosts,
		hashes: make([]uint64, len(points)),
		owner:  make([]int32, len(points)),
	}
	for k, pt := range points {
		p.hashes[k] = pt.hash
		p.owner[k] = pt.host
	}
	return p
}

// ringPicker keeps hashes and owners in separate slices so the binary search touches only
// the hashes (8 bytes per point instead of 16 with padding).
type ringPicker struct {
	hosts  []*Host
	hashes []uint64
	owner  []int32
}

func (p *ringPicker) Pick(hash uint64, exclude int) int {
	if len(p.hosts) == 1 {
		return 0
	}
	pos := p.search(hash)
	i := int(p.owner[pos])
	if usable(p.hosts[i], i, exclude, false) {
		return i
	}
	var panicMode bool
	switch availabilityOf(p.hosts, exclude) {
	case availExcludeOnly:
		return exclude
	case availPanic:
		panicMode = true
	}
	// Walking clockwise to the next usable owner gives exactly the host the key would map to
	// if the skipped hosts were removed from the ring, so marking a host Down moves only its
	// own keys, and they come back when it recovers.
	// Step 0 re-checks pos itself: in panic mode its host is usable after all.
	n := len(p.hashes)
	for step := range n {
		j := int(p.owner[(pos+step)%n])
		if usable(p.hosts[j], j, exclude, panicMode) {
			return j
		}
	}
	return i // Down flags changed during the walk
}

// search returns the first point at or after hash, wrapping past the end of the ring.
func (p *ringPicker) search(hash uint64) int {
	lo, hi := 0, len(p.hashes)
	for lo < hi {
		m := int(uint(lo+hi) >> 1)
		if p.hashes[m] < hash {
			lo = m + 1
		} else {
			hi = m
		}
	}
	if lo == len(p.hashes) {
		return 0
	}
	return lo
}
