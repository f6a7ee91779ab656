package sdk

import "context"

// Plugin is what every plugin implements: it says what it is and what it needs. What it does
// comes from the optional interfaces below.
type Plugin interface {
	// Describe may be called again after each Configure, so what a plugin needs can depend
	// on its configuration (an auth plugin asks for the header it was told to read).
	Describe() Capabilities
}

// Configurer is a plugin that takes configuration: config is the JSON form of what the user
// wrote under the plugin's `config:` key (empty when nothing was written). An error rejects
// the configuration, is shown to the user, and must leave the previous configuration in force.
// A plugin that is not a Configurer accepts only an empty config.
type Configurer interface {
	Configure(config []byte) error
}

// RequestHandler is a plugin that takes part in the request phase: it runs before the request
// goes upstream and continues (with edits) or responds. r is the plugin's to read until it
// returns. An error is a failure of the plugin (the host applies its failure policy), not a
// way to deny: deny with [Respond].
type RequestHandler interface {
	OnRequest(ctx context.Context, r *Request) (Decision, error)
}

// ResponseHandler is a plugin that takes part in the response phase: it runs before the
// upstream's response goes back to the client and may edit its headers.
type ResponseHandler interface {
	OnResponse(ctx context.Context, r *Response) (ResponseMutation, error)
}

// Phase is a set of phases a plugin takes part in.
type Phase uint8

const (
	// PhaseRequest is OnRequest.
	PhaseRequest Phase = 1 << iota
	// PhaseResponse is OnResponse.
	PhaseResponse
)

// Body sizes a plugin may ask for.
const (
	// DefaultMaxBodyBytes is what a plugin that asks for the body without a size gets.
	DefaultMaxBodyBytes = 64 << 10
	// MaxBodyBytesLimit is the most a plugin can ask for: a call is one gRPC message, which
	// gRPC limits to 4 MiB by default, and the headers need room too. A larger request is
	// capped to it.
	MaxBodyBytesLimit = 3 << 20
)

// Capabilities say what a plugin is and which parts of a request it needs. The host sends
// only those parts: a plugin that needs no headers costs a few dozen bytes per call.
type Capabilities struct {
	// Name identifies the plugin in the host's logs and metrics; it must not be empty.
	Name    string
	Version string
	// Phases defaults (zero) to every phase whose handler interface the plugin implements; a
	// non-zero value narrows that set (e.g. only the phases the current configuration uses:
	// each phase costs one call per request). On the host side (Client.Describe) it is what
	// the plugin serves.
	Phases   Phase
	Request  RequestParts
	Response ResponseParts
	// CanDeny marks a plugin that may respond on its own (authentication, validation): when
	// it cannot be reached the host fails closed by default, since skipping an auth check
	// silently would let every request through.
	CanDeny bool
}

// RequestParts are the parts of a request the request phase needs.
type RequestParts struct {
	Headers HeaderSet
	// Body asks for up to MaxBodyBytes of the body (DefaultMaxBodyBytes when 0, at most
	// MaxBodyBytesLimit); the host may cap it lower. Request.BodyTruncated says when the body
	// was longer.
	Body         bool
	MaxBodyBytes int
	// Peer asks for the caller's identity (Request.Peer).
	Peer     bool
	ClientIP bool
	Query    bool
}

// ResponseParts are the parts of a response the response phase needs.
type ResponseParts struct {
	Headers HeaderSet
}

// HeaderSet selects headers: all of them, or the named ones (case-insensitive).
type HeaderSet struct {
	All   bool
	Names []string
}

// AllHeaders selects every header.
func AllHeaders() HeaderSet { return HeaderSet{All: true} }

// HeaderNames selects the named headers.
func HeaderNames(names ...string) HeaderSet { return HeaderSet{Names: names} }
