package consul

import (
	"bufio"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"time"
)

// maxFinishing bounds the goroutines that read and decode answers at once: a burst that
// changes every watched service at the same moment then parses a few answers at a time, with a
// few read buffers, not one of each per service.
const maxFinishing = 4

// errorBodyLimit is how much of a non-200 answer's body goes into the error (Consul's are one
// line; the api package puts the whole body there too).
const errorBodyLimit = 4 << 10

// poller is what the health watches' connections share: where the agent is, how to reach it
// and the limit on answers being finished.
type poller struct {
	address string      // host:port of the agent's HTTP API
	tls     *tls.Config // nil: plain HTTP
	header  string      // "Host: …\r\nUser-Agent: …\r\n" plus the token, sent with every query
	dc      string      // query parameter; "" means the agent's datacenter
	dial    func(ctx context.Context, network, addr string) (net.Conn, error)
	sem     chan struct{}
	readers sync.Pool // *bufio.Reader, used only while an answer is read
}

func newPoller(address string, tc *tls.Config, token, dc string) *poller {
	h := "Host: " + address + "\r\nUser-Agent: meshgate\r\n"
	if token != "" {
		h += "X-Consul-Token: " + token + "\r\n"
	}
	if tc != nil && tc.ServerName == "" {
		// What net/http does for an https URL: verify the certificate against the host dialed.
		tc = tc.Clone()
		if host, _, err := net.SplitHostPort(address); err == nil {
			tc.ServerName = host
		} else {
			tc.ServerName = address
		}
	}
	return &poller{
		address: address,
		tls:     tc,
		header:  h,
		dc:      dc,
		dial:    (&net.Dialer{Timeout: dialTimeout, KeepAlive: 15 * time.Second}).DialContext,
		sem:     make(chan struct{}, maxFinishing),
		readers: sync.Pool{New: func() any { return bufio.NewReaderSize(nil, 4<<10) }},
	}
}

// agentConn is the connection one health watch keeps to the agent for its blocking queries.
//
// Through net/http each such connection costs a read-loop and a write-loop goroutine, its
// buffers, and a request, a context and a timer for the whole wait; at a thousand watched
// services that was most of the process's memory. Here the watch's goroutine holds only the
// connection: it waits for the answer's first byte in a one-byte read, with a stack that never
// grew, and everything that needs a deep stack or a buffer — dialling, the TLS handshake,
// writing the request, parsing the answer and decoding its JSON (and, in the watch loop,
// applying the set) — runs on a goroutine that lives for that step only.
//
// One query at a time per connection (HTTP/1.1 without pipelining). A connection is kept for
// the next query only when its answer was read to the end and the agent did not ask to close
// it; anything else closes it and the next query dials again.
type agentConn struct {
	p *poller

	mu     sync.Mutex // guards c and closed
	c      net.Conn
	closed bool // the watch ended: no more dials
	stop   func() bool

	first [1]byte
}

// conn returns a connection for one watch. It is closed when ctx ends, which is how a blocking
// query is cut short (it may wait five minutes or more).
func (p *poller) conn(ctx context.Context) *agentConn {
	ac := &agentConn{p: p}
	ac.stop = context.AfterFunc(ctx, ac.close)
	return ac
}

// close ends the connection for good.
func (ac *agentConn) close() {
	ac.mu.Lock()
	defer ac.mu.Unlock()
	ac.closed = true
	if ac.c != nil {
		_ = ac.c.Close()
		ac.c = nil
	}
}

// release is called when the watch's loop ends.
func (ac *agentConn) release() {
	ac.stop()
	ac.close()
}

// drop closes c if it is still the current connection, so the next query dials again.
func (ac *agentConn) drop(c net.Conn) {
	ac.mu.Lock()
	defer ac.mu.Unlock()
	if ac.c == c {
		ac.c = nil
	}
	_ = c.Close()
}

// get runs one query: GET path with index and wait added (index 0: a plain read), and hands
// the 200 answer's body to finish, whose error is the query's. It returns X-Consul-Index.
// finish runs on a short-lived goroutine, at most maxFinishing of them at a time.
func (ac *agentConn) get(ctx context.Context, path string, index uint64, wait time.Duration, finish func(io.Reader) error) (uint64, error) {
	req := ac.request(path, index, wait)
	// A kept connection the agent has closed meanwhile (an idle timeout, a restart) fails
	// before any byte of the answer arrives; like net/http, retry such a GET once on a new
	// connection instead of reporting a failure nobody could act on.
	for attempt := 0; ; attempt++ {
		c, reused, err := ac.send(ctx, req, wait)
		if err != nil {
			return 0, err
		}
		n, err := c.Read(ac.first[:])
		if err != nil || n == 0 {
			ac.drop(c)
			if ctx.Err() != nil {
				return 0, ctx.Err()
			}
			if reused && attempt == 0 {
				continue
			}
			if err == nil {
				err = io.ErrUnexpectedEOF
			}
			return 0, fmt.Errorf("read answer: %w", err)
		}
		var idx uint64
		onStep(ac.p.sem, func() { idx, err = ac.finish(c, finish) })
		return idx, err
	}
}

