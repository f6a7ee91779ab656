package ipfilter

import (
	"errors"
	"fmt"
	"net/netip"
	"strings"
	"testing"

	"github.com/valyala/fasthttp"

	"github.com/meshgate/meshgate/gateway/filter"
)

func prefixes(t *testing.T, ss ...string) []netip.Prefix {
	t.Helper()
	out := make([]netip.Prefix, 0, len(ss))
	for _, s := range ss {
		out = append(out, netip.MustParsePrefix(s))
	}
	return out
}

func TestAllowed(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name        string
		allow, deny []string
		ok, bad     []string // addresses that pass / are rejected
	}{
		{
			name:  "allow list only",
			allow: []string{"10.0.0.0/8", "192.168.1.0/24", "2001:db8::/32"},
			ok:    []string{"10.0.0.0", "10.255.255.255", "192.168.1.7", "2001:db8::1", "2001:db8:ffff::"},
			bad:   []string{"11.0.0.0", "9.255.255.255", "192.168.2.1", "2001:db9::1", "::1", "127.0.0.1"},
		},
		{
			name: "deny list only",
			deny: []string{"203.0.113.0/24", "2001:db8:bad::/48"},
			ok:   []string{"203.0.112.255", "203.0.114.0", "2001:db8:bad1::", "127.0.0.1"},
			bad:  []string{"203.0.113.0", "203.0.113.255", "2001:db8:bad::42"},
		},
		{
			name:  "deny wins over allow",
			allow: []string{"10.0.0.0/8"},
			deny:  []string{"10.1.0.0/16", "10.2.3.4/32"},
			ok:    []string{"10.0.0.1", "10.2.3.5", "10.3.0.0"},
			bad:   []string{"10.1.2.3", "10.2.3.4", "172.16.0.1"},
		},
		{
			name:  "IPv4-mapped client matches IPv4 rule",
			allow: []string{"10.0.0.0/8"},
			ok:    []string{"::ffff:10.1.2.3"},
			bad:   []string{"::ffff:11.1.2.3", "::10.1.2.3"}, // IPv4-compatible is not mapped
		},
		{
			name: "IPv4-mapped rule matches IPv4 client",
			deny: []string{"::ffff:198.51.100.0/120"},
			ok:   []string{"198.51.101.1"},
			bad:  []string{"198.51.100.9", "::ffff:198.51.100.9"},
		},
		{
			name:  "nested, overlapping and adjacent prefixes merge",
			allow: []string{"10.0.0.0/24", "10.0.0.128/25", "10.0.1.0/24", "10.0.0.0/16", "10.2.0.0/31"},
			ok:    []string{"10.0.255.255", "10.2.0.1"},
			bad:   []string{"10.1.0.0", "10.2.0.2"},
		},
		{
			name:  "unmasked prefix is masked",
			allow: []string{"10.9.9.9/8"},
			ok:    []string{"10.0.0.1"},
			bad:   []string{"11.0.0.1"},
		},
		{
			name:  "whole address space and host routes",
			allow: []string{"0.0.0.0/0", "::1/128"},
			ok:    []string{"1.2.3.4", "255.255.255.255", "::1"},
			bad:   []string{"::2", "fe80::1"},
		},
		{
			name:  "zoned client address",
			allow: []string{"fe80::/10"},
			ok:    []string{"fe80::1%eth0"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			f, err := New(Options{Name: "p", Allow: prefixes(t, tt.allow...), Deny: prefixes(t, tt.deny...)})
			if err != nil {
				t.Fatal(err)
			}
			for _, s := range tt.ok {
				if !f.Allowed(netip.MustParseAddr(s)) {
					t.Errorf("%s rejected, want allowed", s)
				}
			}
			for _, s := range tt.bad {
				if f.Allowed(netip.MustParseAddr(s)) {
					t.Errorf("%s allowed, want rejected", s)
				}
			}
		})
	}
}

// A linear scan over the prefixes is the reference the range table must agree with.
func TestAgreesWithLinearScan(t *testing.T) {
	t.Parallel()
	deny := prefixes(t, "10.0.0.0/9", "10.128.0.0/9", "172.16.5.0/24", "2001:db8::/33", "2001:db8:8000::/33", "::ffff:192.0.2.0/121")
	f, err := New(Options{Name: "p", Deny: deny})
	if err != nil {
		t.Fatal(err)
	}
	for i := range 4096 {
		b := byte(i)
		for _, a := range []netip.Addr{
			netip.AddrFrom4([4]byte{10, b, byte(i >> 8), 1}),
			netip.AddrFrom4([4]byte{172, 16, b, byte(i >> 4)}),
			netip.AddrFrom4([4]byte{192, 0, 2, b}),
			netip.AddrFrom16([16]byte{0x20, 0x01, 0x0d, 0xb8, b, byte(i >> 8)}),
			netip.AddrFrom16([16]byte{0x20, 0x01, 0x0d, 0xb9, b}),
		} {
			want := true
			for _, p := range deny {
				if p.Contains(a) || unmapPrefix(p).Contains(a) {
					want = false
				}
			}
			if got := f.Allowed(a); got != want {
				t.Fatalf("Allowed(%s) = %v, linear scan says %v", a, got, want)
			}
		}
	}
}

