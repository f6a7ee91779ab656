package conf

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"slices"

	"go.yaml.in/yaml/v3"
)

// Load reads and parses the config file at path (see Parse).
func Load(path string) (*Config, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read config: %w", err)
	}
	return Parse(path, data)
}

// Parse runs the whole pipeline on file content: expand ${ENV} (from the process environment),
// parse YAML, decode strictly, fill defaults, validate. name is used only in error messages.
// On failure the error is Errors (see AsErrors) holding every problem found, and the Config is nil.
func Parse(name string, data []byte) (*Config, error) {
	return parse(name, data, os.LookupEnv)
}

// parse is Parse with an injectable environment; a nil lookup skips expansion entirely (used
// to re-parse Marshal output, whose "$" are literal).
func parse(name string, data []byte, lookup func(string) (string, bool)) (cfg *Config, err error) {
	// yaml.v3 is a large parser fed with operator input; a bug in it must fail one reload, not
	// crash a running gateway.
	defer func() {
		if r := recover(); r != nil {
			cfg, err = nil, Errors{{File: name, Msg: fmt.Sprintf("yaml parser failed: %v", r)}}
		}
	}()

	text := data
	var expErrs []lineError
	if lookup != nil {
		text, expErrs = expandEnv(data, lookup)
	}

	var doc yaml.Node
	if err := yaml.Unmarshal(text, &doc); err != nil {
		if len(expErrs) > 0 {
			// The syntax error is likely a consequence of the failed expansion.
			return nil, lineErrors(name, nil, expErrs)
		}
		return nil, Errors{decodeError(name, nil, err.Error())}
	}
	root := docRoot(&doc)
	if len(expErrs) > 0 {
		// Report only expansion problems: decoding text with holes in it would add noise.
		return nil, lineErrors(name, root, expErrs)
	}
	idx := buildIndex(root)

	// decodeAt holds paths whose subtree had a decode error: validating the zero values left
	// there would only repeat the same problem in other words.
	errs, decodeAt := duplicateKeys(name, root)
	var (
		c         Config
		decodeErr = decodeStrict(text, &c)
		te        *yaml.TypeError
	)
	switch {
	case decodeErr == nil:
	case errors.As(decodeErr, &te):
		for _, msg := range te.Errors {
			if reDuplicate.MatchString(reLinePrefix.ReplaceAllString(msg, "$2")) {
				continue // duplicateKeys reported it, with every other duplicate
			}
			e := decodeError(name, idx, msg)
			errs = append(errs, e)
			decodeAt = append(decodeAt, pathFromIndex(idx, e.Path))
		}
	default:
		return nil, Errors{decodeError(name, idx, decodeErr.Error())}
	}
	if root != nil && root.Kind != yaml.MappingNode && !(root.Kind == yaml.ScalarNode && root.Value == "") {
		// Nothing useful was decoded; validation would only repeat "missing" noise.
		if len(errs) == 0 {
			errs = Errors{{File: name, Line: root.Line, Msg: "the top level must be a mapping (admin:, listeners:, routes:, ...)"}}
		}
		return nil, errs
	}

	c.Defaults()
	for _, p := range validate(&c) {
		if underAny(p.path, decodeAt) {
			// Already reported as a decode error; the zero value left behind is not news.
			continue
		}
		errs = append(errs, Error{File: name, Line: lineOf(root, p.path), Path: p.path.String(), Msg: p.msg})
	}
	if len(errs) > 0 {
		slices.SortStableFunc(errs, func(a, b Error) int { return a.Line - b.Line })
		return nil, errs
	}
	return &c, nil
}

// decodeStrict decodes the first document into c (a *Config, or a *Fragment's document)
// rejecting unknown and duplicate keys, and refuses further documents: a stray "---" silently
// ignoring half a file is worse than an error.
func decodeStrict(text []byte, c any) error {
	dec := yaml.NewDecoder(bytes.NewReader(text))
	dec.KnownFields(true)
	err := dec.Decode(c)
	if errors.Is(err, io.EOF) {
		return nil
	}
	var te *yaml.TypeError
	if err != nil && !errors.As(err, &te) {
		return err
	}
	var next yaml.Node
	if err2 := dec.Decode(&next); !errors.Is(err2, io.EOF) {
		line := next.Line
		if line == 0 {
			line = 1
		}
		msg := fmt.Sprintf("line %d: only one YAML document is allowed per file", line)
		if te == nil {
			te = &yaml.TypeError{}
		}
		te.Errors = append(te.Errors, msg)
		return te
	}
	return err
}

func lineErrors(name string, root *yaml.Node, les []lineError) Errors {
	idx := buildIndex(root)
	out := make(Errors, 0, len(les))
	for _, le := range les {
		out = append(out, Error{
			File: name, Line: le.line, Msg: le.msg,
			Path: findNode(idx, le.line, func(en indexEntry) bool { return !en.isKey && en.node.Kind == yaml.ScalarNode }),
		})
	}
	return out
}

func pathFromIndex(idx []indexEntry, s string) path {
	if s == "" {
		return nil
	}
	for _, en := range idx {
		if en.path.String() == s {
			return en.path
		}
	}
	return nil
}

func underAny(p path, roots []path) bool {
	for _, r := range roots {
		if r != nil && p.hasPrefix(r) {
			return true
		}
	}
	return false
}
