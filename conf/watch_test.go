package conf

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

const waitFor = 5 * time.Second

func configWithPort(port string) string {
	return "listeners: [ { name: public, address: \"127.0.0.1:" + port + "\" } ]\n"
}

func writeFile(t *testing.T, path, content string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
}

// replaceFile writes next to path and renames over it, as editors and k8s/Nomad templates do.
func replaceFile(t *testing.T, path, content string) {
	t.Helper()
	tmp := path + ".tmp"
	writeFile(t, tmp, content)
	if err := os.Rename(tmp, path); err != nil {
		t.Fatal(err)
	}
}

func recv[T any](t *testing.T, ch <-chan T, what string) T {
	t.Helper()
	select {
	case v := <-ch:
		return v
	case <-time.After(waitFor):
		t.Fatalf("timed out waiting for %s", what)
		panic("unreachable")
	}
}

func TestWatcher(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	path := filepath.Join(dir, "meshgate.yaml")
	writeFile(t, path, configWithPort("8080"))

	changes := make(chan *Config, 16)
	errs := make(chan error, 16)
	w, err := NewWatcher(WatchOptions{
		Path:     path,
		Debounce: 20 * time.Millisecond,
		OnChange: func(c *Config) { changes <- c },
		OnError:  func(err error) { errs <- err },
	})
	if err != nil {
		t.Fatal(err)
	}
	ready := make(chan struct{})
	w.onReady = func() { close(ready) }

	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() { done <- w.Run(ctx) }()
	recv(t, ready, "watcher ready")

	if err := w.Run(ctx); !errors.Is(err, ErrWatcherRunning) {
		t.Fatalf("second Run = %v, want ErrWatcherRunning", err)
	}

	t.Run("in-place write", func(t *testing.T) {
		writeFile(t, path, configWithPort("8081"))
		c := recv(t, changes, "OnChange after write")
		if got := c.Listeners[0].Address; got != "127.0.0.1:8081" {
			t.Fatalf("address = %q", got)
		}
	})

	t.Run("invalid file keeps old config", func(t *testing.T) {
		writeFile(t, path, configWithPort("8082")+"bogus: 1\n")
		// os.WriteFile truncates then writes; a reload that lands in between sees an empty
		// (also invalid) file, so wait for the error about the final content.
		for {
			err := recv(t, errs, "OnError after invalid write")
			if es, ok := AsErrors(err); ok && strings.Contains(es.Error(), ":2: bogus: unknown key") {
				break
			}
			t.Logf("intermediate error: %v", err)
		}
		// OnChange and OnError are called in sequence from one goroutine, so a stray
		// OnChange for this reload would already be queued.
		if len(changes) != 0 {
			t.Fatalf("OnChange called for an invalid file: %+v", <-changes)
		}
	})

	t.Run("rename replace", func(t *testing.T) {
		replaceFile(t, path, configWithPort("8083"))
		c := recv(t, changes, "OnChange after rename")
		if got := c.Listeners[0].Address; got != "127.0.0.1:8083" {
			t.Fatalf("address = %q", got)
		}
	})

	t.Run("trigger forces reload", func(t *testing.T) {
		w.Trigger()
		c := recv(t, changes, "OnChange after Trigger")
		if got := c.Listeners[0].Address; got != "127.0.0.1:8083" {
			t.Fatalf("address = %q", got)
		}
	})

	cancel()
	if err := recv(t, done, "Run to return"); err != nil {
		t.Fatalf("Run = %v", err)
	}
}

func TestReloaderSkipsNoOps(t *testing.T) {
	t.Parallel()
	path := filepath.Join(t.TempDir(), "c.yaml")
	writeFile(t, path, configWithPort("8080"))
	var changes, failures int
	r := &reloader{path: path, onChange: func(*Config) { changes++ }, onError: func(error) { failures++ }}
	r.baseline()

	steps := []struct {
		name         string
		content      string // "" = leave the file alone
		force        bool
		wantChanges  int
		wantFailures int
	}{
		{name: "same as baseline", wantChanges: 0},
		{name: "changed", content: configWithPort("8081"), wantChanges: 1},
		{name: "same again", wantChanges: 1},
		{name: "invalid", content: "nope: 1\n", wantChanges: 1, wantFailures: 1},
		{name: "same invalid reported once", wantChanges: 1, wantFailures: 1},
		{name: "forced invalid reported again", force: true, wantChanges: 1, wantFailures: 2},
		{name: "back to applied content is a no-op", content: configWithPort("8081"), wantChanges: 1, wantFailures: 2},
		{name: "forced same reloads", force: true, wantChanges: 2, wantFailures: 2},
	}
	for _, s := range steps {
		if s.content != "" {
			writeFile(t, path, s.content)
		}
		r.reload(s.force)
		if changes != s.wantChanges || failures != s.wantFailures {
			t.Fatalf("%s: changes=%d failures=%d, want %d %d", s.name, changes, failures, s.wantChanges, s.wantFailures)
		}
	}

	if err := os.Remove(path); err != nil {
		t.Fatal(err)
	}
	r.reload(false)
	if failures != 3 {
		t.Fatalf("missing file not reported: failures=%d", failures)
	}
}

func TestNewWatcherOptions(t *testing.T) {
	t.Parallel()
	ok := func(*Config) {}
	tests := []struct {
		name    string
		opts    WatchOptions
		wantErr string
	}{
		{"no path", WatchOptions{OnChange: ok}, "path is required"},
		{"no OnChange", WatchOptions{Path: "x.yaml"}, "OnChange is required"},
		{"negative debounce", WatchOptions{Path: "x.yaml", OnChange: ok, Debounce: -1}, "negative debounce"},
		{"ok", WatchOptions{Path: "x.yaml", OnChange: ok}, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			w, err := NewWatcher(tt.opts)
			if tt.wantErr == "" {
				if err != nil || w.opts.Debounce != 200*time.Millisecond {
					t.Fatalf("err=%v debounce=%v", err, w.opts.Debounce)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("err = %v, want %q", err, tt.wantErr)
			}
		})
	}
}

func TestWatcherMissingDir(t *testing.T) {
	t.Parallel()
	w, err := NewWatcher(WatchOptions{Path: filepath.Join(t.TempDir(), "no", "such", "c.yaml"), OnChange: func(*Config) {}})
	if err != nil {
		t.Fatal(err)
	}
	if err := w.Run(t.Context()); err == nil || !strings.Contains(err.Error(), "watch config directory") {
		t.Fatalf("Run = %v, want a watch error", err)
	}
}
