package headers

import (
	"bytes"
	"errors"
	"fmt"
	"regexp"
	"strings"

	"github.com/valyala/fasthttp"

	"github.com/meshgate/meshgate/gateway/filter"
)

// ErrForbiddenHeader is returned by New for a rule on a framing, hop-by-hop or Host header.
var ErrForbiddenHeader = errors.New("headers: the proxy owns this header")

// forbidden reports whether no rule may set, add or remove the header (see doc.go).
func forbidden(name string) bool {
	switch strings.ToLower(name) {
	case "connection", "keep-alive", "proxy-connection", "proxy-authenticate", "proxy-authorization",
		"te", "trailer", "transfer-encoding", "upgrade", "content-length", "host":
		return true
	}
	return false
}

// Header is one name and value.
type Header struct {
	Name, Value string
}

// Transform edits one side's headers; applied as Remove, then Set, then Add.
type Transform struct {
	Set    []Header // replace every value of the header with this one
	Add    []Header // append a value, keeping existing ones
	Remove []string // delete every value of the header
}

// PathRewrite replaces the request path forwarded upstream. Set Prefix or Regex, not both.
type PathRewrite struct {
	// Prefix: a path starting with it has that prefix replaced by Replacement. When the
	// replacement ends in "/" and the rest starts with "/", one slash is dropped ("/api" →
	// "/" turns "/api/x" into "/x").
	Prefix string
	// Regex (RE2): every match in the path is replaced by Replacement, in which $1 and ${name}
	// expand capture groups. A result without a leading "/" gets one.
	Regex       string
	Replacement string
}

// Options configures one header policy.
type Options struct {
	Name     string // policy name, for error messages
	Request  Transform
	Response Transform
	Path     PathRewrite
}

// Transformer applies a header policy. Immutable after New; safe for concurrent use.
type Transformer struct {
	req, resp   Transform
	prefix      []byte
	replacement []byte
	re          *regexp.Regexp
}

var (
	_ filter.Filter         = (*Transformer)(nil)
	_ filter.ResponseFilter = (*Transformer)(nil)
)

// New validates every rule.
func New(opts Options) (*Transformer, error) {
	if err := check(opts.Request); err != nil {
		return nil, fmt.Errorf("headers: policy %q: request: %w", opts.Name, err)
	}
	if err := check(opts.Response); err != nil {
		return nil, fmt.Errorf("headers: policy %q: response: %w", opts.Name, err)
	}
	t := &Transformer{req: opts.Request, resp: opts.Response}
	p := opts.Path
	switch {
	case p.Prefix != "" && p.Regex != "":
		return nil, fmt.Errorf("headers: policy %q: path rewrite: set prefix or regex, not both", opts.Name)
	case p.Prefix != "":
		if !strings.HasPrefix(p.Prefix, "/") {
			return nil, fmt.Errorf("headers: policy %q: path rewrite: prefix %q must start with /", opts.Name, p.Prefix)
		}
		if p.Replacement != "" && !strings.HasPrefix(p.Replacement, "/") {
			return nil, fmt.Errorf("headers: policy %q: path rewrite: replacement %q must start with /", opts.Name, p.Replacement)
		}
		t.prefix, t.replacement = []byte(p.Prefix), []byte(p.Replacement)
	case p.Regex != "":
		re, err := regexp.Compile(p.Regex)
		if err != nil {
			return nil, fmt.Errorf("headers: policy %q: path rewrite: %w", opts.Name, err)
		}
		t.re, t.replacement = re, []byte(p.Replacement)
	case p.Replacement != "":
		return nil, fmt.Errorf("headers: policy %q: path rewrite: replacement without prefix or regex", opts.Name)
	}
	return t, nil
}

func check(tr Transform) error {
	for _, h := range append(append([]Header(nil), tr.Set...), tr.Add...) {
		if err := checkName(h.Name); err != nil {
			return err
		}
		if strings.ContainsFunc(h.Value, func(r rune) bool { return (r < ' ' && r != '\t') || r == 0x7f }) {
			return fmt.Errorf("header %q: value contains control characters", h.Name)
		}
	}
	for _, n := range tr.Remove {
		if err := checkName(n); err != nil {
			return err
		}
	}
	return nil
}

func checkName(n string) error {
	if n == "" {
		return errors.New("empty header name")
	}
	for i := range len(n) {
		c := n[i]
		if c <= ' ' || c >= 0x7f || c == '_' || strings.IndexByte(`"(),/:;<=>?@[\]{}`, c) >= 0 {
			return fmt.Errorf("header name %q: invalid character %q", n, c)
		}
	}
	if forbidden(n) {
		return fmt.Errorf("header %q: %w", n, ErrForbiddenHeader)
	}
	return nil
}

// Request edits the request headers and path; it never rejects.
func (t *Transformer) Request(r *filter.Request) filter.Verdict {
	h := &r.Ctx.Request.Header
	for _, n := range t.req.Remove {
		h.Del(n)
	}
	for _, kv := range t.req.Set {
		h.Del(kv.Name) // fasthttp's Set replaces only the first of repeated headers
		h.Set(kv.Name, kv.Value)
	}
	for _, kv := range t.req.Add {
		h.Add(kv.Name, kv.Value)
	}
	switch {
	case t.prefix != nil:
		t.rewritePrefix(r.Ctx.Request.URI())
	case t.re != nil:
		t.rewriteRegex(r.Ctx.Request.URI())
	}
	return filter.Verdict{}
}

// Response edits the upstream response headers.
func (t *Transformer) Response(_ *filter.Request, resp *fasthttp.Response) {
	h := &resp.Header
	for _, n := range t.resp.Remove {
		h.Del(n)
	}
	for _, kv := range t.resp.Set {
		h.Del(kv.Name) // fasthttp's Set replaces only the first of repeated headers
		h.Set(kv.Name, kv.Value)
	}
	for _, kv := range t.resp.Add {
		h.Add(kv.Name, kv.Value)
	}
}

func (t *Transformer) rewritePrefix(u *fasthttp.URI) {
	path := u.Path()
	if !bytes.HasPrefix(path, t.prefix) {
		return
	}
	rest := path[len(t.prefix):]
	repl := t.replacement
	if len(repl) > 0 && repl[len(repl)-1] == '/' && len(rest) > 0 && rest[0] == '/' {
		rest = rest[1:]
	}
	// Paths fit the stack buffer in practice; a longer one costs a heap buffer, not a failure.
	var buf [512]byte
	out := appendEscaped(buf[:0], repl)
	out = appendEscaped(out, rest)
	if len(out) == 0 {
		out = append(out, '/')
	}
	u.SetPathBytes(out)
}

func (t *Transformer) rewriteRegex(u *fasthttp.URI) {
	path := u.Path()
	if !t.re.Match(path) {
		return
	}
	rewritten := t.re.ReplaceAll(path, t.replacement)
	var buf [512]byte
	out := buf[:0]
	if len(rewritten) == 0 || rewritten[0] != '/' {
		out = append(out, '/')
	}
	u.SetPathBytes(appendEscaped(out, rewritten))
}

// appendEscaped appends a decoded path so that fasthttp's one decoding restores it exactly.
func appendEscaped(dst, path []byte) []byte {
	for _, c := range path {
		if c == '%' {
			dst = append(dst, "%25"...)
			continue
		}
		dst = append(dst, c)
	}
	return dst
}
