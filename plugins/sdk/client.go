package sdk

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"sync/atomic"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	pb "github.com/meshgate/meshgate/plugins/proto"
)

// Errors a Client returns, wrapped with the call's details; compare with errors.Is. A call
// that ran out of time or was cancelled wraps context.DeadlineExceeded or context.Canceled.
var (
	// ErrUnavailable: the plugin process is gone or its connection broke. The host restarts it.
	ErrUnavailable = errors.New("plugin unavailable")
	// ErrInvalidConfig: Configure rejected the configuration; the message is for the user.
	ErrInvalidConfig = errors.New("invalid plugin configuration")
	// ErrFailed: the plugin returned an error, panicked, or answered something invalid.
	ErrFailed = errors.New("plugin failed")
)

// Client is the host's handle on one plugin process, with errors the host can branch on. It is
// safe for concurrent use.
//
// OnRequest and OnResponse run on pooled streams (OnRequestStream, OnResponseStream in
// plugin.proto), one call in flight on each: a call on an open stream costs about half the
// latency and a quarter of the allocations of a unary gRPC call, which pays for stream setup,
// header encoding and trailers every time. A stream whose call failed or outlived its ctx is
// discarded, never reused. Plugins without the streams get unary calls.
type Client struct {
	conn   grpc.ClientConnInterface
	exited <-chan struct{}
	// opts are built once: the generated client allocates them on every call.
	opts []grpc.CallOption

	requests, responses streamPool
	// unaryOnly is set once the plugin answers a stream with UNIMPLEMENTED.
	unaryOnly atomic.Bool
	// sock is the socket the host offered (OfferSocket); nil when none was. Calls use it once
	// the plugin said it serves it (sock.active).
	sock *socketClient
}

// maxIdleStreams bounds the streams a Client keeps open per phase between calls: as many as
// calls a busy proxy has in flight to one plugin. Past it, a stream is closed after its call.
const maxIdleStreams = 64

// streamPool holds open, idle streams for one method.
type streamPool struct {
	desc   *grpc.StreamDesc
	method string
	idle   chan *pooledStream
}

type pooledStream struct {
	grpc.ClientStream
	// cancel ends the stream; the stream's ctx is its own (not a call's), since it outlives
	// every call made on it.
	cancel context.CancelFunc
}

func newStreamPool(name, method string) streamPool {
	p := streamPool{method: method, idle: make(chan *pooledStream, maxIdleStreams)}
	for i := range pb.Plugin_ServiceDesc.Streams {
		if pb.Plugin_ServiceDesc.Streams[i].StreamName == name {
			p.desc = &pb.Plugin_ServiceDesc.Streams[i]
		}
	}
	return p
}

// NewClient wraps a connection to a plugin. exited, when not nil, is closed once the plugin
// process has exited; go-plugin hosts get one from PluginSet and Dispense instead.
func NewClient(conn grpc.ClientConnInterface, exited <-chan struct{}) *Client {
	return &Client{
		conn:   conn,
		exited: exited,
		// StaticMethod tells gRPC the method names are a fixed set, as the generated client does.
		opts:      []grpc.CallOption{grpc.StaticMethod()},
		requests:  newStreamPool("OnRequestStream", pb.Plugin_OnRequestStream_FullMethodName),
		responses: newStreamPool("OnResponseStream", pb.Plugin_OnResponseStream_FullMethodName),
	}
}

// OfferSocket gives the Client the host's end of the socketpair whose other end the plugin
// process got at exec (see SocketFDEnv). Call it before Describe: the Client moves OnRequest
// and OnResponse to the socket once the plugin's Describe or Configure says it serves it, and
// keeps them on gRPC otherwise (a plugin built without the socket transport, or told not to
// use it). The Client owns conn from now on; Close closes it.
func (c *Client) OfferSocket(conn net.Conn) {
	c.sock = newSocketClient(conn)
}

