package host

import (
	"crypto/tls"
	"errors"
	"fmt"
	"strings"
	"unsafe"

	"github.com/valyala/fasthttp"

	"github.com/meshgate/meshgate/gateway/filter"
	pb "github.com/meshgate/meshgate/plugins/proto"
	"github.com/meshgate/meshgate/plugins/sdk"
)

// Verdict reasons, for the access log, metrics and the engine's error body.
const (
	// ReasonUnavailable: a closed-policy plugin could not answer (down, restarting, failed,
	// breaker open, invalid decision).
	ReasonUnavailable = "plugin_unavailable"
	// ReasonTimeout: a closed-policy plugin did not answer within its deadline.
	ReasonTimeout = "plugin_timeout"
	// ReasonResponse: the plugin answered the request itself (Verdict.Written).
	ReasonResponse = "plugin_response"
)

// errInvalidDecision is a decision the host refuses to apply: the plugin failed the call.
var errInvalidDecision = errors.New("invalid plugin decision")

// shape is what a plugin asked for, from its capabilities, in the form the hot path reads.
type shape struct {
	caps                    sdk.Capabilities
	onRequest, onResponse   bool
	reqHeaders, respHeaders headerSet
	body                    bool
	maxBody                 int
	peer, clientIP, query   bool
}

func newShape(c sdk.Capabilities) *shape {
	s := &shape{
		caps:        c,
		onRequest:   c.Phases&sdk.PhaseRequest != 0,
		onResponse:  c.Phases&sdk.PhaseResponse != 0,
		reqHeaders:  headerSet{all: c.Request.Headers.All, names: c.Request.Headers.Names},
		respHeaders: headerSet{all: c.Response.Headers.All, names: c.Response.Headers.Names},
		body:        c.Request.Body,
		peer:        c.Request.Peer,
		clientIP:    c.Request.ClientIP,
		query:       c.Request.Query,
	}
	if s.body {
		// The SDK caps what a plugin asks for; a plugin from another SDK may ask for more
		// than one gRPC message carries.
		s.maxBody = c.Request.MaxBodyBytes
		if s.maxBody <= 0 {
			s.maxBody = sdk.DefaultMaxBodyBytes
		}
		s.maxBody = min(s.maxBody, sdk.MaxBodyBytesLimit)
	}
	return s
}

func (s *shape) status() *CapabilitiesStatus {
	c := s.caps
	out := &CapabilitiesStatus{
		Name: c.Name, Version: c.Version, CanDeny: c.CanDeny, Phases: []string{},
		RequestHeaders: s.reqHeaders.status(), Body: s.body, MaxBodyBytes: s.maxBody,
		Peer: s.peer, ClientIP: s.clientIP, Query: s.query, ResponseHeaders: s.respHeaders.status(),
	}
	if s.onRequest {
		out.Phases = append(out.Phases, "request")
	}
	if s.onResponse {
		out.Phases = append(out.Phases, "response")
	}
	return out
}

// headerSet selects headers by name, case-insensitively.
type headerSet struct {
	all   bool
	names []string
}

func (h *headerSet) none() bool { return !h.all && len(h.names) == 0 }

func (h *headerSet) has(name []byte) bool {
	if h.all {
		return true
	}
	for _, n := range h.names {
		if equalFold(name, n) {
			return true
		}
	}
	return false
}

func (h *headerSet) status() any {
	switch {
	case h.all:
		return "all"
	case len(h.names) > 0:
		return h.names
	}
	return nil
}

// headerSlab holds the pb.Header values of one call's message. They point into fasthttp's
// buffers, which is safe because the message is marshalled during the call and cleared
// before the slab goes back to its pool.
type headerSlab struct {
	slab []pb.Header
	next int
	ptrs []*pb.Header
}

func (s *headerSlab) add(k, v []byte) {
	if s.next == len(s.slab) {
		// The earlier headers stay valid in the old slab (ptrs point there); the next call
		// starts on the new one.
		s.slab = make([]pb.Header, max(16, 2*len(s.slab)))
		s.next = 0
	}
	h := &s.slab[s.next]
	s.next++
	h.Name, h.Value = k, v
	s.ptrs = append(s.ptrs, h)
}

func (s *headerSlab) collect(all func(yield func(k, v []byte) bool), sel *headerSet) []*pb.Header {
	for k, v := range all {
		if sel.has(k) {
			s.add(k, v)
		}
	}
	return s.ptrs
}

func (s *headerSlab) reset() {
	for _, h := range s.ptrs {
		h.Name, h.Value = nil, nil
	}
	clear(s.ptrs)
	s.ptrs = s.ptrs[:0]
	s.next = 0
}

// requestCall is one request-phase call's messages, pooled per Plugin.
type requestCall struct {
	in      pb.RequestPhase
	out     pb.RequestDecision
	headers headerSlab
	peer    pb.Identity
	ip      []byte
}

