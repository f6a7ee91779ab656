package sdk

import (
	"bufio"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	pb "github.com/meshgate/meshgate/plugins/proto"
)

// The socket transport: the host creates a socketpair per plugin process, passes one end to
// the child at exec (exec.Cmd.ExtraFiles) and names its descriptor in SocketFDEnv. A plugin
// that finds it serves OnRequest and OnResponse there and says so in Describe
// (Capabilities.socket_transport); the host then makes those calls on the socket instead of
// on gRPC streams. gRPC (over go-plugin) still carries the handshake, Describe and Configure,
// and go-plugin still owns the process's lifecycle.
//
// Why: a call on a gRPC stream over AutoMTLS costs HTTP/2 framing, TLS records, flow control
// and several goroutine hand-offs on each side; on the socket a call is one write and one
// read of a frame of the same protobuf message.
//
// Frame: [4-byte big-endian length of what follows][1-byte kind][8-byte call id][payload].
// The payload is a RequestPhase or ResponsePhase (host to plugin) and a RequestDecision,
// ResponseMutation or an error (plugin to host). Calls are matched to replies by id, so any
// number are in flight at once, answered in any order.
const (
	// SocketFDEnv names the environment variable that carries the descriptor number of the
	// plugin's end of the socketpair (3: the first of exec.Cmd.ExtraFiles).
	SocketFDEnv = "MESHGATE_PLUGIN_FASTFD"

	frameHeader = 4 + 1 + 8
	// maxFramePayload bounds one message, as gRPC's default 4 MiB receive limit does on the
	// streams: a corrupt length must not make either side allocate gigabytes.
	maxFramePayload = 4 << 20
	// readBuffer is what each side reads the socket through: one read syscall usually holds
	// several frames when calls are many.
	readBuffer = 64 << 10
	// keepBuffer bounds the buffers kept for reuse after a large message (a body).
	keepBuffer = 64 << 10
	// maxErrorMessage bounds the message of an error frame: it is for a log line.
	maxErrorMessage = 16 << 10
)

// Frame kinds.
const (
	kindRequest  byte = 1 // RequestPhase, host to plugin
	kindResponse byte = 2 // ResponsePhase, host to plugin
	kindDecision byte = 3 // RequestDecision, plugin to host
	kindMutation byte = 4 // ResponseMutation, plugin to host
	// kindError: the call failed; the payload is a 4-byte big-endian gRPC status code and the
	// message, so the host classifies it exactly as it classifies a failed stream call.
	kindError byte = 5
)

// Transports a Client reports (Client.Transport).
const (
	TransportSocket = "socket"
	TransportGRPC   = "grpc"
)

// errSocketClosed is what calls get once the socket broke: UNAVAILABLE, as a gRPC call on a
// connection that closed under it, so the host handles a plugin that died mid-call the same
// on both transports.
func errSocketClosed(cause error) error {
	return status.Errorf(codes.Unavailable, "plugin socket closed: %v", cause)
}

// frameBuffers pools the buffers a frame is marshalled into.
type frameBuffers struct{ pool sync.Pool }

func (f *frameBuffers) get() *[]byte {
	if b, ok := f.pool.Get().(*[]byte); ok {
		return b
	}
	b := make([]byte, 0, 512)
	return &b
}

func (f *frameBuffers) put(b *[]byte) {
	if cap(*b) > keepBuffer {
		return
	}
	*b = (*b)[:0]
	f.pool.Put(b)
}

// appendFrame marshals m after a frame header for kind and id.
func appendFrame(b []byte, kind byte, id uint64, m proto.Message) ([]byte, error) {
	b = append(b[:0], make([]byte, frameHeader)...)
	b, err := proto.MarshalOptions{}.MarshalAppend(b, m)
	if err != nil {
		return b, err
	}
	return finishFrame(b, kind, id)
}

// finishFrame fills in the header of a frame whose payload follows it in b.
func finishFrame(b []byte, kind byte, id uint64) ([]byte, error) {
	if len(b)-frameHeader > maxFramePayload {
		return b, fmt.Errorf("message of %d bytes is over the socket's %d", len(b)-frameHeader, maxFramePayload)
	}
	binary.BigEndian.PutUint32(b[0:4], uint32(len(b)-4)) //nolint:gosec // at most maxFramePayload+9, checked above
	b[4] = kind
	binary.BigEndian.PutUint64(b[5:13], id)
	return b, nil
}

