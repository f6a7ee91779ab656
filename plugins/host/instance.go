package host

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/go-plugin"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/rs/zerolog"
	"github.com/sony/gobreaker/v2"

	"github.com/meshgate/meshgate/plugins/sdk"
)

const (
	// startTimeout bounds the wait for a new process's handshake; setupTimeout bounds its
	// Describe and Configure calls. A reload that adds a plugin waits at most for both.
	startTimeout = 10 * time.Second
	setupTimeout = 5 * time.Second
)

// Breaker settings. A plugin's calls are cheap and many, so the breaker trips on a short run
// of failures (or a high failure rate over a window), stays open briefly, and probes with a
// single call: while open, requests get the failure policy at once instead of each waiting
// out the timeout of a plugin that is not answering.
const (
	breakerConsecutive = 5
	breakerMinCalls    = 20
	breakerInterval    = 10 * time.Second
	breakerOpenFor     = 2 * time.Second
)

// instance is one process of a plugin. It is immutable once started but for its counters;
// a restart or a binary change makes a new one.
type instance struct {
	proc    *plugin.Client
	cmd     *exec.Cmd
	rpc     *sdk.Client
	pid     int
	started time.Time
	// breaker is per process: a restarted plugin starts with a clean record.
	breaker      *gobreaker.CircuitBreaker[struct{}]
	breakerGauge prometheus.Gauge

	// inflight counts calls in progress; retired is set (and the channel closed) once no
	// new call may start. drain waits for the last one; see Plugin.acquire for the order.
	inflight    atomic.Int64
	isRetired   atomic.Bool
	retireOnce  sync.Once
	retired     chan struct{}
	drainedOnce sync.Once
	drained     chan struct{}
}

// errNotPluginFault marks outcomes the breaker must ignore: the process being gone is the
// restart logic's business, and counting it would keep the breaker open after the restart.
var errNotPluginFault = errors.New("not the plugin's fault")

// pluginEnv is the only environment a plugin inherits from meshgate: what a program needs to
// run (temp dir for go-plugin's socket, locale, time zone), never credentials. GODEBUG carries
// the Go runtime settings meshgate runs with to a plugin written in Go: among them the one that
// keeps the runtime's monitor thread from a deep sleep each call would otherwise wake it from
// (main_sysmon.go). Other languages ignore it.
func pluginEnv(getenv func(string) string) []string {
	var env []string
	for _, k := range [...]string{"PATH", "HOME", "TMPDIR", "TZ", "LANG", "LC_ALL", "GODEBUG"} {
		if v := getenv(k); v != "" {
			env = append(env, k+"="+v)
		}
	}
	return env
}

// childSocketFD is the plugin's end of the socketpair in the child: ExtraFiles[0] becomes
// descriptor 3 (0, 1 and 2 are stdin, stdout and stderr).
const childSocketFD = 3

