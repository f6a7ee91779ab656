package conf

import (
	"errors"
	"fmt"
	"regexp"
	"strconv"
	"strings"

	"go.yaml.in/yaml/v3"
)

// Error is one problem in a config file, located by line and by key path.
type Error struct {
	File string // as given to Parse / Load
	Line int    // 1-based; 0 when unknown
	Path string // e.g. "routes[1].match.path_regex"; empty for whole-file problems
	Msg  string
}

// Error renders "FILE:LINE: PATH: MSG", the shape editors and CI annotate.
func (e Error) Error() string {
	var b strings.Builder
	if e.File != "" {
		b.WriteString(e.File)
		b.WriteByte(':')
	}
	if e.Line > 0 {
		b.WriteString(strconv.Itoa(e.Line))
		b.WriteByte(':')
	}
	if b.Len() > 0 {
		b.WriteByte(' ')
	}
	if e.Path != "" {
		b.WriteString(e.Path)
		b.WriteString(": ")
	}
	b.WriteString(e.Msg)
	return b.String()
}

// Errors is every problem found in one file, in line order. Parse returns it (as error) so a
// user fixes a config in one round instead of one error per run.
type Errors []Error

// Error renders one problem per line.
func (es Errors) Error() string {
	var b strings.Builder
	for i, e := range es {
		if i > 0 {
			b.WriteByte('\n')
		}
		b.WriteString(e.Error())
	}
	return b.String()
}

// Unwrap lets errors.As find an individual Error inside Errors.
func (es Errors) Unwrap() []error {
	out := make([]error, len(es))
	for i, e := range es {
		out[i] = e
	}
	return out
}

// AsErrors extracts the per-problem list from an error returned by Parse, Load or Validate
// (also through %w wrapping).
func AsErrors(err error) (Errors, bool) {
	var es Errors
	if errors.As(err, &es) {
		return es, true
	}
	var e Error
	if errors.As(err, &e) {
		return Errors{e}, true
	}
	return nil, false
}

// path is a key path built from map keys (string) and sequence indexes (int). It stays
// structured until rendering so a service name containing "." cannot confuse line lookup.
type path []any

func (p path) key(k string) path { return append(p[:len(p):len(p)], k) }
func (p path) idx(i int) path    { return append(p[:len(p):len(p)], i) }

func (p path) String() string {
	var b strings.Builder
	for _, s := range p {
		switch v := s.(type) {
		case int:
			fmt.Fprintf(&b, "[%d]", v)
		case string:
			if b.Len() > 0 {
				b.WriteByte('.')
			}
			b.WriteString(v)
		}
	}
	return b.String()
}

// hasPrefix reports whether q is p or below it.
func (p path) hasPrefix(q path) bool {
	if len(q) > len(p) {
		return false
	}
	for i := range q {
		if p[i] != q[i] {
			return false
		}
	}
	return true
}

// problem is a semantic validation finding before it is given a file and line.
type problem struct {
	path path
	msg  string
}

func problemf(p path, format string, args ...any) problem {
	return problem{p, fmt.Sprintf(format, args...)}
}

// docRoot returns the top-level node of a parsed document, or nil for an empty file.
func docRoot(doc *yaml.Node) *yaml.Node {
	if doc == nil || doc.Kind != yaml.DocumentNode || len(doc.Content) == 0 {
		return nil
	}
	return doc.Content[0]
}

// lineOf finds the line of p in the tree. When p does not exist (a defaulted or missing field)
// it answers with the deepest ancestor that does, so the user is pointed at the enclosing block.
func lineOf(root *yaml.Node, p path) int {
	if root == nil {
		return 1
	}
	line, n := root.Line, root
	for _, seg := range p {
		n = deref(n)
		switch s := seg.(type) {
		case string:
			k, v := mapLookup(n, s, 0)
			if k == nil {
				return line
			}
			line, n = k.Line, v
		case int:
			if n.Kind != yaml.SequenceNode || s < 0 || s >= len(n.Content) {
				return line
			}
			n = n.Content[s]
			line = n.Line
		}
	}
	return line
}

func deref(n *yaml.Node) *yaml.Node {
	for i := 0; n != nil && n.Kind == yaml.AliasNode && n.Alias != nil && i < 16; i++ {
		n = n.Alias
	}
	return n
}

