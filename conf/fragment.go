package conf

import (
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"

	"go.yaml.in/yaml/v3"
)

// Fragments: config documents that come from somewhere other than the file (today: Consul KV
// under discovery.consul.kv_prefix) and add routes, policies and services to it.
//
//	file ─▶ Parse ─▶ base *Config ─┐
//	                               ├─▶ Merge ─▶ effective *Config  (+ one FragmentError per rejected document)
//	key a ─▶ ParseFragment ───┐    │     for each document in name order:
//	key b ─▶ ParseFragment ───┴────┘       names collide? ─▶ rejected
//	                                       base + accepted + this one ─▶ Defaults ─▶ validate ─▶ rejected or accepted
//
// A document never changes what the file defines: its route, policy and service names must be
// new, and its routes come after the file's, so a file route wins a tie in priority. Each
// document is validated together with everything accepted before it, by the same validator as
// the file, so a route naming an unknown policy (or, without Consul, a service not in
// discovery.static) is refused exactly as it would be in the file.

// fragmentKeys are the only top-level keys a fragment may set.
const fragmentKeys = "routes, policies, services"

// Fragment is one parsed fragment document. Only the syntax and types have been checked;
// Merge validates its content against a base config.
type Fragment struct {
	Name     string             `yaml:"-"`
	Routes   []Route            `yaml:"routes"`
	Policies map[string]Policy  `yaml:"policies"`
	Services map[string]Service `yaml:"services"`

	root *yaml.Node // for line numbers in Merge's errors
}

// NamedFragment is one raw fragment document, e.g. a KV key and its value.
type NamedFragment struct {
	Name string
	Data []byte
}

// FragmentError is why one fragment was rejected: every problem found in it, each rendered as
// "NAME:LINE: PATH: MSG" with PATH and LINE relative to the document itself.
type FragmentError struct {
	Name   string
	Errors Errors
}

func (e *FragmentError) Error() string { return e.Errors.Error() }

// Unwrap exposes the problems to errors.As and AsErrors.
func (e *FragmentError) Unwrap() error { return e.Errors }

// ParseFragment decodes one fragment document as strictly as Parse decodes a file (unknown
// and duplicate keys, wrong types, a second YAML document), reporting every problem with its
// line, path and name. An empty document is valid and adds nothing.
//
// Unlike Parse it does NOT expand ${ENV}: a fragment is remote data that anyone with write
// access to the KV prefix controls, and expanding it would let them read this process's
// environment (tokens, passwords) back out through /config or error messages. A "$" in a
// fragment is just a "$".
func ParseFragment(name string, data []byte) (frag *Fragment, err error) {
	// Same reason as parse: a parser bug must reject one document, not crash the gateway.
	defer func() {
		if r := recover(); r != nil {
			frag, err = nil, Errors{{File: name, Msg: fmt.Sprintf("yaml parser failed: %v", r)}}
		}
	}()
	var doc yaml.Node
	if err := yaml.Unmarshal(data, &doc); err != nil {
		return nil, Errors{decodeError(name, nil, err.Error())}
	}
	root := docRoot(&doc)
	idx := buildIndex(root)
	errs, _ := duplicateKeys(name, root)
	f := &Fragment{Name: name, root: root}
	var te *yaml.TypeError
	switch derr := decodeStrict(data, f); {
	case derr == nil:
	case errors.As(derr, &te):
		for _, msg := range te.Errors {
			if reDuplicate.MatchString(reLinePrefix.ReplaceAllString(msg, "$2")) {
				continue // duplicateKeys reported it
			}
			errs = append(errs, fragmentDecodeError(name, idx, msg))
		}
	default:
		return nil, Errors{decodeError(name, idx, derr.Error())}
	}
	if len(errs) == 0 && root != nil && root.Kind != yaml.MappingNode && !(root.Kind == yaml.ScalarNode && root.Value == "") {
		errs = append(errs, Error{File: name, Line: root.Line,
			Msg: "a document must be a mapping with routes:, policies: and/or services:"})
	}
	if len(errs) > 0 {
		slices.SortStableFunc(errs, func(a, b Error) int { return a.Line - b.Line })
		return nil, errs
	}
	return f, nil
}

// fragmentDecodeError is decodeError with a clearer word for file-only keys: "unknown key
// listeners" would send the user looking for a typo.
func fragmentDecodeError(name string, idx []indexEntry, msg string) Error {
	e := decodeError(name, idx, msg)
	if !strings.Contains(e.Path, ".") && !strings.Contains(e.Path, "[") && strings.HasPrefix(e.Msg, "unknown key") {
		e.Msg = fmt.Sprintf("key %q is not allowed here: a document may only set %s", e.Path, fragmentKeys)
	}
	return e
}

