package upstream

import (
	"bufio"
	"crypto/tls"
	"errors"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/valyala/fasthttp"
)

// upgradeServer answers every request with a 101 followed at once by "hi", then echoes what it
// reads: an upgraded protocol as the cluster sees one. It records each request head.
type upgradeServer struct {
	addr  string
	mu    sync.Mutex
	heads []string
}

func startUpgradeSrv(t *testing.T) *upgradeServer {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := &upgradeServer{addr: ln.Addr().String()}
	var wg sync.WaitGroup
	wg.Go(func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			wg.Go(func() {
				defer c.Close()
				_ = c.SetDeadline(time.Now().Add(10 * time.Second))
				br := bufio.NewReader(c)
				var head strings.Builder
				for {
					line, err := br.ReadString('\n')
					if err != nil {
						return
					}
					head.WriteString(line)
					if line == "\r\n" {
						break
					}
				}
				s.mu.Lock()
				s.heads = append(s.heads, head.String())
				s.mu.Unlock()
				_, _ = io.WriteString(c, "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\nhi")
				_, _ = io.Copy(c, br)
			})
		}
	})
	t.Cleanup(func() {
		_ = ln.Close()
		wg.Wait()
	})
	return s
}

func upgradeRequest() *fasthttp.Request {
	req := fasthttp.AcquireRequest()
	req.Header.SetMethod(fasthttp.MethodGet)
	req.SetRequestURI("/chat")
	req.Header.SetHost("svc.internal")
	req.Header.Set("Upgrade", "websocket")
	req.Header.Set("Connection", "Upgrade")
	return req
}

// A refused connect counts against that host and the upgrade goes to the next one; the 101's
// connection comes back with the bytes read behind the head, and carries the session both ways.
func TestUpgradeRetriesConnectFailure(t *testing.T) {
	t.Parallel()
	m, _ := newManager(t)
	dead, up := closedAddr(t), startUpgradeSrv(t)
	c := newCluster(t, m, Options{Policy: preferFirst{first: dead}, Retry: DefaultRetry()}, dead, up.addr)
	req := upgradeRequest()
	defer fasthttp.ReleaseRequest(req)
	resp := fasthttp.AcquireResponse()
	defer fasthttp.ReleaseResponse(resp)
	call := &Call{Deadline: time.Now().Add(5 * time.Second)}
	conn, err := c.Upgrade(req, resp, call)
	if err != nil {
		t.Fatalf("Upgrade: %v", err)
	}
	defer conn.Close()
	if resp.StatusCode() != fasthttp.StatusSwitchingProtocols || call.Attempts != 2 || call.Address != up.addr {
		t.Fatalf("status %d after %d attempts at %s", resp.StatusCode(), call.Attempts, call.Address)
	}
	if n := hostsOf(c)[dead].health.consecutive.Load(); n != 1 {
		t.Fatalf("the refusing host has %d consecutive errors, want 1", n)
	}
	_ = conn.SetDeadline(time.Now().Add(5 * time.Second))
	buf := make([]byte, 2)
	if _, err := io.ReadFull(conn, buf); err != nil || string(buf) != "hi" {
		t.Fatalf("read %q, %v: want the bytes behind the 101", buf, err)
	}
	if _, err := io.WriteString(conn, "ping"); err != nil {
		t.Fatal(err)
	}
	buf = make([]byte, 4)
	if _, err := io.ReadFull(conn, buf); err != nil || string(buf) != "ping" {
		t.Fatalf("echo %q, %v", buf, err)
	}
	up.mu.Lock()
	head := up.heads[0]
	up.mu.Unlock()
	for _, want := range []string{"GET /chat HTTP/1.1\r\n", "\r\nHost: svc.internal\r\n", "\r\nUpgrade: websocket\r\n", "\r\nConnection: Upgrade\r\n", "\r\n" + BudgetHeader + ": "} {
		if !strings.Contains(head, want) {
			t.Errorf("request head lacks %q:\n%s", strings.TrimSpace(want), head)
		}
	}
}

// An answer other than 101 comes back whole with no connection; a 5xx counts against the host.
func TestUpgradeRefused(t *testing.T) {
	t.Parallel()
	m, _ := newManager(t)
	srv := startServer(t, func(w http.ResponseWriter, _ *http.Request) {
		w.WriteHeader(http.StatusServiceUnavailable)
		_, _ = io.WriteString(w, "busy")
	})
	c := newCluster(t, m, Options{}, srv.addr)
	req := upgradeRequest()
	defer fasthttp.ReleaseRequest(req)
	resp := fasthttp.AcquireResponse()
	defer fasthttp.ReleaseResponse(resp)
	conn, err := c.Upgrade(req, resp, &Call{})
	if err != nil || conn != nil {
		t.Fatalf("Upgrade: conn %v, err %v; want the answer without a connection", conn, err)
	}
	if resp.StatusCode() != http.StatusServiceUnavailable || !resp.IsBodyStream() || string(resp.Body()) != "busy" {
		t.Fatalf("status %d, body %q", resp.StatusCode(), resp.Body())
	}
	if n := hostsOf(c)[srv.addr].health.consecutive.Load(); n != 1 {
		t.Fatalf("the 503 host has %d consecutive errors, want 1", n)
	}
}

// The cluster's TLS config is the upgrade's: a trusted server answers over TLS, an untrusted
// one is a connect failure.
func TestUpgradeTLS(t *testing.T) {
	t.Parallel()
	trusted, untrusted := startTLSServer(t, false), startTLSServer(t, true)
	trust := &tls.Config{RootCAs: trusted.pool, MinVersion: tls.VersionTLS12}
	m, _ := newManager(t)
	for addr, wantErr := range map[string]bool{trusted.addr: false, untrusted.addr: true} {
		c := newCluster(t, m, Options{Name: "tls-" + addr, TLS: trust, Retry: RetryPolicy{Attempts: 1}}, addr)
		req := upgradeRequest()
		resp := fasthttp.AcquireResponse()
		conn, err := c.Upgrade(req, resp, &Call{})
		switch {
		case wantErr && !errors.Is(err, ErrConnect):
			t.Errorf("untrusted: err %v, want ErrConnect", err)
		case !wantErr && (err != nil || conn != nil || string(resp.Body()) != "tls ok /chat"):
			t.Errorf("trusted: conn %v, err %v, status %d, body %q", conn, err, resp.StatusCode(), resp.Body())
		}
		fasthttp.ReleaseRequest(req)
		fasthttp.ReleaseResponse(resp)
	}
}
