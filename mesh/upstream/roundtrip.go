package upstream

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/valyala/fasthttp"
)

// wholeResponseBytes bounds the response bodies an HTTP/1.1 exchange reads whole: a body of
// known length up to this is in resp when Do returns, and its connection is back in the pool.
// It matches the gateway's default stream threshold, below which the gateway copies a body
// whole anyway.
const wholeResponseBytes = 64 << 10

// maxInterimResponses bounds the 1xx answers skipped before the final one (fasthttp's bound).
const maxInterimResponses = 100

var errTooManyInterim = errors.New("too many 1xx informational responses")

// errMalformedHead stands for any response head that does not parse. fasthttp's own error
// quotes the head, and a try's error reaches its trace span: an upstream's Set-Cookie must not.
var errMalformedHead = fmt.Errorf("%w: malformed or oversized response head", ErrProtocol)

// exchange is one HTTP/1.1 request and response on a connection of t's pool, giving up at
// deadline (zero: none; timeout is what is left of it). It is fasthttp's HostClient.Do and
// its DefaultTransport in one, for the parts a proxy uses, with two differences:
//
//   - fasthttp streams every response once StreamResponseBody is on, and a stream costs four
//     allocations (closures and the stream's wrapper), a mutex per read and a copy through it:
//     2.5% of the edge's CPU on 1 KiB answers. Here a response with a known length up to
//     wholeResponseBytes is read whole into resp, and only a longer one, a chunked one or one
//     delimited by the close is streamed, so the gateway can bound and forward it without
//     holding it.
//   - The deadline is used as it is. HostClient.Do turned it into a timeout and back, and kept
//     a last-use time and a pending count, six clock readings and two shared atomics per try.
//     This reads the clock not at all: now is the try's start, which the cluster read and
//     passed to Transport.Do, and it is also the connection's last use when it goes back to
//     the pool.
//
// What stays as fasthttp does it: the request-target is sent byte for byte (no path
// normalising), interim responses are skipped, HEAD answers have no body, and a connection
// is closed after an error or when either side asked for it. The cluster makes every retry;
// this makes one try.
func (t *http1Transport) exchange(req *fasthttp.Request, resp *fasthttp.Response, deadline time.Time, timeout time.Duration, now time.Time) error {
	skipBody := resp.SkipBody // a caller's choice outlives the reset, as in fasthttp
	resp.Reset()
	resp.SkipBody = skipBody
	// The request-target goes out as req.Header holds it: fasthttp rebuilds (and normalises)
	// it only from a parsed URI, and nothing on this path parses one. Parsing it to switch
	// normalising off would cost a parse per request.

	pc, err := t.pool.acquire(timeout)
	if err != nil {
		return err
	}
	conn := pc.c
	resp.ParseNetConn(conn)
	// A try's deadline may fire a hundredth of its time late, at most maxDeadlineSlack.
	slack := min(timeout/100, maxDeadlineSlack)
	// A zero deadline is armed too: a connection keeps what the last request armed.
	if err := pc.setWriteDeadline(deadline, slack); err != nil {
		t.pool.discard(pc)
		return err
	}
	bw := t.shared.writer(conn)
	err = req.Write(bw)
	if err == nil {
		err = bw.Flush()
	}
	t.shared.putWriter(bw)
	if err != nil {
		t.pool.discard(pc)
		return timeoutAsFasthttp(err)
	}
	if err := pc.setReadDeadline(deadline, slack); err != nil {
		t.pool.discard(pc)
		return err
	}

	br := t.shared.reader(conn)
	whole, bodiless, err := readHead(br, req, resp)
	if err == nil && whole {
		resp.StreamBody = false
		err = resp.ReadBody(br, 0) // at most wholeResponseBytes: readHead checked the length
	}
	if err != nil {
		t.shared.putReader(br)
		t.pool.discard(pc)
		return timeoutAsFasthttp(err)
	}
	closeAfter := req.ConnectionClose() || resp.ConnectionClose()
	if !whole && !bodiless {
		return t.stream(pc, br, resp, closeAfter)
	}
	t.shared.putReader(br)
	if closeAfter {
		t.pool.discard(pc)
	} else {
		t.pool.release(pc, now)
	}
	return nil
}

