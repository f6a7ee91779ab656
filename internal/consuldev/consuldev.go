package consuldev

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// Version is the Consul release scripts/install-consul.sh builds.
const Version = "1.16.6"

// EnvBinary names the environment variable that overrides where the consul binary is looked up;
// scripts/test.sh sets it to the path install-consul.sh printed.
const EnvBinary = "MESHGATE_CONSUL_BIN"

const (
	// readyTimeout bounds how long Start and Restart wait for a leader; a dev agent elects
	// itself in about a second, so 30 s only triggers when something is really wrong.
	readyTimeout = 30 * time.Second
	// stopGrace is how long Stop lets the agent shut down after SIGINT before killing it.
	stopGrace = 10 * time.Second
	// startAttempts covers the race between picking a free port and the agent binding it:
	// another test may grab the port in between, and the agent then exits at once.
	startAttempts = 3
	pollInterval  = 50 * time.Millisecond
	logTailBytes  = 8 << 10
)

// ErrNoBinary is returned by Binary when no consul binary can be found.
var ErrNoBinary = errors.New("consul binary not found (run scripts/install-consul.sh)")

// errExitedEarly marks an agent that died before becoming ready, typically on a port collision.
var errExitedEarly = errors.New("consul agent exited before it was ready")

// Binary returns the path of the consul binary: $MESHGATE_CONSUL_BIN when set, otherwise the
// path scripts/install-consul.sh builds into. It returns an error wrapping ErrNoBinary when that
// file is missing or not executable.
func Binary() (string, error) {
	return findBinary(os.Getenv)
}

func findBinary(getenv func(string) string) (string, error) {
	path := getenv(EnvBinary)
	if path == "" {
		cached, err := cachedBinary(getenv)
		if err != nil {
			return "", err
		}
		path = cached
	}
	fi, err := os.Stat(path)
	if err != nil {
		return "", fmt.Errorf("%w: %w", ErrNoBinary, err)
	}
	if !fi.Mode().IsRegular() || fi.Mode().Perm()&0o111 == 0 {
		return "", fmt.Errorf("%w: %s is not an executable file", ErrNoBinary, path)
	}
	return path, nil
}

// cachedBinary mirrors the cache layout of scripts/install-consul.sh exactly (not
// os.UserCacheDir, which differs on macOS), so both always agree on one path.
func cachedBinary(getenv func(string) string) (string, error) {
	cache := getenv("MESHGATE_CACHE")
	if cache == "" {
		base := getenv("XDG_CACHE_HOME")
		if base == "" {
			home := getenv("HOME")
			if home == "" {
				return "", fmt.Errorf("%w: neither %s, MESHGATE_CACHE, XDG_CACHE_HOME nor HOME is set", ErrNoBinary, EnvBinary)
			}
			base = filepath.Join(home, ".cache")
		}
		cache = filepath.Join(base, "meshgate")
	}
	return filepath.Join(cache, "consul-"+Version, "consul"), nil
}

// Ports are the loopback ports one agent listens on, all picked free at start.
type Ports struct {
	HTTP    int
	DNS     int
	SerfLAN int
	SerfWAN int
	Server  int
	GRPC    int
	GRPCTLS int
}

// Agent is a running `consul agent -dev`. The exported fields are fixed for the agent's life,
// Restart included.
type Agent struct {
	// HTTPAddr is the HTTP API address, "127.0.0.1:port"; pass it as api.Config.Address.
	HTTPAddr string
	// GRPCAddr is the plaintext xDS/gRPC address (what Envoy or consul-dataplane would use).
	GRPCAddr string
	// DNSAddr is the DNS interface address (UDP and TCP).
	DNSAddr  string
	Ports    Ports
	NodeName string
	DataDir  string
	// LogPath is the agent's combined stdout and stderr, kept across restarts.
	LogPath string

	bin        string
	configPath string

	mu   sync.Mutex
	proc *process
}