func TestRequestVerdict(t *testing.T) {
	t.Parallel()
	f, err := New(Options{Name: "office", Allow: prefixes(t, "192.0.2.0/24")})
	if err != nil {
		t.Fatal(err)
	}
	// The client claims an allowed address in X-Forwarded-For, but the proxy did not trust the
	// hop it came from, so ClientIP is the socket address. The filter must follow ClientIP:
	// headers are never consulted, whatever they say.
	ctx := &fasthttp.RequestCtx{}
	ctx.Request.Header.Set("X-Forwarded-For", "192.0.2.10")
	ctx.Request.Header.Set("X-Real-IP", "192.0.2.10")
	spoofed := &filter.Request{Ctx: ctx, Route: "r", ClientIP: netip.MustParseAddr("198.51.100.7")}
	if v := f.Request(spoofed); v != (filter.Verdict{Status: 403, Reason: ReasonDenied}) {
		t.Fatalf("spoofed X-Forwarded-For: verdict %+v, want 403 %s", v, ReasonDenied)
	}
	// Conversely, a trusted hop resolved the real client: no header is needed at all.
	ok := &filter.Request{Ctx: &fasthttp.RequestCtx{}, Route: "r", ClientIP: netip.MustParseAddr("192.0.2.10")}
	if v := f.Request(ok); v != (filter.Verdict{}) {
		t.Fatalf("allowed client: verdict %+v", v)
	}
	// Unknown client address with an allow list: fail closed.
	if v := f.Request(&filter.Request{Ctx: ctx}); v.Status != 403 {
		t.Fatalf("invalid ClientIP: verdict %+v, want 403", v)
	}
	denyOnly, err := New(Options{Name: "bl", Deny: prefixes(t, "192.0.2.0/24")})
	if err != nil {
		t.Fatal(err)
	}
	if v := denyOnly.Request(&filter.Request{Ctx: ctx}); v.Status != 0 {
		t.Fatalf("invalid ClientIP, deny-only: verdict %+v, want continue", v)
	}
}

func TestNewErrors(t *testing.T) {
	t.Parallel()
	if _, err := New(Options{Name: "p"}); !errors.Is(err, ErrNoRules) {
		t.Errorf("empty lists: %v, want ErrNoRules", err)
	}
	for _, tt := range []struct {
		opts Options
		want string
	}{
		{Options{Name: "p", Allow: []netip.Prefix{{}}}, `policy "p": allow: invalid prefix`},
		{Options{Name: "p", Allow: prefixes(t, "10.0.0.0/8"), Deny: []netip.Prefix{{}}}, `policy "p": deny: invalid prefix`},
	} {
		if _, err := New(tt.opts); err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("New(%+v) = %v, want %q", tt.opts, err, tt.want)
		}
	}
}

func TestRequestAllocations(t *testing.T) {
	if raceEnabled {
		t.Skip("the race detector allocates")
	}
	var allow []netip.Prefix
	for i := range 1000 {
		allow = append(allow, netip.MustParsePrefix(fmt.Sprintf("10.%d.%d.0/24", i/256, i%256)))
	}
	allow = append(allow, netip.MustParsePrefix("2001:db8::/32"))
	f, err := New(Options{Name: "p", Allow: allow, Deny: prefixes(t, "10.0.0.0/28")})
	if err != nil {
		t.Fatal(err)
	}
	for _, a := range []string{"10.3.1.9", "10.0.0.1", "172.16.0.1", "::ffff:10.1.1.1", "2001:db8::1"} {
		r := &filter.Request{Ctx: &fasthttp.RequestCtx{}, ClientIP: netip.MustParseAddr(a)}
		if n := testing.AllocsPerRun(1000, func() { f.Request(r) }); n != 0 {
			t.Errorf("%s: %v allocs per request, want 0", a, n)
		}
	}
}

func BenchmarkRequest(b *testing.B) {
	var allow []netip.Prefix
	// /25s with gaps between them, so nothing merges: 10000 distinct spans.
	for i := range 10000 {
		allow = append(allow, netip.MustParsePrefix(fmt.Sprintf("10.%d.%d.0/25", i/256, i%256)))
	}
	f, err := New(Options{Name: "p", Allow: allow})
	if err != nil {
		b.Fatal(err)
	}
	r := &filter.Request{Ctx: &fasthttp.RequestCtx{}, ClientIP: netip.MustParseAddr("10.20.30.40")}
	b.ReportAllocs()
	for b.Loop() {
		f.Request(r)
	}
}
