package gateway

import (
	"bufio"
	"encoding/json"

	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/meshgate/meshgate/mesh/upstream"
)

// The trust model end to end (docs/security.md): raw-socket requests through a real edge to a
// real upstream that records exactly the header lines and body it received.

// withRoute replaces minimal()'s route block with its own lines (indented as a route entry).
func withRoute(cfg, route string) string {
	return strings.Replace(cfg, "  - name: all\n    match: { path_prefix: / }\n    to: [ { service: origin } ]\n", route, 1)
}

// withPolicy puts minimal()'s route behind the named policy, defined by block (flow YAML).
func withPolicy(cfg, name, block string) string {
	return withRoute(cfg, "  - name: all\n    match: { path_prefix: / }\n    to: [ { service: origin } ]\n    policies: [ "+name+" ]\n") +
		"policies:\n  " + name + ": " + block + "\n"
}

// withListener adds lines (4-space indented) to minimal()'s listener.
func withListener(cfg, lines string) string {
	return strings.Replace(cfg, "    address: 127.0.0.1:0\n", "    address: 127.0.0.1:0\n"+lines, 1)
}

type clusterView struct {
	Name     string `json:"name"`
	Ejected  int    `json:"hosts_ejected"`
	InFlight int64  `json:"in_flight"`
	Hosts    []struct {
		Ejected     bool   `json:"ejected"`
		Consecutive int    `json:"consecutive_errors"`
		Breaker     string `json:"breaker"`
		Errors      uint64 `json:"errors"`
	} `json:"hosts"`
}

func clusters(t *testing.T, admin string) []clusterView {
	t.Helper()
	_, b := get(t, "http://"+admin+"/clusters", nil)
	var cs []clusterView
	if err := json.Unmarshal(b, &cs); err != nil {
		t.Fatalf("/clusters: %v: %s", err, b)
	}
	return cs
}

// healthy fails unless every host of every cluster is in service with a clean record, once the
// requests in flight have finished.
func healthy(t *testing.T, admin string) {
	t.Helper()
	waitFor(t, "requests in flight to finish", func() bool {
		for _, c := range clusters(t, admin) {
			if c.InFlight != 0 {
				return false
			}
		}
		return true
	})
	for _, c := range clusters(t, admin) {
		for _, h := range c.Hosts {
			if c.Ejected != 0 || h.Ejected || h.Consecutive != 0 || h.Breaker != "closed" || h.Errors != 0 {
				t.Fatalf("cluster %s blames a healthy host: %+v", c.Name, c)
			}
		}
	}
}

// The outage attempt: a burst of client-sent budgets of 1 ms. From an untrusted client the
// header is dropped; from a trusted hop it is honoured (504s) but never held against the host.
// Either way the host stays in service and normal traffic gets 200.
func TestClientBudgetCannotEjectHosts(t *testing.T) {
	t.Parallel()
	up, _ := startUpstream(t, "up", func(w http.ResponseWriter, _ *http.Request) {
		time.Sleep(20 * time.Millisecond) // a healthy but not instant service
		fmt.Fprint(w, "ok")
	})
	for _, tc := range []struct {
		name    string
		cfg     string
		wantFor int // status of the budgeted requests
	}{
		{"untrusted client", minimal(hostport(up)), 200},
		{"trusted hop", trustLoopback(minimal(hostport(up))), 504},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := startEdge(t, tc.cfg)
			for i := 0; i < 60; i++ {
				resp, body := get(t, e.url+"/", map[string]string{upstream.BudgetHeader: "1"})
				if resp.StatusCode != tc.wantFor {
					t.Fatalf("budgeted request %d: %d %s, want %d", i, resp.StatusCode, body, tc.wantFor)
				}
			}
			if resp, body := get(t, e.url+"/", nil); resp.StatusCode != 200 {
				t.Fatalf("normal traffic after the burst: %d %s", resp.StatusCode, body)
			}
			healthy(t, e.admin)
		})
	}
}

