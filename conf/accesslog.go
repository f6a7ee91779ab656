package conf

import (
	"fmt"
	"maps"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"time"
)

// Sink kinds of access_log.sinks[].kind. Kafka is not implemented yet; naming it in the error
// tells a user it was not forgotten by accident.
const (
	SinkNATS = "nats"
	SinkOTLP = "otlp"
)

const (
	defaultSpoolMaxBytes = 1 << 30
	defaultSpoolMaxAge   = Duration(24 * time.Hour)
	// The shipper's defaults; package accesslog/ship has the same values for callers that set
	// none. Filled in here so /config shows what a sink runs with.
	defaultSinkBatch = 256
	defaultSinkFlush = 50 * time.Millisecond
	defaultSinkAck   = 5 * time.Second
	defaultSinkQueue = 8192
	maxSinkQueue     = 1 << 20
	maxSinkBatch     = 1 << 16
	maxSinkFlush     = Duration(time.Minute)
	maxLogFlush      = Duration(time.Minute)
	minSinkAck       = Duration(10 * time.Millisecond)
	maxSinkAck       = Duration(5 * time.Minute)
)

// defaults fills in sink names and the spool caps; only when sinks are configured, so the
// effective config of a plain access log stays as short as before.
func (a *AccessLog) defaults() {
	if len(a.Sinks) == 0 {
		return
	}
	for i := range a.Sinks {
		s := &a.Sinks[i]
		if s.Name == "" {
			s.Name = s.Kind
		}
		if s.QueueSize == 0 {
			s.QueueSize = defaultSinkQueue
		}
		if s.BatchSize == 0 {
			s.BatchSize = min(defaultSinkBatch, s.QueueSize)
		}
		setDur(&s.FlushInterval, defaultSinkFlush)
		setDur(&s.AckTimeout, defaultSinkAck)
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
	if a.FlushInterval < 0 || a.FlushInterval > maxLogFlush {
		v.add(p.key("flush_interval"), "must be more than 0 and at most %s (got %s)", maxLogFlush, a.FlushInterval)
	}
	seen := map[string]int{}
	for i, s := range a.Sinks {
		sp := p.key("sinks").idx(i)
		switch s.Kind {
		case SinkNATS:
			v.natsSink(sp, s)
		case SinkOTLP:
			v.otlpSink(sp, s)
		case "":
			v.add(sp.key("kind"), "is required (nats or otlp)")
		default:
			v.add(sp.key("kind"), "%q is not a sink kind: nats or otlp (kafka is not implemented)", s.Kind)
		}
		v.sinkBatching(sp, s)
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

// sinkBatching checks the shipper keys. Zero is "the default" (filled in by defaults); the
// upper bounds are where a value stops being a setting and becomes a mistake: memory for the
// queue and the batch, and waits that would hold lines back for minutes.
func (v *validator) sinkBatching(p path, s LogSink) {
	if s.QueueSize < 0 || s.QueueSize > maxSinkQueue {
		v.add(p.key("queue_size"), "must be 1..%d (got %d)", maxSinkQueue, s.QueueSize)
	}
	if s.BatchSize < 0 || s.BatchSize > maxSinkBatch {
		v.add(p.key("batch_size"), "must be 1..%d (got %d)", maxSinkBatch, s.BatchSize)
	} else if s.QueueSize > 0 && s.BatchSize > s.QueueSize {
		// A batch fills from the queue: one larger than it only ever goes out on the timer.
		v.add(p.key("batch_size"), "must not exceed queue_size (%d > %d)", s.BatchSize, s.QueueSize)
	}
	if s.FlushInterval < 0 || s.FlushInterval > maxSinkFlush {
		v.add(p.key("flush_interval"), "must be more than 0 and at most %s (got %s)", maxSinkFlush, s.FlushInterval)
	}
	if s.AckTimeout != 0 && (s.AckTimeout < minSinkAck || s.AckTimeout > maxSinkAck) {
		v.add(p.key("ack_timeout"), "must be %s..%s (got %s)", minSinkAck, maxSinkAck, s.AckTimeout)
	}
}

// otlpSink checks an OTLP/HTTP logs sink. The endpoint is checked as tracing.endpoint is.
func (v *validator) otlpSink(p path, s LogSink) {
	if u, err := url.Parse(s.Endpoint); s.Endpoint == "" {
		v.add(p.key("endpoint"), "the collector's OTLP/HTTP URL is required (http://collector:4318)")
	} else if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || u.RawQuery != "" || u.Fragment != "" {
		v.add(p.key("endpoint"), "%q: want http(s)://host:port, optionally with a path; lines go to its /v1/logs", s.Endpoint)
	} else if u.User != nil {
		v.add(p.key("endpoint"), "credentials in the URL are not supported: use headers")
	}
	for _, k := range slices.Sorted(maps.Keys(s.Headers)) {
		switch {
		case !isToken(k):
			v.add(p.key("headers").key(k), "%q is not a valid header name", k)
		case strings.EqualFold(k, "Content-Type") || strings.EqualFold(k, "Content-Length") || strings.EqualFold(k, "Host"):
			v.add(p.key("headers").key(k), "%s is set by the exporter", http.CanonicalHeaderKey(k))
		case strings.ContainsAny(s.Headers[k], "\r\n\x00"):
			v.add(p.key("headers").key(k), "a header value has no line breaks")
		}
	}
	for _, k := range []struct {
		key string
		set bool
	}{{"url", s.URL != ""}, {"subject", s.Subject != ""}, {"stream", s.Stream != ""}} {
		if k.set {
			v.add(p.key(k.key), "is a nats sink key; an otlp sink takes endpoint and headers")
		}
	}
}

func (v *validator) natsSink(p path, s LogSink) {
	if s.Endpoint != "" {
		v.add(p.key("endpoint"), "is an otlp sink key; a nats sink takes url, subject and stream")
	}
	if len(s.Headers) > 0 {
		v.add(p.key("headers"), "is an otlp sink key; a nats sink takes url, subject and stream")
	}
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
	return a.Output == b.Output && a.BufferSize == b.BufferSize && a.FlushInterval == b.FlushInterval &&
		a.Spool == b.Spool && slices.EqualFunc(a.Sinks, b.Sinks, LogSink.Equal)
}

// Equal reports whether a and b configure the same sink (Headers is a map).
func (a LogSink) Equal(b LogSink) bool {
	return a.Name == b.Name && a.Kind == b.Kind && a.URL == b.URL && a.Subject == b.Subject && a.Stream == b.Stream &&
		a.Endpoint == b.Endpoint && maps.Equal(a.Headers, b.Headers) && a.BatchSize == b.BatchSize &&
		a.FlushInterval == b.FlushInterval && a.AckTimeout == b.AckTimeout && a.QueueSize == b.QueueSize
}