// request is the query's request head.
func (ac *agentConn) request(path string, index uint64, wait time.Duration) []byte {
	var b strings.Builder
	b.Grow(len(path) + len(ac.p.header) + 64)
	b.WriteString("GET ")
	b.WriteString(path)
	sep := "?"
	if strings.Contains(path, "?") {
		sep = "&"
	}
	if index != 0 {
		b.WriteString(sep + "index=" + strconv.FormatUint(index, 10) + "&wait=" + strconv.FormatInt(wait.Milliseconds(), 10) + "ms")
		sep = "&"
	}
	if ac.p.dc != "" {
		b.WriteString(sep + "dc=" + url.QueryEscape(ac.p.dc))
	}
	b.WriteString(" HTTP/1.1\r\n")
	b.WriteString(ac.p.header)
	b.WriteString("\r\n")
	return []byte(b.String())
}

// send writes req on the current connection, dialling one first if there is none, on a
// short-lived goroutine. The deadline covers the whole query: Consul adds up to wait/16 of
// jitter, and queryGrace more is left so only a hung connection hits it.
func (ac *agentConn) send(ctx context.Context, req []byte, wait time.Duration) (c net.Conn, reused bool, err error) {
	onStep(nil, func() {
		ac.mu.Lock()
		var closed bool
		c, closed = ac.c, ac.closed
		ac.mu.Unlock()
		if closed {
			err = context.Canceled
			return
		}
		reused = c != nil
		if c == nil {
			if c, err = ac.dial(ctx); err != nil {
				return
			}
		}
		_ = c.SetDeadline(time.Now().Add(wait + wait/16 + queryGrace))
		if _, err = c.Write(req); err != nil {
			ac.drop(c)
			err = fmt.Errorf("write query: %w", err)
			c = nil
		}
	})
	return c, reused, err
}

// dial opens a connection (and its TLS session) and makes it the current one, unless the watch
// ended meanwhile.
func (ac *agentConn) dial(ctx context.Context) (net.Conn, error) {
	c, err := ac.p.dial(ctx, "tcp", ac.p.address)
	if err != nil {
		return nil, err
	}
	if ac.p.tls != nil {
		tc := tls.Client(c, ac.p.tls)
		hctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		err = tc.HandshakeContext(hctx)
		cancel()
		if err != nil {
			_ = c.Close()
			return nil, err
		}
		c = tc
	}
	ac.mu.Lock()
	defer ac.mu.Unlock()
	if ac.closed {
		_ = c.Close()
		return nil, context.Canceled
	}
	ac.c = c
	return c, nil
}

// finish reads the answer whose first byte is in ac.first, hands a 200's body to fn, and keeps
// the connection only when the answer ended cleanly.
func (ac *agentConn) finish(c net.Conn, fn func(io.Reader) error) (uint64, error) {
	br := ac.p.readers.Get().(*bufio.Reader)
	// The status line and headers may take maxHeadBytes, as net/http's client allows; the
	// body is as long as the agent's answer is.
	in := &firstByteReader{first: ac.first[0], r: c, left: maxHeadBytes}
	br.Reset(in)
	defer func() {
		br.Reset(nil)
		ac.p.readers.Put(br)
	}()
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		ac.drop(c)
		return 0, fmt.Errorf("read answer: %w", err)
	}
	in.left = -1
	index, err := ac.answer(resp, fn)
	// Read to the end, or the next answer would start mid-body.
	if _, derr := io.Copy(io.Discard, resp.Body); derr != nil || resp.Close || br.Buffered() > 0 {
		ac.drop(c)
	}
	_ = resp.Body.Close()
	return index, err
}

// answer checks the status and the index header, and hands the body to fn. A non-200's error
// carries Consul's own message (its body), as the api package's did.
func (ac *agentConn) answer(resp *http.Response, fn func(io.Reader) error) (uint64, error) {
	if resp.StatusCode != http.StatusOK {
		body, _ := io.ReadAll(io.LimitReader(resp.Body, errorBodyLimit))
		return 0, fmt.Errorf("unexpected response code: %d (%s)", resp.StatusCode, strings.TrimSpace(string(body)))
	}
	index, err := strconv.ParseUint(resp.Header.Get("X-Consul-Index"), 10, 64)
	if err != nil {
		return 0, fmt.Errorf("failed to parse X-Consul-Index: %w", err)
	}
	if err := fn(resp.Body); err != nil {
		return 0, err
	}
	return index, nil
}

// maxHeadBytes bounds an answer's status line and headers (net/http's client default).
const maxHeadBytes = 1 << 20

// errHeadTooLarge is returned when an answer's head does not end within maxHeadBytes.
var errHeadTooLarge = errors.New("answer headers larger than 1 MiB")

// firstByteReader returns first, then reads r: the answer's first byte was read by the
// watch's goroutine. While left ≥ 0 it reads at most left bytes more (the head's budget).
type firstByteReader struct {
	first byte
	done  bool
	r     io.Reader
	left  int
}

func (f *firstByteReader) Read(p []byte) (int, error) {
	if len(p) == 0 {
		return 0, nil
	}
	if !f.done {
		f.done = true
		p[0] = f.first
		return 1, nil
	}
	if f.left == 0 {
		return 0, errHeadTooLarge
	}
	if f.left > 0 && len(p) > f.left {
		p = p[:f.left]
	}
	n, err := f.r.Read(p)
	if f.left > 0 {
		f.left -= n
	}
	return n, err
}

// onStep runs f on a goroutine of its own and waits for it: the caller's stack stays as small
// as it was. sem, when not nil, bounds how many such steps run at once.
func onStep(sem chan struct{}, f func()) {
	if sem != nil {
		sem <- struct{}{}
		defer func() { <-sem }()
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		f()
	}()
	<-done
}
