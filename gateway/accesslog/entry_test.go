package accesslog

import (
	"bytes"
	"encoding/json"
	"math/rand/v2"
	"net/netip"
	"strconv"
	"strings"
	"testing"
	"time"
)

func decodeLine(t *testing.T, line []byte) map[string]any {
	t.Helper()
	if !bytes.HasSuffix(line, []byte("\n")) || bytes.Count(line, []byte("\n")) != 1 {
		t.Fatalf("line must end in exactly one newline: %q", line)
	}
	var m map[string]any
	if err := json.Unmarshal(line, &m); err != nil {
		t.Fatalf("invalid JSON %q: %v", line, err)
	}
	return m
}

func fullEntry() Entry {
	return Entry{
		Time:             time.Date(2024, 5, 6, 7, 8, 9, 123456789, time.FixedZone("x", 3600)),
		Duration:         1500 * time.Microsecond,
		UpstreamDuration: 1234567 * time.Nanosecond,
		BytesIn:          10,
		BytesOut:         2048,
		Status:           502,
		Attempts:         3,
		ClientIP:         netip.MustParseAddr("::ffff:192.0.2.7"),
		RequestID:        []byte("req-1"),
		Method:           []byte("GET"),
		Host:             []byte("api.example.com"),
		Path:             []byte("/v1/items?q=1"),
		UserAgent:        []byte("curl/8.0"),
		Route:            "api",
		Service:          "items",
		Upstream:         "10.0.0.5:8080",
		Listener:         "public",
		Error:            "upstream_timeout",
	}
}

func TestAppendJSONFields(t *testing.T) {
	t.Parallel()
	full := fullEntry()
	noErr := fullEntry()
	noErr.Error = ""
	v6 := fullEntry()
	v6.ClientIP = netip.MustParseAddr("2001:db8::1")
	noIP := fullEntry()
	noIP.ClientIP = netip.Addr{}

	tests := []struct {
		name   string
		entry  Entry
		want   map[string]any
		absent []string
	}{
		{
			name:  "all fields",
			entry: full,
			want: map[string]any{
				FieldTime: "2024-05-06T06:08:09.123456789Z", FieldStatus: 502.0, FieldMethod: "GET",
				FieldPath: "/v1/items?q=1", FieldHost: "api.example.com", FieldRoute: "api",
				FieldService: "items", FieldUpstream: "10.0.0.5:8080", FieldClientIP: "192.0.2.7",
				FieldRequestID: "req-1", FieldDurationMS: 1.5, FieldUpstreamMS: 1.235,
				FieldBytesIn: 10.0, FieldBytesOut: 2048.0, FieldAttempts: 3.0,
				FieldError: "upstream_timeout", FieldUserAgent: "curl/8.0", FieldListener: "public",
			},
		},
		{name: "error omitted when empty", entry: noErr, want: map[string]any{FieldStatus: 502.0}, absent: []string{FieldError}},
		{name: "ipv6 client", entry: v6, want: map[string]any{FieldClientIP: "2001:db8::1"}},
		{name: "no client ip", entry: noIP, want: map[string]any{FieldClientIP: ""}},
		{
			name:  "zero entry",
			entry: Entry{},
			want: map[string]any{
				FieldStatus: 0.0, FieldMethod: "", FieldPath: "", FieldDurationMS: 0.0, FieldAttempts: 0.0,
			},
			absent: []string{FieldError},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			m := decodeLine(t, AppendJSON(nil, &tt.entry))
			for k, want := range tt.want {
				if got, ok := m[k]; !ok || got != want {
					t.Errorf("%s = %#v (present %v), want %#v", k, got, ok, want)
				}
			}
			for _, k := range tt.absent {
				if _, ok := m[k]; ok {
					t.Errorf("%s present, want absent", k)
				}
			}
			// Every line carries the full schema (except the optional error), so log
			// pipelines never see a field appear and disappear.
			if want := 17; len(m) < want {
				t.Errorf("got %d fields, want at least %d: %v", len(m), want, m)
			}
		})
	}
}

func TestAppendJSONZeroTimeIsNow(t *testing.T) {
	t.Parallel()
	before := time.Now().Add(-time.Second)
	m := decodeLine(t, AppendJSON(nil, &Entry{}))
	ts, err := time.Parse(time.RFC3339Nano, m[FieldTime].(string))
	if err != nil {
		t.Fatalf("parse ts: %v", err)
	}
	if ts.Before(before) || ts.After(time.Now().Add(time.Second)) {
		t.Fatalf("ts %s is not about now", ts)
	}
}

