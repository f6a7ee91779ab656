// Command grpcload is the gRPC load generator of the benchmark harness's grpc scenario
// (scripts/bench). It opens -conns HTTP/2 connections (one grpc-go ClientConn each, h2c) and
// runs -streams callers on each, closed loop, for -duration, against the interop TestService
// (internal/grpcecho, served by scripts/bench/grpcorigin):
//
//	unary   each caller sends UnaryCall with a -size payload and waits for the echo
//	stream  each caller opens one FullDuplexCall and ping-pongs -size messages on it; every
//	        message answered counts as one request (the cost of a message on a long stream)
//
// It reports "key value" lines on stdout (requests, errors, rps, p50_ms, p99_ms, and failure
// lines with the first errors), as scripts/bench/rateload does, so the harness parses both
// one way. -check makes one unary call and exits 0 only if it succeeded: the harness's
// readiness probe of a gRPC path. The client never retries.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	testpb "google.golang.org/grpc/interop/grpc_testing"
)

type options struct {
	addr           string
	mode           string
	conns, streams int
	size           int
	duration       time.Duration
	check          bool
}

func main() {
	if err := run(os.Args[1:], os.Stdout, os.Stderr); err != nil {
		fmt.Fprintf(os.Stderr, "grpcload: %v\n", err)
		os.Exit(1)
	}
}

func parseOptions(args []string) (options, error) {
	var o options
	fs := flag.NewFlagSet("grpcload", flag.ContinueOnError)
	fs.StringVar(&o.addr, "addr", "", "host:port of a TestService (direct or through a proxy)")
	fs.StringVar(&o.mode, "mode", "unary", "unary or stream")
	fs.IntVar(&o.conns, "conns", 4, "HTTP/2 connections")
	fs.IntVar(&o.streams, "streams", 16, "concurrent callers per connection")
	fs.IntVar(&o.size, "size", 1024, "payload bytes each way")
	fs.DurationVar(&o.duration, "duration", 10*time.Second, "how long to load")
	fs.BoolVar(&o.check, "check", false, "one unary call, exit 0 if it succeeded")
	if err := fs.Parse(args); err != nil {
		return o, err
	}
	switch {
	case o.addr == "":
		return o, errors.New("-addr is required")
	case o.mode != "unary" && o.mode != "stream":
		return o, fmt.Errorf("-mode %q: want unary or stream", o.mode)
	case o.conns <= 0 || o.streams <= 0 || o.size < 0 || o.duration <= 0:
		return o, errors.New("-conns, -streams and -duration must be positive, -size not negative")
	}
	return o, nil
}

