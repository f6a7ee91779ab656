package tracing

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

// SpanNames are the names "METHOD suffix" of one route's or cluster's spans. The zero value
// names spans by method alone.
type SpanNames struct {
	suffix string
	names  [len(standardMethods)]string
}

// NewSpanNames prepares the names "METHOD suffix" (the method alone when suffix is empty).
func NewSpanNames(suffix string) SpanNames {
	n := SpanNames{suffix: suffix}
	for i, m := range standardMethods {
		n.names[i] = m
		if suffix != "" {
			n.names[i] = m + " " + suffix
		}
	}
	return n
}

// For is the span name for method m.
func (n *SpanNames) For(m []byte) string {
	if i := methodIndex(m); i >= 0 {
		if n.names[i] == "" { // the zero value
			return standardMethods[i]
		}
		return n.names[i]
	}
	if n.suffix == "" {
		return string(m)
	}
	return string(m) + " " + n.suffix
}
