package host

import (
	"bytes"
	"fmt"
	"io"
	"log"
	"strings"

	"github.com/hashicorp/go-hclog"
	"github.com/rs/zerolog"
)

// Log field names, shared by every line this package writes.
const (
	fieldPlugin = "plugin"
	// fieldSource says who wrote a line: "plugin" (its log, re-logged at its level),
	// "stdout"/"stderr" (what it printed outside its logger) or "go-plugin" (the library's
	// own messages about the process).
	fieldSource = "source"
	fieldPID    = "pid"
	fieldPath   = "path"
)

// hclogger is the hclog.Logger go-plugin is given: it re-logs into our zerolog logger, which
// already carries plugin=<name>. go-plugin parses the plugin's JSON log lines (sdk.NewLogger)
// from its stderr and logs each under Named(<binary's base name>), at the line's level;
// everything else it logs is its own.
type hclogger struct {
	z    zerolog.Logger
	name string
	args []any
	// pluginName is the name go-plugin gives the plugin's own log lines.
	pluginName string
}

var _ hclog.Logger = (*hclogger)(nil)

func newHCLogger(z zerolog.Logger, pluginName string) *hclogger {
	return &hclogger{z: z, pluginName: pluginName}
}

func (l *hclogger) Log(level hclog.Level, msg string, args ...any) {
	zl, source := zerologLevel(level), "plugin"
	if l.name != l.pluginName {
		source = "go-plugin"
		// go-plugin narrates every start and stop at Info ("starting plugin", "plugin
		// process exited"); we log those events ourselves, once, with what they mean for
		// requests. Its warnings and errors stay as they are.
		if zl < zerolog.WarnLevel {
			zl = zerolog.DebugLevel
		}
	}
	e := l.z.WithLevel(zl)
	if !e.Enabled() {
		return
	}
	e.Str(fieldSource, source)
	addFields(e, l.args)
	addFields(e, args)
	e.Msg(msg)
}

func addFields(e *zerolog.Event, kv []any) {
	for i := 0; i+1 < len(kv); i += 2 {
		k, ok := kv[i].(string)
		if !ok {
			k = fmt.Sprint(kv[i])
		}
		switch k {
		case fieldPlugin:
			// go-plugin's name for the executable's path; ours is the configured name.
			k = "executable"
		case fieldSource, zerolog.LevelFieldName, zerolog.MessageFieldName, zerolog.TimestampFieldName:
			k = "arg_" + k
		}
		switch v := kv[i+1].(type) {
		case string:
			e.Str(k, v)
		case error:
			e.AnErr(k, v)
		default:
			e.Interface(k, v)
		}
	}
	if len(kv)%2 == 1 {
		e.Interface("EXTRA_VALUE_AT_END", kv[len(kv)-1]) // hclog's own name for it
	}
}

func zerologLevel(l hclog.Level) zerolog.Level {
	switch l {
	case hclog.Trace:
		return zerolog.TraceLevel
	case hclog.Debug:
		return zerolog.DebugLevel
	case hclog.Warn:
		return zerolog.WarnLevel
	case hclog.Error:
		return zerolog.ErrorLevel
	default:
		return zerolog.InfoLevel
	}
}

func (l *hclogger) Trace(msg string, args ...any) { l.Log(hclog.Trace, msg, args...) }
func (l *hclogger) Debug(msg string, args ...any) { l.Log(hclog.Debug, msg, args...) }
func (l *hclogger) Info(msg string, args ...any)  { l.Log(hclog.Info, msg, args...) }
func (l *hclogger) Warn(msg string, args ...any)  { l.Log(hclog.Warn, msg, args...) }
func (l *hclogger) Error(msg string, args ...any) { l.Log(hclog.Error, msg, args...) }

// GetLevel is what zerolog would let through: go-plugin skips parsing the plugin's lines
// below it.
func (l *hclogger) GetLevel() hclog.Level {
	switch max(l.z.GetLevel(), zerolog.GlobalLevel()) {
	case zerolog.TraceLevel:
		return hclog.Trace
	case zerolog.DebugLevel:
		return hclog.Debug
	case zerolog.InfoLevel:
		return hclog.Info
	case zerolog.WarnLevel:
		return hclog.Warn
	case zerolog.ErrorLevel:
		return hclog.Error
	default:
		return hclog.Off
	}
}

func (l *hclogger) IsTrace() bool { return l.GetLevel() <= hclog.Trace }
func (l *hclogger) IsDebug() bool { return l.GetLevel() <= hclog.Debug }
func (l *hclogger) IsInfo() bool  { return l.GetLevel() <= hclog.Info }
func (l *hclogger) IsWarn() bool  { return l.GetLevel() <= hclog.Warn }
func (l *hclogger) IsError() bool { return l.GetLevel() <= hclog.Error }

// SetLevel does nothing: the level is zerolog's.
func (*hclogger) SetLevel(hclog.Level) {}

func (l *hclogger) ImpliedArgs() []any { return l.args }

func (l *hclogger) With(args ...any) hclog.Logger {
	c := *l
	c.args = append(append([]any(nil), l.args...), args...)
	return &c
}

func (l *hclogger) Name() string { return l.name }

func (l *hclogger) Named(name string) hclog.Logger {
	c := *l
	if c.name != "" {
		name = c.name + "." + name
	}
	c.name = name
	return &c
}

func (l *hclogger) ResetNamed(name string) hclog.Logger {
	c := *l
	c.name = name
	return &c
}

func (l *hclogger) StandardLogger(opts *hclog.StandardLoggerOptions) *log.Logger {
	return log.New(l.StandardWriter(opts), "", 0)
}

func (l *hclogger) StandardWriter(opts *hclog.StandardLoggerOptions) io.Writer {
	level := zerolog.InfoLevel
	if opts != nil && opts.ForceLevel != hclog.NoLevel {
		level = zerologLevel(opts.ForceLevel)
	}
	return &lineWriter{z: l.z, level: level, source: "go-plugin"}
}

// lineWriter logs each line written to it: what a plugin prints on its stdout or stderr
// outside its logger (go-plugin forwards those streams over gRPC, in chunks). Each stream is
// written from one goroutine, so it needs no lock; a line split across two chunks is logged
// as two lines rather than held back.
type lineWriter struct {
	z      zerolog.Logger
	level  zerolog.Level
	source string
}

func (w *lineWriter) Write(p []byte) (int, error) {
	for line := range bytes.SplitSeq(p, []byte{'\n'}) {
		if s := strings.TrimRight(string(line), "\r \t"); s != "" {
			w.z.WithLevel(w.level).Str(fieldSource, w.source).Msg(s)
		}
	}
	return len(p), nil
}
