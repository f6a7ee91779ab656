package route

import (
	"time"
)

// Options is everything needed to compile one route table. The edge assembly builds it from conf.
type Options struct {
	Routes []Spec
}

// Spec is one route as the route package sees it (already validated by conf, but New re-checks
// what it compiles, e.g. regexes, and returns an error naming the route).
type Spec struct {
	Name     string
	Key      int // caller's identifier, returned untouched as Route.Key (e.g. index into per-config state)
	Priority int // higher first; ties keep the order of Options.Routes

	Hosts      []string // exact "api.example.com" or wildcard "*.example.com"; lower-case; empty = any
	Path       string   // exact
	PathPrefix string   // segment-agnostic prefix ("/api" matches "/api" and "/apix" and "/api/x")
	PathRegex  string   // RE2, anchored to the whole path
	Methods    []string // upper-case; empty = any
	Headers    []ValueMatch
	Query      []ValueMatch

	RewritePrefix string // replaces PathPrefix in the forwarded path when set ("" = no rewrite)
	Targets       []Target
	Timeout       time.Duration
}

// ValueMatch matches a header or query parameter: exactly one of Exact, Regex, Present is used.
type ValueMatch struct {
	Name    string
	Exact   string
	Regex   string // RE2, anchored
	Present *bool  // true: must be present; false: must be absent
}

// Target is one weighted destination service of a route.
type Target struct {
	Service string
	Weight  int
}
