package consul

import (
	"bufio"
	"context"
	"net"
	"os"
	"os/exec"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hashicorp/consul/api"
)

// proxyChildEnv marks the re-executed test binary of TestClientIgnoresProxyEnvironment.
const proxyChildEnv = "MESHGATE_TEST_PROXY_CHILD"

// TestClientIgnoresProxyEnvironment runs a child process whose HTTP_PROXY, HTTPS_PROXY and
// ALL_PROXY (upper and lower case) point at a listener here, and has it query an agent by a
// non-loopback name over http and https (net/http never proxies loopback, so a loopback agent
// would prove nothing). The listener must see no connection: the token (and for Connect the
// leaf key) would go to whoever runs the proxy. A child process, because net/http reads the
// proxy variables once per process.
func TestClientIgnoresProxyEnvironment(t *testing.T) {
	if os.Getenv(proxyChildEnv) == "1" {
		proxyChild(t)
		return
	}
	t.Parallel()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var seen atomic.Int32
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			// Counted before answering, so the child's request cannot finish uncounted.
			seen.Add(1)
			line, _ := bufio.NewReader(c).ReadString('\n')
			t.Logf("proxy got: %q", line)
			_, _ = c.Write([]byte("HTTP/1.1 502 Bad Gateway\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"))
			_ = c.Close()
		}
	}()
	proxy := "http://" + ln.Addr().String()
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, os.Args[0], "-test.run=^TestClientIgnoresProxyEnvironment$", "-test.count=1")
	cmd.Env = append(os.Environ(), proxyChildEnv+"=1",
		"HTTP_PROXY="+proxy, "HTTPS_PROXY="+proxy, "ALL_PROXY="+proxy,
		"http_proxy="+proxy, "https_proxy="+proxy, "all_proxy="+proxy, "NO_PROXY=", "no_proxy=")
	out, err := cmd.CombinedOutput()
	_ = ln.Close()
	wg.Wait()
	if err != nil {
		t.Fatalf("child: %v\n%s", err, out)
	}
	if n := seen.Load(); n != 0 {
		t.Fatalf("the proxy from the environment got %d connection(s) from the Consul client\n%s", n, out)
	}
}

// proxyChild queries an agent that does not exist (".invalid" never resolves, RFC 6761): the
// queries fail, and must fail without ever reaching the proxy.
func proxyChild(t *testing.T) {
	t.Helper()
	for _, scheme := range []string{"http", "https"} {
		src, err := New(Options{Address: "meshgate-consul.invalid:8500", Scheme: scheme, Token: "SECRET-token",
			Getenv: func(string) string { return "" }})
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		q := (&api.QueryOptions{Token: src.Token()}).WithContext(ctx)
		_, _, err = src.APIClient().KV().Get("meshgate/x", q)
		cancel()
		src.Close()
		if err == nil {
			t.Fatalf("%s: a query to a nonexistent agent succeeded", scheme)
		}
		t.Logf("%s: %v", scheme, err)
	}
	// The Registrar builds its own client with the same function; check it directly.
	c, tr, err := newClient(Options{Address: "meshgate-consul.invalid:8500", Scheme: "http"}, "SECRET-token")
	if err != nil {
		t.Fatal(err)
	}
	defer tr.CloseIdleConnections()
	if _, err := c.Agent().Services(); err == nil { // bounded by the dial timeout
		t.Fatal("register client reached a nonexistent agent")
	}
}