// sendAllThenRead is a client in the style of Python's http.client and most SDKs: it writes the
// whole request, body included, before it reads a byte of the answer. It returns the status
// line, or the error a user of such a client would see.
func sendAllThenRead(t *testing.T, addr string, head string, body io.Reader) (string, error) {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(20 * time.Second))
	if _, err := io.WriteString(c, head); err != nil {
		return "", fmt.Errorf("writing the head: %w", err)
	}
	if body != nil {
		if _, err := io.Copy(c, body); err != nil {
			return "", fmt.Errorf("writing the body: %w", err)
		}
	}
	line, err := bufio.NewReader(c).ReadString('\n')
	if err != nil {
		return "", fmt.Errorf("reading the answer: %w", err)
	}
	return strings.TrimSpace(line), nil
}

// chunked streams n bytes as 16 KiB chunks and a final empty chunk.
func chunked(n int) io.Reader {
	pr, pw := io.Pipe()
	go func() {
		chunk := strings.Repeat("x", 16<<10)
		w := bufio.NewWriter(pw)
		for sent := 0; sent < n; sent += len(chunk) {
			fmt.Fprintf(w, "%x\r\n%s\r\n", len(chunk), chunk)
		}
		io.WriteString(w, "0\r\n\r\n")
		_ = w.Flush()
		pw.Close()
	}()
	return pr
}

// Early rejections reach a client that sends everything before reading: the connection is
// closed gently (write side shut, input drained within bounds) instead of reset with unread
// input, which would make the kernel discard our answer.
func TestEarlyRejectionIsDelivered(t *testing.T) {
	t.Parallel()
	up, saw := startUpstream(t, "up", nil)
	e := startEdge(t, withListener(minimal(hostport(up)), "    max_body_bytes: 1MiB\n"))
	big := 8 << 20
	cases := []struct {
		name string
		head string
		body io.Reader
		want string
	}{
		{"content-length over the limit", "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: " + strconv.Itoa(big) + "\r\n\r\n",
			strings.NewReader(strings.Repeat("y", big)), "HTTP/1.1 413"},
		{"head too large", "POST / HTTP/1.1\r\nHost: x\r\nX-Big: " + strings.Repeat("h", 40<<10) + "\r\nContent-Length: " + strconv.Itoa(big) + "\r\n\r\n",
			strings.NewReader(strings.Repeat("y", big)), "HTTP/1.1 431"},
		{"bad request with a body", "POST / HTTP/1.1\r\nHost: x\r\nBad Name: 1\r\nContent-Length: " + strconv.Itoa(big) + "\r\n\r\n",
			strings.NewReader(strings.Repeat("y", big)), "HTTP/1.1 400"},
		// Last: the upstream records this one only when its body read fails, which may be after
		// the next case has started.
		{"chunked over the limit", "POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n", chunked(big), "HTTP/1.1 413"},
	}
	for _, tc := range cases {
		saw.mu.Lock()
		before := len(saw.reqs)
		saw.mu.Unlock()
		got, err := sendAllThenRead(t, e.addr, tc.head, tc.body)
		if err != nil || !strings.HasPrefix(got, tc.want) {
			t.Errorf("%s: got %q, %v; want %s delivered", tc.name, got, err, tc.want)
		}
		saw.mu.Lock()
		reached := len(saw.reqs) > before
		saw.mu.Unlock()
		// A chunked body is streamed once past the buffering threshold, so the upstream may
		// have seen its head; every other case is refused before any upstream byte.
		if reached && !strings.HasPrefix(tc.name, "chunked") {
			t.Errorf("%s: the rejected request reached the upstream", tc.name)
		}
	}
}

// Client body failures (an upload over the limit, an aborted upload) are the client's: 413 or
// 400, and the host that was receiving the body keeps a clean record.
func TestClientBodyFailuresAreNotTheHosts(t *testing.T) {
	t.Parallel()
	up, _ := startUpstream(t, "up", nil)
	e := startEdge(t, withListener(minimal(hostport(up)), "    max_body_bytes: 1MiB\n"))
	for i := 0; i < 8; i++ {
		// Streamed past the 64 KiB threshold, then over the limit: the upstream already has
		// the head of it when the limit trips.
		got, err := sendAllThenRead(t, e.addr, "POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n", chunked(2<<20))
		if err != nil || !strings.HasPrefix(got, "HTTP/1.1 413") {
			t.Fatalf("over-limit chunked upload %d: %q, %v", i, got, err)
		}
	}
	for i := 0; i < 8; i++ {
		// An upload the client abandons half way.
		c, err := net.Dial("tcp", e.addr)
		if err != nil {
			t.Fatal(err)
		}
		fmt.Fprintf(c, "PUT / HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n%s", 512<<10, strings.Repeat("z", 200<<10))
		c.Close()
	}
	healthy(t, e.admin)
	if resp, body := get(t, e.url+"/", nil); resp.StatusCode != 200 {
		t.Fatalf("normal traffic afterwards: %d %s", resp.StatusCode, body)
	}
}