// Merge returns base plus every valid fragment, in Name order, with Defaults applied. base is
// not modified (it can be merged again with other fragments). Each rejected fragment is left
// out and reported as a *FragmentError naming it; the others still apply. The result is valid
// whenever base is.
//
// Rules, checked per fragment against base and the fragments accepted before it:
//   - route, policy and service names must be new: not in base (a service base routes to counts
//     as defined there even without a services: entry) and not in an accepted fragment;
//   - the fragment's routes are appended after base's and earlier fragments' routes;
//   - no route of the fragment may have a priority above the cap: base's
//     discovery.consul.kv_max_priority, by default the highest priority of a base route (so a
//     fragment cannot shadow the file's top routes: they win ties);
//   - the whole result must pass the same validation as a file.
//
// A fragment's routes may use base's and other fragments' policies and services, and a
// service a fragment defines applies to every fragment route that uses it.
func Merge(base *Config, frags []NamedFragment) (*Config, []error) {
	if base == nil {
		return nil, []error{errors.New("merge: base config is nil")}
	}
	frags = slices.Clone(frags)
	slices.SortStableFunc(frags, func(a, b NamedFragment) int { return strings.Compare(a.Name, b.Name) })

	m := &merger{base: base.clone(), owners: map[string]string{}}
	m.base.Defaults()
	m.maxPriority = fileTopPriority(m.base.Routes)
	if cc := m.base.Discovery.Consul; cc != nil && cc.KVMaxPriority != nil {
		m.maxPriority = *cc.KVMaxPriority
	}
	for _, p := range validate(m.base) {
		// base should be valid; if it is not, its own problems must not be blamed on fragments.
		m.baseline = append(m.baseline, problemKey(p))
	}
	for _, r := range m.base.Routes {
		m.owners[ownerKey("route", r.Name)] = ""
	}
	for name := range m.base.Policies {
		m.owners[ownerKey("policy", name)] = ""
	}
	for name := range m.base.Services {
		m.owners[ownerKey("service", name)] = ""
	}

	var errs []error
	cur := m.base
	seen := map[string]bool{}
	for _, nf := range frags {
		if seen[nf.Name] {
			errs = append(errs, &FragmentError{Name: nf.Name, Errors: Errors{{File: nf.Name, Msg: "duplicate document name"}}})
			continue
		}
		seen[nf.Name] = true
		f, err := ParseFragment(nf.Name, nf.Data)
		if err != nil {
			es, _ := AsErrors(err)
			errs = append(errs, &FragmentError{Name: nf.Name, Errors: es})
			continue
		}
		next, es := m.add(f)
		if len(es) > 0 {
			errs = append(errs, &FragmentError{Name: nf.Name, Errors: es})
			continue
		}
		cur = next
	}
	return cur, errs
}

type merger struct {
	base     *Config
	baseline []string
	// owners maps "kind\x00name" to the fragment that defined it ("" for base).
	owners   map[string]string
	accepted []*Fragment
	// maxPriority is the highest priority a fragment's route may have.
	maxPriority int
}

func ownerKey(kind, name string) string { return kind + "\x00" + name }

func problemKey(p problem) string { return p.path.String() + "\x00" + p.msg }

// add validates f on top of base and the accepted fragments; on success it returns the new
// merged config and records f's names.
func (m *merger) add(f *Fragment) (*Config, Errors) {
	if es := m.collisions(f); len(es) > 0 {
		return nil, es
	}
	if es := m.outranks(f); len(es) > 0 {
		return nil, es
	}
	// Rebuilt from the raw fragments each time, so Defaults sees every service definition
	// whatever the document order (a route's default timeout comes from its service).
	c := m.base.clone()
	for _, a := range append(slices.Clip(m.accepted), f) {
		a.mergeInto(c)
	}
	c.Defaults()
	offset := len(c.Routes) - len(f.Routes)
	var es Errors
	for _, p := range validate(c) {
		if slices.Contains(m.baseline, problemKey(p)) || f.implicitService(p.path) {
			continue
		}
		es = append(es, f.locate(p, offset))
	}
	if len(es) > 0 {
		slices.SortStableFunc(es, func(a, b Error) int { return a.Line - b.Line })
		return nil, es
	}
	m.accepted = append(m.accepted, f)
	for _, r := range f.Routes {
		m.owners[ownerKey("route", r.Name)] = f.Name
	}
	for name := range f.Policies {
		m.owners[ownerKey("policy", name)] = f.Name
	}
	for name := range f.Services {
		m.owners[ownerKey("service", name)] = f.Name
	}
	return c, nil
}

