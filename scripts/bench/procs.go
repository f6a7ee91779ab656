package main

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"slices"
	"strings"
	"syscall"
	"time"
)

// proc is one process the harness started and must stop.
type proc struct {
	name    string
	logPath string
	cmd     *exec.Cmd
	done    chan struct{} // closed when the process has been reaped
	err     error         // Wait's result, valid after done
}

func (p *proc) pid() int { return p.cmd.Process.Pid }

func (p *proc) exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// supervisor owns every peer of a run (origins, proxies, agents), so that
// whatever happens — an error, Ctrl-C — each is stopped: SIGTERM, a grace
// period, then SIGKILL.
type supervisor struct {
	procs []*proc
	logf  func(format string, a ...any)
}

// start runs argv in the background with stdout and stderr in logPath. env,
// when not nil, is added to the harness's environment. The pid is the
// program's own (no shell in between), so /proc figures are its own.
func (s *supervisor) start(name, logPath string, env []string, argv ...string) (*proc, error) {
	f, err := os.Create(logPath)
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Stdout, cmd.Stderr = f, f
	if env != nil {
		cmd.Env = append(os.Environ(), env...)
	}
	if err := cmd.Start(); err != nil {
		_ = f.Close()
		return nil, fmt.Errorf("start %s: %w", name, err)
	}
	p := &proc{name: name, logPath: logPath, cmd: cmd, done: make(chan struct{})}
	go func() {
		p.err = cmd.Wait()
		_ = f.Close()
		close(p.done)
	}()
	s.procs = append(s.procs, p)
	return p, nil
}

// stop ends one process now (SIGTERM, then SIGKILL after timeout) and forgets
// it, so stopAll never signals a pid the kernel may have reused.
func (s *supervisor) stop(p *proc, timeout time.Duration) {
	s.signalAndWait([]*proc{p}, timeout)
	s.procs = slices.DeleteFunc(s.procs, func(q *proc) bool { return q == p })
}

// forget drops a process that has exited by itself (the fault scenario's
// killed origin).
func (s *supervisor) forget(p *proc) {
	<-p.done
	s.procs = slices.DeleteFunc(s.procs, func(q *proc) bool { return q == p })
}

// stopAll stops every process, the latest first: a proxy before its origin,
// a sidecar before the Consul agent it deregisters from.
func (s *supervisor) stopAll(timeout time.Duration) {
	ps := slices.Clone(s.procs)
	slices.Reverse(ps)
	s.signalAndWait(ps, timeout)
	s.procs = nil
}

func (s *supervisor) signalAndWait(ps []*proc, timeout time.Duration) {
	for _, p := range ps {
		if !p.exited() {
			_ = p.cmd.Process.Signal(syscall.SIGTERM)
		}
	}
	deadline := time.After(timeout)
	for _, p := range ps {
		select {
		case <-p.done:
		case <-deadline:
			s.logf("%s ignored SIGTERM for %s; killing", p.name, timeout)
			_ = p.cmd.Process.Kill()
			<-p.done
		}
	}
}

// tail is the last n lines of a file, for error messages about a peer.
func tail(path string, n int) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return fmt.Sprintf("(%v)", err)
	}
	lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// errExited reports a peer that died while the harness waited for it.
var errExited = errors.New("exited before becoming ready")
