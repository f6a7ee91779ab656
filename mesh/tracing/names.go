package tracing

import "sync/atomic"

// Span names and the method attribute are strings a recorded span keeps until it is exported,
// so building them per request ("GET " + route) would allocate on every sampled request.
// SpanNames builds them once per route or cluster for the standard methods; only another
// method costs a concatenation.

// standardMethods are the methods SpanNames and Method know without allocating.
var standardMethods = [...]string{"GET", "HEAD", "POST", "PUT", "DELETE", "CONNECT", "OPTIONS", "TRACE", "PATCH"}

// Method is m as a string: a constant for a standard method, a copy otherwise.
func Method(m []byte) string {
	if i := methodIndex(m); i >= 0 {
		return standardMethods[i]
	}
	return string(m)
}

func methodIndex(m []byte) int {
	for i, s := range standardMethods {
		if string(m) == s { // compiled without a conversion
			return i
		}
	}
	return -1
}

// SpanNames are the names "METHOD suffix" of one route's or cluster's spans, built on the
// first span: a process with tracing off, or a route never sampled, holds only the suffix (at
// 1000 services, the routes' and clusters' names were 0.6 MB of live heap). A nil *SpanNames
// names spans by method alone.
type SpanNames struct {
	suffix string
	names  atomic.Pointer[[len(standardMethods)]string]
}

// NewSpanNames returns the names "METHOD suffix" (the method alone when suffix is empty).
func NewSpanNames(suffix string) *SpanNames { return &SpanNames{suffix: suffix} }

// For is the span name for method m.
func (n *SpanNames) For(m []byte) string {
	i := methodIndex(m)
	switch {
	case n == nil || n.suffix == "":
		if i >= 0 {
			return standardMethods[i]
		}
		return string(m)
	case i < 0:
		return string(m) + " " + n.suffix
	}
	names := n.names.Load()
	if names == nil {
		built := new([len(standardMethods)]string)
		for j, sm := range standardMethods {
			built[j] = sm + " " + n.suffix
		}
		// Two first spans racing build the same names; either array serves.
		n.names.CompareAndSwap(nil, built)
		names = n.names.Load()
	}
	return names[i]
}
