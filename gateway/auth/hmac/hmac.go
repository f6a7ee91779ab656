package hmac

import (
	"bytes"
	"crypto/hmac"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"errors"
	"fmt"
	"hash"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/valyala/fasthttp"

	"github.com/meshgate/meshgate/gateway/filter"
)

// Reason codes rendered in the JSON error body and the access log.
const (
	ReasonMissing        = "hmac_missing"
	ReasonMalformed      = "hmac_malformed"
	ReasonUnknownKey     = "hmac_unknown_key"
	ReasonUnsignedHeader = "hmac_unsigned_header" // a header that must be signed is not listed
	ReasonMissingHeader  = "hmac_missing_header"  // a listed header is absent from the request
	ReasonSkewed         = "hmac_skewed"
	ReasonDigest         = "hmac_digest_mismatch"
	ReasonBadSignature   = "hmac_bad_signature"
	ReasonReplayed       = "hmac_replayed"
	ReasonCacheFull      = "hmac_replay_cache_full"
	ReasonStoreDown      = "hmac_replay_unavailable" // the shared replay store could not decide
)

// Defaults applied by New.
const (
	DefaultSkew      = 5 * time.Minute
	DefaultMaxNonces = 100_000
	DefaultRealm     = "meshgate"
)

const scheme = "HMAC-SHA256 "

// ErrNoSecrets is returned when no client secret is configured.
var ErrNoSecrets = errors.New("hmac: no client secrets")

// Options configures one signed-request policy.
type Options struct {
	Name    string
	Secrets map[string][]byte // key id → secret; the key id becomes the consumer identity
	// SignedHeaders must appear in every signature's header list (lower case), in addition to
	// (request-target), a date and a digest header. "host" is a good choice at the edge.
	SignedHeaders []string
	Skew          time.Duration // accepted |now − timestamp|; default DefaultSkew
	MaxNonces     int           // replay cache bound; default DefaultMaxNonces
	// Replay is a cache the caller keeps across filters (the gateway: per policy name, across
	// reloads); nil = a new one of Skew and MaxNonces. Its own window and bound apply.
	Replay *ReplayCache
	// Store, when set, shares accepted signatures with other instances (RedisReplay); an
	// error from it refuses the request (503): a replay check that cannot run fails closed.
	Store ReplayStore
	Realm string
	Now   func() time.Time
}

// Filter verifies signed requests. Safe for concurrent use.
type Filter struct {
	opts      Options
	secrets   atomic.Pointer[map[string]*client]
	replay    *ReplayCache
	challenge string
	required  []string
}

var _ filter.Filter = (*Filter)(nil)

type client struct {
	id   string
	pool sync.Pool // *signer with this client's key; hmac.New costs several allocations
}

type signer struct {
	mac     hash.Hash
	sum     [sha256.Size]byte
	scratch [64]byte
}

