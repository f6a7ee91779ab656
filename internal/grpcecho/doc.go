// Package grpcecho is a real gRPC service for tests, the benchmark and the demo: grpc-go's own
// interop TestService (google.golang.org/grpc/interop/grpc_testing), answering from what the
// request says. Unary calls echo their payload with a header and a trailer; the three
// streaming kinds stream as asked; metadata can make a call fail with a given status or wait
// (observing cancellation), which is how tests see deadlines, resets and error statuses go
// through the gateway unchanged. It owns nothing else.
package grpcecho