// Transport is TransportSocket when the per-request calls go over the socket, else
// TransportGRPC.
func (c *Client) Transport() string {
	if c.sock != nil && c.sock.active.Load() {
		return TransportSocket
	}
	return TransportGRPC
}

// Close releases the socket (if one was offered) and waits for its reader; calls waiting on
// it fail with ErrUnavailable. The gRPC connection is go-plugin's to close.
func (c *Client) Close() {
	if c.sock != nil {
		c.sock.close()
	}
}

// negotiate turns the socket on when the plugin's capabilities say it serves it. It is never
// turned off: the same process keeps serving it.
func (c *Client) negotiate(caps *pb.Capabilities) {
	if c.sock != nil && caps.GetSocketTransport() {
		c.sock.active.Store(true)
	}
}

// Exited is closed once the plugin process has exited (never, for a Client from NewClient
// with a nil channel). Calls made after that fail fast with ErrUnavailable.
func (c *Client) Exited() <-chan struct{} { return c.exited }

// Describe is the handshake: what the plugin is and what it needs before any configuration.
func (c *Client) Describe(ctx context.Context) (Capabilities, error) {
	var out pb.Capabilities
	if err := c.invoke(ctx, pb.Plugin_Describe_FullMethodName, "Describe", &pb.DescribeRequest{}, &out); err != nil {
		return Capabilities{}, err
	}
	c.negotiate(&out)
	return capabilitiesFromProto(&out), nil
}

// Configure sends the user's configuration (JSON) and returns the capabilities under it,
// which replace those from Describe. A rejected configuration is ErrInvalidConfig, with the
// plugin's message; the plugin keeps its previous one.
func (c *Client) Configure(ctx context.Context, config []byte) (Capabilities, error) {
	var out pb.ConfigureResponse
	if err := c.invoke(ctx, pb.Plugin_Configure_FullMethodName, "Configure", &pb.ConfigureRequest{Config: config}, &out); err != nil {
		return Capabilities{}, err
	}
	if out.GetCapabilities() == nil {
		// A plugin from another SDK may not send them: ask.
		return c.Describe(ctx)
	}
	c.negotiate(out.GetCapabilities())
	return capabilitiesFromProto(out.GetCapabilities()), nil
}

// OnRequest runs the request phase. The decision is written into out, which the caller owns
// and may reuse for the next call (it is reset first), so the hot path allocates no reply
// envelope. ctx should carry the call's deadline: OnRequest sets in.TimeoutNanos from it, so
// the plugin sees the same deadline on a stream as on a unary call.
func (c *Client) OnRequest(ctx context.Context, in *pb.RequestPhase, out *pb.RequestDecision) error {
	in.TimeoutNanos = timeoutNanos(ctx)
	if c.sock != nil && c.sock.active.Load() {
		return c.onSocket(ctx, kindRequest, kindDecision, "OnRequest", in, out)
	}
	return c.call(ctx, &c.requests, pb.Plugin_OnRequest_FullMethodName, "OnRequest", in, out)
}

// OnResponse runs the response phase, writing the mutation into out like OnRequest.
func (c *Client) OnResponse(ctx context.Context, in *pb.ResponsePhase, out *pb.ResponseMutation) error {
	in.TimeoutNanos = timeoutNanos(ctx)
	if c.sock != nil && c.sock.active.Load() {
		return c.onSocket(ctx, kindResponse, kindMutation, "OnResponse", in, out)
	}
	return c.call(ctx, &c.responses, pb.Plugin_OnResponse_FullMethodName, "OnResponse", in, out)
}

func timeoutNanos(ctx context.Context) uint64 {
	d, ok := ctx.Deadline()
	if !ok {
		return 0
	}
	// At least 1ns: 0 would mean "no deadline" to the plugin.
	return uint64(max(time.Until(d), 1))
}