// collisions reports names f shares with base, an accepted fragment or itself.
func (m *merger) collisions(f *Fragment) Errors {
	var es Errors
	clash := func(p path, kind, name string) {
		owner, ok := m.owners[ownerKey(kind, name)]
		if !ok {
			return
		}
		by := fmt.Sprintf("document %q", owner)
		if owner == "" {
			by = "the config file"
			if kind == "service" {
				by += " (in services: or as a file route's target)"
			}
		}
		es = append(es, Error{File: f.Name, Line: lineOf(f.root, p), Path: p.String(),
			Msg: fmt.Sprintf("%s %q is already defined by %s; names must be unique", kind, name, by)})
	}
	first := map[string]int{}
	for i, r := range f.Routes {
		p := path{"routes"}.idx(i).key("name")
		if r.Name == "" {
			continue // the validator reports it
		}
		if j, dup := first[r.Name]; dup {
			es = append(es, Error{File: f.Name, Line: lineOf(f.root, p), Path: p.String(),
				Msg: fmt.Sprintf("duplicate route name %q (also routes[%d])", r.Name, j)})
			continue
		}
		first[r.Name] = i
		clash(p, "route", r.Name)
	}
	for _, name := range slices.Sorted(maps.Keys(f.Policies)) {
		clash(path{"policies", name}, "policy", name)
	}
	for _, name := range slices.Sorted(maps.Keys(f.Services)) {
		clash(path{"services", name}, "service", name)
	}
	slices.SortStableFunc(es, func(a, b Error) int { return a.Line - b.Line })
	return es
}

// outranks reports f's routes whose priority is above the cap: whoever may write the KV prefix
// must not be able to put a route in front of the file's own (e.g. take over /login).
func (m *merger) outranks(f *Fragment) Errors {
	var es Errors
	for i, r := range f.Routes {
		if r.Priority <= m.maxPriority {
			continue
		}
		p := path{"routes"}.idx(i).key("priority")
		es = append(es, Error{File: f.Name, Line: lineOf(f.root, p), Path: p.String(),
			Msg: fmt.Sprintf("priority %d is above %d, the most a document route may have (discovery.consul.kv_max_priority; by default the highest priority of a file route): documents may not outrank the config file", r.Priority, m.maxPriority)})
	}
	return es
}

// mergeInto adds f's content to c, cloned, so Defaults on c never writes into f.
func (f *Fragment) mergeInto(c *Config) {
	for _, r := range f.Routes {
		c.Routes = append(c.Routes, r.clone())
	}
	if len(f.Policies) > 0 && c.Policies == nil {
		c.Policies = make(map[string]Policy, len(f.Policies))
	}
	for name, p := range f.Policies {
		c.Policies[name] = p.clone()
	}
	if len(f.Services) > 0 && c.Services == nil {
		c.Services = make(map[string]Service, len(f.Services))
	}
	for name, s := range f.Services {
		c.Services[name] = s.clone()
	}
}

// implicitService reports a problem in a services entry that Defaults made for one of f's
// route targets (f does not define it): the only thing wrong there is the name, which the
// route's own "to" problem already reports where the user wrote it.
func (f *Fragment) implicitService(p path) bool {
	if len(p) < 2 || p[0] != "services" {
		return false
	}
	name, _ := p[1].(string)
	if _, explicit := f.Services[name]; explicit {
		return false
	}
	for _, r := range f.Routes {
		for _, t := range r.To {
			if t.Service == name {
				return true
			}
		}
	}
	return false
}

// locate turns a problem found in the merged config into one located in f: routes[offset+i]
// becomes routes[i]; policies.X and services.X are f's own (names are unique). Anything else
// can only be an indirect effect and keeps its merged path, marked as such.
func (f *Fragment) locate(p problem, offset int) Error {
	fp := p.path
	inDoc := false
	if len(fp) >= 2 {
		switch fp[0] {
		case "routes":
			if i, ok := fp[1].(int); ok && i >= offset {
				fp = append(path{"routes", i - offset}, fp[2:]...)
				inDoc = true
			}
		case "policies", "services":
			name, _ := fp[1].(string)
			switch fp[0] {
			case "policies":
				_, inDoc = f.Policies[name]
			default:
				_, inDoc = f.Services[name]
			}
		}
	}
	if !inDoc {
		return Error{File: f.Name, Path: "(merged config) " + fp.String(), Msg: p.msg}
	}
	return Error{File: f.Name, Line: lineOf(f.root, fp), Path: fp.String(), Msg: p.msg}
}

// kvPrefix validates discovery.consul.kv_prefix: a Consul key prefix, without the leading "/"
// Consul keys never have and without empty segments (which would never match a document). A
// trailing "/" is allowed and ignored.
func (v *validator) kvPrefix(c *Config) {
	cc := c.Discovery.Consul
	if cc == nil || cc.KVPrefix == "" {
		return
	}
	p := path{"discovery", "consul", "kv_prefix"}
	pre := strings.TrimSuffix(cc.KVPrefix, "/")
	switch {
	case pre == "":
		v.add(p, "must name a prefix, not the whole KV store (e.g. meshgate/routes)")
	case strings.HasPrefix(pre, "/"):
		v.add(p, "%q: must not start with \"/\" (Consul keys do not)", cc.KVPrefix)
	case strings.Contains(pre, "//"):
		v.add(p, "%q: empty path segment", cc.KVPrefix)
	case strings.ContainsFunc(pre, func(r rune) bool { return r <= ' ' || r == 0x7f }):
		v.add(p, "%q: must not contain spaces or control characters", cc.KVPrefix)
	}
}