// mapLookup finds key k in mapping n, following "<<" merge keys like the decoder does.
func mapLookup(n *yaml.Node, k string, depth int) (key, val *yaml.Node) {
	if n == nil || n.Kind != yaml.MappingNode || depth > 8 {
		return nil, nil
	}
	for i := 0; i+1 < len(n.Content); i += 2 {
		if n.Content[i].Value == k && n.Content[i].Tag != "!!merge" {
			return n.Content[i], n.Content[i+1]
		}
	}
	for i := 0; i+1 < len(n.Content); i += 2 {
		if n.Content[i].Tag != "!!merge" {
			continue
		}
		m := deref(n.Content[i+1])
		srcs := []*yaml.Node{m}
		if m != nil && m.Kind == yaml.SequenceNode {
			srcs = m.Content
		}
		for _, src := range srcs {
			if key, val := mapLookup(deref(src), k, depth+1); key != nil {
				return key, val
			}
		}
	}
	return nil, nil
}

// indexEntry is one node of the tree with its key path, used to map yaml.v3's "line N: ..."
// type errors back to a path.
type indexEntry struct {
	node  *yaml.Node
	path  path
	isKey bool
}

func buildIndex(root *yaml.Node) []indexEntry {
	var out []indexEntry
	var walk func(n *yaml.Node, p path, depth int)
	walk = func(n *yaml.Node, p path, depth int) {
		if n == nil || depth > 256 {
			return
		}
		switch n.Kind {
		case yaml.MappingNode:
			for i := 0; i+1 < len(n.Content); i += 2 {
				k, v := n.Content[i], n.Content[i+1]
				kp := p.key(k.Value)
				out = append(out, indexEntry{k, kp, true}, indexEntry{v, kp, false})
				walk(v, kp, depth+1)
			}
		case yaml.SequenceNode:
			for i, c := range n.Content {
				ip := p.idx(i)
				out = append(out, indexEntry{c, ip, false})
				walk(c, ip, depth+1)
			}
		}
	}
	if root != nil {
		out = append(out, indexEntry{root, nil, false})
		walk(root, nil, 0)
	}
	return out
}

// duplicateKeys reports every repeated key in every mapping. yaml.v3 stops decoding a mapping
// at its first duplicate (so a repeated top-level key would hide all other problems); this scan
// finds them all. It also returns the parent paths, whose contents were not decoded.
func duplicateKeys(file string, root *yaml.Node) (Errors, []path) {
	var (
		errs    Errors
		parents []path
	)
	var walk func(n *yaml.Node, p path, depth int)
	walk = func(n *yaml.Node, p path, depth int) {
		if n == nil || depth > 256 {
			return
		}
		switch n.Kind {
		case yaml.MappingNode:
			first := map[string]int{}
			dup := false
			for i := 0; i+1 < len(n.Content); i += 2 {
				k := n.Content[i]
				if k.Kind == yaml.ScalarNode && k.Tag != "!!merge" {
					if line, seen := first[k.Value]; seen {
						dup = true
						errs = append(errs, Error{File: file, Line: k.Line, Path: p.key(k.Value).String(),
							Msg: fmt.Sprintf("duplicate key %q (first defined at line %d)", k.Value, line)})
					} else {
						first[k.Value] = k.Line
					}
				}
				walk(n.Content[i+1], p.key(k.Value), depth+1)
			}
			if dup {
				parents = append(parents, p)
			}
		case yaml.SequenceNode:
			for i, c := range n.Content {
				walk(c, p.idx(i), depth+1)
			}
		}
	}
	walk(root, path{}, 0)
	return errs, parents
}

var (
	// These are immutable after compilation; regexps are safe for concurrent use.
	reLinePrefix = regexp.MustCompile(`^(?:yaml: )?line (\d+): (.*)$`)
	reUnknown    = regexp.MustCompile(`^field (.+) not found in type \S+$`)
	reAlreadySet = regexp.MustCompile(`^field (.+) already set in type \S+$`)
	reDuplicate  = regexp.MustCompile(`^mapping key "(.*)" already defined at line (\d+)$`)
	reUnmarshal  = regexp.MustCompile("^cannot unmarshal !!(\\w+)(?: `(.*)`)? into (.+)$")
	reBacktick   = regexp.MustCompile("`([^`]*)`")
)

