package conf

import (
	"fmt"
	"net/url"
	"slices"
	"strings"
	"time"
)

// Sink kinds of access_log.sinks[].kind. OTLP logs and Kafka are not implemented yet; naming
// them in the error tells a user they were not forgotten by accident.
const (
	SinkNATS = "nats"
)

const (
	defaultSpoolMaxBytes = 1 << 30
	defaultSpoolMaxAge   = Duration(24 * time.Hour)
)

// defaults fills in sink names and the spool caps; only when sinks are configured, so the
// effective config of a plain access log stays as short as before.
func (a *AccessLog) defaults() {
	if len(a.Sinks) == 0 {
		return
	}
	for i := range a.Sinks {
		if a.Sinks[i].Name == "" {
			a.Sinks[i].Name = a.Sinks[i].Kind
		}
	}
	if a.Spool.MaxBytes == 0 {
		a.Spool.MaxBytes = defaultSpoolMaxBytes
	}
	if a.Spool.MaxAge == 0 {
		a.Spool.MaxAge = defaultSpoolMaxAge
	}
}

func (v *validator) accessLog(c *Config) {
	a := c.AccessLog
	p := path{"access_log"}
	if a.Output == "" {
		v.add(p.key("output"), "must not be empty (use \"off\" to disable)")
	}
	if a.BufferSize < 0 {
		v.add(p.key("buffer_size"), "must not be negative")
	}
	seen := map[string]int{}
	for i, s := range a.Sinks {
		sp := p.key("sinks").idx(i)
		switch s.Kind {
		case SinkNATS:
			v.natsSink(sp, s)
		case "":
			v.add(sp.key("kind"), "is required (nats)")
		default:
			v.add(sp.key("kind"), "%q is not a sink kind: nats (otlp and kafka are not implemented)", s.Kind)
		}
		switch j, dup := seen[s.Name]; {
		case dup:
			v.add(sp.key("name"), "duplicate sink name %q (also access_log.sinks[%d]); name the sinks", s.Name, j)
		case strings.ContainsAny(s.Name, `/\ `) || s.Name == "." || s.Name == "..":
			v.add(sp.key("name"), "%q: a sink name is a directory name under spool.dir (no slashes or spaces)", s.Name)
		default:
			seen[s.Name] = i
		}
	}
	if len(a.Sinks) > 0 && a.Spool.Dir == "" {
		v.add(p.key("spool").key("dir"), "is required with sinks: lines wait there while a sink fails")
	}
	v.nonNeg(p.key("spool").key("max_bytes"), int64(a.Spool.MaxBytes))
	v.nonNegDur(p.key("spool").key("max_age"), a.Spool.MaxAge)
}

func (v *validator) natsSink(p path, s LogSink) {
	if s.URL == "" {
		v.add(p.key("url"), "is required (nats://host:4222)")
	}
	for u := range strings.SplitSeq(s.URL, ",") {
		if s.URL == "" {
			break
		}
		if err := checkNATSURL(strings.TrimSpace(u)); err != nil {
			v.add(p.key("url"), "%v", err)
		}
	}
	if s.Subject == "" {
		v.add(p.key("subject"), "is required")
	} else if strings.ContainsAny(s.Subject, " \t*>") || strings.HasPrefix(s.Subject, ".") || strings.HasSuffix(s.Subject, ".") || strings.Contains(s.Subject, "..") {
		v.add(p.key("subject"), "%q: a publish subject has no spaces or wildcards and no empty tokens", s.Subject)
	}
	if s.Stream == "" {
		v.add(p.key("stream"), "is required (a JetStream stream capturing the subject)")
	} else if strings.ContainsAny(s.Stream, " \t.*>/\\") {
		v.add(p.key("stream"), "%q: a stream name has no spaces, dots, wildcards or slashes", s.Stream)
	}
}

func checkNATSURL(s string) error {
	u, err := url.Parse(s)
	if err != nil || u.Host == "" {
		return fmt.Errorf("%q is not a URL: want nats://host:port", s)
	}
	switch u.Scheme {
	case "nats", "tls":
	default:
		return fmt.Errorf("%q: scheme must be nats or tls", s)
	}
	if u.Port() == "" {
		return fmt.Errorf("%q: a port is required (4222 is NATS's)", s)
	}
	return nil
}

// Equal reports whether a and b configure the same access log (AccessLog holds a slice, so ==
// does not compile).
func (a AccessLog) Equal(b AccessLog) bool {
	return a.Output == b.Output && a.BufferSize == b.BufferSize && a.Spool == b.Spool && slices.Equal(a.Sinks, b.Sinks)
}
