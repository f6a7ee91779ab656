package sdk

import (
	"errors"
	"io"
	"net"
	"testing"
	"time"

	"github.com/meshgate/meshgate/internal/await"
)

// writing reports whether a send is under way on w.
func writing(w *frameWriter) bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.writing
}

// TestFramesHandedOverShareOneWrite: frames sent while a write is under way go out together,
// in order, in the next single write. net.Pipe hands each Write to Reads on its own, so one
// Read holding both later frames is one write.
func TestFramesHandedOverShareOneWrite(t *testing.T) {
	host, plugin := net.Pipe()
	defer func() { _ = host.Close(); _ = plugin.Close() }()
	w := &frameWriter{conn: host}

	first := make(chan error, 1)
	go func() { first <- w.send([]byte("AAAA"), time.Time{}, false) }()
	await.Until(t, 5*time.Second, "the first send writing", func() bool { return writing(w) })
	// The first write is blocked (nothing reads yet): these two must be queued, not wait.
	for _, f := range []string{"BB", "CCC"} {
		if err := await.Returns(5*time.Second, func() error { return w.send([]byte(f), time.Time{}, false) }); err != nil {
			t.Fatalf("send %s: %v", f, err)
		}
	}

	buf := make([]byte, 64)
	var reads []string
	for len(reads) < 2 {
		n, err := plugin.Read(buf)
		if err != nil {
			t.Fatal(err)
		}
		reads = append(reads, string(buf[:n]))
	}
	if err := <-first; err != nil {
		t.Fatal(err)
	}
	if reads[0] != "AAAA" || reads[1] != "BBCCC" {
		t.Fatalf("writes %q, want [AAAA BBCCC]", reads)
	}
	if writing(w) {
		t.Fatal("still writing after the queue emptied")
	}
}

// TestUnsentFramesKeepTheStreamIntact: a send whose deadline passes before any of it went out
// says so (errNotSent); a queued frame is dropped only once its own deadline has passed too,
// never for another call's; and the next frame is written whole: the stream can still be
// framed.
func TestUnsentFramesKeepTheStreamIntact(t *testing.T) {
	host, plugin := net.Pipe()
	defer func() { _ = host.Close(); _ = plugin.Close() }()
	w := &frameWriter{conn: host}
	read := func(n int) <-chan string {
		got := make(chan string, 1)
		go func() {
			b := make([]byte, n)
			_, _ = io.ReadFull(plugin, b)
			got <- string(b)
		}()
		return got
	}
	blocked := func(frame string, d time.Duration) <-chan error {
		res := make(chan error, 1)
		go func() { res <- w.send([]byte(frame), time.Now().Add(d), false) }()
		await.Until(t, 5*time.Second, "the send writing", func() bool { return writing(w) })
		return res
	}

	// A blocks (nothing reads); B, queued behind it, has a little more time, then none.
	a := blocked("AAAA", 200*time.Millisecond)
	if err := w.send([]byte("BB"), time.Now().Add(400*time.Millisecond), false); err != nil {
		t.Fatal(err)
	}
	if err := <-a; !errors.Is(err, errNotSent) {
		t.Fatalf("first send: %v, want errNotSent", err)
	}
	await.Until(t, 5*time.Second, "B dropped at its deadline", func() bool { return !writing(w) })
	got := read(3)
	if err := w.send([]byte("DDD"), time.Now().Add(5*time.Second), false); err != nil {
		t.Fatal(err)
	}
	if b := <-got; b != "DDD" {
		t.Fatalf("read %q after the timed-out frames, want DDD alone", b)
	}

	// A frame with no deadline, queued behind one whose deadline passes, still goes out.
	a = blocked("AAAA", 200*time.Millisecond)
	if err := w.send([]byte("CC"), time.Time{}, false); err != nil {
		t.Fatal(err)
	}
	// CC waits in the queue while A's write blocks; once A's deadline passed and its write
	// failed with nothing sent, the writer takes CC for a write of its own (the queue empties
	// while it is still writing). Read only then, so that A cannot go out with it.
	await.Until(t, 5*time.Second, "CC taken for a write of its own", func() bool {
		w.mu.Lock()
		defer w.mu.Unlock()
		return w.writing && len(w.queued) == 0
	})
	if b := <-read(2); b != "CC" {
		t.Fatalf("read %q, want the queued CC", b)
	}
	if err := <-a; !errors.Is(err, errNotSent) {
		t.Fatalf("send: %v, want errNotSent", err)
	}
	await.Until(t, 5*time.Second, "the writer done", func() bool { return !writing(w) })
}