// onSocket makes a per-request call on the socket. Its errors are gRPC statuses like a
// stream's, so callError classifies both transports' failures the same way.
func (c *Client) onSocket(ctx context.Context, kind, reply byte, name string, in, out proto.Message) error {
	select {
	case <-c.exited:
		return fmt.Errorf("%s: %w: process exited", name, ErrUnavailable)
	default:
	}
	if err := c.sock.call(ctx, kind, reply, in, out); err != nil {
		return c.callError(ctx, name, err)
	}
	return nil
}

// call makes a per-request call on a pooled stream, or unary when the plugin has no streams.
func (c *Client) call(ctx context.Context, pool *streamPool, unary, name string, in, out any) error {
	select {
	case <-c.exited:
		return fmt.Errorf("%s: %w: process exited", name, ErrUnavailable)
	default:
	}
	if !c.unaryOnly.Load() {
		err := c.onStream(ctx, pool, in, out)
		if status.Code(err) != codes.Unimplemented {
			if err != nil {
				return c.callError(ctx, name, err)
			}
			return nil
		}
		// A plugin built without the streams (another SDK, another language).
		c.unaryOnly.Store(true)
	}
	return c.invoke(ctx, unary, name, in, out)
}

// onStream makes one call on an idle stream (or a new one) and returns the stream to the pool
// if the call succeeded in time. Errors are gRPC's, for callError.
func (c *Client) onStream(ctx context.Context, pool *streamPool, in, out any) error {
	var st *pooledStream
	select {
	case st = <-pool.idle:
	default:
		sctx, cancel := context.WithCancel(context.Background())
		cs, err := c.conn.NewStream(sctx, pool.desc, pool.method, c.opts...)
		if err != nil {
			cancel()
			return err
		}
		st = &pooledStream{ClientStream: cs, cancel: cancel}
	}
	// The call's deadline or cancellation ends the stream, which ends a hung call on both
	// sides: the plugin's handler sees its ctx cancelled.
	stop := context.AfterFunc(ctx, st.cancel)
	err := st.SendMsg(in)
	if err == nil || errors.Is(err, io.EOF) {
		// On io.EOF the stream was ended by the plugin, and RecvMsg returns why.
		err = st.RecvMsg(out)
	}
	if !stop() || err != nil {
		// Cancelled (or being cancelled) by ctx, or failed: not reusable. A reply that won the
		// race with ctx is still a good reply.
		st.cancel()
		return err
	}
	select {
	case pool.idle <- st:
	default:
		_ = st.CloseSend()
		st.cancel()
	}
	return nil
}

func (c *Client) invoke(ctx context.Context, method, name string, in, out any) error {
	// A dead process would otherwise cost a connection attempt before failing.
	select {
	case <-c.exited:
		return fmt.Errorf("%s: %w: process exited", name, ErrUnavailable)
	default:
	}
	if err := c.conn.Invoke(ctx, method, in, out, c.opts...); err != nil {
		return c.callError(ctx, name, err)
	}
	return nil
}

// callError turns a gRPC error into one the host can branch on with errors.Is.
func (c *Client) callError(ctx context.Context, name string, err error) error {
	if ctxErr := ctx.Err(); ctxErr != nil {
		return fmt.Errorf("%s: %w", name, ctxErr)
	}
	st := status.Convert(err)
	switch st.Code() {
	case codes.DeadlineExceeded:
		return fmt.Errorf("%s: %w", name, context.DeadlineExceeded)
	case codes.Unavailable, codes.Canceled:
		// Canceled while our ctx is not: the connection was closed under the call, which is
		// what a plugin process exiting mid-call looks like.
		return fmt.Errorf("%s: %w: %s", name, ErrUnavailable, st.Message())
	case codes.InvalidArgument:
		if name == "Configure" {
			return fmt.Errorf("%w: %s", ErrInvalidConfig, st.Message())
		}
	}
	select {
	case <-c.exited:
		return fmt.Errorf("%s: %w: %s", name, ErrUnavailable, st.Message())
	default:
	}
	return fmt.Errorf("%s: %w: %s", name, ErrFailed, st.Message())
}