// Repeated owned lines from an untrusted client: none of them reaches the upstream, which sees
// exactly one line of each owned field, the gateway's.
func TestOwnedHeadersFromAClient(t *testing.T) {
	t.Parallel()
	up, saw := startUpstream(t, "up", nil)
	e := startEdge(t, minimal(hostport(up)))
	out := raw(t, e.addr, "GET / HTTP/1.1\r\nHost: app.example\r\n"+
		"X-Forwarded-For: 6.6.6.6\r\nX-Forwarded-For: 7.7.7.7\r\n"+
		"X-Forwarded-Proto: https\r\nX-Forwarded-Proto: https\r\n"+
		"X-Forwarded-Host: evil.example\r\nX-Forwarded-Host: evil2.example\r\n"+
		"X-Request-Id: chosen-1\r\nX-Request-Id: chosen-2\r\n"+
		"Forwarded: for=6.6.6.6\r\nX-Real-Ip: 6.6.6.6\r\nX-Forwarded-Port: 443\r\n"+
		upstream.BudgetHeader+": 5\r\nX-Meshgate-Identity: admin\r\nConnection: close\r\n\r\n")
	if !strings.HasPrefix(out, "HTTP/1.1 200") {
		t.Fatalf("response:\n%s", out)
	}
	r, _ := saw.last(t)
	want := map[string]string{"X-Forwarded-For": "127.0.0.1", "X-Forwarded-Proto": "http", "X-Forwarded-Host": "app.example"}
	for k, v := range want {
		if got := r.Header.Values(k); len(got) != 1 || got[0] != v {
			t.Errorf("upstream saw %s %q, want exactly [%s]", k, got, v)
		}
	}
	if ids := r.Header.Values("X-Request-Id"); len(ids) != 1 || len(ids[0]) != 32 {
		t.Errorf("upstream saw X-Request-Id %q, want one id of the gateway's", ids)
	}
	if b := r.Header.Values(upstream.BudgetHeader); len(b) != 1 || b[0] == "5" {
		t.Errorf("upstream saw budget %q, want the gateway's own only", b)
	}
	for _, k := range []string{"Forwarded", "X-Real-Ip", "X-Forwarded-Port", "X-Meshgate-Identity"} {
		if v := r.Header.Values(k); len(v) != 0 {
			t.Errorf("upstream saw the client's %s %q", k, v)
		}
	}
}

// Behind a trusted proxy, repeated X-Forwarded-For lines are one list (RFC 9110 §5.3): the
// client is the rightmost untrusted entry, which is what an ip policy sees and what the
// upstream gets first, and whatever the client wrote left of it is dropped.
func TestTrustedHopChain(t *testing.T) {
	t.Parallel()
	up, saw := startUpstream(t, "up", nil)
	e := startEdge(t, withPolicy(trustLoopback(minimal(hostport(up))), "block", "{ ip: { deny: [ 9.9.9.9 ] } }"))
	// The proxy in front saw 9.9.9.9 (its own appended line); 6.6.6.6 is what that client wrote.
	out := raw(t, e.addr, "GET / HTTP/1.1\r\nHost: x\r\nX-Forwarded-For: 6.6.6.6\r\nX-Forwarded-For: 9.9.9.9\r\nConnection: close\r\n\r\n")
	if !strings.HasPrefix(out, "HTTP/1.1 403") {
		t.Fatalf("the policy did not see the client behind the trusted hop:\n%s", out)
	}
	out = raw(t, e.addr, "GET / HTTP/1.1\r\nHost: x\r\nX-Forwarded-For: 9.9.9.9\r\nX-Forwarded-For: 8.8.8.8\r\nX-Forwarded-Proto: https\r\nConnection: close\r\n\r\n")
	if !strings.HasPrefix(out, "HTTP/1.1 200") {
		t.Fatalf("response:\n%s", out)
	}
	r, _ := saw.last(t)
	if got := r.Header.Values("X-Forwarded-For"); len(got) != 1 || got[0] != "8.8.8.8, 127.0.0.1" {
		t.Errorf("upstream saw X-Forwarded-For %q, want [8.8.8.8, 127.0.0.1]", got)
	}
	if got := r.Header.Values("X-Forwarded-Proto"); len(got) != 1 || got[0] != "https" {
		t.Errorf("upstream saw X-Forwarded-Proto %q, want the trusted hop's [https]", got)
	}
}

