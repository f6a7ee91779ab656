package main

import (
	"context"
	"fmt"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

// target is one thing wrk (or rateload) loads: a port, and the process whose
// CPU the load is charged to.
type target struct {
	name  string
	port  int
	admin int // meshgate's admin port, 0 for others
	note  string
	proc  *proc   // the target's own process
	cpu   []*proc // whose CPU a wrk round charges to the target (each with its children); nil: proc alone
	// broker is a process the target depends on whose CPU a wrk round reports beside the
	// target's, not in it (meshgate-ship's nats-server); nil for most.
	broker *proc
}

// cpuProcs are the processes a wrk round reads CPU time from.
func (t *target) cpuProcs() []*proc {
	if t.cpu != nil {
		return t.cpu
	}
	if t.proc != nil {
		return []*proc{t.proc}
	}
	return nil
}

func (t *target) url(path string) string { return fmt.Sprintf("http://127.0.0.1:%d%s", t.port, path) }

func (t *target) adminURL(path string) string {
	return fmt.Sprintf("http://127.0.0.1:%d%s", t.admin, path)
}

// startOrigin starts one benchorigin (fixed 1 KiB body).
func (h *harness) startOrigin(ctx context.Context, name string) (*target, error) {
	dir, err := h.dir(name)
	if err != nil {
		return nil, err
	}
	ports, err := freePorts(1)
	if err != nil {
		return nil, err
	}
	p, err := h.sup.start(name, filepath.Join(dir, "stderr.log"), nil, h.bins.origin, "-addr", addr(ports[0]))
	if err != nil {
		return nil, err
	}
	t := &target{name: name, port: ports[0], proc: p,
		note: "the origin itself (fasthttp, fixed 1 KiB body): the ceiling"}
	return t, waitReady(ctx, p, t.url("/"), h.readyTimeout(), originOK(""))
}

func addr(port int) string { return "127.0.0.1:" + strconv.Itoa(port) }

// startNginx starts nginx from a template with PORT, DIR and vals filled in.
// port 0 picks a free one.
func (h *harness) startNginx(ctx context.Context, name, tmpl string, port int, vals map[string]string) (*target, error) {
	t, err := h.spawnNginx(name, tmpl, port, vals)
	if err != nil {
		return nil, err
	}
	return t, waitReady(ctx, t.proc, t.url("/"), h.readyTimeout(), originOK(""))
}

// spawnNginx is startNginx without the readiness check, for configurations whose listeners
// speak no HTTP/1.1 (h2c only); the caller checks readiness its own way.
func (h *harness) spawnNginx(name, tmpl string, port int, vals map[string]string) (*target, error) {
	dir, err := h.dir(name)
	if err != nil {
		return nil, err
	}
	if port == 0 {
		ports, err := freePorts(1)
		if err != nil {
			return nil, err
		}
		port = ports[0]
	}
	v := map[string]string{"DIR": dir, "PORT": strconv.Itoa(port)}
	for k, x := range vals {
		v[k] = x
	}
	conf := filepath.Join(dir, "nginx.conf")
	if err := h.render(tmpl, conf, v); err != nil {
		return nil, err
	}
	// -e moves the startup error log into the temp dir too (nginx >= 1.19.5);
	// without it nginx touches /var/log/nginx/error.log before reading the conf.
	p, err := h.sup.start(name, filepath.Join(dir, "stderr.log"), nil,
		"nginx", "-p", dir, "-c", conf, "-e", filepath.Join(dir, "error.log"))
	if err != nil {
		return nil, err
	}
	return &target{name: name, port: port, proc: p,
		note: "2 workers, upstream keepalive 64, access log on (file, buffered)"}, nil
}

func (h *harness) startHAProxy(ctx context.Context, origin *target) (*target, error) {
	ports, err := freePorts(1)
	if err != nil {
		return nil, err
	}
	t, err := h.spawnHAProxy(ctx, "haproxy.cfg.tmpl", map[string]string{
		"PORT": strconv.Itoa(ports[0]), "ORIGIN_PORT": strconv.Itoa(origin.port)})
	if err != nil {
		return nil, err
	}
	t.port = ports[0]
	return t, waitReady(ctx, t.proc, t.url("/"), h.readyTimeout(), originOK(""))
}

// spawnHAProxy renders tmpl, checks the result with haproxy -c and starts HAProxy; the
// caller sets the target's port and checks readiness.
func (h *harness) spawnHAProxy(ctx context.Context, tmpl string, vals map[string]string) (*target, error) {
	dir, err := h.dir("haproxy")
	if err != nil {
		return nil, err
	}
	cfg := filepath.Join(dir, "haproxy.cfg")
	if err := h.render(tmpl, cfg, vals); err != nil {
		return nil, err
	}
	if out, err := exec.CommandContext(ctx, "haproxy", "-c", "-q", "-f", cfg).CombinedOutput(); err != nil {
		return nil, fmt.Errorf("invalid HAProxy config %s: %w\n%s", cfg, err, out)
	}
	p, err := h.sup.start("haproxy", filepath.Join(dir, "stderr.log"), nil, "haproxy", "-f", cfg, "-db")
	if err != nil {
		return nil, err
	}
	return &target{name: "haproxy", proc: p,
		note: "nbthread 2, http-reuse always, NO access log (HAProxy logs only via syslog)"}, nil
}

// startFastproxy starts the floor: a bare fasthttp reverse proxy.
func (h *harness) startFastproxy(ctx context.Context, origin *target) (*target, error) {
	dir, err := h.dir("fasthttp")
	if err != nil {
		return nil, err
	}
	ports, err := freePorts(1)
	if err != nil {
		return nil, err
	}
	p, err := h.sup.start("fasthttp", filepath.Join(dir, "stderr.log"), nil,
		h.bins.fastproxy, "-addr", addr(ports[0]), "-origin", addr(origin.port))
	if err != nil {
		return nil, err
	}
	t := &target{name: "fasthttp", port: ports[0], proc: p,
		note: "bare fasthttp reverse proxy (scripts/bench/fastproxy: HostClient.Do in a handler, nothing else): the floor for a fasthttp-based gateway"}
	return t, waitReady(ctx, p, t.url("/"), h.readyTimeout(), originOK(""))
}

// meshgateSpec is one meshgate process to start from a template.
type meshgateSpec struct {
	name, tmpl, note string
	mode             string // "edge" (default) or "sidecar"
	vals             map[string]string
	env              []string      // added to the environment (the sidecar's Go runtime knobs)
	readyHeader      string        // sent with the readiness probe (jwt: the bearer token)
	readyPath        string        // "" : GET / must answer the origin's body; else an admin path that must answer 200
	readyTimeout     time.Duration // 0: READY_TIMEOUT
}

// startMeshgate renders a config (PORT, ADMIN_PORT and DIR are filled in),
// validates it, starts meshgate and waits until it proxies to the origin.
func (h *harness) startMeshgate(ctx context.Context, s meshgateSpec) (*target, error) {
	dir, err := h.dir(s.name)
	if err != nil {
		return nil, err
	}
	ports, err := freePorts(2)
	if err != nil {
		return nil, err
	}
	v := map[string]string{"DIR": dir, "PORT": strconv.Itoa(ports[0]), "ADMIN_PORT": strconv.Itoa(ports[1])}
	for k, x := range s.vals {
		v[k] = x
	}
	conf := filepath.Join(dir, "meshgate.yaml")
	if err := h.render(s.tmpl, conf, v); err != nil {
		return nil, err
	}
	return h.runMeshgate(ctx, s, conf, ports[0], ports[1])
}

// runMeshgate starts meshgate on a config already written.
func (h *harness) runMeshgate(ctx context.Context, s meshgateSpec, conf string, port, admin int) (*target, error) {
	if out, err := exec.CommandContext(ctx, h.bins.meshgate, "validate", "-config", conf).CombinedOutput(); err != nil {
		return nil, fmt.Errorf("invalid meshgate config %s: %w\n%s", conf, err, out)
	}
	mode := s.mode
	if mode == "" {
		mode = "edge"
	}
	p, err := h.sup.start(s.name, filepath.Join(filepath.Dir(conf), "stderr.log"), s.env,
		h.bins.meshgate, mode, "-config", conf)
	if err != nil {
		return nil, err
	}
	t := &target{name: s.name, port: port, admin: admin, note: s.note, proc: p}
	timeout := h.readyTimeout()
	if s.readyTimeout > 0 {
		timeout = s.readyTimeout
	}
	if s.readyPath != "" {
		err = waitReady(ctx, p, t.adminURL(s.readyPath), timeout, nonEmptyOK)
	} else {
		err = waitReady(ctx, p, t.url("/"), timeout, originOK(s.readyHeader))
	}
	if err != nil {
		return nil, err
	}
	// /proc figures must be meshgate's own, not a wrapper's.
	// The kernel cuts comm to 15 bytes.
	if c, want := comm(p.pid()), filepath.Base(h.bins.meshgate); !strings.HasPrefix(want, c) || c == "" {
		return nil, fmt.Errorf("pid %d is %q, not %s", p.pid(), c, want)
	}
	return t, nil
}

// readyTimeout is how long a path gets to answer: in the sidecar and grpc scenarios,
// registration → passing check → the caller's watch can take a few check
// intervals, so paths through Consul get MESH_READY_TIMEOUT.
func (h *harness) readyTimeout() time.Duration {
	if h.scenario == "sidecar" || h.scenario == "grpc" {
		return h.opt.meshReadyTimeout
	}
	return h.opt.readyTimeout
}