// readHead reads the final response head into resp, skipping interim (1xx) answers other than
// 101, and says whether the body is to be read whole, or there is none (HEAD, 1xx, 204, 304).
// As fasthttp does, a HEAD request sets resp.SkipBody.
func readHead(br *bufio.Reader, req *fasthttp.Request, resp *fasthttp.Response) (whole, bodiless bool, err error) {
	if req.Header.IsHead() {
		resp.SkipBody = true
	}
	if err := resp.Header.Read(br); err != nil {
		return false, false, headError(err)
	}
	for n := 0; ; n++ {
		code := resp.Header.StatusCode()
		if code < 100 || code > 199 || code == fasthttp.StatusSwitchingProtocols {
			break
		}
		if n >= maxInterimResponses {
			return false, false, errTooManyInterim
		}
		if err := resp.Header.Read(br); err != nil {
			return false, false, headError(err)
		}
	}
	code := resp.Header.StatusCode()
	if resp.SkipBody || (code >= 100 && code <= 199) || code == fasthttp.StatusNoContent || code == fasthttp.StatusNotModified {
		return false, true, nil
	}
	cl := resp.Header.ContentLength()
	return cl >= 0 && cl <= wholeResponseBytes, false, nil
}

// headError keeps what the connection said (a reset, the end, a deadline) and replaces a
// parse error, which quotes the head, with errMalformedHead.
func headError(err error) error {
	var op *net.OpError
	if errors.Is(err, fasthttp.ErrTimeout) || errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) ||
		errors.As(err, &op) {
		return err
	}
	return errMalformedHead
}

// timeoutAsFasthttp turns a deadline error into fasthttp.ErrTimeout, as fasthttp's own
// transport does, so the cluster classifies both alike.
func timeoutAsFasthttp(err error) error {
	var t interface{ Timeout() bool }
	if errors.As(err, &t) && t.Timeout() {
		return fasthttp.ErrTimeout
	}
	return err
}

// connStream is a streamed response body on a pooled connection: closing it gives the
// connection back (or closes it when the body was not read to its end, or the exchange asked
// for a close). It is not pooled: a stream is for long bodies only, and a stale reference
// must never read another exchange.
type connStream struct {
	body       io.Reader          // the body reader fasthttp made in head's ReadBody
	head       *fasthttp.Response // owns body (its reader, buffer and trailer fields)
	t          *http1Transport
	pc         *poolConn
	br         *bufio.Reader
	closeAfter bool

	// As fasthttp's own stream: a Read in flight when Close comes (from another goroutine,
	// an HTTP/2 client's reset) is interrupted by closing the connection, and the pooled
	// reader is released only once that Read has returned.
	mu        sync.Mutex
	closed    atomic.Bool
	fullyRead bool
}

// stream hands resp a body stream for the rest of the exchange on pc.
func (t *http1Transport) stream(pc *poolConn, br *bufio.Reader, resp *fasthttp.Response, closeAfter bool) error {
	// fasthttp's body reader (chunked decoding, a length, or the close) is made by ReadBody on
	// a response of its own: resp.SetBodyStream would close a reader resp held itself.
	head := fasthttp.AcquireResponse()
	resp.Header.CopyTo(&head.Header)
	head.StreamBody = true
	if err := head.ReadBody(br, 0); err != nil {
		fasthttp.ReleaseResponse(head)
		t.shared.putReader(br)
		t.pool.discard(pc)
		return err
	}
	s := &connStream{body: head.BodyStream(), head: head, t: t, pc: pc, br: br, closeAfter: closeAfter}
	resp.SetBodyStream(s, resp.Header.ContentLength())
	return nil
}

func (s *connStream) Read(p []byte) (int, error) {
	if s.closed.Load() {
		return 0, io.ErrClosedPipe
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed.Load() {
		return 0, io.ErrClosedPipe
	}
	n, err := s.body.Read(p)
	if errors.Is(err, io.EOF) {
		s.fullyRead = true
	}
	return n, err
}

// Close implements io.Closer (fasthttp closes a response's stream once it is written).
func (s *connStream) Close() error {
	if s.closed.Swap(true) {
		return nil
	}
	locked := s.mu.TryLock()
	discard := !locked || !s.fullyRead
	if discard {
		_ = s.pc.c.Close() // ends a Read in flight; the connection is not reused
	}
	if !locked {
		s.mu.Lock()
	}
	_ = s.head.CloseBodyStream()
	fasthttp.ReleaseResponse(s.head)
	s.t.shared.putReader(s.br)
	if discard || s.closeAfter {
		s.t.pool.discard(s.pc)
	} else {
		s.t.pool.release(s.pc, time.Now()) // a long body: the exchange's start is long past
	}
	s.head, s.br = nil, nil
	s.mu.Unlock()
	return nil
}
