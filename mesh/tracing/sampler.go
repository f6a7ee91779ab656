package tracing

import "encoding/binary"

// Sampler decides whether a trace is recorded: a parent's decision is followed (a sampled
// parent: sample; an unsampled one: not), and a trace without one is sampled when its trace id
// falls under the ratio. The ratio is read from the id's last 8 bytes, as OpenTelemetry's
// TraceIdRatioBased sampler does, so every hop (meshgate or an OpenTelemetry SDK) with the same
// ratio decides alike for the same trace without talking to each other.
type Sampler struct {
	threshold uint64 // ids whose low 63 bits are below this are sampled
	all       bool
}

// NewSampler samples ratio (0..1, clamped) of the traces that arrive without a decision.
func NewSampler(ratio float64) Sampler {
	switch {
	case ratio >= 1:
		return Sampler{all: true}
	case ratio <= 0:
		return Sampler{}
	}
	return Sampler{threshold: uint64(ratio * (1 << 63))}
}

// ByRatio is the ratio's decision for id.
func (s Sampler) ByRatio(id TraceID) bool {
	if s.all {
		return true
	}
	return binary.BigEndian.Uint64(id[8:])>>1 < s.threshold
}

// Sample decides for a trace: with a parent whose decision is known (hasParent and not
// deferred) its flag, otherwise the ratio.
func (s Sampler) Sample(id TraceID, parent SpanContext, hasParent, deferred bool) bool {
	if hasParent && !deferred {
		return parent.Sampled
	}
	return s.ByRatio(id)
}
