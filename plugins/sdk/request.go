package sdk

// Header is one header line; a header with several values appears once per value.
type Header struct {
	Name  string
	Value string
}

// Identity is who is calling, as far as the host knows before the plugin runs.
type Identity struct {
	// Service is the Connect service name of a mesh caller, from its mTLS certificate.
	Service string
	// SPIFFEID is that caller's SPIFFE ID.
	SPIFFEID string
	// Consumer is the consumer an earlier filter or plugin authenticated.
	Consumer string
}

// Request is what the request phase sees. Only the parts the plugin asked for in
// Capabilities.Request are filled; the others are empty.
type Request struct {
	RequestID string
	// Route is the name of the route that matched.
	Route  string
	Method string
	// Path is the request path without the query string.
	Path string
	// Query is the raw query string without the '?'.
	Query string
	// Headers are the requested headers in request order.
	Headers []Header
	Body    []byte
	// BodyTruncated is set when the body was longer than what was sent: a plugin that
	// verifies a body must not trust a prefix.
	BodyTruncated bool
	Peer          Identity
	ClientIP      string
}

// Header returns the first value of the named header (case-insensitive), or "".
func (r *Request) Header(name string) string { return first(r.Headers, name) }

// Values returns every value of the named header (case-insensitive).
func (r *Request) Values(name string) []string { return values(r.Headers, name) }

// Response is what the response phase sees.
type Response struct {
	RequestID string
	Route     string
	Status    int
	// Headers are the requested response headers.
	Headers []Header
}

// Header returns the first value of the named header (case-insensitive), or "".
func (r *Response) Header(name string) string { return first(r.Headers, name) }

// Values returns every value of the named header (case-insensitive).
func (r *Response) Values(name string) []string { return values(r.Headers, name) }

func first(hs []Header, name string) string {
	for i := range hs {
		if equalFold(hs[i].Name, name) {
			return hs[i].Value
		}
	}
	return ""
}

func values(hs []Header, name string) []string {
	var vs []string
	for i := range hs {
		if equalFold(hs[i].Name, name) {
			vs = append(vs, hs[i].Value)
		}
	}
	return vs
}

// equalFold is ASCII case-insensitive equality: header names are ASCII tokens, and
// strings.EqualFold's Unicode folding would make "K" (Kelvin sign) equal "k".
func equalFold(a, b string) bool {
	if len(a) != len(b) {
		return false
	}
	for i := 0; i < len(a); i++ {
		ca, cb := a[i], b[i]
		if ca == cb {
			continue
		}
		if 'A' <= ca && ca <= 'Z' {
			ca += 'a' - 'A'
		}
		if 'A' <= cb && cb <= 'Z' {
			cb += 'a' - 'A'
		}
		if ca != cb {
			return false
		}
	}
	return true
}