type process struct {
	cmd  *exec.Cmd
	done chan struct{} // closed once the process has exited and been reaped
}

// Start runs a dev-mode agent for the test and returns once it has a leader. The agent is
// stopped by t.Cleanup; if the test failed, the tail of its log is printed then. A missing binary
// skips the test, or fails it when the CI environment variable is set.
func Start(t testing.TB) *Agent {
	t.Helper()
	bin, err := Binary()
	if err != nil {
		if os.Getenv("CI") != "" {
			t.Fatalf("consuldev: %v", err)
		}
		t.Skipf("consuldev: %v", err)
	}

	// t.TempDir registers its removal before our Cleanup, so the agent is stopped (and its log
	// read) before the directory goes away.
	dir := t.TempDir()
	a := &Agent{
		bin:        bin,
		DataDir:    filepath.Join(dir, "data"),
		LogPath:    filepath.Join(dir, "consul.log"),
		configPath: filepath.Join(dir, "ports.hcl"),
	}
	if err := os.Mkdir(a.DataDir, 0o700); err != nil {
		t.Fatalf("consuldev: %v", err)
	}
	t.Cleanup(func() {
		a.Stop()
		if t.Failed() {
			t.Logf("consuldev: tail of %s:\n%s", a.LogPath, a.logTail())
		}
	})

	var lastErr error
	for range startAttempts {
		ports, err := freePorts()
		if err != nil {
			t.Fatalf("consuldev: %v", err)
		}
		if err := a.configure(ports); err != nil {
			t.Fatalf("consuldev: %v", err)
		}
		lastErr = a.launch()
		if lastErr == nil {
			return a
		}
		if !errors.Is(lastErr, errExitedEarly) {
			break
		}
	}
	t.Fatalf("consuldev: start consul agent: %v\nlog tail (%s):\n%s", lastErr, a.LogPath, a.logTail())
	return nil
}

// Stop shuts the agent down with SIGINT and kills it if it has not exited within 10 s. It
// returns once the process is gone, and does nothing when the agent is not running.
func (a *Agent) Stop() {
	a.halt(os.Interrupt, stopGrace)
}

// Kill ends the agent with SIGKILL, as a crash or an outage would, and returns once the process
// is gone (its ports are then closed, so API calls fail at once).
func (a *Agent) Kill() {
	a.halt(os.Kill, 0)
}

// Restart stops the agent if it is running and starts it again on the same ports, node name,
// data directory and log file, returning once it has a leader. Dev mode keeps no state, so the
// catalog and KV store come back empty.
func (a *Agent) Restart(t testing.TB) {
	t.Helper()
	a.Stop()
	if err := a.launch(); err != nil {
		t.Fatalf("consuldev: restart consul agent: %v\nlog tail (%s):\n%s", err, a.LogPath, a.logTail())
	}
}

// Running reports whether the agent process is running (it may not be ready yet).
func (a *Agent) Running() bool {
	a.mu.Lock()
	p := a.proc
	a.mu.Unlock()
	if p == nil {
		return false
	}
	select {
	case <-p.done:
		return false
	default:
		return true
	}
}

func (a *Agent) configure(p Ports) error {
	a.Ports = p
	a.HTTPAddr = loopback(p.HTTP)
	a.GRPCAddr = loopback(p.GRPC)
	a.DNSAddr = loopback(p.DNS)
	// The HTTP port is unique on this machine while the agent runs, so it makes the node name
	// unique too, without any shared counter.
	a.NodeName = "consuldev-" + strconv.Itoa(p.HTTP)
	// https stays off: the dev agent has no certificates. Update checks would only time out.
	cfg := fmt.Sprintf(`ports {
  http     = %d
  https    = -1
  dns      = %d
  serf_lan = %d
  serf_wan = %d
  server   = %d
  grpc     = %d
  grpc_tls = %d
}
disable_update_check = true
`, p.HTTP, p.DNS, p.SerfLAN, p.SerfWAN, p.Server, p.GRPC, p.GRPCTLS)
	if err := os.WriteFile(a.configPath, []byte(cfg), 0o600); err != nil {
		return fmt.Errorf("write agent config: %w", err)
	}
	return nil
}

