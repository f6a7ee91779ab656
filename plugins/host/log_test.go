package host

import (
	"encoding/json"
	"errors"
	"strings"
	"testing"

	"github.com/hashicorp/go-hclog"
	"github.com/rs/zerolog"
)

func logLines(t *testing.T, s string) []map[string]any {
	t.Helper()
	var out []map[string]any
	for line := range strings.Lines(s) {
		var m map[string]any
		if err := json.Unmarshal([]byte(line), &m); err != nil {
			t.Fatalf("not JSON: %q", line)
		}
		out = append(out, m)
	}
	return out
}

func TestHCLogger(t *testing.T) {
	t.Parallel()
	var buf strings.Builder
	z := zerolog.New(&buf).Level(zerolog.DebugLevel).With().Str(fieldPlugin, "auth").Logger()
	root := newHCLogger(z, "apikey")

	// What go-plugin does with a plugin's JSON log line: Named(<binary>), its level, its pairs.
	root.Named("apikey").Warn("key rotated", "keys", 3, "err", errors.New("boom"))
	// go-plugin's own narration: demoted to debug, its "plugin" (a path) renamed.
	root.Info("starting plugin", "plugin", "/opt/apikey", "level", "x")
	root.With("id", "7").Named("stdio").Error("stdio failed")
	root.Named("apikey").Trace("below our level")

	lines := logLines(t, buf.String())
	if len(lines) != 3 {
		t.Fatalf("%d lines, want 3 (trace dropped):\n%s", len(lines), buf.String())
	}
	want := []map[string]any{
		{"level": "warn", "plugin": "auth", "source": "plugin", "keys": float64(3), "err": "boom", "message": "key rotated"},
		{"level": "debug", "plugin": "auth", "source": "go-plugin", "executable": "/opt/apikey", "arg_level": "x", "message": "starting plugin"},
		{"level": "error", "plugin": "auth", "source": "go-plugin", "id": "7", "message": "stdio failed"},
	}
	for i, w := range want {
		for k, v := range w {
			if lines[i][k] != v {
				t.Errorf("line %d: %s = %v, want %v (%v)", i, k, lines[i][k], v, lines[i])
			}
		}
	}
	if root.GetLevel() != hclog.Debug || root.IsTrace() || !root.IsDebug() {
		t.Errorf("level = %s, want debug (zerolog's)", root.GetLevel())
	}
}

func TestLineWriter(t *testing.T) {
	t.Parallel()
	var buf strings.Builder
	w := &lineWriter{z: zerolog.New(&buf), level: zerolog.WarnLevel, source: "stderr"}
	in := "first\r\n\nsecond line\n  \n"
	if n, err := w.Write([]byte(in)); n != len(in) || err != nil {
		t.Fatalf("Write = %d, %v; want %d, nil", n, err, len(in))
	}
	lines := logLines(t, buf.String())
	if len(lines) != 2 || lines[0]["message"] != "first" || lines[1]["message"] != "second line" ||
		lines[0]["source"] != "stderr" || lines[0]["level"] != "warn" {
		t.Errorf("lines = %v", lines)
	}
}
