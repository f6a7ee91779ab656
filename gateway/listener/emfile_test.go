package listener

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/valyala/fasthttp"
)

const emfileChildEnv = "MESHGATE_LISTENER_EMFILE_CHILD"

// TestRealEMFILE runs a Listener in a child process whose descriptor limit is a few above what
// it already uses, fills it with idle connections until accept(2) fails with EMFILE, and checks
// that the listener keeps serving: an existing connection still gets answers during the
// exhaustion, and once connections close a new one is accepted and served. The limit is
// lowered in a child so no other test runs short of descriptors.
func TestRealEMFILE(t *testing.T) {
	if os.Getenv(emfileChildEnv) == "1" {
		emfileChild()
		return
	}
	t.Parallel()

	ctx, cancel := context.WithTimeout(t.Context(), 60*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, os.Args[0], "-test.run=^TestRealEMFILE$")
	cmd.Env = append(os.Environ(), emfileChildEnv+"=1")
	cmd.Stderr = os.Stderr
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := false
	defer func() {
		if !exited {
			_ = stdin.Close()
			_ = cmd.Wait()
		}
	}()
	line, err := bufio.NewReader(stdout).ReadString('\n')
	addr, ok := strings.CutPrefix(strings.TrimSpace(line), "ADDR ")
	if err != nil || !ok {
		t.Fatalf("child did not report its address: %q %v", line, err)
	}

	// A keep-alive connection made before the exhaustion.
	first, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer first.Close()
	firstBr := bufio.NewReader(first)
	stats := func() (acceptErrors int) {
		_, body := get(t, first, firstBr, "/stats")
		n, err := strconv.Atoi(body)
		if err != nil {
			t.Fatalf("/stats = %q", body)
		}
		return n
	}
	if n := stats(); n != 0 {
		t.Fatalf("accept errors before the flood: %d", n)
	}

	// More idle connections than the child has descriptors left: the rest wait in the
	// backlog while accept(2) fails.
	var flood []net.Conn
	defer func() {
		for _, c := range flood {
			_ = c.Close()
		}
	}()
	for range 3 * emfileHeadroom {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatalf("dial: %v", err)
		}
		flood = append(flood, c)
	}
	deadline := time.Now().Add(20 * time.Second)
	for stats() == 0 {
		if time.Now().After(deadline) {
			t.Fatal("the child never hit EMFILE")
		}
		time.Sleep(5 * time.Millisecond)
	}
	// Still out of descriptors, the child keeps answering on the connection it has.
	if resp, body := get(t, first, firstBr, "/"); resp.StatusCode != 200 || body != "ok" {
		t.Fatalf("existing connection during EMFILE: %d %q", resp.StatusCode, body)
	}

	for _, c := range flood {
		_ = c.Close()
	}
	flood = nil

	// A new connection is accepted once descriptors are free again (within the 1s backoff cap).
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if resp, body := get(t, c, bufio.NewReader(c), "/"); resp.StatusCode != 200 || body != "ok" {
		t.Fatalf("new connection after EMFILE: %d %q", resp.StatusCode, body)
	}

	_ = stdin.Close()
	exited = true
	if err := cmd.Wait(); err != nil {
		t.Fatalf("child: %v", err)
	}
}

// emfileHeadroom is how many descriptors the child may open beyond those it has at start.
const emfileHeadroom = 8

// emfileChild serves until stdin closes, with RLIMIT_NOFILE just above its current use. It
// exits the process itself: it is not a test, and the parent judges it by its answers.
func emfileChild() {
	fail := func(format string, args ...any) {
		fmt.Fprintf(os.Stderr, "emfile child: "+format+"\n", args...)
		os.Exit(2)
	}
	errs := prometheus.NewCounter(prometheus.CounterOpts{Name: "accept_errors"})
	opts := testOptions(func(ctx *fasthttp.RequestCtx) {
		if string(ctx.Path()) == "/stats" {
			ctx.SetBodyString(strconv.Itoa(int(testutil.ToFloat64(errs))))
			return
		}
		ctx.SetBodyString("ok")
	})
	opts.AcceptErrors = errs
	l, err := New(opts)
	if err != nil {
		fail("%v", err)
	}
	done := make(chan error, 1)
	go func() { done <- l.Serve() }()

	fds, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		fail("count descriptors: %v", err)
	}
	var rl syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &rl); err != nil {
		fail("getrlimit: %v", err)
	}
	rl.Cur = uint64(len(fds) + emfileHeadroom)
	if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &rl); err != nil {
		fail("setrlimit: %v", err)
	}
	fmt.Printf("ADDR %s\n", l.Addr())

	_, _ = io.Copy(io.Discard, os.Stdin)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := l.Shutdown(ctx); err != nil {
		fail("shutdown: %v", err)
	}
	if err := <-done; err != nil {
		fail("serve: %v", err)
	}
	os.Exit(0)
}
