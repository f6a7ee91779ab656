package browsertest

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"sync"
	"testing"

	"github.com/chromedp/cdproto/log"
	"github.com/chromedp/cdproto/runtime"
	"github.com/chromedp/chromedp"
)

// Console collects what the page reported as going wrong.
type Console struct {
	mu       sync.Mutex
	problems []string
}

// Problems returns the uncaught exceptions and error-level log entries so far (a CSP violation
// is one), except the browser's own request for /favicon.ico, which no page here serves.
func (c *Console) Problems() []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]string(nil), c.problems...)
}

func (c *Console) listen(ev any) {
	var p string
	switch ev := ev.(type) {
	case *runtime.EventExceptionThrown:
		d := ev.ExceptionDetails
		p = fmt.Sprintf("exception: %s (%s:%d)", d.Text, d.URL, d.LineNumber+1)
		if d.Exception != nil {
			p = fmt.Sprintf("exception: %s %s (%s:%d)", d.Text, d.Exception.Description, d.URL, d.LineNumber+1)
		}
	case *log.EventEntryAdded:
		if ev.Entry.Level != log.EntryLevelError || strings.HasSuffix(ev.Entry.URL, "/favicon.ico") {
			return
		}
		p = "console: " + ev.Entry.Text + " " + ev.Entry.URL
	default:
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	c.problems = append(c.problems, p)
}

// Start starts a headless browser with a width×height window and returns the context to run
// chromedp actions in; the browser stops in t's cleanup. The context carries no deadline, so
// that the first action (which starts the browser) does not bound the browser's life: bound the
// waits with chromedp's poll timeout or a context derived from this one.
func Start(t testing.TB, width, height int) (context.Context, *Console) {
	t.Helper()
	bin := ""
	for _, name := range []string{"chromium", "chromium-browser"} {
		if p, err := exec.LookPath(name); err == nil {
			bin = p
			break
		}
	}
	if bin == "" {
		if os.Getenv("CI") != "" {
			t.Fatal("chromium not found: CI must install Debian's chromium package (scripts/test.sh does when it is missing)")
		}
		t.Skip("chromium not found; install Debian's chromium package to run this test")
	}
	opts := append(chromedp.DefaultExecAllocatorOptions[:], chromedp.ExecPath(bin), chromedp.WindowSize(width, height))
	if os.Geteuid() == 0 {
		opts = append(opts, chromedp.NoSandbox) // Chromium refuses its sandbox as root (CI runs as root)
	}
	allocCtx, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	c := &Console{}
	ctx, cancel := chromedp.NewContext(allocCtx, chromedp.WithListener(c.listen))
	t.Cleanup(func() {
		cancel()
		cancelAlloc() // waits for the browser process to exit
	})
	if err := chromedp.Do(ctx, chromedp.EmulateViewport(int64(width), int64(height))); err != nil {
		t.Fatalf("start chromium (%s): %v", bin, err)
	}
	return ctx, c
}
