package conf

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"time"

	"github.com/fsnotify/fsnotify"
)

// ErrWatcherRunning is returned by Run when the same Watcher is already running.
var ErrWatcherRunning = errors.New("config watcher is already running")

// WatchOptions configures a Watcher.
type WatchOptions struct {
	Path     string        // the config file
	Debounce time.Duration // quiet period after the last file event before reloading; default 200ms
	// OnChange receives each new valid config. It runs on Run's goroutine, one call at a time,
	// so a slow OnChange delays (and coalesces) later reloads rather than racing them.
	OnChange func(*Config)
	// OnError receives invalid files (Errors, see AsErrors) and read/watch failures. The
	// previous config stays in force. Optional.
	OnError func(error)
	// Baseline is the file content of the config already in force (what main parsed at start).
	// With it, Run re-checks the file once its watches are in place, so an edit made between
	// the initial load and the watch starting is applied rather than lost. Optional.
	Baseline []byte
}

// Watcher reloads the config file when it changes on disk or when Trigger is called.
//
//	fsnotify(dir) ──events──▶ debounce ──▶ read ──same bytes?──▶ skip
//	Trigger() ──────────────────────────▶ read ─▶ Parse ─┬─ ok ──▶ OnChange
//	                                                      └─ err ─▶ OnError (keep old)
//
// It watches the file's directory, not the file: editors and k8s/Nomad templates replace the
// file by rename, which would silently end a watch on the old inode.
type Watcher struct {
	opts    WatchOptions
	path    string
	trigger chan struct{}
	running atomic.Bool
	// onReady is a test hook: called once Run has its watches in place and its baseline read.
	onReady func()
}

// NewWatcher checks opts; nothing is opened until Run.
func NewWatcher(opts WatchOptions) (*Watcher, error) {
	if opts.Path == "" {
		return nil, errors.New("new config watcher: path is required")
	}
	if opts.OnChange == nil {
		return nil, errors.New("new config watcher: OnChange is required")
	}
	if opts.Debounce < 0 {
		return nil, fmt.Errorf("new config watcher: negative debounce %s", opts.Debounce)
	}
	if opts.Debounce == 0 {
		opts.Debounce = 200 * time.Millisecond
	}
	abs, err := filepath.Abs(opts.Path)
	if err != nil {
		return nil, fmt.Errorf("new config watcher: %w", err)
	}
	return &Watcher{opts: opts, path: abs, trigger: make(chan struct{}, 1)}, nil
}

// Trigger asks for a reload now (main calls it on SIGHUP). It never blocks; several triggers
// before the reload runs coalesce into one. A triggered reload bypasses the no-op check, so an
// operator who sends SIGHUP always gets an OnChange or an OnError.
func (w *Watcher) Trigger() {
	select {
	case w.trigger <- struct{}{}:
	default:
	}
}

// Run watches until ctx ends, then releases everything it started and returns nil. The
// baseline is WatchOptions.Baseline, or else the file's content when Run starts.
func (w *Watcher) Run(ctx context.Context) error {
	if !w.running.CompareAndSwap(false, true) {
		return ErrWatcherRunning
	}
	defer w.running.Store(false)

	fw, err := fsnotify.NewWatcher()
	if err != nil {
		return fmt.Errorf("watch config: %w", err)
	}
	// Closing only releases the inotify descriptors; nothing to do if that fails.
	defer func() { _ = fw.Close() }()

	names := map[string]bool{filepath.Base(w.path): true}
	dirs := []string{filepath.Dir(w.path)}
	// If the file is a symlink, also watch where it points so edits to the target are seen.
	if target, err := filepath.EvalSymlinks(w.path); err == nil && target != w.path {
		names[filepath.Base(target)] = true
		if d := filepath.Dir(target); d != dirs[0] {
			dirs = append(dirs, d)
		}
	}
	for _, d := range dirs {
		if err := fw.Add(d); err != nil {
			return fmt.Errorf("watch config directory %s: %w", d, err)
		}
	}

	r := &reloader{path: w.path, onChange: w.opts.OnChange, onError: w.opts.OnError}
	if w.opts.Baseline != nil {
		r.applied = w.opts.Baseline
		r.reload(false) // no-op unless the file changed before the watch was in place
	} else {
		r.baseline()
	}
	if w.onReady != nil {
		w.onReady()
	}

	debounce := time.NewTimer(w.opts.Debounce)
	debounce.Stop()
	defer debounce.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case ev, ok := <-fw.Events:
			if !ok {
				return nil
			}
			if relevant(ev, names) {
				debounce.Reset(w.opts.Debounce)
			}
		case err, ok := <-fw.Errors:
			if !ok {
				return nil
			}
			r.report(fmt.Errorf("watch config: %w", err))
		case <-debounce.C:
			r.reload(false)
		case <-w.trigger:
			debounce.Stop()
			r.reload(true)
		}
	}
}

// relevant filters directory events to the config file, plus Kubernetes' atomic-writer entries
// ("..data" and friends), which change while the file's own name sees no event at all.
func relevant(ev fsnotify.Event, names map[string]bool) bool {
	if ev.Op == fsnotify.Chmod {
		return false
	}
	base := filepath.Base(ev.Name)
	return names[base] || strings.HasPrefix(base, "..")
}

// reloader is the I/O-light half of the watcher, testable without fsnotify.
type reloader struct {
	path     string
	onChange func(*Config)
	onError  func(error)

	applied    []byte // content of the config in force; nil = unknown
	lastFailed []byte // last invalid content, so repeated events on it report once
}

func (r *reloader) baseline() {
	if data, err := os.ReadFile(r.path); err == nil {
		r.applied = data
	}
}

func (r *reloader) reload(force bool) {
	data, err := os.ReadFile(r.path)
	if err != nil {
		// Mid-rename the file can be briefly absent; the Create event that follows retries.
		r.report(fmt.Errorf("reload config: %w", err))
		return
	}
	if !force && (r.applied != nil && bytes.Equal(data, r.applied) || r.lastFailed != nil && bytes.Equal(data, r.lastFailed)) {
		return
	}
	c, err := Parse(r.path, data)
	if err != nil {
		r.lastFailed = data
		r.report(err)
		return
	}
	r.applied, r.lastFailed = data, nil
	r.onChange(c)
}

func (r *reloader) report(err error) {
	if r.onError != nil {
		r.onError(err)
	}
}
