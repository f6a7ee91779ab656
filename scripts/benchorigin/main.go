// Command benchorigin is the upstream used by the bench harness (scripts/bench).
//
// It exists so that every proxy in the comparative benchmark (nginx, HAProxy,
// meshgate) forwards to the same, deliberately cheap origin: a fasthttp
// server answering every path with a fixed 1 KiB text/plain body over
// keep-alive connections. Keeping the origin trivial and in-tree means the
// measured differences come from the proxies, not from the backend, and the
// benchmark needs nothing beyond the Go toolchain and Debian packages.
package main

import (
	"bytes"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/valyala/fasthttp"
)

// bodySize is fixed by the benchmark's contract ("serving 1 KiB").
const bodySize = 1024

func main() {
	if err := run(); err != nil {
		fmt.Fprintf(os.Stderr, "benchorigin: %v\n", err)
		os.Exit(1)
	}
}

func run() error {
	addr := flag.String("addr", "127.0.0.1:8080", "listen address")
	flag.Parse()

	// The body is built once and shared read-only: SetBodyRaw avoids a copy
	// per request, which keeps the origin off the profile.
	body := bytes.Repeat([]byte("x"), bodySize-1)
	body = append(body, '\n')

	srv := &fasthttp.Server{
		Handler: func(ctx *fasthttp.RequestCtx) {
			ctx.SetContentType("text/plain")
			ctx.Response.SetBodyRaw(body)
		},
		Name:         "benchorigin",
		ReadTimeout:  30 * time.Second,
		WriteTimeout: 30 * time.Second,
		IdleTimeout:  120 * time.Second,
	}

	errc := make(chan error, 1)
	go func() { errc <- srv.ListenAndServe(*addr) }()

	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGINT, syscall.SIGTERM)
	select {
	case err := <-errc:
		if err != nil {
			return fmt.Errorf("listen on %s: %w", *addr, err)
		}
		return errors.New("server stopped unexpectedly")
	case <-sig:
		if err := srv.Shutdown(); err != nil {
			return fmt.Errorf("shutdown: %w", err)
		}
		return nil
	}
}
