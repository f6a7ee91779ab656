package route

import (
	"strconv"
	"strings"
)

// Info is the JSON view of a route for the admin /routes listing. It is built on demand (admin
// traffic is rare) so the hot-path Route stays free of presentation concerns.
type Info struct {
	Index         int          `json:"index"`
	Name          string       `json:"name"`
	Priority      int          `json:"priority"`
	Hosts         []string     `json:"hosts,omitempty"`
	Path          string       `json:"path,omitempty"`
	PathPrefix    string       `json:"path_prefix,omitempty"`
	PathRegex     string       `json:"path_regex,omitempty"`
	Methods       []string     `json:"methods,omitempty"`
	Headers       []MatchInfo  `json:"headers,omitempty"`
	Query         []MatchInfo  `json:"query,omitempty"`
	RewritePrefix string       `json:"rewrite_prefix,omitempty"`
	Targets       []TargetInfo `json:"targets"`
	Timeout       string       `json:"timeout,omitempty"`
}

// MatchInfo is the JSON view of a ValueMatch.
type MatchInfo struct {
	Name    string `json:"name"`
	Exact   string `json:"exact,omitempty"`
	Regex   string `json:"regex,omitempty"`
	Present *bool  `json:"present,omitempty"`
}

// TargetInfo is the JSON view of a Target, with the effective weight.
type TargetInfo struct {
	Service string `json:"service"`
	Weight  int    `json:"weight"`
}

// Info returns a JSON-able description of the route.
func (r *Route) Info() Info {
	s := r.Spec
	in := Info{
		Index:         r.Index,
		Name:          r.Name,
		Priority:      r.Priority,
		Hosts:         s.Hosts,
		Path:          s.Path,
		PathPrefix:    s.PathPrefix,
		PathRegex:     s.PathRegex,
		Methods:       s.Methods,
		Headers:       matchInfos(s.Headers),
		Query:         matchInfos(s.Query),
		RewritePrefix: s.RewritePrefix,
		Targets:       make([]TargetInfo, 0, len(r.Targets)),
	}
	if r.Timeout > 0 {
		in.Timeout = r.Timeout.String()
	}
	for _, t := range r.Targets {
		in.Targets = append(in.Targets, TargetInfo(t))
	}
	return in
}

func matchInfos(vs []ValueMatch) []MatchInfo {
	if len(vs) == 0 {
		return nil
	}
	out := make([]MatchInfo, 0, len(vs))
	for _, v := range vs {
		out = append(out, MatchInfo(v))
	}
	return out
}

// Describe returns a one-line human summary, e.g.
//
//	api priority=10 hosts=api.example.com path_prefix=/api methods=GET,HEAD -> api-v1:90,api-v2:10
func (r *Route) Describe() string {
	var b strings.Builder
	s := r.Spec
	b.WriteString(r.Name)
	b.WriteString(" priority=")
	b.WriteString(strconv.Itoa(r.Priority))
	if len(s.Hosts) > 0 {
		b.WriteString(" hosts=" + strings.Join(s.Hosts, ","))
	}
	switch {
	case s.Path != "":
		b.WriteString(" path=" + s.Path)
	case s.PathPrefix != "":
		b.WriteString(" path_prefix=" + s.PathPrefix)
	case s.PathRegex != "":
		b.WriteString(" path_regex=" + strconv.Quote(s.PathRegex))
	}
	if len(s.Methods) > 0 {
		b.WriteString(" methods=" + strings.Join(s.Methods, ","))
	}
	writeValues(&b, " header:", s.Headers)
	writeValues(&b, " query:", s.Query)
	if s.RewritePrefix != "" {
		b.WriteString(" rewrite=" + s.RewritePrefix)
	}
	b.WriteString(" ->")
	for i, t := range r.Targets {
		if i == 0 {
			b.WriteByte(' ')
		} else {
			b.WriteByte(',')
		}
		b.WriteString(t.Service + ":" + strconv.Itoa(t.Weight))
	}
	return b.String()
}

func writeValues(b *strings.Builder, prefix string, vs []ValueMatch) {
	for _, v := range vs {
		b.WriteString(prefix + v.Name)
		switch {
		case v.Present != nil && *v.Present:
			b.WriteString(" present")
		case v.Present != nil:
			b.WriteString(" absent")
		case v.Regex != "":
			b.WriteString("~" + strconv.Quote(v.Regex))
		default:
			b.WriteString("=" + strconv.Quote(v.Exact))
		}
	}
}