// readFrame reads one frame into *payload (grown as needed) and returns its kind and id.
func readFrame(r *bufio.Reader, hdr *[frameHeader]byte, payload *[]byte) (byte, uint64, error) {
	if _, err := io.ReadFull(r, hdr[:]); err != nil {
		return 0, 0, err
	}
	n := binary.BigEndian.Uint32(hdr[0:4])
	if n < frameHeader-4 || n-(frameHeader-4) > maxFramePayload {
		return 0, 0, fmt.Errorf("bad frame length %d", n)
	}
	size := int(n - (frameHeader - 4))
	if cap(*payload) < size || cap(*payload) > keepBuffer && size <= keepBuffer {
		*payload = make([]byte, size, max(size, 512))
	}
	*payload = (*payload)[:size]
	if _, err := io.ReadFull(r, *payload); err != nil {
		return 0, 0, err
	}
	return hdr[4], binary.BigEndian.Uint64(hdr[5:13]), nil
}

// socketClient is the host's end of a plugin's socketpair. Calls write a frame and wait for
// their reply, matched by call id. There is no reader goroutine and no goroutine per call:
// the waiting call that holds the reading token reads the socket for everyone, handing other
// calls their replies, until its own arrives (or its deadline passes); then another waiting
// call takes the token. An uncontended call so reads its own reply, and the only goroutine
// woken is the one waiting for it: a reader goroutine would add a hand-off (and a wake-up of
// an idle thread) to every call.
type socketClient struct {
	conn net.Conn
	w    frameWriter
	bufs frameBuffers

	// reading is the token (capacity 1: holding it is having sent on it). rbuf and rpos are
	// the token holder's: bytes read and not yet framed are rbuf[rpos:]; a frame cut by a
	// deadline stays there for the next holder.
	reading chan struct{}
	rbuf    []byte
	rpos    int

	mu      sync.Mutex
	pending map[uint64]*socketCall
	nextID  uint64
	err     error // set once the socket broke: every later call fails with it

	calls sync.Pool // *socketCall
	// active is set once the plugin said it serves the socket (Describe or Configure).
	active atomic.Bool
}

// socketCall is one call waiting for its reply. The token holder fills out (or err) only
// after taking the call out of pending, and then signals ready; the caller reads them only
// after ready, so the two never touch them at once.
type socketCall struct {
	reply byte // the kind of reply expected
	out   proto.Message
	err   error
	ready chan struct{} // capacity 1; pooled with the call
}

func newSocketClient(conn net.Conn) *socketClient {
	s := &socketClient{
		conn:    conn,
		w:       frameWriter{conn: conn},
		pending: make(map[uint64]*socketCall),
		reading: make(chan struct{}, 1),
		rbuf:    make([]byte, 0, readBuffer),
	}
	s.calls.New = func() any { return &socketCall{ready: make(chan struct{}, 1)} }
	return s
}

// call sends in as a frame of kind and waits for the reply into out, until ctx's deadline.
// Errors are gRPC statuses (from the plugin, or UNAVAILABLE when the socket broke) or ctx's.
// ctx must have a deadline (the host's calls all do): a call reading for the others is
// bounded by it, not by a cancellation.
func (s *socketClient) call(ctx context.Context, kind, reply byte, in, out proto.Message) error {
	c := s.calls.Get().(*socketCall)
	c.reply, c.out, c.err = reply, out, nil
	defer func() {
		c.out = nil
		s.calls.Put(c)
	}()

	s.mu.Lock()
	if s.err != nil {
		err := s.err
		s.mu.Unlock()
		return err
	}
	s.nextID++
	id := s.nextID
	s.pending[id] = c
	s.mu.Unlock()

	bp := s.bufs.get()
	b, err := appendFrame(*bp, kind, id, in)
	if err != nil {
		*bp = b
		s.bufs.put(bp)
		s.forget(id)
		return status.Error(codes.Internal, err.Error())
	}
	d, _ := ctx.Deadline() // zero: none
	// No yield: the host's other goroutines are the proxy's requests, which this call must
	// not wait behind.
	werr := s.w.send(b, d, false)
	*bp = b
	s.bufs.put(bp)
	switch {
	case werr == errNotSent: //nolint:errorlint // frameWriter's own sentinel, never wrapped
		// Nothing of the frame went out (a plugin not reading, its buffer full): this call
		// timed out, and the stream of frames is intact.
		if s.forget(id) {
			return deadlineErr(ctx)
		}
	case werr != nil:
		// Half a frame may be on the wire: nothing after it can be framed.
		s.fail(werr)
	}

	select {
	case <-c.ready:
		return c.err
	case s.reading <- struct{}{}:
		s.readFor(ctx, c)
		<-s.reading // the next waiting call, if any, takes over
		select {
		case <-c.ready:
			return c.err
		default: // the deadline passed first
		}
	case <-ctx.Done():
	}
	if s.forget(id) {
		return deadlineErr(ctx)
	}
	// Someone took the call first: its reply (or the socket's error) is coming, and a reply
	// that won the race with ctx is still a good reply.
	<-c.ready
	return c.err
}

