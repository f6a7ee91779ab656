package intentions

import (
	"context"
)

// Source fetches the intentions that apply to one destination service. It is the seam between
// the evaluator and Consul: the agent HTTP API today, perhaps xDS or a file tomorrow.
type Source interface {
	// Match returns the intentions whose destination matches destination, in any order, and
	// the index of that answer. With index > 0 it may block until the answer differs from the
	// one at index (Consul's blocking-query contract); a source that cannot block returns at
	// once with the same index and the Authorizer paces it.
	Match(ctx context.Context, destination string, index uint64) ([]Intention, uint64, error)
}

// HeaderGetter reads one request header; fasthttp's *RequestHeader satisfies it. Peek must
// return nil when the header is absent, so that Present and Invert can be told apart from an
// empty value.
type HeaderGetter interface {
	Peek(name string) []byte
}

// Action is what an intention or permission decides.
type Action string

// Actions. Anything other than ActionAllow is treated as deny, as Consul does.
const (
	ActionAllow Action = "allow"
	ActionDeny  Action = "deny"
)

// Wildcard matches any name or namespace in an intention.
const Wildcard = "*"

// defaultTenancy is the only namespace and partition Consul CE has; sources verified by
// mesh/identity are always in it.
const defaultTenancy = "default"

// Intention is one rule for a destination, as Consul's intention match endpoint returns it
// (a service-intentions config entry source, or a legacy intention). It is plain data, safe
// to persist and to show on the admin API.
type Intention struct {
	SourceName          string `json:"source_name"`
	SourceNamespace     string `json:"source_namespace,omitempty"`
	SourcePartition     string `json:"source_partition,omitempty"`
	SourcePeer          string `json:"source_peer,omitempty"`
	SourceSamenessGroup string `json:"source_sameness_group,omitempty"`
	// SourceType is "consul" (or empty); other types never match a mesh peer.
	SourceType           string `json:"source_type,omitempty"`
	DestinationName      string `json:"destination_name"`
	DestinationNamespace string `json:"destination_namespace,omitempty"`
	DestinationPartition string `json:"destination_partition,omitempty"`
	// Action is the L4 decision; it is ignored when Permissions is not empty (an L7 intention).
	Action      Action       `json:"action,omitempty"`
	Permissions []Permission `json:"permissions,omitempty"`
	// Precedence orders evaluation, higher first; Consul computes it from how exact the
	// source and destination names are (9 = exact → exact, 8 = * → exact, ...).
	Precedence int `json:"precedence"`
	// RequiresJWT marks an intention whose config entry demands a JWT; we cannot verify JWTs,
	// so it can only deny.
	RequiresJWT bool   `json:"requires_jwt,omitempty"`
	Description string `json:"description,omitempty"`
}

// Permission is one L7 rule of an intention; the first one whose HTTP match holds decides.
type Permission struct {
	Action Action `json:"action"`
	// HTTP nil matches every request.
	HTTP *HTTPMatch `json:"http,omitempty"`
	// RequiresJWT marks a permission that also demands a JWT (see Intention.RequiresJWT).
	RequiresJWT bool `json:"requires_jwt,omitempty"`
}

// HTTPMatch is the request part of a permission. All set fields must match.
type HTTPMatch struct {
	// At most one of the path fields is set. PathRegex is RE2 and must match the whole path.
	PathExact  string `json:"path_exact,omitempty"`
	PathPrefix string `json:"path_prefix,omitempty"`
	PathRegex  string `json:"path_regex,omitempty"`
	// Methods, when set, lists the methods (upper case, as Consul stores them) that match.
	Methods []string      `json:"methods,omitempty"`
	Header  []HeaderMatch `json:"header,omitempty"`
}

// HeaderMatch tests one request header. At most one of Present, Exact, Prefix, Suffix,
// Contains and Regex is set; one with none of them is ignored, as Consul ignores it.
type HeaderMatch struct {
	Name     string `json:"name"`
	Present  bool   `json:"present,omitempty"`
	Exact    string `json:"exact,omitempty"`
	Prefix   string `json:"prefix,omitempty"`
	Suffix   string `json:"suffix,omitempty"`
	Contains string `json:"contains,omitempty"`
	Regex    string `json:"regex,omitempty"`
	Invert   bool   `json:"invert,omitempty"`
	// IgnoreCase applies to Exact, Prefix, Suffix and Contains (newer Consul releases).
	IgnoreCase bool `json:"ignore_case,omitempty"`
}

// Decision is the outcome of Authorize. Intention names the rule that decided, for access
// logs and error details; it is one of a fixed set of strings built when the rules were
// compiled, so returning it costs nothing.
type Decision struct {
	Allow     bool
	Intention string
}

// Labels of decisions not made by an intention.
const (
	LabelNotLoaded    = "intentions not loaded"
	LabelDefaultAllow = "default allow"
	LabelDefaultDeny  = "default deny"
	// LabelOtherTenancy: the caller is in a partition or namespace other than default, which
	// this proxy does not support yet; it is denied whatever the intentions say.
	LabelOtherTenancy = "caller outside default/default"
	// LabelTooOld: the rules in use are older than the maximum age (Options.MaxAge).
	LabelTooOld = "intentions older than max_snapshot_age"
)
