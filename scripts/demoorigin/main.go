// Command demoorigin is the demo application scripts/demo.sh runs behind meshgate sidecars.
//
// Every request is answered with an indented JSON description of what arrived, so a user
// running the demo can SEE what the mesh did to the request: which service and which instance
// answered (load balancing), the path, and the headers the edge and the sidecars added
// (X-Forwarded-*, X-Request-Id, traceparent):
//
//	{
//	  "service": "api",
//	  "instance": "api-1",
//	  "address": "127.0.0.1:41234",
//	  "method": "GET",
//	  "path": "/api/hello",
//	  ...
//	  "headers": { "X-Forwarded-For": "127.0.0.1", "X-Request-Id": "...", ... }
//	}
//
// With -call NAME=URL the app also calls another service: a request to /calls-NAME (or any
// path under it) makes the app GET URL/NAME/called-by-<service> (typically its own sidecar's
// upstream listener, e.g. http://127.0.0.1:10001) and answer with the status that call got,
// its own description and the callee's answer nested under "called". That is the demo's
// app → sidecar → sidecar → app chain. X-Request-Id and traceparent are passed on, so one id
// follows the request through every hop.
//
// With -grpc the app is a gRPC service instead (h2c, as gRPC apps behind a sidecar usually
// are): grpc-go's interop TestService from internal/grpcecho, whose UnaryCall echoes the
// payload and names the instance in ServerId. Every unary call also answers, in response
// headers "seen-<key>", the request metadata that reached the app (x-meshgate-identity: the
// caller its sidecar authenticated over mTLS, x-request-id, x-forwarded-for, ...), the gRPC
// counterpart of the JSON description; scripts/grpccall prints them.
//
// /health answers 200 "ok" without logging (for checks). The app listens on 127.0.0.1:0 by
// default and writes the bound address to -addr-file, so the demo never has to guess a free
// port for it. It uses net/http, not fasthttp: it stands in for an ordinary application, and
// speed does not matter here (benchorigin is the benchmark's origin).
package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/metadata"

	"github.com/meshgate/meshgate/internal/grpcecho"
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
	Address  string            `json:"address"`
	Method   string            `json:"method"`
	Path     string            `json:"path"`
	Query    string            `json:"query,omitempty"`
	Host     string            `json:"host"`
	Headers  map[string]string `json:"headers"`
	Called   *call             `json:"called,omitempty"`
}

// call is what a /calls-NAME request got from NAME.
type call struct {
	URL    string `json:"url"`
	Status int    `json:"status"` // 0 when the call failed
	Error  string `json:"error,omitempty"`
	// Answer is the callee's body: its JSON as is, or a JSON string when it is not JSON (a
	// meshgate error page, for instance).
	Answer json.RawMessage `json:"answer,omitempty"`
}

// passOn are the request headers an app passes on to the services it calls, so tracing and
// request ids follow the request.
var passOn = []string{"X-Request-Id", "Traceparent", "Tracestate"}

type calls map[string]string

func (c calls) String() string { return fmt.Sprint(map[string]string(c)) }

func (c calls) Set(v string) error {
	name, url, ok := strings.Cut(v, "=")
	if !ok || name == "" || !strings.HasPrefix(url, "http://") {
		return fmt.Errorf("want NAME=http://HOST:PORT, got %q", v)
	}
	c[name] = strings.TrimSuffix(url, "/")
	return nil
}

