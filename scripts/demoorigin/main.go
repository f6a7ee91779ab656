// Command demoorigin is the upstream used by scripts/demo.sh.
//
// Every request is answered with a JSON description of what arrived, so a user running the
// demo can SEE what the gateway did to the request: which service and which instance answered
// (load balancing), the path after rewriting, and the headers the gateway added
// (X-Forwarded-*, X-Request-Id, traceparent):
//
//	{"service":"api","instance":"127.0.0.1:41234","method":"GET","path":"/hello",
//	 "query":"","host":"localhost:8080","headers":{"X-Forwarded-For":"127.0.0.1",...}}
//
// It listens on 127.0.0.1:0 by default and writes the bound address to -addr-file, so the demo
// never has to guess a free port for its origins. It uses net/http, not fasthttp: it is a
// stand-in for an ordinary application, and speed does not matter here (benchorigin is the
// benchmark's origin).
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"
)

func main() {
	if err := run(); err != nil {
		fmt.Fprintf(os.Stderr, "demoorigin: %v\n", err)
		os.Exit(1)
	}
}

// answer is the response body. A struct rather than a map keeps the key order stable, which
// lets the demo's self-test grep the answer without jq.
type answer struct {
	Service  string            `json:"service"`
	Instance string            `json:"instance"`
	Method   string            `json:"method"`
	Path     string            `json:"path"`
	Query    string            `json:"query"`
	Host     string            `json:"host"`
	Headers  map[string]string `json:"headers"`
}

func run() error {
	name := flag.String("name", "origin", "service name to report in every answer")
	addr := flag.String("addr", "127.0.0.1:0", "listen address (port 0 picks a free port)")
	addrFile := flag.String("addr-file", "", "write the bound host:port to this file once listening")
	flag.Parse()

	ln, err := net.Listen("tcp", *addr)
	if err != nil {
		return fmt.Errorf("listen on %s: %w", *addr, err)
	}
	instance := ln.Addr().String()

	mux := http.NewServeMux()
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		a := answer{
			Service:  *name,
			Instance: instance,
			Method:   r.Method,
			Path:     r.URL.Path,
			Query:    r.URL.RawQuery,
			Host:     r.Host,
			Headers:  make(map[string]string, len(r.Header)),
		}
		for k, v := range r.Header {
			a.Headers[k] = strings.Join(v, ", ")
		}
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("X-Demo-Instance", instance)
		enc := json.NewEncoder(w)
		_ = enc.Encode(a) // the client went away; nothing useful to do
	})
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}

	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()

	if *addrFile != "" {
		// Write then rename, so a reader polling for the file never sees half an address.
		tmp := filepath.Join(filepath.Dir(*addrFile), "."+filepath.Base(*addrFile)+".tmp")
		if err := os.WriteFile(tmp, []byte(instance+"\n"), 0o644); err != nil {
			return fmt.Errorf("write addr file: %w", err)
		}
		if err := os.Rename(tmp, *addrFile); err != nil {
			return fmt.Errorf("write addr file: %w", err)
		}
	}
	fmt.Fprintf(os.Stderr, "demoorigin: %s listening on %s\n", *name, instance)

	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGINT, syscall.SIGTERM)
	select {
	case err := <-errc:
		return fmt.Errorf("serve: %w", err)
	case <-sig:
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := srv.Shutdown(ctx); err != nil && !errors.Is(err, http.ErrServerClosed) {
			return fmt.Errorf("shutdown: %w", err)
		}
		return nil
	}
}
