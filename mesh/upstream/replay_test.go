package upstream

import (
	"bytes"
	"errors"
	"io"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/rs/zerolog"
	"github.com/valyala/fasthttp"
)

func readAll(t *testing.T, r io.Reader) []byte {
	t.Helper()
	b, err := io.ReadAll(r)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// The bound: a body that ends within it (or exactly at it) is complete and replays byte for
// byte; one byte more and nothing is kept.
func TestBodyRecorderBound(t *testing.T) {
	t.Parallel()
	const limit = 1000
	for _, size := range []int{0, 1, 999, 1000, 1001, 5000} {
		body := bytes.Repeat([]byte("abcdefg"), size/7+1)[:size]
		rec := NewBodyRecorder(bytes.NewReader(body), limit)
		if rec.touched() || rec.Complete() {
			t.Fatalf("size %d: touched or complete before any read", size)
		}
		got := readAll(t, rec)
		if !bytes.Equal(got, body) {
			t.Fatalf("size %d: read through %d bytes, want the source's", size, len(got))
		}
		want := size <= limit
		if rec.Complete() != want {
			t.Fatalf("size %d: complete %v, want %v", size, rec.Complete(), want)
		}
		if !want {
			if rec.Len() != 0 {
				t.Fatalf("size %d: kept %d bytes past the bound", size, rec.Len())
			}
			rec.Release()
			continue
		}
		for range 2 { // every replay starts at the beginning
			if got := readAll(t, rec.Replay()); !bytes.Equal(got, body) {
				t.Fatalf("size %d: replay gave %d bytes", size, len(got))
			}
		}
		rec.Release()
		if rec.Complete() {
			t.Fatalf("size %d: complete after Release", size)
		}
		if _, err := rec.Replay().Read(make([]byte, 1)); !errors.Is(err, errReplayReleased) {
			t.Fatalf("size %d: replay after Release: %v", size, err)
		}
		rec.Release() // twice is fine
	}
}

// A source that fails is never complete, even if what came before fits.
func TestBodyRecorderSourceError(t *testing.T) {
	t.Parallel()
	boom := errors.New("client reset")
	rec := NewBodyRecorder(io.MultiReader(strings.NewReader("part"), iotestErr{boom}), 100)
	if _, err := io.ReadAll(rec); !errors.Is(err, boom) {
		t.Fatalf("read: %v", err)
	}
	if rec.Complete() || !rec.touched() {
		t.Fatalf("complete %v touched %v after a failed source", rec.Complete(), rec.touched())
	}
}

type iotestErr struct{ err error }

func (e iotestErr) Read([]byte) (int, error) { return 0, e.err }

// A body still open (a stream whose client keeps sending) is not complete: the decision waits
// only the grace, never for the end. Once the source ends, it is.
func TestBodyRecorderOpenStream(t *testing.T) {
	t.Parallel()
	pr, pw := io.Pipe()
	rec := NewBodyRecorder(pr, 100)
	read := make(chan error, 1)
	go func() { _, err := io.Copy(io.Discard, rec); read <- err }()
	if _, err := pw.Write([]byte("hello")); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the first message read", rec.touched)
	start := time.Now()
	if rec.awaitComplete(20 * time.Millisecond) {
		t.Fatal("complete while the stream is open")
	}
	if took := time.Since(start); took > time.Second {
		t.Fatalf("the decision waited %v", took)
	}
	// The end arriving during the wait is seen at once.
	go func() { time.Sleep(10 * time.Millisecond); _ = pw.Close() }()
	if !rec.awaitComplete(5 * time.Second) {
		t.Fatal("not complete after the source ended")
	}
	if err := <-read; err != nil {
		t.Fatal(err)
	}
	if got := readAll(t, rec.Replay()); string(got) != "hello" {
		t.Fatalf("replay = %q", got)
	}
	rec.Release()
}

// The transport reads on its own goroutine while the retry decision asks from another, and a
// replay may still be read when the request ends and releases the buffer (run with -race).
func TestBodyRecorderConcurrent(t *testing.T) {
	t.Parallel()
	for range 50 {
		pr, pw := io.Pipe()
		rec := NewBodyRecorder(pr, 64<<10)
		var wg sync.WaitGroup
		wg.Add(2)
		go func() { // the transport
			defer wg.Done()
			buf := make([]byte, 512)
			for {
				if _, err := rec.Read(buf); err != nil {
					return
				}
			}
		}()
		go func() { // the client
			defer wg.Done()
			for i := range 40 {
				_, _ = pw.Write(bytes.Repeat([]byte{byte(i)}, 700))
			}
			_ = pw.Close()
		}()
		for !rec.Complete() { // the decision, polling while the body is read
			_ = rec.Len()
			_ = rec.touched()
		}
		wg.Wait()
		if rec.Len() != 40*700 {
			t.Fatalf("recorded %d bytes, want %d", rec.Len(), 40*700)
		}
		replay := rec.Replay()
		done := make(chan struct{})
		go func() { // a retry's transport still reading when the request ends
			defer close(done)
			buf := make([]byte, 100)
			for {
				if _, err := replay.Read(buf); err != nil {
					return
				}
			}
		}()
		rec.Release()
		<-done
	}
}

// bodyTransport reads each try's body (as the HTTP/1.1 transport does, before answering) and
// answers from its script.
type bodyTransport struct {
	mu     sync.Mutex
	script []int
	bodies []string
}

func (b *bodyTransport) Do(req *fasthttp.Request, resp *fasthttp.Response, _, _ time.Time) error {
	var body []byte
	if s := req.BodyStream(); s != nil {
		body, _ = io.ReadAll(s)
	} else {
		body = req.Body()
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	b.bodies = append(b.bodies, string(body))
	code := b.script[min(len(b.bodies), len(b.script))-1]
	resp.Reset()
	resp.SetStatusCode(code)
	return nil
}

func (b *bodyTransport) ConnsCount() int       { return 0 }
func (b *bodyTransport) CloseIdleConnections() {}

func (b *bodyTransport) sent() []string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return append([]string(nil), b.bodies...)
}

// Cluster.Do: a recorded body that ended within the bound is replayed on a retryable answer,
// on another host and with the same bytes; one past the bound is not retried.
func TestRetryReplaysRecordedBody(t *testing.T) {
	t.Parallel()
	for _, tt := range []struct {
		name      string
		size      int
		wantTries int
	}{
		{"within the bound", 300, 2},
		{"past the bound", 3000, 1},
	} {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			ts := map[string]*bodyTransport{
				hostA: {script: []int{503}},
				hostB: {script: []int{200}},
			}
			m, err := NewManager(ManagerOptions{Registerer: prometheus.NewRegistry(), Logger: zerolog.Nop(),
				NewTransport: func(addr string, _ *Options) Transport { return ts[addr] }})
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(m.Close)
			c := newCluster(t, m, Options{Policy: preferFirst{first: hostA}, Retry: RetryPolicy{Attempts: 2, On: RetryGatewayError}}, hostA, hostB)

			body := strings.Repeat("x", tt.size-5) + "-end."
			rec := NewBodyRecorder(strings.NewReader(body), 1000)
			defer rec.Release()
			req := fasthttp.AcquireRequest()
			defer fasthttp.ReleaseRequest(req)
			resp := fasthttp.AcquireResponse()
			defer fasthttp.ReleaseResponse(resp)
			prepare(req, fasthttp.MethodPut, "")
			req.SetBodyStream(rec, -1)
			call := &Call{Idempotent: true, Recorder: rec}
			if err := c.Do(req, resp, call); err != nil {
				t.Fatal(err)
			}
			tries := append(ts[hostA].sent(), ts[hostB].sent()...)
			if len(tries) != tt.wantTries || call.Attempts != tt.wantTries {
				t.Fatalf("%d tries (%d attempts), want %d", len(tries), call.Attempts, tt.wantTries)
			}
			for i, b := range tries {
				if b != body {
					t.Fatalf("try %d sent %d bytes, want the %d of the body", i, len(b), len(body))
				}
			}
			if want := []int{503, 200}[tt.wantTries-1]; resp.StatusCode() != want {
				t.Fatalf("status %d, want %d", resp.StatusCode(), want)
			}
		})
	}
}