func run() error {
	name := flag.String("name", "origin", "service name to report in every answer")
	instance := flag.String("instance", "", "instance id to report (default: the bound address)")
	addr := flag.String("addr", "127.0.0.1:0", "listen address (port 0 picks a free port)")
	addrFile := flag.String("addr-file", "", "write the bound host:port to this file once listening")
	upstreams := calls{}
	flag.Var(upstreams, "call", "NAME=URL: /calls-NAME calls URL/NAME/called-by-<name> (repeatable)")
	grpcMode := flag.Bool("grpc", false, "serve the gRPC TestService (h2c) instead of HTTP")
	flag.Parse()

	ln, err := net.Listen("tcp", *addr)
	if err != nil {
		return fmt.Errorf("listen on %s: %w", *addr, err)
	}
	bound := ln.Addr().String()
	if *instance == "" {
		*instance = bound
	}
	if *grpcMode {
		srv := grpc.NewServer(grpc.UnaryInterceptor(echoMetadata))
		grpcecho.Serve(srv, &grpcecho.Service{Name: *instance})
		return serve(ln, *addrFile, *name, *instance, func() error { return srv.Serve(ln) }, func(ctx context.Context) error {
			// GracefulStop waits for open calls; the context bounds that wait.
			done := make(chan struct{})
			go func() { srv.GracefulStop(); close(done) }()
			select {
			case <-done:
			case <-ctx.Done():
				srv.Stop()
			}
			return nil
		})
	}
	client := &http.Client{Timeout: 10 * time.Second}

	mux := http.NewServeMux()
	mux.HandleFunc("/health", func(w http.ResponseWriter, _ *http.Request) { _, _ = io.WriteString(w, "ok\n") })
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		a := answer{
			Service:  *name,
			Instance: *instance,
			Address:  bound,
			Method:   r.Method,
			Path:     r.URL.Path,
			Query:    r.URL.RawQuery,
			Host:     r.Host,
			Headers:  make(map[string]string, len(r.Header)),
		}
		for k, v := range r.Header {
			a.Headers[k] = strings.Join(v, ", ")
		}
		status := http.StatusOK
		for callee, base := range upstreams {
			p := "/calls-" + callee
			if r.URL.Path == p || strings.HasPrefix(r.URL.Path, p+"/") {
				a.Called = callOut(r, client, base+"/"+callee+"/called-by-"+*name)
				status = a.Called.Status
				if status == 0 {
					status = http.StatusBadGateway
				}
				break
			}
		}
		body, err := json.MarshalIndent(a, "", "  ")
		if err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("X-Demo-Instance", *instance)
		w.WriteHeader(status)
		_, _ = w.Write(append(body, '\n')) // the client went away; nothing useful to do
	})
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	return serve(ln, *addrFile, *name, *instance, func() error { return srv.Serve(ln) }, func(ctx context.Context) error {
		if err := srv.Shutdown(ctx); err != nil && !errors.Is(err, http.ErrServerClosed) {
			return err
		}
		return nil
	})
}

// serve runs start until SIGINT or SIGTERM, then shutdown (bounded to 5s). The bound address
// goes to addrFile once the listener is up.
func serve(ln net.Listener, addrFile, name, instance string, start func() error, shutdown func(context.Context) error) error {
	bound := ln.Addr().String()
	errc := make(chan error, 1)
	go func() { errc <- start() }()

	if addrFile != "" {
		// Write then rename, so a reader polling for the file never sees half an address.
		tmp := filepath.Join(filepath.Dir(addrFile), "."+filepath.Base(addrFile)+".tmp")
		if err := os.WriteFile(tmp, []byte(bound+"\n"), 0o644); err != nil {
			return fmt.Errorf("write addr file: %w", err)
		}
		if err := os.Rename(tmp, addrFile); err != nil {
			return fmt.Errorf("write addr file: %w", err)
		}
	}
	fmt.Fprintf(os.Stderr, "demoorigin: %s (%s) listening on %s\n", name, instance, bound)

	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGINT, syscall.SIGTERM)
	select {
	case err := <-errc:
		return fmt.Errorf("serve: %w", err)
	case <-sig:
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := shutdown(ctx); err != nil {
			return fmt.Errorf("shutdown: %w", err)
		}
		return nil
	}
}

// echoMetadata answers every unary call with the request metadata the app received, as
// response headers "seen-<key>", so the caller sees what the mesh added on the way (the
// caller's identity from the app's sidecar, the edge's request id). Keys gRPC or HTTP/2 own
// (pseudo-headers, grpc-*, content-type, te) are left out: they are the transport's, not the
// mesh's, and some may not be sent back as headers.
func echoMetadata(ctx context.Context, req any, _ *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
	md, _ := metadata.FromIncomingContext(ctx)
	out := metadata.MD{}
	for k, v := range md {
		if strings.HasPrefix(k, ":") || strings.HasPrefix(k, "grpc-") || k == "content-type" || k == "te" {
			continue
		}
		out["seen-"+k] = v
	}
	_ = grpc.SetHeader(ctx, out) // fails only once headers went out, which a handler has not done yet
	return handler(ctx, req)
}

// callOut GETs url on behalf of the request r (its method is not passed on: the demo's chain is
// a read) and describes the result.
func callOut(r *http.Request, client *http.Client, url string) *call {
	c := &call{URL: url}
	req, err := http.NewRequestWithContext(r.Context(), http.MethodGet, url, nil)
	if err != nil {
		c.Error = err.Error()
		return c
	}
	for _, h := range passOn {
		if v := r.Header.Get(h); v != "" {
			req.Header.Set(h, v)
		}
	}
	resp, err := client.Do(req)
	if err != nil {
		c.Error = err.Error()
		return c
	}
	defer func() { _ = resp.Body.Close() }() // read-side close: nothing to act on
	body, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	c.Status = resp.StatusCode
	if err != nil {
		c.Error = err.Error()
	}
	body = bytes.TrimSpace(body)
	if json.Valid(body) && len(body) > 0 {
		c.Answer = body
	} else if len(body) > 0 {
		c.Answer, _ = json.Marshal(string(body))
	}
	return c
}