// launch starts the process and waits until it is ready; on failure the process is gone again.
func (a *Agent) launch() error {
	logf, err := os.OpenFile(a.LogPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return fmt.Errorf("open agent log: %w", err)
	}
	fmt.Fprintf(logf, "==> consuldev: starting %s (http %s)\n", a.NodeName, a.HTTPAddr)
	cmd := exec.Command(a.bin, "agent", "-dev",
		"-bind", "127.0.0.1",
		"-client", "127.0.0.1",
		"-node", a.NodeName,
		"-data-dir", a.DataDir,
		"-config-file", a.configPath,
		// Dev mode defaults to DEBUG; info keeps the log tail printed on failure readable.
		"-log-level", "info",
	)
	// An *os.File is handed to the child as its fd, so no copying goroutines outlive the process.
	cmd.Stdout = logf
	cmd.Stderr = logf
	cmd.SysProcAttr = sysProcAttr()
	err = cmd.Start()
	_ = logf.Close() // the child holds its own descriptor
	if err != nil {
		return fmt.Errorf("run %s: %w", a.bin, err)
	}
	p := &process{cmd: cmd, done: make(chan struct{})}
	go func() {
		_ = cmd.Wait()
		close(p.done)
	}()
	a.mu.Lock()
	a.proc = p
	a.mu.Unlock()

	ctx, cancel := context.WithTimeout(context.Background(), readyTimeout)
	defer cancel()
	if err := a.waitReady(ctx, p); err != nil {
		a.halt(os.Kill, 0)
		return err
	}
	return nil
}

// waitReady polls until the agent reports a raft leader and its own agent endpoint answers:
// the leader alone is not enough, because the local agent state may not be synced yet.
func (a *Agent) waitReady(ctx context.Context, p *process) error {
	client := &http.Client{Timeout: 2 * time.Second}
	var lastErr error
	tick := time.NewTicker(pollInterval)
	defer tick.Stop()
	for {
		if lastErr = a.ready(ctx, client); lastErr == nil {
			return nil
		}
		select {
		case <-p.done:
			return fmt.Errorf("%w (%s): last probe: %w", errExitedEarly, p.cmd.ProcessState, lastErr)
		case <-ctx.Done():
			return fmt.Errorf("consul agent not ready after %s: %w", readyTimeout, lastErr)
		case <-tick.C:
		}
	}
}

func (a *Agent) ready(ctx context.Context, client *http.Client) error {
	body, err := get(ctx, client, "http://"+a.HTTPAddr+"/v1/status/leader")
	if err != nil {
		return err
	}
	var leader string
	if err := json.Unmarshal(body, &leader); err != nil {
		return fmt.Errorf("decode leader: %w", err)
	}
	if leader == "" {
		return errors.New("no leader yet")
	}
	if _, err := get(ctx, client, "http://"+a.HTTPAddr+"/v1/agent/self"); err != nil {
		return err
	}
	return a.intentionsWritable(ctx, client)
}

// probeIntentions is the service-intentions entry the readiness probe writes and deletes.
const probeIntentions = "consuldev-readiness-probe"

// intentionsWritable writes and deletes a throwaway service-intentions entry. For a moment after
// it elects itself, a fresh server refuses intention writes ("Intentions are read only while
// being upgraded to config entries") until its leader loop has checked that the datacenter
// supports intentions as config entries; no read endpoint shows that state, so only a write can.
func (a *Agent) intentionsWritable(ctx context.Context, client *http.Client) error {
	entry := `{"Kind":"service-intentions","Name":"` + probeIntentions +
		`","Sources":[{"Name":"` + probeIntentions + `","Action":"deny"}]}`
	if _, err := send(ctx, client, http.MethodPut, "http://"+a.HTTPAddr+"/v1/config", entry); err != nil {
		return err
	}
	_, err := send(ctx, client, http.MethodDelete,
		"http://"+a.HTTPAddr+"/v1/config/service-intentions/"+probeIntentions, "")
	return err
}

