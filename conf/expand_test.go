package conf

import (
	"strings"
	"testing"
)

func TestExpandEnv(t *testing.T) {
	t.Parallel()
	env := map[string]string{"PORT": "8080", "EMPTY": "", "HOST": "10.0.0.1", "NL": "a\nb"}
	lookup := func(k string) (string, bool) { v, ok := env[k]; return v, ok }
	tests := []struct {
		name, in, want string
		wantErr        string
		wantLine       int
	}{
		{name: "plain", in: "a: ${PORT}", want: "a: 8080"},
		{name: "two on a line", in: "a: ${HOST}:${PORT}", want: "a: 10.0.0.1:8080"},
		{name: "default unused", in: "a: ${PORT:-9}", want: "a: 8080"},
		{name: "default for unset", in: "a: ${NOPE:-127.0.0.1:9901}", want: "a: 127.0.0.1:9901"},
		{name: "default for empty", in: "a: ${EMPTY:-x}", want: "a: x"},
		{name: "empty default", in: "a: '${NOPE:-}'", want: "a: ''"},
		{name: "set but empty", in: "a: '${EMPTY}'", want: "a: ''"},
		{name: "dollar escape", in: "a: $${PORT} $$", want: "a: ${PORT} $"},
		{name: "lone dollar kept", in: "re: ^/api$\nb: $x", want: "re: ^/api$\nb: $x"},
		{name: "trailing dollar", in: "a: b$", want: "a: b$"},
		{name: "comment line skipped", in: "# uses ${NOPE}\n  # and ${X}\na: 1", want: "# uses ${NOPE}\n  # and ${X}\na: 1"},
		{name: "unset", in: "a: 1\nb: ${NOPE}", wantErr: "environment variable NOPE is not set", wantLine: 2},
		{name: "unterminated", in: "a: 1\n\nb: ${PORT\nc: 1", wantErr: "unterminated", wantLine: 3},
		{name: "bad name", in: "a: ${1X}", wantErr: "invalid variable reference ${1X}", wantLine: 1},
		{name: "empty name", in: "a: ${}", wantErr: "invalid variable reference", wantLine: 1},
		{name: "nested default", in: "a: ${A:-${B}}", wantErr: "nested", wantLine: 1},
		{name: "newline in value", in: "x: 1\na: ${NL}", wantErr: "NL contains a newline", wantLine: 2},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			got, errs := expandEnv([]byte(tt.in), lookup)
			if tt.wantErr != "" {
				if len(errs) != 1 {
					t.Fatalf("errs = %v, want one", errs)
				}
				if !strings.Contains(errs[0].msg, tt.wantErr) || errs[0].line != tt.wantLine {
					t.Fatalf("err = line %d %q, want line %d containing %q", errs[0].line, errs[0].msg, tt.wantLine, tt.wantErr)
				}
				return
			}
			if len(errs) > 0 {
				t.Fatalf("unexpected errors %v", errs)
			}
			if string(got) != tt.want {
				t.Fatalf("got %q, want %q", got, tt.want)
			}
		})
	}
}

func TestExpandReportsEveryVariable(t *testing.T) {
	t.Parallel()
	_, errs := expandEnv([]byte("a: ${A}\nb: ${B}\nc: ${C:-ok}\nd: ${D}"), func(string) (string, bool) { return "", false })
	var got []int
	for _, e := range errs {
		got = append(got, e.line)
	}
	if len(got) != 3 || got[0] != 1 || got[1] != 2 || got[2] != 4 {
		t.Fatalf("error lines = %v, want [1 2 4]", got)
	}
}