func run(args []string, stdout, stderr io.Writer) error {
	o, err := parseOptions(args)
	if err != nil {
		return err
	}
	if o.check {
		return check(o)
	}
	clients := make([]testpb.TestServiceClient, o.conns)
	for i := range clients {
		// passthrough: the address is dialled as given, no resolver; one ClientConn is
		// one HTTP/2 connection.
		cc, err := grpc.NewClient("passthrough:///"+o.addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
		if err != nil {
			return err
		}
		defer func() { _ = cc.Close() }() // the process ends next
		cc.Connect()
		clients[i] = testpb.NewTestServiceClient(cc)
	}

	// The window ends by the clock, checked before each call, not by cancelling a context:
	// grpc-go turns a context deadline into its own timer, so calls in flight at the end
	// would fail as DeadlineExceeded a moment before the context says so. A call in flight
	// at the end completes and counts. Each call still has a bound, so a stuck path ends
	// the run with errors rather than hanging it.
	end := time.Now().Add(o.duration)
	payload := make([]byte, o.size)
	var (
		wg       sync.WaitGroup
		mu       sync.Mutex
		all      []time.Duration
		errs     atomic.Int64
		failures []string
	)
	fail := func(err error) {
		errs.Add(1)
		mu.Lock()
		if len(failures) < 5 {
			failures = append(failures, err.Error())
		}
		mu.Unlock()
	}
	start := time.Now()
	for _, c := range clients {
		for range o.streams {
			wg.Add(1)
			go func() {
				defer wg.Done()
				lat := make([]time.Duration, 0, 1<<14)
				if o.mode == "unary" {
					lat = unary(end, c, payload, lat, fail)
				} else {
					lat = stream(end, c, payload, lat, fail)
				}
				mu.Lock()
				all = append(all, lat...)
				mu.Unlock()
			}()
		}
	}
	wg.Wait()
	elapsed := time.Since(start)
	slices.Sort(all)
	fmt.Fprintf(stdout, "requests %d\nerrors %d\nseconds %.3f\nrps %.1f\np50_ms %.3f\np99_ms %.3f\n",
		len(all), errs.Load(), elapsed.Seconds(), float64(len(all))/elapsed.Seconds(),
		ms(pct(all, 0.50)), ms(pct(all, 0.99)))
	for _, f := range failures {
		fmt.Fprintf(stdout, "failure %s\n", f)
	}
	fmt.Fprintf(stderr, "grpcload %s %s: %d requests, %d errors, %.0f/s\n", o.mode, o.addr, len(all), errs.Load(), float64(len(all))/elapsed.Seconds())
	return nil
}

// callTimeout bounds one call (or one message's round trip) so a stuck path cannot hang a run.
const callTimeout = 10 * time.Second

// unary calls until end.
func unary(end time.Time, c testpb.TestServiceClient, payload []byte, lat []time.Duration, fail func(error)) []time.Duration {
	req := &testpb.SimpleRequest{Payload: &testpb.Payload{Body: payload}}
	for time.Now().Before(end) {
		ctx, cancel := context.WithTimeout(context.Background(), callTimeout)
		t0 := time.Now()
		resp, err := c.UnaryCall(ctx, req)
		d := time.Since(t0)
		cancel()
		switch {
		case err != nil:
			fail(err)
		case len(resp.GetPayload().GetBody()) != len(payload):
			fail(fmt.Errorf("echo of %d bytes, want %d", len(resp.GetPayload().GetBody()), len(payload)))
		default:
			lat = append(lat, d)
		}
	}
	return lat
}

// stream ping-pongs on one bidirectional stream until end, reopening it after an error.
func stream(end time.Time, c testpb.TestServiceClient, payload []byte, lat []time.Duration, fail func(error)) []time.Duration {
	req := &testpb.StreamingOutputCallRequest{Payload: &testpb.Payload{Body: payload}}
	for time.Now().Before(end) {
		ctx, cancel := context.WithTimeout(context.Background(), time.Until(end)+callTimeout)
		lat = pingPong(ctx, end, c, req, len(payload), lat, fail)
		cancel()
	}
	return lat
}

func pingPong(ctx context.Context, end time.Time, c testpb.TestServiceClient, req *testpb.StreamingOutputCallRequest, size int, lat []time.Duration, fail func(error)) []time.Duration {
	st, err := c.FullDuplexCall(ctx)
	if err != nil {
		fail(err)
		return lat
	}
	for time.Now().Before(end) {
		t0 := time.Now()
		if err = st.Send(req); err != nil {
			break
		}
		var resp *testpb.StreamingOutputCallResponse
		if resp, err = st.Recv(); err != nil {
			break
		}
		if len(resp.GetPayload().GetBody()) != size {
			err = fmt.Errorf("echo of %d bytes, want %d", len(resp.GetPayload().GetBody()), size)
			break
		}
		lat = append(lat, time.Since(t0))
	}
	if err == nil {
		// The window is over: close our side and wait for the server's end of stream, so
		// the stream ends cleanly instead of being reset.
		if err = st.CloseSend(); err == nil {
			if _, err = st.Recv(); errors.Is(err, io.EOF) {
				return lat
			}
		}
	}
	fail(err)
	return lat
}

func check(o options) error {
	cc, err := grpc.NewClient("passthrough:///"+o.addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		return err
	}
	defer func() { _ = cc.Close() }() // the process ends next
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	payload := make([]byte, o.size)
	resp, err := testpb.NewTestServiceClient(cc).UnaryCall(ctx, &testpb.SimpleRequest{Payload: &testpb.Payload{Body: payload}})
	if err != nil {
		return err
	}
	if len(resp.GetPayload().GetBody()) != len(payload) {
		return fmt.Errorf("echo of %d bytes, want %d", len(resp.GetPayload().GetBody()), len(payload))
	}
	return nil
}

func ms(d time.Duration) float64 { return float64(d) / 1e6 }

// pct is the p-quantile of sorted (nearest rank), 0 for none.
func pct(sorted []time.Duration, p float64) time.Duration {
	if len(sorted) == 0 {
		return 0
	}
	i := int(p*float64(len(sorted))+0.5) - 1
	return sorted[min(max(i, 0), len(sorted)-1)]
}