// Hop-by-hop fields go before any filter runs: a client's Connection cannot delete what a
// headers policy set, nor nominate a field the gateway owns.
func TestConnectionCannotDeletePolicyHeaders(t *testing.T) {
	t.Parallel()
	up, saw := startUpstream(t, "up", nil)
	e := startEdge(t, withPolicy(trustLoopback(minimal(hostport(up))), "stamp", "{ headers: { request: { set: { X-Edge-Auth: granted } } } }"))
	out := raw(t, e.addr, "GET / HTTP/1.1\r\nHost: x\r\nConnection: X-Edge-Auth, X-Forwarded-For, Keep-Alive\r\n"+
		"X-Edge-Auth: forged\r\nX-Forwarded-For: 5.5.5.5\r\nKeep-Alive: timeout=5\r\n\r\n")
	if !strings.HasPrefix(out, "HTTP/1.1 200") {
		t.Fatalf("response:\n%s", out)
	}
	r, _ := saw.last(t)
	if got := r.Header.Values("X-Edge-Auth"); len(got) != 1 || got[0] != "granted" {
		t.Errorf("upstream saw X-Edge-Auth %q, want the policy's [granted]", got)
	}
	if got := r.Header.Get("X-Forwarded-For"); got != "5.5.5.5, 127.0.0.1" {
		t.Errorf("upstream saw X-Forwarded-For %q: Connection nominated an owned field", got)
	}
	if got := r.Header.Get("Keep-Alive"); got != "" {
		t.Errorf("a hop-by-hop field was forwarded: Keep-Alive %q", got)
	}
}