// New validates opts and returns the filter.
func New(opts Options) (*Filter, error) {
	if opts.Name == "" {
		opts.Name = "hmac"
	}
	if opts.Skew <= 0 {
		opts.Skew = DefaultSkew
	}
	if opts.MaxNonces <= 0 {
		opts.MaxNonces = DefaultMaxNonces
	}
	if opts.Realm == "" {
		opts.Realm = DefaultRealm
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	f := &Filter{opts: opts, replay: opts.Replay}
	if f.replay == nil {
		f.replay = NewReplayCache(opts.Skew, opts.MaxNonces)
	}
	for _, h := range opts.SignedHeaders {
		h = strings.ToLower(strings.TrimSpace(h))
		if h == "" {
			return nil, fmt.Errorf("hmac: policy %q: empty signed header name", opts.Name)
		}
		f.required = append(f.required, h)
	}
	f.challenge = `HMAC-SHA256 realm="` + opts.Realm + `", headers="` +
		strings.Join(append([]string{"(request-target)", "x-date", "digest"}, f.required...), " ") + `"`
	if err := f.Set(opts.Secrets); err != nil {
		return nil, fmt.Errorf("hmac: policy %q: %w", opts.Name, err)
	}
	return f, nil
}

// Set replaces the client secrets (validate, then swap); the old set stays on error.
func (f *Filter) Set(secrets map[string][]byte) error {
	if len(secrets) == 0 {
		return ErrNoSecrets
	}
	m := make(map[string]*client, len(secrets))
	for id, s := range secrets {
		if id == "" || len(s) < 16 {
			// Short secrets make HMAC brute-forceable offline from one captured request.
			return fmt.Errorf("hmac: key id %q: a secret of at least 16 bytes is required", id)
		}
		key := bytes.Clone(s)
		c := &client{id: id}
		c.pool.New = func() any { return &signer{mac: hmac.New(sha256.New, key)} }
		m[id] = c
	}
	f.secrets.Store(&m)
	return nil
}

// params are the Authorization parameters; they alias the request's header buffer.
type params struct {
	keyID, headers, signature []byte
}

// Request verifies r's signature. Everything that needs no body comes first (the parameters,
// the key id, the timestamp, a replay, the HMAC over the signing string, which covers the
// digest header but not the body): only a request signed with a known secret makes the engine
// read and hash its body, and that read is bounded by the listener's max_body_bytes.
func (f *Filter) Request(r *filter.Request) filter.Verdict {
	req := &r.Ctx.Request
	// Two Authorization lines: the upstream might read the one we did not verify.
	if len(req.Header.PeekAll("Authorization")) > 1 {
		return f.reject(r, 401, ReasonMalformed)
	}
	auth := req.Header.Peek("Authorization")
	if len(auth) == 0 {
		return f.reject(r, 401, ReasonMissing)
	}
	p, ok := parseAuthorization(auth)
	if !ok {
		return f.reject(r, 401, ReasonMalformed)
	}
	c := (*f.secrets.Load())[string(p.keyID)]
	if c == nil {
		return f.reject(r, 401, ReasonUnknownKey)
	}
	var sig [sha256.Size]byte
	if base64.StdEncoding.DecodedLen(len(p.signature)) > 33 {
		return f.reject(r, 401, ReasonMalformed)
	}
	var sigBuf [33]byte
	n, err := base64.StdEncoding.Decode(sigBuf[:], p.signature)
	if err != nil || n != sha256.Size {
		return f.reject(r, 401, ReasonMalformed)
	}
	copy(sig[:], sigBuf[:n])

	// Which headers the client signed decides which date and digest header we read, and the
	// policy's own must all be there: an unsigned header could be altered in flight.
	hasTarget, dateHdr, digestHdr := false, "", ""
	for name, rest := nextField(p.headers); len(name) > 0; name, rest = nextField(rest) {
		switch string(name) {
		case "(request-target)":
			hasTarget = true
		case "x-date":
			dateHdr = "X-Date"
		case "date":
			if dateHdr == "" {
				dateHdr = "Date"
			}
		case "digest":
			digestHdr = "Digest"
		case "content-digest":
			if digestHdr == "" {
				digestHdr = "Content-Digest"
			}
		}
	}
	if !hasTarget || dateHdr == "" || digestHdr == "" || !f.listsRequired(p.headers) {
		return f.reject(r, 401, ReasonUnsignedHeader)
	}

	dv := req.Header.Peek(dateHdr)
	if len(dv) == 0 {
		return f.reject(r, 401, ReasonMissingHeader)
	}
	ts, err := fasthttp.ParseHTTPDate(dv)
	if err != nil {
		return f.reject(r, 401, ReasonMalformed)
	}
	now := f.opts.Now()
	if d := now.Sub(ts); d > f.opts.Skew || d < -f.opts.Skew {
		return f.reject(r, 401, ReasonSkewed)
	}
	exp := ts.Add(f.opts.Skew)
	if f.replay.seen(sig, exp, now) {
		return f.reject(r, 401, ReasonReplayed)
	}
	if v := f.verify(c, req, p.headers, &sig); v != "" {
		return f.reject(r, 401, v)
	}

	body, bv := r.Body()
	if bv.Status != 0 {
		return bv // 413 past the body limit, 400 for a broken body: the client's fault, not a bad signature
	}
	if st := digestMatches(req.Header.Peek(digestHdr), digestHdr == "Digest", body); st != "" {
		return f.reject(r, 401, st)
	}
	// Recorded only now, once the whole request verified: a tampered body does not burn the
	// signature of the genuine request. Two copies racing past seen meet here. The shared store
	// goes first, so a signature it could not record is not burnt locally either.
	if f.opts.Store != nil {
		switch err := f.opts.Store.Add(f.opts.Name, sig, exp, now); {
		case errors.Is(err, ErrReplayed):
			return f.reject(r, 401, ReasonReplayed)
		case err != nil:
			return filter.Verdict{Status: 503, Reason: ReasonStoreDown}
		}
	}
	switch err := f.replay.add(sig, exp, now); {
	case errors.Is(err, errReplayed):
		return f.reject(r, 401, ReasonReplayed)
	case errors.Is(err, errFull):
		return filter.Verdict{Status: 503, Reason: ReasonCacheFull}
	}
	r.Identity = append(r.Identity[:0], c.id...)
	return filter.Verdict{}
}

// verify recomputes the HMAC over the signing string of the listed headers; "" when it equals
// sig, else a reason code.
func (f *Filter) verify(c *client, req *fasthttp.Request, headers []byte, sig *[sha256.Size]byte) string {
	s := c.pool.Get().(*signer)
	defer c.pool.Put(s)
	s.mac.Reset()
	first := true
	for name, rest := nextField(headers); len(name) > 0; name, rest = nextField(rest) {
		if !first {
			s.mac.Write(newline)
		}
		first = false
		s.mac.Write(name)
		s.mac.Write(colonSpace)
		if string(name) == "(request-target)" {
			method := req.Header.Method()
			if len(method) > len(s.scratch) {
				return ReasonMalformed
			}
			s.mac.Write(lower(s.scratch[:0], method))
			s.mac.Write(space)
			s.mac.Write(req.URI().PathOriginal())
			if q := req.URI().QueryString(); len(q) > 0 {
				s.mac.Write(question)
				s.mac.Write(q)
			}
			continue
		}
		v := req.Header.PeekBytes(name)
		if len(v) == 0 {
			return ReasonMissingHeader
		}
		s.mac.Write(v)
	}
	if !hmac.Equal(s.mac.Sum(s.sum[:0]), sig[:]) {
		return ReasonBadSignature
	}
	return ""
}

var (
	newline    = []byte("\n")
	colonSpace = []byte(": ")
	space      = []byte(" ")
	question   = []byte("?")
)

func (f *Filter) reject(r *filter.Request, status int, reason string) filter.Verdict {
	r.Ctx.Response.Header.Set("WWW-Authenticate", f.challenge)
	return filter.Verdict{Status: status, Reason: reason}
}

func (f *Filter) listsRequired(list []byte) bool {
next:
	for _, want := range f.required {
		for name, rest := nextField(list); len(name) > 0; name, rest = nextField(rest) {
			if string(name) == want {
				continue next
			}
		}
		return false
	}
	return true
}

// digestMatches checks the body digest header; "" when it matches, else a reason code.
func digestMatches(v []byte, legacy bool, body []byte) string {
	if len(v) == 0 {
		return ReasonMissingHeader
	}
	want := sha256.Sum256(body)
	// Both headers may list several algorithms; find sha-256 (case-insensitive).
	for item := range bytes.SplitSeq(v, []byte(",")) {
		alg, val, ok := bytes.Cut(bytes.TrimSpace(item), []byte("="))
		if !ok || !bytes.EqualFold(alg, []byte("sha-256")) {
			continue
		}
		if !legacy {
			// RFC 9530 wraps the value as a structured-field byte sequence: :<b64>:
			if len(val) < 2 || val[0] != ':' || val[len(val)-1] != ':' {
				return ReasonMalformed
			}
			val = val[1 : len(val)-1]
		}
		var got [33]byte
		if base64.StdEncoding.DecodedLen(len(val)) > len(got) {
			return ReasonDigest
		}
		n, err := base64.StdEncoding.Decode(got[:], val)
		if err != nil || n != sha256.Size || subtle.ConstantTimeCompare(got[:n], want[:]) != 1 {
			return ReasonDigest
		}
		return ""
	}
	return ReasonDigest
}

// parseAuthorization reads `HMAC-SHA256 keyId="…",headers="…",signature="…"`.
func parseAuthorization(v []byte) (p params, ok bool) {
	if len(v) <= len(scheme) || !bytes.EqualFold(v[:len(scheme)], []byte(scheme)) {
		return p, false
	}
	rest := v[len(scheme):]
	for len(rest) > 0 {
		rest = bytes.TrimLeft(rest, " ,")
		if len(rest) == 0 {
			break
		}
		eq := bytes.IndexByte(rest, '=')
		if eq <= 0 || len(rest) < eq+2 || rest[eq+1] != '"' {
			return p, false
		}
		key := bytes.TrimSpace(rest[:eq])
		end := bytes.IndexByte(rest[eq+2:], '"')
		if end < 0 {
			return p, false
		}
		val := rest[eq+2 : eq+2+end]
		rest = rest[eq+2+end+1:]
		switch string(key) {
		case "keyId":
			p.keyID = val
		case "headers":
			p.headers = val
		case "signature":
			p.signature = val
		}
	}
	return p, len(p.keyID) > 0 && len(p.headers) > 0 && len(p.signature) > 0
}

// nextField splits the first space-separated name off a headers list; an empty name ends the
// list. A plain function rather than an iterator: a range-over-func closure escapes here and
// would cost two allocations per loop on every request.
func nextField(list []byte) (name, rest []byte) {
	list = bytes.TrimLeft(list, " ")
	if i := bytes.IndexByte(list, ' '); i >= 0 {
		return list[:i], list[i+1:]
	}
	return list, nil
}

func lower(dst, s []byte) []byte {
	for _, c := range s {
		if c >= 'A' && c <= 'Z' {
			c += 'a' - 'A'
		}
		dst = append(dst, c)
	}
	return dst
}
