// Command grpccall makes one gRPC call, the demo's: grpc.testing.TestService/UnaryCall (the
// TestService scripts/demoorigin -grpc serves) to -addr over h2c, the way an ordinary grpc-go
// client reaches a gateway's plaintext listener, and prints what came back:
//
//	grpc.testing.TestService/UnaryCall to 127.0.0.1:8080: OK in 3.1ms
//	  server_id: echo-1
//	  payload:   "hello"
//	  header  seen-x-meshgate-identity: edge
//	  header  x-request-id: 5c1f...
//	  trailer x-echo-trailer: t-echo-1
//
// Response headers and trailers are printed sorted, one per line, so scripts/demo.sh's
// self-test can grep them: the "seen-" headers are the request metadata the app received
// (what the edge and the app's sidecar added on the way). A call that fails prints its gRPC
// status and exits 1. It uses grpc-go and nothing of meshgate's, so it is what any gRPC client
// would see.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"slices"
	"strings"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	testpb "google.golang.org/grpc/interop/grpc_testing"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
)

func main() {
	if err := run(); err != nil {
		fmt.Fprintf(os.Stderr, "grpccall: %v\n", err)
		os.Exit(1)
	}
}

func run() error {
	addr := flag.String("addr", "127.0.0.1:8080", "host:port to call (plaintext HTTP/2)")
	payload := flag.String("payload", "hello", "the request's payload, echoed by the service")
	timeout := flag.Duration("timeout", 5*time.Second, "the call's deadline (sent as grpc-timeout)")
	ua := flag.String("user-agent", "", "a user-agent prefix (grpc-go adds its own after it)")
	var md headers
	flag.Var(&md, "H", "KEY=VALUE request metadata (repeatable)")
	flag.Parse()
	if flag.NArg() > 0 {
		return fmt.Errorf("unexpected arguments %q", flag.Args())
	}

	opts := []grpc.DialOption{grpc.WithTransportCredentials(insecure.NewCredentials())}
	if *ua != "" {
		opts = append(opts, grpc.WithUserAgent(*ua))
	}
	conn, err := grpc.NewClient(*addr, opts...)
	if err != nil {
		return err
	}
	defer func() { _ = conn.Close() }() // the call is over; nothing to act on

	ctx, cancel := context.WithTimeout(context.Background(), *timeout)
	defer cancel()
	if len(md) > 0 {
		ctx = metadata.NewOutgoingContext(ctx, metadata.Pairs(md...))
	}
	var header, trailer metadata.MD
	start := time.Now()
	resp, err := testpb.NewTestServiceClient(conn).UnaryCall(ctx,
		&testpb.SimpleRequest{Payload: &testpb.Payload{Body: []byte(*payload)}},
		grpc.Header(&header), grpc.Trailer(&trailer))
	took := time.Since(start)
	const method = "grpc.testing.TestService/UnaryCall"
	if err != nil {
		s := status.Convert(err)
		fmt.Printf("%s to %s: %s (%d) %q after %s\n", method, *addr, s.Code(), s.Code(), s.Message(), took.Round(100*time.Microsecond))
		printMD("header ", header)
		printMD("trailer", trailer)
		return fmt.Errorf("call failed: %s", s.Code())
	}
	fmt.Printf("%s to %s: OK in %s\n", method, *addr, took.Round(100*time.Microsecond))
	fmt.Printf("  server_id: %s\n", resp.GetServerId())
	fmt.Printf("  payload:   %q\n", resp.GetPayload().GetBody())
	printMD("header ", header)
	printMD("trailer", trailer)
	return nil
}

// printMD writes md sorted by key, one value a line.
func printMD(kind string, md metadata.MD) {
	keys := make([]string, 0, len(md))
	for k := range md {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	for _, k := range keys {
		for _, v := range md[k] {
			fmt.Printf("  %s %s: %s\n", kind, k, v)
		}
	}
}

// headers is the -H flag: KEY=VALUE pairs, flattened for metadata.Pairs.
type headers []string

func (h *headers) String() string { return strings.Join(*h, ",") }

func (h *headers) Set(v string) error {
	k, val, ok := strings.Cut(v, "=")
	if !ok || k == "" {
		return fmt.Errorf("want KEY=VALUE, got %q", v)
	}
	*h = append(*h, strings.ToLower(k), val)
	return nil
}
