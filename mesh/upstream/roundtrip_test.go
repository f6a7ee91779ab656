package upstream

import (
	"bufio"
	"bytes"
	"errors"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/valyala/fasthttp"
)

// wireServer answers each request with the raw bytes its path names, so the tests see exactly
// what fasthttp reads: interim answers, chunks, a body cut short. It counts connections.
type wireServer struct {
	addr     string
	accepted atomic.Int64
	open     atomic.Int64 // connections the client has not closed yet
}

var longBody = strings.Repeat("x", wholeResponseBytes+1)

func wireAnswer(r *http.Request) (string, bool) {
	switch r.URL.Path {
	case "/short":
		return "HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello", true
	case "/long":
		return "HTTP/1.1 200 OK\r\nContent-Length: 65537\r\n\r\n" + longBody, true
	case "/chunked":
		return "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n3\r\ndef\r\n0\r\n\r\n", true
	case "/interim":
		return "HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 103 Early Hints\r\nLink: </a>\r\n\r\n" +
			"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok", true
	case "/nocontent":
		return "HTTP/1.1 204 No Content\r\n\r\n", true
	case "/cut":
		return "HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nshort", false
	case "/malformed":
		return "HTTP/1.1 2x0 OK\r\nSet-Cookie: session=secret\r\n\r\n", false
	}
	if strings.HasPrefix(r.RequestURI, "/raw/") { // echoes the request-target as it arrived
		return "HTTP/1.1 200 OK\r\nContent-Length: " + strconv.Itoa(len(r.RequestURI)) + "\r\n\r\n" + r.RequestURI, true
	}
	return "HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n", true
}

func startWireServer(t *testing.T) *wireServer {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := &wireServer{addr: ln.Addr().String()}
	t.Cleanup(func() { _ = ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			s.accepted.Add(1)
			s.open.Add(1)
			go func() {
				defer s.open.Add(-1)
				defer c.Close()
				br := bufio.NewReader(c)
				for {
					r, err := http.ReadRequest(br)
					if err != nil {
						return
					}
					ans, keep := wireAnswer(r)
					if r.Method == http.MethodHead {
						ans, _, _ = strings.Cut(ans, "\r\n\r\n")
						ans += "\r\n\r\n"
					}
					if _, err := c.Write([]byte(ans)); err != nil || !keep {
						return
					}
				}
			}()
		}
	}()
	return s
}

func wireTransport(t *testing.T, s *wireServer) *http1Transport {
	t.Helper()
	tr := newHTTP1Transport(s.addr, &Options{}, &http1Shared{})
	t.Cleanup(tr.CloseIdleConnections)
	return tr
}

func wireDo(t *testing.T, tr *http1Transport, method, path string, resp *fasthttp.Response) error {
	t.Helper()
	req := fasthttp.AcquireRequest()
	defer fasthttp.ReleaseRequest(req)
	req.Header.SetMethod(method)
	req.SetRequestURI(path)
	req.UseHostHeader = true
	req.Header.SetHost("wire")
	now := time.Now()
	return tr.Do(req, resp, now.Add(5*time.Second), now)
}

// wireGet is wireDo into a new response, released when the test ends: fasthttp keeps
// SkipBody (which a HEAD sets) on a response, so each exchange of a test takes its own.
func wireGet(t *testing.T, tr *http1Transport, method, path string) (*fasthttp.Response, error) {
	t.Helper()
	resp := fasthttp.AcquireResponse()
	t.Cleanup(func() { fasthttp.ReleaseResponse(resp) })
	return resp, wireDo(t, tr, method, path, resp)
}

// A short answer of known length is in resp when Do returns, and its connection is already
// back in the pool: the next request reuses it.
func TestShortResponsesAreReadWhole(t *testing.T) {
	s := startWireServer(t)
	tr := wireTransport(t, s)
	var resp fasthttp.Response
	for i := range 3 {
		if err := wireDo(t, tr, "GET", "/short", &resp); err != nil {
			t.Fatal(err)
		}
		if resp.IsBodyStream() || string(resp.Body()) != "hello" {
			t.Fatalf("request %d: stream %v, body %q; want the body whole", i, resp.IsBodyStream(), resp.Body())
		}
		if n := tr.pool.idleCount(); n != 1 {
			t.Fatalf("request %d: %d idle connections after Do, want the one it used", i, n)
		}
	}
	if n := s.accepted.Load(); n != 1 {
		t.Fatalf("3 short requests used %d connections, want 1", n)
	}
}