// deadlineErr is ctx's error once its deadline has passed. The socket's own deadline (set to
// ctx's) can fire a moment before ctx's timer does, and the caller must see what ctx says,
// not a nil error: that moment is all it waits.
func deadlineErr(ctx context.Context) error {
	<-ctx.Done()
	return ctx.Err()
}

// readFor reads and hands out replies, holding the token, until mine has its reply, ctx's
// deadline passes, or the socket fails (which fails mine too).
func (s *socketClient) readFor(ctx context.Context, mine *socketCall) {
	if len(mine.ready) > 0 {
		return // answered while this call waited for the token
	}
	d, _ := ctx.Deadline()
	if err := s.conn.SetReadDeadline(d); err != nil {
		s.fail(err)
		return
	}
	for {
		for {
			kind, id, payload, ok, err := s.nextFrame()
			if err != nil {
				s.fail(err)
				return
			}
			if !ok {
				break
			}
			if s.deliver(kind, id, payload) == mine {
				return
			}
		}
		if len(s.rbuf) == cap(s.rbuf) {
			s.fail(errors.New("read buffer full")) // nextFrame grows it for any valid frame
			return
		}
		n, err := s.conn.Read(s.rbuf[len(s.rbuf):cap(s.rbuf)])
		s.rbuf = s.rbuf[:len(s.rbuf)+n]
		if err != nil {
			if !errors.Is(err, os.ErrDeadlineExceeded) {
				s.fail(err) // the plugin's end closed: it died (it is the only other holder)
			}
			return
		}
	}
}

// nextFrame takes the next complete frame out of rbuf; ok is false when there is none yet
// (rbuf is then compacted, and grown for a frame larger than it).
func (s *socketClient) nextFrame() (kind byte, id uint64, payload []byte, ok bool, err error) {
	buf := s.rbuf[s.rpos:]
	if len(buf) >= frameHeader {
		n := binary.BigEndian.Uint32(buf[0:4])
		if n < frameHeader-4 || n-(frameHeader-4) > maxFramePayload {
			return 0, 0, nil, false, fmt.Errorf("bad frame length %d", n)
		}
		if total := 4 + int(n); len(buf) >= total {
			s.rpos += total
			return buf[4], binary.BigEndian.Uint64(buf[5:13]), buf[frameHeader:total], true, nil
		} else if total > cap(s.rbuf) {
			grown := make([]byte, len(buf), total)
			copy(grown, buf)
			s.rbuf, s.rpos = grown, 0
			return 0, 0, nil, false, nil
		}
	}
	// Keep only the unframed tail, at the front; after a large frame, go back to the usual
	// size.
	switch {
	case len(buf) == 0 && cap(s.rbuf) > keepBuffer:
		s.rbuf = make([]byte, 0, readBuffer)
	case s.rpos > 0:
		s.rbuf = s.rbuf[:copy(s.rbuf, buf)]
	}
	s.rpos = 0
	return 0, 0, nil, false, nil
}

// deliver hands a reply to the call waiting for it and returns that call (nil when its caller
// gave up on it).
func (s *socketClient) deliver(kind byte, id uint64, payload []byte) *socketCall {
	s.mu.Lock()
	c := s.pending[id]
	delete(s.pending, id)
	s.mu.Unlock()
	if c == nil {
		return nil
	}
	c.err = decodeReply(kind, c.reply, payload, c.out)
	c.ready <- struct{}{}
	return c
}

// forget takes call id out of pending; false if a reader (or fail) already took it.
func (s *socketClient) forget(id uint64) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	_, ok := s.pending[id]
	delete(s.pending, id)
	return ok
}

// fail closes the socket and fails every waiting call: the plugin process died (its end
// closed, the only other one there is) or the stream of frames cannot be trusted any more.
func (s *socketClient) fail(cause error) {
	s.mu.Lock()
	if s.err == nil {
		s.err = errSocketClosed(cause)
	}
	err, pending := s.err, s.pending
	s.pending = make(map[uint64]*socketCall)
	s.mu.Unlock()
	_ = s.conn.Close() // already closed, or being closed for this reason: nothing to add
	for _, c := range pending {
		c.err = err
		c.ready <- struct{}{}
	}
}

