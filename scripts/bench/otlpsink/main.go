// Command otlpsink is the trace collector of the benchmark harness's edge scenario with
// EDGE_TRACING=1 (scripts/bench): it accepts OTLP/HTTP exports (POST /v1/traces), reads and
// counts them, and answers 200 with an empty ExportTraceServiceResponse (an empty protobuf
// message is zero bytes). It decodes nothing, so it costs next to nothing beside the proxy;
// what meshgate sent is on GET /stats as "key value" lines (exports, bytes).
package main

import (
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"sync/atomic"
	"time"
)

func main() {
	addr := flag.String("addr", "127.0.0.1:4318", "listen address")
	flag.Parse()
	var exports, bytes atomic.Int64
	mux := http.NewServeMux()
	mux.HandleFunc("POST /v1/traces", func(w http.ResponseWriter, r *http.Request) {
		n, err := io.Copy(io.Discard, r.Body)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		exports.Add(1)
		bytes.Add(n)
		w.Header().Set("Content-Type", "application/x-protobuf")
		w.WriteHeader(http.StatusOK)
	})
	mux.HandleFunc("GET /stats", func(w http.ResponseWriter, _ *http.Request) {
		fmt.Fprintf(w, "exports %d\nbytes %d\n", exports.Load(), bytes.Load())
	})
	srv := &http.Server{Addr: *addr, Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	if err := srv.ListenAndServe(); err != nil {
		fmt.Fprintf(os.Stderr, "otlpsink: %v\n", err)
		os.Exit(1)
	}
}
