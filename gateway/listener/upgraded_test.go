package listener

import (
	"bufio"
	"context"
	"errors"
	"io"
	"net"
	"os"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/valyala/fasthttp"
)

// An upgraded (hijacked) connection stays the listener's: the gauge counts it until it closes,
// it counts against max_connections, and Shutdown closes it when its context ends.
func TestUpgradedConnectionsCountedAndDrained(t *testing.T) {
	t.Parallel()
	// /up hijacks like the WebSocket engine: the listener is told before the hijack, the
	// handler writes its own answer and then echoes until the connection ends.
	opts := testOptions(func(ctx *fasthttp.RequestCtx) {
		if string(ctx.Path()) != "/up" {
			ctx.SetBodyString("plain")
			return
		}
		done := Upgraded(ctx.Conn())
		ctx.HijackSetNoResponse(true)
		ctx.Hijack(func(c net.Conn) {
			defer done()
			_, _ = io.WriteString(c, "HTTP/1.1 101 Switching Protocols\r\nUpgrade: test\r\nConnection: Upgrade\r\n\r\n")
			_, _ = io.Copy(c, c)
		})
	})
	opts.MaxConnections = 2
	opts.Connections = prometheus.NewGauge(prometheus.GaugeOpts{Name: "conns"})
	l, err := New(opts)
	if err != nil {
		t.Fatal(err)
	}
	s := serve(l)
	upgrade := func() (net.Conn, *bufio.Reader) {
		t.Helper()
		c, err := net.Dial("tcp", l.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = c.Close() })
		_ = c.SetDeadline(time.Now().Add(10 * time.Second))
		_, _ = io.WriteString(c, "GET /up HTTP/1.1\r\nHost: test\r\n\r\n")
		br := bufio.NewReader(c)
		for {
			line, err := br.ReadString('\n')
			if err != nil {
				t.Fatalf("reading the 101: %v", err)
			}
			if line == "\r\n" {
				return c, br
			}
		}
	}
	a, _ := upgrade()
	b, bbr := upgrade()
	if got := testutil.ToFloat64(opts.Connections); got != 2 {
		t.Fatalf("Connections = %v with two upgraded connections open, want 2", got)
	}
	// A third connection is refused at accept: read ends without an answer.
	c, err := net.Dial("tcp", l.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	_ = c.SetDeadline(time.Now().Add(5 * time.Second))
	_, _ = io.WriteString(c, "GET / HTTP/1.1\r\nHost: test\r\n\r\n")
	if n, err := c.Read(make([]byte, 1)); n != 0 || errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("third connection: read %d bytes, %v; want it closed", n, err)
	}
	_ = c.Close()
	_ = a.Close()
	waitFor(t, "the gauge to drop to 1", func() bool { return testutil.ToFloat64(opts.Connections) == 1 })

	// Shutdown waits for the upgraded connection until its context ends, then closes it.
	ctx, cancel := context.WithTimeout(t.Context(), 300*time.Millisecond)
	defer cancel()
	start := time.Now()
	if err := l.Shutdown(ctx); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Shutdown = %v, want the context's deadline (a session was still open)", err)
	}
	if took := time.Since(start); took < 250*time.Millisecond {
		t.Fatalf("Shutdown returned after %v, before its context ended", took)
	}
	if _, err := bbr.ReadByte(); err == nil {
		t.Fatal("the upgraded connection is still open after Shutdown")
	}
	_ = b.Close()
	waitFor(t, "the gauge to drop to 0", func() bool { return testutil.ToFloat64(opts.Connections) == 0 })
	if err := s.wait(t); err != nil {
		t.Fatalf("Serve after Shutdown = %v", err)
	}
}