// What fasthttp accepts but an edge must not forward.
func TestRequestHygiene(t *testing.T) {
	t.Parallel()
	up, saw := startUpstream(t, "up", nil)
	cfg := withRoute(minimal(hostport(up)),
		"  - name: admin\n    match: { path_prefix: /admin, methods: [ GET ] }\n    to: [ { service: origin } ]\n"+
			"  - name: purge\n    match: { path_prefix: /cache, methods: [ purge ] }\n    to: [ { service: origin } ]\n"+
			"  - name: static\n    match: { path_prefix: /static }\n    rewrite: { path_prefix: /assets/ }\n    to: [ { service: origin } ]\n"+
			"  - name: all\n    match: { path_prefix: / }\n    to: [ { service: origin } ]\n")
	e := startEdge(t, cfg)
	cases := []struct {
		name, req, want, body string
	}{
		{"lower-case method", "delete /admin HTTP/1.1\r\nHost: x\r\n", "HTTP/1.1 400", "invalid_method"},
		{"mixed-case method", "Get /admin HTTP/1.1\r\nHost: x\r\n", "HTTP/1.1 400", "invalid_method"},
		{"a lower-case method a route names", "purge /cache HTTP/1.1\r\nHost: x\r\n", "HTTP/1.1 200", "hello from up"},
		{"header name with a space", "GET / HTTP/1.1\r\nHost: x\r\nX Spaced: 1\r\nX-After: 2\r\n", "HTTP/1.1 400", "invalid_header_name"},
		{"header name with a slash (fasthttp refuses it)", "GET / HTTP/1.1\r\nHost: x\r\nX/Y: 1\r\n", "HTTP/1.1 400", `"status":400`},
		{"HTTP/1.2", "GET / HTTP/1.2\r\nHost: x\r\n", "HTTP/1.1 505", "http_version_not_supported"},
		{"HTTP/2.0 as text", "GET / HTTP/2.0\r\nHost: x\r\n", "HTTP/1.1 505", "http_version_not_supported"},
		{"rewrite to a dot segment", "GET /static../admin HTTP/1.1\r\nHost: x\r\n", "HTTP/1.1 400", "invalid_path"},
		{"rewrite", "GET /static/app.css HTTP/1.1\r\nHost: x\r\n", "HTTP/1.1 200", "hello from up"},
		{"HTTP/1.0", "GET / HTTP/1.0\r\n", "HTTP/1.0 200", "hello from up"},
	}
	for _, tc := range cases {
		saw.mu.Lock()
		before := len(saw.reqs)
		saw.mu.Unlock()
		out := raw(t, e.addr, tc.req+"Connection: close\r\n\r\n")
		if !strings.HasPrefix(out, tc.want) || !strings.Contains(out, tc.body) {
			t.Errorf("%s: got\n%s\nwant %s with %q", tc.name, out, tc.want, tc.body)
			continue
		}
		saw.mu.Lock()
		reached := len(saw.reqs) > before
		var path string
		if reached {
			path = saw.reqs[len(saw.reqs)-1].URL.Path
		}
		saw.mu.Unlock()
		if reached != strings.Contains(tc.want, " 200") {
			t.Errorf("%s: reached the upstream = %v", tc.name, reached)
		}
		if tc.name == "rewrite" && path != "/assets/app.css" {
			t.Errorf("rewrite: upstream saw %s", path)
		}
	}
}

// listeners[].max_connections_per_ip: one address cannot hold more; a freed slot is reusable.
func TestMaxConnectionsPerIP(t *testing.T) {
	t.Parallel()
	up, _ := startUpstream(t, "up", nil)
	e := startEdge(t, withListener(minimal(hostport(up)), "    max_connections_per_ip: 2\n"))
	// ask sends one keep-alive request on c and reports whether it was answered.
	ask := func(c net.Conn) bool {
		_ = c.SetDeadline(time.Now().Add(5 * time.Second))
		if _, err := io.WriteString(c, "GET / HTTP/1.1\r\nHost: x\r\n\r\n"); err != nil {
			return false
		}
		resp, err := http.ReadResponse(bufio.NewReader(c), nil)
		if err != nil {
			return false
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		return resp.StatusCode == 200
	}
	dial := func() net.Conn {
		c, err := net.Dial("tcp", e.addr)
		if err != nil {
			t.Fatal(err)
		}
		return c
	}
	a, b := dial(), dial()
	defer b.Close()
	if !ask(a) || !ask(b) {
		t.Fatal("the first two connections were not served")
	}
	c := dial()
	if ask(c) {
		t.Fatal("a third connection from the same address was served")
	}
	c.Close()
	a.Close()
	waitFor(t, "a freed slot to be reusable", func() bool {
		d := dial()
		defer d.Close()
		return ask(d)
	})
	if got := edgeMetricValue(t, e.admin, `meshgate_downstream_connections_refused_total{listener="public"}`); got == "" || got == "0" {
		t.Errorf("refused counter = %q", got)
	}
}

// The response carries one X-Request-Id, the gateway's, whatever lines the upstream sent.
func TestResponseRequestIDOnce(t *testing.T) {
	t.Parallel()
	up, saw := startUpstream(t, "up", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Add("X-Request-Id", "upstream-1")
		w.Header().Add("X-Request-Id", "upstream-2")
		fmt.Fprint(w, "ok")
	})
	e := startEdge(t, minimal(hostport(up)))
	resp, _ := get(t, e.url+"/", nil)
	r, _ := saw.last(t)
	if got := resp.Header.Values("X-Request-Id"); len(got) != 1 || got[0] != r.Header.Get("X-Request-Id") {
		t.Fatalf("client saw X-Request-Id %q, want exactly the id sent upstream (%s)", got, r.Header.Get("X-Request-Id"))
	}
}
