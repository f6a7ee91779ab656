// Package promlazy owns metric children that are created on first use: a Counter or Observer
// here is bound to a vector and its label values up front, like a child from
// WithLabelValues, but the child itself — with its label pairs, exemplar slot and creation
// timestamp, about half a kilobyte — exists only once something is counted. At a thousand
// routes most of a route's series (the status classes it never answers, the histogram of a
// route never used) never move, and creating them all ahead took megabytes of live heap,
// twice that in the collector's headroom.
//
// The hot path is one atomic load and the child's own atomic add; the first use takes the
// vector's lock once. A series that never moved is absent from /metrics, as Prometheus
// recommends only for label values that are not known ahead: queries over these series use
// `or vector(0)` or sum over what exists.
package promlazy
