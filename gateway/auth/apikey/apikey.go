package apikey

import (
	"bufio"
	"bytes"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"strings"
	"sync/atomic"

	"github.com/meshgate/meshgate/gateway/filter"
)

// Reason codes rendered in the JSON error body and the access log.
const (
	ReasonMissing = "apikey_missing"
	ReasonUnknown = "apikey_unknown"
)

// DefaultHeader carries the key when Options.Header is empty.
const DefaultHeader = "X-Api-Key"

// ErrNoKeys is returned by Set and New when the key set would be empty: an empty set rejects
// every request, which is never what a reload meant.
var ErrNoKeys = errors.New("apikey: no keys")

// Key is one accepted key, held only as its SHA-256.
type Key struct {
	Consumer string
	SHA256   [sha256.Size]byte
}

// HashKey returns the Key for a plain key; tests and tooling use it to produce file lines.
func HashKey(consumer, plain string) Key {
	return Key{Consumer: consumer, SHA256: sha256.Sum256([]byte(plain))}
}

// Options configures one API-key policy.
type Options struct {
	Name string // policy name, for error messages
	// Keys is the initial set; File, when set, is read by New and on every Reload.
	Keys []Key
	File string
	// Header carries the key; default DefaultHeader. Query, when set, is a query parameter
	// also accepted (header first). Keys in URLs end up in logs: prefer the header.
	Header string
	Query  string
	// KeepCredential forwards the key to the upstream; by default it is removed so a backend
	// never sees (or logs) another party's credential.
	KeepCredential bool
}

// Filter authenticates requests by API key. Safe for concurrent use.
type Filter struct {
	opts Options
	keys atomic.Pointer[[]Key]
}

var _ filter.Filter = (*Filter)(nil)

// New builds the filter from opts.Keys, or from opts.File when set.
func New(opts Options) (*Filter, error) {
	if opts.Name == "" {
		opts.Name = "apikey"
	}
	if opts.Header == "" {
		opts.Header = DefaultHeader
	}
	f := &Filter{opts: opts}
	keys := opts.Keys
	if opts.File != "" {
		var err error
		if keys, err = LoadFile(opts.File); err != nil {
			return nil, fmt.Errorf("apikey: policy %q: %w", opts.Name, err)
		}
	}
	if err := f.Set(keys); err != nil {
		return nil, fmt.Errorf("apikey: policy %q: %w", opts.Name, err)
	}
	return f, nil
}

// Set replaces the key set (validate, then swap). On error the previous set stays in force.
// It is for callers that hold keys themselves; the gateway instead builds a new filter, which
// re-reads the file, on every config reload.
func (f *Filter) Set(keys []Key) error {
	if len(keys) == 0 {
		return ErrNoKeys
	}
	cp := make([]Key, len(keys))
	for i, k := range keys {
		if k.Consumer == "" {
			return fmt.Errorf("apikey: key %d has no consumer", i)
		}
		cp[i] = k
	}
	f.keys.Store(&cp)
	return nil
}

// Reload re-reads Options.File; the old set stays on any error.
func (f *Filter) Reload() error {
	if f.opts.File == "" {
		return errors.New("apikey: no file to reload")
	}
	keys, err := LoadFile(f.opts.File)
	if err != nil {
		return err
	}
	return f.Set(keys)
}

// Request authenticates r.
func (f *Filter) Request(r *filter.Request) filter.Verdict {
	req := &r.Ctx.Request
	key := req.Header.Peek(f.opts.Header)
	fromQuery := false
	if len(key) == 0 && f.opts.Query != "" {
		key = req.URI().QueryArgs().Peek(f.opts.Query)
		fromQuery = len(key) > 0
	}
	if len(key) == 0 {
		return f.reject(r, ReasonMissing)
	}
	sum := sha256.Sum256(key)
	keys := *f.keys.Load()
	match := -1
	for i := range keys {
		// Visit every entry and select without branching on the secret, so the time taken says
		// nothing about which key (or whether a prefix) matched.
		eq := subtle.ConstantTimeCompare(sum[:], keys[i].SHA256[:])
		match = subtle.ConstantTimeSelect(eq, i, match)
	}
	if !f.opts.KeepCredential {
		req.Header.Del(f.opts.Header)
		if fromQuery {
			args := req.URI().QueryArgs()
			args.Del(f.opts.Query)
			req.URI().SetQueryStringBytes(args.QueryString())
		}
	}
	if match < 0 {
		return f.reject(r, ReasonUnknown)
	}
	r.Identity = append(r.Identity[:0], keys[match].Consumer...)
	return filter.Verdict{}
}

func (f *Filter) reject(r *filter.Request, reason string) filter.Verdict {
	// RFC 9110 §15.5.2: a 401 carries a challenge. There is no registered API-key scheme; name
	// the header so a client knows where the key goes.
	r.Ctx.Response.Header.Set("WWW-Authenticate", `APIKey header="`+f.opts.Header+`"`)
	return filter.Verdict{Status: 401, Reason: reason}
}

// LoadFile reads a key file (see the package doc for the format).
func LoadFile(path string) ([]Key, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("apikey: %w", err)
	}
	keys, err := Parse(b)
	if err != nil {
		return nil, fmt.Errorf("apikey: %s: %w", path, err)
	}
	return keys, nil
}

// Parse reads "consumer:sha256hex" lines; blank lines and # comments are skipped, spaces and
// quotes around either side are ignored so a flat YAML mapping parses too. Errors name the line
// but never echo the hash.
func Parse(b []byte) ([]Key, error) {
	var keys []Key
	sc := bufio.NewScanner(bytes.NewReader(b))
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		if line == "" || line[0] == '#' || line == "---" {
			continue
		}
		consumer, hexsum, ok := strings.Cut(line, ":")
		consumer, hexsum = unquote(consumer), unquote(hexsum)
		if !ok || consumer == "" {
			return nil, fmt.Errorf("line %d: want consumer:sha256hex", n)
		}
		var k Key
		k.Consumer = consumer
		if len(hexsum) != hex.EncodedLen(sha256.Size) {
			return nil, fmt.Errorf("line %d: consumer %q: want 64 hex digits (the SHA-256 of the key, never the key)", n, consumer)
		}
		if _, err := hex.Decode(k.SHA256[:], []byte(hexsum)); err != nil {
			return nil, fmt.Errorf("line %d: consumer %q: not hex", n, consumer)
		}
		keys = append(keys, k)
	}
	if err := sc.Err(); err != nil {
		return nil, err
	}
	if len(keys) == 0 {
		return nil, ErrNoKeys
	}
	return keys, nil
}

func unquote(s string) string {
	s = strings.TrimSpace(s)
	if len(s) >= 2 && (s[0] == '"' && s[len(s)-1] == '"' || s[0] == '\'' && s[len(s)-1] == '\'') {
		s = s[1 : len(s)-1]
	}
	return s
}