// A long answer, and a chunked one, come as streams that give the whole body; read to the end
// and closed, they give their connection back.
func TestLongAndChunkedResponsesStream(t *testing.T) {
	s := startWireServer(t)
	tr := wireTransport(t, s)
	for _, tc := range []struct{ path, body string }{{"/long", longBody}, {"/chunked", "abcdef"}, {"/short", "hello"}} {
		resp := fasthttp.AcquireResponse()
		if err := wireDo(t, tr, "GET", tc.path, resp); err != nil {
			t.Fatal(err)
		}
		if tc.path != "/short" && !resp.IsBodyStream() {
			t.Fatalf("%s: not streamed", tc.path)
		}
		var got bytes.Buffer
		if err := resp.BodyWriteTo(&got); err != nil {
			t.Fatalf("%s: %v", tc.path, err)
		}
		if got.String() != tc.body {
			t.Fatalf("%s: body of %d bytes, want %d", tc.path, got.Len(), len(tc.body))
		}
		fasthttp.ReleaseResponse(resp)
	}
	if n := s.accepted.Load(); n != 1 {
		t.Fatalf("streams read to their end left %d connections used, want 1", n)
	}
}

// A stream closed before its end takes its connection with it: the rest of the body must not
// be read as the next response.
func TestUnreadStreamClosesItsConnection(t *testing.T) {
	s := startWireServer(t)
	tr := wireTransport(t, s)
	resp := fasthttp.AcquireResponse()
	if err := wireDo(t, tr, "GET", "/long", resp); err != nil {
		t.Fatal(err)
	}
	if _, err := resp.BodyStream().Read(make([]byte, 10)); err != nil {
		t.Fatal(err)
	}
	if err := resp.CloseBodyStream(); err != nil {
		t.Fatal(err)
	}
	fasthttp.ReleaseResponse(resp)
	var next fasthttp.Response
	if err := wireDo(t, tr, "GET", "/short", &next); err != nil || string(next.Body()) != "hello" {
		t.Fatalf("the next request: %v, %q", err, next.Body())
	}
	if n := s.accepted.Load(); n != 2 {
		t.Fatalf("%d connections, want 2: the unread stream's must not be reused", n)
	}
}

// A short body cut short by the upstream fails the try as a reset (the upstream broke it),
// and answers without a body keep their announced length and skip interim answers.
func TestResponseEdgeCases(t *testing.T) {
	s := startWireServer(t)
	tr := wireTransport(t, s)
	_, err := wireGet(t, tr, "GET", "/cut")
	if err == nil || !errors.Is(classify(err), ErrReset) {
		t.Fatalf("a body cut short: %v (classified %v), want a reset", err, classify(err))
	}
	head, err := wireGet(t, tr, "HEAD", "/short")
	if err != nil || head.IsBodyStream() || len(head.Body()) != 0 || head.Header.ContentLength() != 5 {
		t.Fatalf("HEAD: %v, stream %v, body %q, length %d; want no body and length 5",
			err, head.IsBodyStream(), head.Body(), head.Header.ContentLength())
	}
	for _, tc := range []struct {
		path   string
		status int
		body   string
	}{
		{"/nocontent", 204, ""},
		{"/interim", 200, "ok"},  // after interim answers
		{"/short", 200, "hello"}, // the HEAD, 204 and interim exchanges left the connection usable
	} {
		resp, err := wireGet(t, tr, "GET", tc.path)
		if err != nil || resp.StatusCode() != tc.status || string(resp.Body()) != tc.body {
			t.Fatalf("%s: %v, %d %q; want %d %q", tc.path, err, resp.StatusCode(), resp.Body(), tc.status, tc.body)
		}
	}
	if n := s.accepted.Load(); n != 2 {
		t.Fatalf("%d connections, want 2 (the cut one, then one for the rest)", n)
	}
}

// The request-target goes out byte for byte (the gateway chose it; fasthttp would normalise
// it), and a head that does not parse fails the try without quoting it: a try's error reaches
// its trace span.
func TestTargetIsSentAsIsAndBadHeadsAreNotQuoted(t *testing.T) {
	s := startWireServer(t)
	tr := wireTransport(t, s)
	const target = "/raw/a/../b%2Fc//d?q=%41"
	if resp, err := wireGet(t, tr, "GET", target); err != nil || string(resp.Body()) != target {
		t.Fatalf("the upstream saw %q (%v), want %q", resp.Body(), err, target)
	}
	_, err := wireGet(t, tr, "GET", "/malformed")
	if !errors.Is(classify(err), ErrProtocol) {
		t.Fatalf("a malformed head: %v, want a protocol error", err)
	}
	if strings.Contains(err.Error(), "secret") {
		t.Fatalf("the error quotes the head: %v", err)
	}
}