// fill sets in from the request, with only the parts the plugin asked for. Nothing is
// copied: the fields point into the request until reset.
func (c *requestCall) fill(r *filter.Request, sh *shape) {
	req := &r.Ctx.Request
	in := &c.in
	in.RequestId = r.RequestID
	in.Route = r.Route
	in.Method = req.Header.Method()
	u := req.URI()
	in.Path = u.Path()
	if sh.query {
		in.Query = u.QueryString()
	}
	if sh.clientIP && r.ClientIP.IsValid() {
		c.ip = r.ClientIP.AppendTo(c.ip[:0])
		in.ClientIp = bytesString(c.ip)
	}
	if sh.peer {
		c.peer.Consumer = bytesString(r.Identity)
		c.peer.Service, c.peer.SpiffeId = peerOf(r.Ctx)
		in.Peer = &c.peer
	}
	if sh.body {
		if req.IsBodyStream() {
			// Reading it here would buffer a body the listener chose to stream (it is too
			// large to hold); the plugin learns it saw none of it.
			in.BodyTruncated = true
		} else if b := req.Body(); len(b) > sh.maxBody {
			in.Body, in.BodyTruncated = b[:sh.maxBody], true
		} else {
			in.Body = b
		}
	}
	if !sh.reqHeaders.none() {
		in.Headers = c.headers.collect(req.Header.All(), &sh.reqHeaders)
	}
}

// reset drops every reference into the request, so the pooled call holds none of its
// buffers. The decision is left for the next call's unmarshal to reset.
func (c *requestCall) reset() {
	c.headers.reset()
	in := &c.in
	in.RequestId, in.Route, in.Method, in.Path, in.Query = nil, "", nil, nil, nil
	in.Headers, in.Body, in.BodyTruncated, in.Peer, in.ClientIp, in.TimeoutNanos = nil, nil, false, nil, "", 0
	c.peer.Consumer, c.peer.Service, c.peer.SpiffeId = "", "", ""
}

// bytesString views b as a string without copying, for a message field that is marshalled
// before b changes. Never keep the result.
func bytesString(b []byte) string {
	if len(b) == 0 {
		return ""
	}
	return unsafe.String(unsafe.SliceData(b), len(b))
}

// peerOf is the Connect identity of a mesh caller, from its client certificate (connect
// listeners require and verify one during the handshake).
func peerOf(ctx *fasthttp.RequestCtx) (service, spiffeID string) {
	tc, ok := ctx.Conn().(*tls.Conn)
	if !ok {
		return "", ""
	}
	cs := tc.ConnectionState()
	if len(cs.PeerCertificates) == 0 || len(cs.PeerCertificates[0].URIs) == 0 {
		return "", ""
	}
	u := cs.PeerCertificates[0].URIs[0]
	if i := strings.LastIndex(u.Path, "/svc/"); i >= 0 {
		service = u.Path[i+len("/svc/"):]
	}
	return service, u.String()
}

// applyDecision carries out a plugin's decision on the request: its edits, or its own
// response. A decision the host cannot apply safely (a malformed header, a framing header, a
// status that is not final) is refused whole, before anything is changed.
func applyDecision(r *filter.Request, d *pb.RequestDecision) (filter.Verdict, error) {
	switch a := d.GetAction().(type) {
	case *pb.RequestDecision_Proceed:
		return filter.Verdict{}, applyContinue(r, a.Proceed)
	case *pb.RequestDecision_Respond:
		return applyRespond(r, a.Respond)
	}
	return filter.Verdict{}, nil
}

func applyContinue(r *filter.Request, c *pb.Continue) error {
	if c == nil {
		return nil
	}
	if err := checkEdits(c.GetSetHeaders(), c.GetAddHeaders(), c.GetRemoveHeaders()); err != nil {
		return err
	}
	path := c.GetRewritePath()
	if len(path) > 0 && !validPath(path) {
		return fmt.Errorf("%w: rewrite_path %q is not an absolute path without query or control characters", errInvalidDecision, path)
	}
	consumer := c.GetConsumer()
	if !validValue(unsafe.Slice(unsafe.StringData(consumer), len(consumer))) {
		return fmt.Errorf("%w: consumer %q has control characters", errInvalidDecision, consumer)
	}
	h := &r.Ctx.Request.Header
	for _, n := range c.GetRemoveHeaders() {
		h.DelBytes(n)
	}
	// fasthttp's Set replaces only the first value; a set replaces them all.
	for _, kv := range c.GetSetHeaders() {
		h.DelBytes(kv.GetName())
	}
	for _, kv := range c.GetSetHeaders() {
		h.AddBytesKV(kv.GetName(), kv.GetValue())
	}
	for _, kv := range c.GetAddHeaders() {
		h.AddBytesKV(kv.GetName(), kv.GetValue())
	}
	if len(path) > 0 {
		r.Ctx.Request.URI().SetPathBytes(path)
	}
	if consumer != "" {
		r.Identity = append(r.Identity[:0], consumer...)
	}
	return nil
}

