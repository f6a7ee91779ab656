package upstream

import (
	"errors"
	"net"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/valyala/fasthttp"
)

// A gRPC upstream that gives up at the grpc-timeout it was sent and resets the stream (what
// grpc-go's server does) must read as the deadline, not as a broken upstream: it was told a
// value rounded down to the millisecond, so its reset arrives just before our own deadline.
func TestH2UpstreamResetAtItsDeadlineIsATimeout(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var protos http.Protocols
	protos.SetUnencryptedHTTP2(true)
	srv := &http.Server{Protocols: &protos, ReadHeaderTimeout: 5 * time.Second,
		Handler: http.HandlerFunc(func(_ http.ResponseWriter, r *http.Request) {
			ms, err := strconv.Atoi(strings.TrimSuffix(r.Header.Get("Grpc-Timeout"), "m"))
			if err != nil {
				panic(http.ErrAbortHandler)
			}
			time.Sleep(time.Duration(ms) * time.Millisecond) // the upstream's own deadline
			panic(http.ErrAbortHandler)                      // RST_STREAM, no status
		})}
	go func() { _ = srv.Serve(ln) }()
	t.Cleanup(func() { _ = srv.Close() })

	tr := newHTTP2Transport(ln.Addr().String(), &Options{})
	t.Cleanup(tr.CloseIdleConnections)
	for i := range 5 {
		var req fasthttp.Request
		var resp fasthttp.Response
		req.Header.SetMethod(fasthttp.MethodPost)
		req.SetRequestURI("/grpc.testing.TestService/UnaryCall")
		req.Header.SetHost("upstream")
		req.Header.SetContentType("application/grpc")
		req.SetBody([]byte{0, 0, 0, 0, 0})
		now := time.Now()
		err := tr.Do(&req, &resp, now.Add(150*time.Millisecond), now)
		if !errors.Is(err, ErrTimeout) {
			t.Fatalf("call %d: %v, want ErrTimeout", i, err)
		}
	}
}
