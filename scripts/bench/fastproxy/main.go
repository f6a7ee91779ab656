// Command fastproxy is the floor of the benchmark harness's edge scenario: the
// least a fasthttp-based reverse proxy can do per request. A fasthttp.Server
// hands each request to a HostClient aimed at one origin and answers with
// whatever came back, nothing else: no routing, header hygiene, metrics, access
// log, retries or balancing. meshgate's CPU per request divided by this one's
// is the cost of everything meshgate adds on top of the library (issue 16).
package main

import (
	"flag"
	"fmt"
	"os"

	"github.com/valyala/fasthttp"
)

func main() {
	addr := flag.String("addr", "127.0.0.1:8081", "listen address")
	origin := flag.String("origin", "127.0.0.1:8080", "origin host:port")
	flag.Parse()
	// MaxConns well above wrk's connections, so the pool never makes a
	// request wait for a free upstream connection.
	client := &fasthttp.HostClient{Addr: *origin, MaxConns: 4096}
	srv := &fasthttp.Server{Handler: func(ctx *fasthttp.RequestCtx) {
		// Do writes the origin's answer straight into ctx.Response: the one
		// response copy (read from the origin, written to the client) a proxy
		// cannot avoid.
		if err := client.Do(&ctx.Request, &ctx.Response); err != nil {
			ctx.Error("bad gateway", fasthttp.StatusBadGateway)
		}
	}}
	if err := srv.ListenAndServe(*addr); err != nil {
		fmt.Fprintf(os.Stderr, "fastproxy: %v\n", err)
		os.Exit(1)
	}
}