func applyRespond(r *filter.Request, a *pb.Respond) (filter.Verdict, error) {
	status := a.GetStatus()
	if status < 200 || status > 599 {
		return filter.Verdict{}, fmt.Errorf("%w: respond status %d is not a final status", errInvalidDecision, status)
	}
	if err := checkEdits(a.GetHeaders(), nil, nil); err != nil {
		return filter.Verdict{}, err
	}
	resp := &r.Ctx.Response
	resp.SetStatusCode(int(status))
	for _, kv := range a.GetHeaders() {
		resp.Header.AddBytesKV(kv.GetName(), kv.GetValue())
	}
	resp.SetBody(a.GetBody())
	return filter.Verdict{Status: int(status), Reason: ReasonResponse, Written: true}, nil
}

// responseCall is one response-phase call's messages, pooled per Plugin.
type responseCall struct {
	in      pb.ResponsePhase
	out     pb.ResponseMutation
	headers headerSlab
}

func (c *responseCall) fill(r *filter.Request, resp *fasthttp.Response, sh *shape) {
	in := &c.in
	in.RequestId = r.RequestID
	in.Route = r.Route
	in.Status = uint32(resp.StatusCode())
	if !sh.respHeaders.none() {
		in.Headers = c.headers.collect(resp.Header.All(), &sh.respHeaders)
	}
}

func (c *responseCall) reset() {
	c.headers.reset()
	in := &c.in
	in.RequestId, in.Route, in.Status, in.Headers, in.TimeoutNanos = nil, "", 0, nil, 0
}

func applyMutation(resp *fasthttp.Response, m *pb.ResponseMutation) error {
	if err := checkEdits(m.GetSetHeaders(), m.GetAddHeaders(), m.GetRemoveHeaders()); err != nil {
		return err
	}
	h := &resp.Header
	for _, n := range m.GetRemoveHeaders() {
		h.DelBytes(n)
	}
	for _, kv := range m.GetSetHeaders() {
		h.DelBytes(kv.GetName())
	}
	for _, kv := range m.GetSetHeaders() {
		h.AddBytesKV(kv.GetName(), kv.GetValue())
	}
	for _, kv := range m.GetAddHeaders() {
		h.AddBytesKV(kv.GetName(), kv.GetValue())
	}
	return nil
}

// checkEdits refuses header edits that would corrupt or re-frame the message: names that are
// not tokens, values with CR, LF or other control characters (header injection), and the
// headers that frame a message or a connection, which are the proxy's to set (a plugin
// setting Content-Length or Transfer-Encoding upstream could smuggle a request).
func checkEdits(set, add []*pb.Header, remove [][]byte) error {
	for _, hs := range [2][]*pb.Header{set, add} {
		for _, kv := range hs {
			if err := checkName(kv.GetName()); err != nil {
				return err
			}
			if !validValue(kv.GetValue()) {
				return fmt.Errorf("%w: header %s: value has control characters", errInvalidDecision, kv.GetName())
			}
		}
	}
	for _, n := range remove {
		if err := checkName(n); err != nil {
			return err
		}
	}
	return nil
}

func checkName(n []byte) error {
	if !validToken(n) {
		return fmt.Errorf("%w: %q is not a valid header name", errInvalidDecision, n)
	}
	if framingHeader(n) {
		return fmt.Errorf("%w: %s is set by the proxy, not by plugins", errInvalidDecision, n)
	}
	return nil
}

// framingHeader reports the hop-by-hop and framing headers (RFC 9110 7.6.1, RFC 9112 6).
func framingHeader(n []byte) bool {
	for _, f := range [...]string{"Connection", "Content-Length", "Keep-Alive", "Proxy-Connection", "TE", "Trailer", "Transfer-Encoding", "Upgrade"} {
		if equalFold(n, f) {
			return true
		}
	}
	return false
}

// validToken is RFC 9110's token: a header name.
func validToken(b []byte) bool {
	if len(b) == 0 {
		return false
	}
	for _, c := range b {
		switch {
		case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9':
		case strings.IndexByte("!#$%&'*+-.^_`|~", c) >= 0:
		default:
			return false
		}
	}
	return true
}

// validValue is a field value without control characters other than HTAB.
func validValue(b []byte) bool {
	for _, c := range b {
		if (c < 0x20 && c != '\t') || c == 0x7f {
			return false
		}
	}
	return true
}

// validPath is an absolute path of visible characters, with no query or fragment.
func validPath(b []byte) bool {
	if len(b) == 0 || b[0] != '/' {
		return false
	}
	for _, c := range b {
		if c <= 0x20 || c == 0x7f || c == '?' || c == '#' {
			return false
		}
	}
	return true
}

// equalFold is ASCII case-insensitive equality of a header name and a string.
func equalFold(b []byte, s string) bool {
	if len(b) != len(s) {
		return false
	}
	for i := range len(b) {
		x, y := b[i], s[i]
		if x == y {
			continue
		}
		if 'A' <= x && x <= 'Z' {
			x += 'a' - 'A'
		}
		if 'A' <= y && y <= 'Z' {
			y += 'a' - 'A'
		}
		if x != y {
			return false
		}
	}
	return true
}