func TestAppendJSONTruncates(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name  string
		entry Entry
		field string
		max   int
	}{
		{"path", Entry{Path: []byte("/" + strings.Repeat("a", 4000))}, FieldPath, MaxPathBytes},
		{"user agent", Entry{UserAgent: bytes.Repeat([]byte("u"), 4000)}, FieldUserAgent, MaxUserAgentBytes},
		{"host", Entry{Host: bytes.Repeat([]byte("h"), 4000)}, FieldHost, MaxHostBytes},
		{"request id", Entry{RequestID: bytes.Repeat([]byte("r"), 4000)}, FieldRequestID, MaxRequestIDBytes},
		// 'é' is two bytes: a 512-byte cut through "/ééé..." would split a rune, so the
		// truncation must back off one byte rather than emit U+FFFD.
		{"rune boundary", Entry{Path: []byte("/" + strings.Repeat("é", 400))}, FieldPath, MaxPathBytes},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			got := decodeLine(t, AppendJSON(nil, &tt.entry))[tt.field].(string)
			if len(got) > tt.max || len(got) < tt.max-3 {
				t.Fatalf("len(%s) = %d, want in [%d, %d]", tt.field, len(got), tt.max-3, tt.max)
			}
			if strings.ContainsRune(got, '\uFFFD') {
				t.Fatalf("truncation produced a replacement character: %q", got[len(got)-8:])
			}
		})
	}
}

func TestAppendStringMatchesEncodingJSON(t *testing.T) {
	t.Parallel()
	tests := []struct{ name, in string }{
		{"plain", "hello"},
		{"empty", ""},
		{"quote and backslash", `a"b\c`},
		{"newlines and tabs", "a\nb\rc\td"},
		{"control chars", "\x00\x01\x1f\x7f"},
		{"log injection", "x\"}\n{\"status\":200"},
		{"utf8", "héllo, 世界 🙂"},
		{"invalid utf8", "a\xffb\xc3"},
		{"truncated rune", "\xe4\xb8"},
		{"line separators", "a\u2028b\u2029c"},
		{"html is left alone", "<a&b>"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			for _, enc := range [][]byte{appendString(nil, tt.in), appendString(nil, []byte(tt.in))} {
				if !json.Valid(enc) {
					t.Fatalf("invalid JSON: %q", enc)
				}
				var got string
				if err := json.Unmarshal(enc, &got); err != nil {
					t.Fatalf("unmarshal %q: %v", enc, err)
				}
				want := roundTrip(t, tt.in)
				if got != want {
					t.Fatalf("decoded %q, want %q (encoded %q)", got, want, enc)
				}
				if bytes.ContainsAny(enc, "\n\r") {
					t.Fatalf("raw newline in encoded string: %q", enc)
				}
			}
		})
	}
}

// roundTrip is what encoding/json makes of s: the reference the hand-written encoder must match.
func roundTrip(t testing.TB, s string) string {
	t.Helper()
	ref, err := json.Marshal(s)
	if err != nil {
		t.Fatalf("marshal: %v", err)
	}
	var want string
	if err := json.Unmarshal(ref, &want); err != nil {
		t.Fatalf("unmarshal reference: %v", err)
	}
	return want
}

func FuzzAppendString(f *testing.F) {
	for _, s := range []string{"", "a", "\"\\", "\x00\n", "é", "\xff", "\u2028", "🙂\xf0\x9f"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		enc := appendString(nil, s)
		var got string
		if err := json.Unmarshal(enc, &got); err != nil {
			t.Fatalf("invalid JSON %q: %v", enc, err)
		}
		if want := roundTrip(t, s); got != want {
			t.Fatalf("decoded %q, want %q", got, want)
		}
		if tr := truncate(s, 7); len(tr) > 7 || !strings.HasPrefix(s, tr) {
			t.Fatalf("truncate(%q, 7) = %q", s, tr)
		}
	})
}

// The integer encoding of durations writes what strconv's float formatting wrote, and rounds
// halves up where the float's rounding depended on its binary value.
func TestAppendMillisMatchesFloatFormatting(t *testing.T) {
	exact := map[time.Duration]string{
		0: "0.000", 500: "0.001", 1499: "0.001", 1500 * time.Microsecond: "1.500",
		999_999: "1.000", time.Hour: "3600000.000", -2500: "-0.003", -1499: "-0.001",
	}
	for d, want := range exact {
		if got := string(appendMillis(nil, d)); got != want {
			t.Errorf("appendMillis(%d ns) = %s, want %s", int64(d), got, want)
		}
	}
	r := rand.New(rand.NewPCG(1, 2))
	for range 100000 {
		d := time.Duration(r.Int64N(int64(10 * time.Minute)))
		if d%time.Microsecond == time.Microsecond/2 {
			continue // a half: the float rounds it by its binary value
		}
		want := strconv.AppendFloat(nil, float64(d)/float64(time.Millisecond), 'f', 3, 64)
		if got := appendMillis(nil, d); string(got) != string(want) {
			t.Fatalf("appendMillis(%d ns) = %s, strconv wrote %s", int64(d), got, want)
		}
	}
}
