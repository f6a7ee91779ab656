package apikey

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/valyala/fasthttp"

	"github.com/meshgate/meshgate/gateway/filter"
)

func line(consumer, plain string) string {
	s := sha256.Sum256([]byte(plain))
	return consumer + ":" + hex.EncodeToString(s[:]) + "\n"
}

func run(f *Filter, uri string, hdr map[string]string) (filter.Verdict, *fasthttp.RequestCtx, *filter.Request) {
	var ctx fasthttp.RequestCtx
	ctx.Request.SetRequestURI(uri)
	for k, v := range hdr {
		ctx.Request.Header.Set(k, v)
	}
	r := &filter.Request{Ctx: &ctx, Identity: make([]byte, 0, 64)}
	return f.Request(r), &ctx, r
}

func TestAPIKey(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	file := filepath.Join(dir, "keys")
	body := "# consumers\n" + line("billing", "k-billing") + "\n" +
		`"acme": "` + strings.TrimSpace(line("x", "k-acme")[2:]) + "\"\n" +
		line("acme", "k-acme-next")
	if err := os.WriteFile(file, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
	f, err := New(Options{File: file, Query: "api_key"})
	if err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		name, uri string
		hdr       map[string]string
		status    int
		reason    string
		identity  string
	}{
		{"header", "/a", map[string]string{"X-Api-Key": "k-billing"}, 0, "", "billing"},
		{"yaml-style line", "/a", map[string]string{"X-Api-Key": "k-acme"}, 0, "", "acme"},
		{"rotated second key", "/a", map[string]string{"X-Api-Key": "k-acme-next"}, 0, "", "acme"},
		{"query", "/a?x=1&api_key=k-billing&y=2", nil, 0, "", "billing"},
		{"missing", "/a", nil, 401, ReasonMissing, ""},
		{"unknown", "/a", map[string]string{"X-Api-Key": "k-nope"}, 401, ReasonUnknown, ""},
		{"hash presented as key", "/a", map[string]string{"X-Api-Key": strings.TrimSpace(line("", "k-billing")[1:])}, 401, ReasonUnknown, ""},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			v, ctx, r := run(f, tc.uri, tc.hdr)
			if v.Status != tc.status || v.Reason != tc.reason || string(r.Identity) != tc.identity {
				t.Fatalf("got %+v identity %q, want %d %q %q", v, r.Identity, tc.status, tc.reason, tc.identity)
			}
			if v.Status == 401 && len(ctx.Response.Header.Peek("WWW-Authenticate")) == 0 {
				t.Error("401 without WWW-Authenticate")
			}
			if len(ctx.Request.Header.Peek("X-Api-Key")) != 0 {
				t.Error("key header forwarded upstream")
			}
			if strings.Contains(string(ctx.Request.RequestURI()), "api_key") {
				t.Errorf("key query parameter forwarded upstream: %s", ctx.Request.RequestURI())
			}
		})
	}
}

func TestReloadKeepsOldSetOnError(t *testing.T) {
	t.Parallel()
	file := filepath.Join(t.TempDir(), "keys")
	if err := os.WriteFile(file, []byte(line("a", "ka")), 0o600); err != nil {
		t.Fatal(err)
	}
	f, err := New(Options{File: file})
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(file, []byte("a:not-hex\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := f.Reload(); err == nil || strings.Contains(err.Error(), "not-hex") {
		t.Fatalf("Reload err = %v, want an error that does not echo the value", err)
	}
	if v, _, _ := run(f, "/", map[string]string{"X-Api-Key": "ka"}); v.Status != 0 {
		t.Fatalf("old key stopped working after a failed reload: %+v", v)
	}
	if err := os.WriteFile(file, []byte(line("b", "kb")), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := f.Reload(); err != nil {
		t.Fatal(err)
	}
	if v, _, _ := run(f, "/", map[string]string{"X-Api-Key": "ka"}); v.Reason != ReasonUnknown {
		t.Fatalf("revoked key still accepted: %+v", v)
	}
	if err := f.Set(nil); !errors.Is(err, ErrNoKeys) {
		t.Fatalf("Set(nil) = %v", err)
	}
	if err := f.Set([]Key{HashKey("c", "kc")}); err != nil {
		t.Fatal(err)
	}
	if _, _, r := run(f, "/", map[string]string{"X-Api-Key": "kc"}); string(r.Identity) != "c" {
		t.Fatalf("Set keys not used: %q", r.Identity)
	}
}

func TestParseErrors(t *testing.T) {
	t.Parallel()
	for in, sub := range map[string]string{
		"":                             "no keys",
		"# only comments\n":            "no keys",
		"justtext\n":                   "line 1",
		"a:abc\n":                      "64 hex digits",
		":" + strings.Repeat("0", 64):  "line 1",
		"a:" + strings.Repeat("z", 64): "not hex",
	} {
		if _, err := Parse([]byte(in)); err == nil || !strings.Contains(err.Error(), sub) {
			t.Errorf("Parse(%q) = %v, want substring %q", in, err, sub)
		}
	}
}

func TestAPIKeyAllocs(t *testing.T) {
	if raceEnabled {
		t.Skip("allocation counts are meaningless under -race")
	}
	keys := make([]Key, 100)
	for i := range keys {
		keys[i] = HashKey("consumer", string(rune('a'+i%26))+strings.Repeat("x", i))
	}
	keys[57] = HashKey("the-one", "secret-key")
	f, err := New(Options{Keys: keys, KeepCredential: true})
	if err != nil {
		t.Fatal(err)
	}
	var ctx fasthttp.RequestCtx
	ctx.Request.Header.Set("X-Api-Key", "secret-key")
	r := &filter.Request{Ctx: &ctx, Identity: make([]byte, 0, 64)}
	if n := testing.AllocsPerRun(200, func() {
		if v := f.Request(r); v.Status != 0 || string(r.Identity) != "the-one" {
			t.Fatalf("verdict %+v identity %q", v, r.Identity)
		}
	}); n != 0 {
		t.Errorf("API key check allocates %.1f times per request", n)
	}
}

func BenchmarkAPIKey100(b *testing.B) {
	keys := make([]Key, 100)
	for i := range keys {
		keys[i] = HashKey("c", strings.Repeat("k", i+1))
	}
	f, _ := New(Options{Keys: keys, KeepCredential: true})
	var ctx fasthttp.RequestCtx
	ctx.Request.Header.Set("X-Api-Key", strings.Repeat("k", 50))
	r := &filter.Request{Ctx: &ctx, Identity: make([]byte, 0, 64)}
	b.ReportAllocs()
	for b.Loop() {
		if v := f.Request(r); v.Status != 0 {
			b.Fatal(v)
		}
	}
}
