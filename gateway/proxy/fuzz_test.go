package proxy

import (
	"bufio"
	"bytes"
	"net/netip"
	"strings"
	"testing"

	"github.com/valyala/fasthttp"
)

// FuzzRequestHead feeds arbitrary request heads through fasthttp's parser and then through the
// hygiene and trust code that runs before any filter: the header scan, the join of repeated
// lines, the hop-by-hop strip, the client-address walk, canonicalHost, the framing checks and
// the re-encoding of the path. Each step has a property checked here, not just "no panic".
// Seeds are the attacks of issue 12.
func FuzzRequestHead(f *testing.F) {
	for _, s := range []string{
		"GET / HTTP/1.1\r\nHost: x\r\nX-Forwarded-For: 6.6.6.6\r\nX-Forwarded-For: 7.7.7.7\r\n\r\n",
		"GET / HTTP/1.1\r\nHost: x\r\nConnection: X-Edge-Auth, X-Forwarded-For, Host\r\nX-Edge-Auth: a\r\n\r\n",
		"delete /admin HTTP/1.1\r\nHost: x\r\n\r\n",
		"GET / HTTP/1.1\r\nHost: x\r\nX Spaced: 1\r\nX-After: 2\r\n\r\n",
		"GET / HTTP/1.2\r\nHost: x\r\n\r\n",
		"GET /static../admin HTTP/1.1\r\nHost: [::1]:8080\r\n\r\n",
		"POST /%zz HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nContent-Length: 3\r\n\r\n",
		"GET http://other.example/x HTTP/1.1\r\nHost: x\r\nX-Request-Id: a\r\nX-Request-Id: b\r\n\r\n",
		"GET / HTTP/1.1\r\nHost: x\r\nX-Forwarded-For: 10.0.0.1, garbage, 001.2.3.4, ::ffff:1.2.3.4, fe80::1%eth0\r\n\r\n",
		"GET /a%20b?q=%3F HTTP/1.0\r\n\r\n",
	} {
		f.Add(s)
	}
	nets := []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8"), netip.MustParsePrefix("127.0.0.0/8")}
	h := &Handler{identityName: canonicalName("X-Meshgate-Identity")}
	f.Fuzz(func(t *testing.T, head string) {
		var hd fasthttp.RequestHeader
		if err := hd.Read(bufio.NewReader(strings.NewReader(head))); err != nil {
			return
		}
		_ = supportedVersion(hd.Protocol())
		scan := h.scanHeaders(&hd)
		if scan&scanBadName != 0 {
			return
		}
		if scan&scanRepeated != 0 {
			joinRepeated(&hd)
		}
		names := map[string]int{}
		for k := range hd.All() {
			names[strings.ToLower(string(k))]++
		}
		for k, n := range names {
			if n > 1 && k != "cookie" {
				t.Fatalf("after the join %q still has %d lines", k, n)
			}
		}
		h.stripHopByHop(&hd, nil)
		for _, k := range hopByHop {
			if len(hd.Peek(k)) > 0 && k != "Connection" {
				t.Fatalf("hop-by-hop %s survived the strip", k)
			}
		}
		// canonicalHost only ever cuts a ":port" off the authority.
		if raw, host := hd.Host(), canonicalHost(hd.Host()); !bytes.HasPrefix(raw, host) || (len(host) < len(raw) && raw[len(host)] != ':') {
			t.Fatalf("canonicalHost(%q) = %q", raw, host)
		}
		_, _ = badFraming(&hd)

		xff := hd.Peek(hdrXForwardedFor)
		remote := netip.MustParseAddr("10.9.9.9")
		client, from := clientAddr(remote, xff, nets)
		if from >= 0 {
			if from > len(xff) {
				t.Fatalf("chain offset %d past %q", from, xff)
			}
			first := bytes.TrimSpace(xff[from:])
			if i := bytes.IndexByte(first, ','); i >= 0 {
				first = bytes.TrimSpace(first[:i])
			}
			if a, ok := parseAddr(first); !ok || a.Unmap() != client {
				t.Fatalf("the kept chain %q does not start with the client %s", xff[from:], client)
			}
		} else if client != remote {
			t.Fatalf("no chain kept, yet the client is %s, not the remote", client)
		}

		var u fasthttp.URI
		// The header parser accepted this request-target; what URI.Parse makes of it (an
		// error leaves a path of "/") is what the proxy would quote, so that is checked.
		_ = u.Parse(nil, hd.RequestURI())
		q := appendQuotedPath(nil, u.Path())
		for i := 0; i < len(q); i++ {
			if q[i] == '%' {
				if i+2 >= len(q) || !isHex(q[i+1]) || !isHex(q[i+2]) {
					t.Fatalf("appendQuotedPath(%q) = %q: bad escape", u.Path(), q)
				}
				i += 2
				continue
			}
			if !pathSafe(q[i]) {
				t.Fatalf("appendQuotedPath(%q) = %q: raw %q", u.Path(), q, q[i])
			}
		}
		_ = hasDotSegment(u.Path())
	})
}

// FuzzParseAddr: the allocation-free X-Forwarded-For parser agrees with netip.ParseAddr.
func FuzzParseAddr(f *testing.F) {
	for _, s := range []string{"1.2.3.4", "001.2.3.4", "1.2.3", "256.1.1.1", "::1", "::ffff:10.0.0.1", "fe80::1%eth0", "1.2.3.4.", "", "0.0.0.0"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		got, ok := parseAddr([]byte(s))
		want, err := netip.ParseAddr(s)
		if ok != (err == nil) || (ok && got != want) {
			t.Fatalf("parseAddr(%q) = %v, %v; netip says %v, %v", s, got, ok, want, err)
		}
	})
}