// close ends the socket (the host stopping the process); waiting calls fail with it.
func (s *socketClient) close() {
	s.fail(errors.New("closed by the host"))
}

// decodeReply unmarshals a reply frame into out (protobuf copies what it keeps, so payload
// may be reused), or returns the plugin's error.
func decodeReply(kind, want byte, payload []byte, out proto.Message) error {
	switch kind {
	case want:
		if err := proto.Unmarshal(payload, out); err != nil {
			return status.Errorf(codes.Internal, "plugin sent a bad reply: %v", err)
		}
		return nil
	case kindError:
		if len(payload) < 4 {
			return status.Error(codes.Internal, "plugin sent a bad error frame")
		}
		return status.Error(codes.Code(binary.BigEndian.Uint32(payload)), string(payload[4:]))
	}
	return status.Errorf(codes.Internal, "plugin answered with a frame of kind %d, want %d", kind, want)
}

// serveSocket serves the calls arriving on conn (the plugin's end of the socketpair) until it
// ends: the host stopped, or is gone. Each call runs on a goroutine of its own while it runs
// (handlers may wait on I/O, and one slow call must not hold up the others; see callWorkers);
// replies go back in whatever order the calls finish.
func (s *server) serveSocket(conn net.Conn) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel() // the host is gone: calls still running see their ctx end
	defer func() { _ = conn.Close() }()
	w := &socketWriter{w: frameWriter{conn: conn}}
	workers := newCallWorkers(ctx, s, w)
	r := bufio.NewReaderSize(conn, readBuffer)
	var hdr [frameHeader]byte
	var payload []byte
	for {
		kind, id, err := readFrame(r, &hdr, &payload)
		if err != nil {
			if !errors.Is(err, io.EOF) && !errors.Is(err, net.ErrClosed) {
				s.log.Warn("plugin socket ended", "error", err)
			}
			return
		}
		w.running.Add(1) // every frame gets exactly one reply
		switch kind {
		case kindRequest:
			in := new(pb.RequestPhase)
			if err := proto.Unmarshal(payload, in); err != nil {
				w.reply(id, 0, nil, status.Errorf(codes.Internal, "bad RequestPhase: %v", err))
				continue
			}
			workers.start(socketTask{id: id, req: in})
		case kindResponse:
			in := new(pb.ResponsePhase)
			if err := proto.Unmarshal(payload, in); err != nil {
				w.reply(id, 0, nil, status.Errorf(codes.Internal, "bad ResponsePhase: %v", err))
				continue
			}
			workers.start(socketTask{id: id, resp: in})
		default:
			w.reply(id, 0, nil, status.Errorf(codes.Unimplemented, "unknown frame kind %d", kind))
		}
	}
}

// socketWriter writes the plugin's replies; replies finishing together share a write. A
// plugin runs with GOMAXPROCS=1 (the host starts it so): its write never overlaps another
// goroutine's work, so a reply would never find a write under way to join. When other calls
// are running, a reply's writer therefore yields first: the calls that are runnable finish
// and queue their replies behind it. A lone call writes at once.
type socketWriter struct {
	w       frameWriter
	bufs    frameBuffers
	running atomic.Int64 // calls started and not yet replied to
}

func (w *socketWriter) reply(id uint64, kind byte, out proto.Message, callErr error) {
	bp := w.bufs.get()
	defer w.bufs.put(bp)
	var b []byte
	var err error
	if callErr == nil {
		b, err = appendFrame(*bp, kind, id, out)
		if err != nil {
			callErr = status.Errorf(codes.Internal, "marshal reply: %v", err)
		}
	}
	if callErr != nil {
		st := status.Convert(callErr)
		b = append((*bp)[:0], make([]byte, frameHeader+4)...)
		binary.BigEndian.PutUint32(b[frameHeader:], uint32(st.Code()))
		msg := st.Message()
		if len(msg) > maxErrorMessage {
			msg = msg[:maxErrorMessage]
		}
		b = append(b, msg...)
		b, _ = finishFrame(b, kindError, id) // a status message is far below the limit
	}
	*bp = b
	// A failed write means the host is gone; the reader sees that too and ends serving.
	_ = w.w.send(b, time.Time{}, w.running.Add(-1) > 0)
}
