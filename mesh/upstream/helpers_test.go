package upstream

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/rs/zerolog"
	"github.com/valyala/fasthttp"
	"go.uber.org/goleak"

	"github.com/meshgate/meshgate/discovery"
	"github.com/meshgate/meshgate/internal/await"
	"github.com/meshgate/meshgate/mesh/lb"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m, append(await.IgnoreFasthttp(), await.IgnoreIdleConns()...)...)
}

// upstreamServer is a real HTTP server on loopback that counts the requests it answers.
type upstreamServer struct {
	addr   string
	hits   atomic.Int64
	mu     sync.Mutex
	bodies []string
}

func (u *upstreamServer) count() int { return int(u.hits.Load()) }

func (u *upstreamServer) lastBody(t *testing.T) string {
	t.Helper()
	u.mu.Lock()
	defer u.mu.Unlock()
	if len(u.bodies) == 0 {
		t.Fatalf("%s saw no request", u.addr)
	}
	return u.bodies[len(u.bodies)-1]
}

// startServer serves h (nil: 200 "ok from <addr>") and counts every request before h runs.
func startServer(t *testing.T, h http.HandlerFunc) *upstreamServer {
	t.Helper()
	u := &upstreamServer{}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == warmPath {
			return
		}
		b, _ := io.ReadAll(r.Body)
		u.mu.Lock()
		u.bodies = append(u.bodies, string(b))
		u.mu.Unlock()
		u.hits.Add(1)
		if h != nil {
			h(w, r)
			return
		}
		_, _ = io.WriteString(w, "ok from "+u.addr)
	}))
	u.addr = strings.TrimPrefix(srv.URL, "http://")
	t.Cleanup(srv.Close)
	return u
}

// warmPath is answered at once with 200 by every startServer server and not counted.
const warmPath = "/warm"

// warm leaves one idle keep-alive connection to each of addrs in c's pools, so a timed try
// does not spend its budget on a dial when the machine is busy. It ends with set(addrs...).
func warm(t *testing.T, c *Cluster, addrs ...string) {
	t.Helper()
	req := fasthttp.AcquireRequest()
	defer fasthttp.ReleaseRequest(req)
	resp := fasthttp.AcquireResponse()
	defer fasthttp.ReleaseResponse(resp)
	for _, a := range addrs {
		c.Apply(set(a))
		prepare(req, fasthttp.MethodGet, "")
		req.SetRequestURI(warmPath)
		if err := c.Do(req, resp, &Call{Retry: &RetryPolicy{Attempts: 1}}); err != nil {
			t.Fatalf("warm %s: %v", a, err)
		}
		_ = resp.Body()
	}
	c.Apply(set(addrs...))
}

// statusServer answers every request with code.
func statusServer(t *testing.T, code int) *upstreamServer {
	t.Helper()
	return startServer(t, func(w http.ResponseWriter, _ *http.Request) { w.WriteHeader(code) })
}

// slowServer holds every request until the client goes away or the test ends, so a per-try
// timeout is the only way a request to it finishes.
func slowServer(t *testing.T) *upstreamServer {
	t.Helper()
	release := make(chan struct{})
	u := startServer(t, func(_ http.ResponseWriter, r *http.Request) {
		select {
		case <-r.Context().Done():
		case <-release:
		}
	})
	// Registered after startServer's srv.Close, so it runs first and Close does not wait on
	// a held handler.
	t.Cleanup(func() { close(release) })
	return u
}

// closedAddr returns a loopback address nothing listens on: connecting to it is refused.
func closedAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	if err := ln.Close(); err != nil {
		t.Fatal(err)
	}
	return addr
}

// blackholeAddr returns a loopback address where a TCP connect hangs: a socket listening
// with a backlog of 0 and a full accept queue drops further SYNs, like a black-holed host.
func blackholeAddr(t *testing.T) string {
	t.Helper()
	fd, err := syscall.Socket(syscall.AF_INET, syscall.SOCK_STREAM|syscall.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = syscall.Close(fd) })
	if err := syscall.Bind(fd, &syscall.SockaddrInet4{Addr: [4]byte{127, 0, 0, 1}}); err != nil {
		t.Fatal(err)
	}
	if err := syscall.Listen(fd, 0); err != nil {
		t.Fatal(err)
	}
	sa, err := syscall.Getsockname(fd)
	if err != nil {
		t.Fatal(err)
	}
	addr := fmt.Sprintf("127.0.0.1:%d", sa.(*syscall.SockaddrInet4).Port)
	// Fill the queue; from then on connects hang until they time out.
	deadline := time.Now().Add(5 * time.Second)
	for {
		c, err := net.DialTimeout("tcp", addr, 200*time.Millisecond)
		if err != nil {
			break
		}
		t.Cleanup(func() { _ = c.Close() })
		if time.Now().After(deadline) {
			t.Fatal("could not fill the accept queue")
		}
	}
	return addr
}

