package sdk

import (
	"bytes"
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
// says so (errNotSent), the frames queued behind it are dropped with it, and the next frame
// is written whole: the stream can still be framed.
func TestUnsentFramesKeepTheStreamIntact(t *testing.T) {
	host, plugin := net.Pipe()
	defer func() { _ = host.Close(); _ = plugin.Close() }()
	w := &frameWriter{conn: host}

	first := make(chan error, 1)
	go func() { first <- w.send([]byte("AAAA"), time.Now().Add(300*time.Millisecond), false) }()
	await.Until(t, 5*time.Second, "the first send writing", func() bool { return writing(w) })
	if err := w.send([]byte("BB"), time.Time{}, false); err != nil {
		t.Fatal(err)
	}
	if err := <-first; !errors.Is(err, errNotSent) {
		t.Fatalf("first send: %v, want errNotSent", err)
	}

	got := make(chan []byte, 1)
	go func() {
		b := make([]byte, 3)
		_, _ = io.ReadFull(plugin, b)
		got <- b
	}()
	if err := w.send([]byte("DDD"), time.Now().Add(5*time.Second), false); err != nil {
		t.Fatal(err)
	}
	if b := <-got; !bytes.Equal(b, []byte("DDD")) {
		t.Fatalf("read %q after the timed-out frame, want DDD alone", b)
	}
}
