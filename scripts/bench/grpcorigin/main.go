// Command grpcorigin is the origin of the benchmark harness's grpc scenario (scripts/bench):
// a grpc-go server with the interop TestService (internal/grpcecho: unary and streaming echo)
// on -grpc, and on -h2 a net/http server that answers every request with a fixed 1 KiB body
// over HTTP/1.1 and h2c with prior knowledge, for h2load and for proxies that speak HTTP/1.1
// to their upstreams (nginx). Both are plaintext: gRPC servers usually run behind a proxy or
// a sidecar that terminates TLS.
package main

import (
	"bytes"
	"flag"
	"fmt"
	"net"
	"net/http"
	"os"
	"time"

	"google.golang.org/grpc"

	"github.com/meshgate/meshgate/internal/grpcecho"
)

func main() {
	grpcAddr := flag.String("grpc", "127.0.0.1:9090", "gRPC listen address")
	h2Addr := flag.String("h2", "127.0.0.1:9091", "HTTP (h2c and HTTP/1.1) listen address")
	flag.Parse()
	if err := run(*grpcAddr, *h2Addr); err != nil {
		fmt.Fprintf(os.Stderr, "grpcorigin: %v\n", err)
		os.Exit(1)
	}
}

func run(grpcAddr, h2Addr string) error {
	gl, err := net.Listen("tcp", grpcAddr)
	if err != nil {
		return err
	}
	hl, err := net.Listen("tcp", h2Addr)
	if err != nil {
		return err
	}
	srv := grpc.NewServer()
	grpcecho.Serve(srv, &grpcecho.Service{Name: "grpcorigin"})

	body := bytes.Repeat([]byte("x"), 1024) // the size benchorigin answers with
	var protos http.Protocols
	protos.SetHTTP1(true)
	protos.SetUnencryptedHTTP2(true)
	hs := &http.Server{
		Handler: http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
			w.Header().Set("Content-Type", "application/octet-stream")
			_, _ = w.Write(body) // a client that went away is not the origin's problem
		}),
		Protocols:         &protos,
		ReadHeaderTimeout: 10 * time.Second,
		// Far above the streams any client of the harness opens, so the origin never
		// refuses one (h2load -m, a proxy's pooled connection).
		HTTP2: &http.HTTP2Config{MaxConcurrentStreams: 1000},
	}
	errc := make(chan error, 2)
	go func() { errc <- srv.Serve(gl) }()
	go func() { errc <- hs.Serve(hl) }()
	return <-errc
}