// startInstance starts sp's executable through go-plugin (gRPC only, AutoMTLS, checksum
// verified before exec), then calls Describe and Configure. Its log lines go to log. Unless
// grpcOnly, the process gets one end of a socketpair for its per-request calls (see
// sdk.SocketFDEnv); a plugin that does not claim it in Describe is called over gRPC.
func startInstance(log zerolog.Logger, sp *spec, breakerGauge prometheus.Gauge, grpcOnly bool) (*instance, sdk.Capabilities, error) {
	cmd := exec.Command(sp.path, sp.args...)
	cmd.SysProcAttr = sysProcAttr()
	cmd.Env = pluginEnv(os.Getenv)
	if sp.procs > 0 {
		// A call is a short piece of work between two reads of one socket. With one P the
		// goroutine the SDK starts for it runs on the thread that read the frame; with more,
		// the runtime wakes a second thread for it on every call, which finds nothing to do
		// once the first thread is free and goes back to sleep: BenchmarkFilterRequest
		// (socket) went from 68 to 29-36 µs p50 and from 50 to 18-23 µs of the plugin's
		// CPU per call with GOMAXPROCS=1.
		cmd.Env = append(cmd.Env, fmt.Sprintf("GOMAXPROCS=%d", sp.procs))
	}
	var hostEnd, childEnd *os.File
	if !grpcOnly {
		var err error
		hostEnd, childEnd, err = socketpair()
		if err != nil {
			// Slower, not broken: the calls go over gRPC.
			log.Warn().Err(err).Msg("no socket for the plugin; calling it over gRPC")
		} else {
			cmd.ExtraFiles = []*os.File{childEnd}
			cmd.Env = append(cmd.Env, fmt.Sprintf("%s=%d", sdk.SocketFDEnv, childSocketFD))
		}
	}
	proc := plugin.NewClient(&plugin.ClientConfig{
		// The proxy's environment holds secrets (CONSUL_HTTP_TOKEN, Redis passwords via
		// ${ENV}); a plugin gets only pluginEnv's few variables and its own config.
		SkipHostEnv:      true,
		HandshakeConfig:  sdk.Handshake(),
		Plugins:          sdk.PluginSet(),
		Cmd:              cmd,
		AllowedProtocols: []plugin.Protocol{plugin.ProtocolGRPC},
		AutoMTLS:         true,
		SecureConfig:     &plugin.SecureConfig{Checksum: sp.sum, Hash: sha256.New()},
		StartTimeout:     startTimeout,
		// go-plugin names the plugin's own log lines after the executable's base name.
		Logger:     newHCLogger(log, filepath.Base(sp.path)),
		SyncStdout: &lineWriter{z: log, level: zerolog.InfoLevel, source: "stdout"},
		SyncStderr: &lineWriter{z: log, level: zerolog.WarnLevel, source: "stderr"},
	})
	cp, err := proc.Client()
	if childEnd != nil {
		// The child has its copy since exec (or never will); ours must go, so that the
		// child's exit closes the socket and fails its waiting calls at once.
		_ = childEnd.Close() // nothing to do about a close error on a descriptor we only held
	}
	var rpc *sdk.Client
	fail := func() {
		proc.Kill()
		if rpc != nil {
			rpc.Close()
		} else if hostEnd != nil {
			_ = hostEnd.Close()
		}
	}
	if err != nil {
		fail()
		if errors.Is(err, plugin.ErrChecksumsDoNotMatch) {
			return nil, sdk.Capabilities{}, fmt.Errorf("%s: the executable's sha256 does not match the configured checksum: %w", sp.path, err)
		}
		return nil, sdk.Capabilities{}, fmt.Errorf("start %s: %w", sp.path, err)
	}
	rpc, err = sdk.Dispense(cp)
	if err != nil {
		fail()
		return nil, sdk.Capabilities{}, fmt.Errorf("start %s: %w", sp.path, err)
	}
	if hostEnd != nil {
		conn, err := net.FileConn(hostEnd)
		_ = hostEnd.Close() // FileConn holds its own duplicate
		hostEnd = nil
		if err != nil {
			log.Warn().Err(err).Msg("no socket for the plugin; calling it over gRPC")
		} else {
			rpc.OfferSocket(conn)
		}
	}
	inst := &instance{
		proc:         proc,
		cmd:          cmd,
		rpc:          rpc,
		started:      time.Now(),
		breakerGauge: breakerGauge,
		retired:      make(chan struct{}),
		drained:      make(chan struct{}),
	}
	if cmd.Process != nil {
		inst.pid = cmd.Process.Pid
	}
	inst.breaker = newBreaker(inst)

	ctx, cancel := context.WithTimeout(context.Background(), setupTimeout)
	defer cancel()
	if _, err := rpc.Describe(ctx); err != nil {
		fail()
		return nil, sdk.Capabilities{}, fmt.Errorf("%s: %w", sp.path, err)
	}
	caps, err := rpc.Configure(ctx, sp.config)
	if err != nil {
		fail()
		return nil, sdk.Capabilities{}, fmt.Errorf("%s: %w", sp.path, err)
	}
	return inst, caps, nil
}

func newBreaker(inst *instance) *gobreaker.CircuitBreaker[struct{}] {
	return gobreaker.NewCircuitBreaker[struct{}](gobreaker.Settings{
		MaxRequests: 1,
		Interval:    breakerInterval,
		Timeout:     breakerOpenFor,
		ReadyToTrip: func(c gobreaker.Counts) bool {
			done := c.TotalSuccesses + c.TotalFailures
			return c.ConsecutiveFailures >= breakerConsecutive ||
				(done >= breakerMinCalls && 2*c.TotalFailures >= done)
		},
		// Runs under gobreaker's lock: a gauge store only. A retired process's breaker
		// (calls still draining) must not overwrite its successor's state.
		OnStateChange: func(_ string, _, to gobreaker.State) {
			if !inst.isRetired.Load() {
				inst.breakerGauge.Set(float64(to)) // gobreaker numbers closed 0, half-open 1, open 2
			}
		},
		IsExcluded: func(err error) bool { return errors.Is(err, errNotPluginFault) },
	})
}

// configure sends a new configuration to the running process.
func (i *instance) configure(config []byte) (sdk.Capabilities, error) {
	ctx, cancel := context.WithTimeout(context.Background(), setupTimeout)
	defer cancel()
	return i.rpc.Configure(ctx, config)
}

// release ends a call begun by Plugin.acquire.
func (i *instance) release() {
	if i.inflight.Add(-1) == 0 && i.isRetired.Load() {
		i.drainedOnce.Do(i.closeDrained)
	}
}

func (i *instance) closeDrained() { close(i.drained) }

// retire stops new calls from starting on i; it reports false if i was already retired.
func (i *instance) retire() bool {
	first := false
	i.retireOnce.Do(func() {
		first = true
		i.isRetired.Store(true)
		close(i.retired)
	})
	return first
}

// drain waits for the calls in flight on a retired instance, at most for bound (every call
// has a deadline, so this only guards against a bug).
func (i *instance) drain(bound time.Duration) {
	if i.inflight.Load() == 0 {
		i.drainedOnce.Do(i.closeDrained)
	}
	t := time.NewTimer(bound)
	defer t.Stop()
	select {
	case <-i.drained:
	case <-t.C:
	}
}

// kill stops the process (gracefully first, as go-plugin does) and waits until it is gone,
// then releases its socket.
func (i *instance) kill() {
	i.proc.Kill()
	i.rpc.Close()
}

// exitDescription says how the process ended, once rpc.Exited() is closed (go-plugin waits
// for the process before closing it, so ProcessState is set by then).
func (i *instance) exitDescription() string {
	if ps := i.cmd.ProcessState; ps != nil {
		return ps.String()
	}
	return "exited"
}