func get(ctx context.Context, client *http.Client, url string) ([]byte, error) {
	return send(ctx, client, http.MethodGet, url, "")
}

func send(ctx context.Context, client *http.Client, method, url, body string) ([]byte, error) {
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	req, err := http.NewRequestWithContext(ctx, method, url, rd)
	if err != nil {
		return nil, err
	}
	resp, err := client.Do(req)
	if err != nil {
		return nil, err
	}
	defer func() { _ = resp.Body.Close() }() // read to the end below; closing it cannot fail usefully
	out, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", url, err)
	}
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("%s %s: %s: %s", method, url, resp.Status, bytes.TrimSpace(out))
	}
	return out, nil
}

// halt signals the process and waits for it to exit, escalating to SIGKILL after grace.
func (a *Agent) halt(sig os.Signal, grace time.Duration) {
	a.mu.Lock()
	p := a.proc
	a.proc = nil
	a.mu.Unlock()
	if p == nil {
		return
	}
	_ = p.cmd.Process.Signal(sig)
	if grace > 0 {
		timer := time.NewTimer(grace)
		defer timer.Stop()
		select {
		case <-p.done:
			return
		case <-timer.C:
		}
		_ = p.cmd.Process.Kill()
	}
	// After SIGKILL only the reaping is left, which the kernel makes prompt.
	<-p.done
}

// logTail returns the last few KiB of the agent log, for failure messages.
func (a *Agent) logTail() string {
	f, err := os.Open(a.LogPath)
	if err != nil {
		return fmt.Sprintf("(no log: %v)", err)
	}
	defer func() { _ = f.Close() }() // opened read-only
	fi, err := f.Stat()
	if err != nil {
		return fmt.Sprintf("(log: %v)", err)
	}
	off := max(fi.Size()-logTailBytes, 0)
	buf := make([]byte, fi.Size()-off)
	if _, err := f.ReadAt(buf, off); err != nil && !errors.Is(err, io.EOF) {
		return fmt.Sprintf("(log: %v)", err)
	}
	if off > 0 {
		if i := bytes.IndexByte(buf, '\n'); i >= 0 {
			buf = buf[i+1:]
		}
	}
	return string(buf)
}

// freePorts picks distinct loopback ports that are free for both TCP and UDP (DNS and serf use
// both). Every probe stays open until all are picked, so no port is handed out twice.
func freePorts() (Ports, error) {
	var closers []io.Closer
	defer func() {
		for _, c := range closers {
			_ = c.Close()
		}
	}()
	pick := func() (int, error) {
		for range 20 {
			l, err := net.Listen("tcp", "127.0.0.1:0")
			if err != nil {
				return 0, fmt.Errorf("pick free port: %w", err)
			}
			closers = append(closers, l)
			port := l.Addr().(*net.TCPAddr).Port
			u, err := net.ListenPacket("udp", loopback(port))
			if err != nil {
				continue // the UDP side is taken; keep the TCP probe open so it is not picked again
			}
			closers = append(closers, u)
			return port, nil
		}
		return 0, errors.New("pick free port: no port free for both tcp and udp")
	}
	var p Ports
	for _, dst := range []*int{&p.HTTP, &p.DNS, &p.SerfLAN, &p.SerfWAN, &p.Server, &p.GRPC, &p.GRPCTLS} {
		port, err := pick()
		if err != nil {
			return Ports{}, err
		}
		*dst = port
	}
	return p, nil
}

func loopback(port int) string {
	return net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
}