// decodeError turns one yaml.v3 message into an Error with path and line, rewording the
// decoder's Go-type phrasing into config terms.
func decodeError(file string, idx []indexEntry, raw string) Error {
	m := reLinePrefix.FindStringSubmatch(raw)
	if m == nil {
		return Error{File: file, Msg: strings.TrimPrefix(raw, "yaml: ")}
	}
	line, _ := strconv.Atoi(m[1])
	msg := m[2]
	e := Error{File: file, Line: line, Msg: msg}

	if u := reUnknown.FindStringSubmatch(msg); u != nil {
		e.Msg = fmt.Sprintf("unknown key %q", u[1])
		e.Path = findNode(idx, line, func(en indexEntry) bool { return en.isKey && en.node.Value == u[1] })
		return e
	}
	if d := reAlreadySet.FindStringSubmatch(msg); d != nil {
		// Struct fields report duplicates without the first line; find it in the tree.
		e.Path = findNode(idx, line, func(en indexEntry) bool { return en.isKey && en.node.Value == d[1] })
		first := line
		for _, en := range idx {
			if en.isKey && en.path.String() == e.Path {
				first = en.node.Line
				break
			}
		}
		e.Msg = fmt.Sprintf("duplicate key %q (first defined at line %d)", d[1], first)
		return e
	}
	if d := reDuplicate.FindStringSubmatch(msg); d != nil {
		e.Msg = fmt.Sprintf("duplicate key %q (first defined at line %s)", d[1], d[2])
		e.Path = findNode(idx, line, func(en indexEntry) bool { return en.isKey && en.node.Value == d[1] })
		return e
	}
	if u := reUnmarshal.FindStringSubmatch(msg); u != nil {
		tag, val, typ := u[1], u[2], friendlyType(u[3])
		switch tag {
		case "map", "seq":
			kind, word := yaml.MappingNode, "mapping"
			if tag == "seq" {
				kind, word = yaml.SequenceNode, "sequence"
			}
			e.Msg = fmt.Sprintf("expected %s, got a %s", typ, word)
			e.Path = findNode(idx, line, func(en indexEntry) bool { return !en.isKey && en.node.Kind == kind })
		default:
			e.Msg = fmt.Sprintf("expected %s, got %s", typ, strconv.Quote(strings.TrimSuffix(val, "...")))
			e.Path = findNode(idx, line, scalarMatch(val))
		}
		if e.Path == "" {
			e.Path = findNode(idx, line, func(en indexEntry) bool { return en.isKey })
		}
		return e
	}
	if b := reBacktick.FindStringSubmatch(msg); b != nil {
		e.Path = findNode(idx, line, scalarMatch(b[1]))
	}
	if e.Path == "" {
		e.Path = findNode(idx, line, func(en indexEntry) bool { return en.isKey })
	}
	return e
}

// scalarMatch matches a value node against a value quoted in a yaml.v3 message, which
// truncates long values to 7 bytes plus "...".
func scalarMatch(val string) func(indexEntry) bool {
	return func(en indexEntry) bool {
		if en.isKey || en.node.Kind != yaml.ScalarNode {
			return false
		}
		if strings.HasSuffix(val, "...") && len(en.node.Value) > 10 {
			return strings.HasPrefix(en.node.Value, strings.TrimSuffix(val, "..."))
		}
		return en.node.Value == val
	}
}

func findNode(idx []indexEntry, line int, ok func(indexEntry) bool) string {
	for _, en := range idx {
		if en.node.Line == line && ok(en) {
			return en.path.String()
		}
	}
	return ""
}

func friendlyType(goType string) string {
	switch {
	case strings.HasPrefix(goType, "[]"):
		return "a list"
	case strings.HasPrefix(goType, "map["):
		return "a mapping"
	case strings.HasPrefix(goType, "int"), strings.HasPrefix(goType, "uint"):
		return "an integer"
	case goType == "bool":
		return "true or false"
	case goType == "string":
		return "a string"
	case strings.HasPrefix(goType, "float"):
		return "a number"
	case strings.HasPrefix(goType, "conf."), strings.HasPrefix(goType, "*conf."):
		return "a mapping"
	}
	return goType
}