// resetServer accepts connections, reads one request head and closes without answering: the
// upstream died after the request reached it.
func resetServer(t *testing.T) *upstreamServer {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	u := &upstreamServer{addr: ln.Addr().String()}
	var wg sync.WaitGroup
	wg.Go(func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			wg.Go(func() {
				defer c.Close()
				_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
				br := bufio.NewReader(c)
				var head bytes.Buffer
				for {
					line, err := br.ReadString('\n')
					head.WriteString(line)
					if err != nil {
						return
					}
					if line == "\r\n" {
						break
					}
				}
				u.hits.Add(1)
			})
		}
	})
	t.Cleanup(func() {
		_ = ln.Close()
		wg.Wait()
	})
	return u
}

// preferFirst is a policy that picks the host with address first (falling back to the next
// one not excluded), so a test knows which host a request tries first.
type preferFirst struct{ first string }

func (p preferFirst) NewPicker(hosts []*lb.Host) lb.Picker {
	start := 0
	for i, h := range hosts {
		if h.Address == p.first {
			start = i
		}
	}
	return &preferPicker{n: len(hosts), start: start}
}

type preferPicker struct{ n, start int }

func (p *preferPicker) Pick(_ uint64, exclude int) int {
	if p.n == 0 {
		return -1
	}
	for i := range p.n {
		idx := (p.start + i) % p.n
		if idx != exclude {
			return idx
		}
	}
	return p.start
}

func newManager(t *testing.T) (*Manager, *prometheus.Registry) {
	t.Helper()
	reg := prometheus.NewRegistry()
	m, err := NewManager(ManagerOptions{Registerer: reg, Logger: zerolog.Nop()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(m.Close)
	return m, reg
}

// newCluster ensures a cluster named "svc" with opts (defaults filled in) over addrs.
func newCluster(t *testing.T, m *Manager, opts Options, addrs ...string) *Cluster {
	t.Helper()
	if opts.Name == "" {
		opts.Name = "svc"
	}
	if opts.Policy == nil {
		opts.Policy = lb.NewRoundRobin()
	}
	if opts.ConnectTimeout == 0 {
		opts.ConnectTimeout = time.Second
	}
	c, err := m.Ensure(opts)
	if err != nil {
		t.Fatal(err)
	}
	c.Apply(set(addrs...))
	return c
}

func set(addrs ...string) discovery.Set {
	eps := make([]discovery.Endpoint, len(addrs))
	for i, a := range addrs {
		eps[i] = discovery.Endpoint{Address: a, Weight: 1}
	}
	return discovery.Set{Service: "svc", Endpoints: eps, Source: "test"}
}

// do sends one request through c and returns the status (0 on error) and the body.
func do(t *testing.T, c *Cluster, method string, call *Call) (int, string, error) {
	t.Helper()
	req := fasthttp.AcquireRequest()
	defer fasthttp.ReleaseRequest(req)
	resp := fasthttp.AcquireResponse()
	defer fasthttp.ReleaseResponse(resp)
	prepare(req, method, "payload")
	err := c.Do(req, resp, call)
	if err != nil {
		return 0, "", err
	}
	return resp.StatusCode(), string(resp.Body()), nil
}

func prepare(req *fasthttp.Request, method, body string) {
	req.Header.SetMethod(method)
	req.SetRequestURI("/path?q=1")
	req.Header.SetHost("svc.internal")
	if method != fasthttp.MethodGet {
		req.SetBodyString(body)
	}
}

// hosts returns the cluster's current *Host pointers by address.
func hostsOf(c *Cluster) map[string]*Host {
	out := map[string]*Host{}
	for _, h := range c.state.Load().hosts {
		out[h.Address] = h
	}
	return out
}

// hostPool is the connection pool behind h's default HTTP/1.1 transport.
func hostPool(h *Host) *connPool { return h.transport.(*http1Transport).pool }

// waitFor polls cond until it holds or the deadline passes.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	await.Until(t, 5*time.Second, what, cond)
}
