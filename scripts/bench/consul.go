package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// installConsul builds (once; cached) the Consul test binary with
// scripts/install-consul.sh and returns its path, the script's last line.
func (h *harness) installConsul(ctx context.Context) (string, error) {
	h.logf("installing consul (scripts/install-consul.sh; cached after the first build)")
	cmd := exec.CommandContext(ctx, filepath.Join(h.root, "scripts", "install-consul.sh"))
	cmd.Stderr = h.stderr
	out, err := cmd.Output()
	if err != nil {
		return "", fmt.Errorf("scripts/install-consul.sh: %w", err)
	}
	lines := strings.Split(strings.TrimSpace(string(out)), "\n")
	bin := lines[len(lines)-1]
	if st, err := os.Stat(bin); err != nil || st.Mode()&0o111 == 0 {
		return "", fmt.Errorf("install-consul.sh printed %q, not an executable", bin)
	}
	return bin, nil
}

// consulAgent is a running `consul agent -dev`.
type consulAgent struct {
	proc *proc
	http int
	bin  string
}

func (a *consulAgent) url(path string) string {
	return fmt.Sprintf("http://127.0.0.1:%d%s", a.http, path)
}

func (a *consulAgent) version() string {
	line := version(a.bin, "version")
	return line
}

// startConsul starts a dev agent on free ports, retrying when another process
// takes a port first. limit is http_max_conns_per_client: each watched
// service holds one agent connection.
func (h *harness) startConsul(ctx context.Context, bin string, limit int) (*consulAgent, error) {
	dir, err := h.dir("consul")
	if err != nil {
		return nil, err
	}
	for attempt := 1; attempt <= 3; attempt++ {
		p, err := freeTCPUDPPorts(7)
		if err != nil {
			return nil, err
		}
		// https stays off: the dev agent has no certificates.
		hcl := fmt.Sprintf(`ports {
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
limits {
  http_max_conns_per_client = %d
}
`, p[0], p[1], p[2], p[3], p[4], p[5], p[6], limit)
		if err := os.WriteFile(filepath.Join(dir, "agent.hcl"), []byte(hcl), 0o644); err != nil {
			return nil, err
		}
		data := filepath.Join(dir, "data")
		_ = os.RemoveAll(data)
		if err := os.MkdirAll(data, 0o755); err != nil {
			return nil, err
		}
		// Warnings only: the info log writes a line per registration sync.
		pr, err := h.sup.start("consul", filepath.Join(dir, "consul.log"), nil, bin, "agent", "-dev",
			"-bind", "127.0.0.1", "-client", "127.0.0.1", "-node", "meshgate-bench", "-data-dir", data,
			"-config-file", filepath.Join(dir, "agent.hcl"), "-log-level", "warn")
		if err != nil {
			return nil, err
		}
		a := &consulAgent{proc: pr, http: p[0], bin: bin}
		err = waitReady(ctx, pr, a.url("/v1/status/leader"), 60*time.Second, nonEmptyOK)
		if err == nil {
			return a, nil
		}
		if !errors.Is(err, errExited) {
			return nil, fmt.Errorf("consul agent not ready: %w", err)
		}
		h.sup.forget(pr)
		h.logf("consul agent exited (port taken?); attempt %d of 3", attempt)
	}
	return nil, fmt.Errorf("consul agent would not start (log: %s)", filepath.Join(dir, "consul.log"))
}

// consul measures catalog change → traffic and the idle cost of watching
// SERVICES services (scripts/bench/consulbench does the work). One run.
func (h *harness) consul(ctx context.Context) (string, error) {
	o := h.opt
	bin, err := h.installConsul(ctx)
	if err != nil {
		return "", err
	}
	limit := max(o.services*2, 4000)
	h.logf("starting consul agent -dev (http_max_conns_per_client = %d)", limit)
	agent, err := h.startConsul(ctx, bin, limit)
	if err != nil {
		return "", err
	}
	h.logf("starting meshgate with %d Consul-backed routes", o.services)
	mdir, err := h.dir("meshgate")
	if err != nil {
		return "", err
	}
	ports, err := freePorts(2)
	if err != nil {
		return "", err
	}
	conf := filepath.Join(mdir, "meshgate.yaml")
	if out, err := exec.CommandContext(ctx, h.bins.consulbench, "config", "-services", strconv.Itoa(o.services),
		"-template", filepath.Join(h.templates, "meshgate-consul.yaml.tmpl"), "-out", conf,
		"PORT="+strconv.Itoa(ports[0]), "ADMIN_PORT="+strconv.Itoa(ports[1]),
		"CONSUL_ADDR="+addr(agent.http), "DIR="+mdir).CombinedOutput(); err != nil {
		return "", fmt.Errorf("consulbench config: %w\n%s", err, out)
	}
	// /ready turns 200 once every service's first query has been answered.
	mg, err := h.runMeshgate(ctx, meshgateSpec{name: "meshgate", readyPath: "/ready"}, conf, ports[0], ports[1])
	if err != nil {
		return "", err
	}
	raw := h.rawDir()
	if err := os.MkdirAll(raw, 0o755); err != nil {
		return "", err
	}
	h.logf("running consulbench (registration, idle window, %d changes, burst of %d)", o.changes, o.services)
	cmd := exec.CommandContext(ctx, h.bins.consulbench, "run", "-consul", addr(agent.http), "-proxy", addr(mg.port),
		"-admin", addr(mg.admin), "-pid", strconv.Itoa(mg.proc.pid()), "-consul-pid", strconv.Itoa(agent.proc.pid()),
		"-services", strconv.Itoa(o.services), "-changes", strconv.Itoa(o.changes), "-idle", o.idle.String(),
		"-clk-tck", strconv.Itoa(h.clkTck))
	// consulbench stops its origin listeners on SIGTERM; a kill would not.
	cmd.Cancel = func() error { return cmd.Process.Signal(syscall.SIGTERM) }
	cmd.WaitDelay = 10 * time.Second
	progress, err := os.Create(filepath.Join(raw, "consulbench.stderr"))
	if err != nil {
		return "", err
	}
	defer func() { _ = progress.Close() }() // a kept copy of the progress; the report is stdout
	// Its progress is shown as it runs and kept; its report is stdout.
	cmd.Stderr = io.MultiWriter(h.stderr, progress)
	report, err := cmd.Output()
	_ = os.WriteFile(filepath.Join(raw, "consulbench.md"), report, 0o644)
	if err != nil {
		return "", fmt.Errorf("consulbench failed (%s): %w", progress.Name(), err)
	}

	var b strings.Builder
	b.WriteString(h.head("meshgate Consul discovery benchmark"))
	fmt.Fprintf(&b, "## Consul\n\n- %s: agent -dev (one node, in memory), log level warn,\n  http_max_conns_per_client = %d\n", agent.version(), limit)
	fmt.Fprintf(&b, "- note: consul, meshgate and consulbench share the same %d CPUs.\n\n", nproc())
	b.Write(report)
	fmt.Fprintf(&b, "\n## meshgate warnings\n\n```text\n%s\n```\n\n", tail(mg.proc.logPath, 20))
	fmt.Fprintf(&b, "Raw output: %s/ (agent log: %s, meshgate config: %s)\n", raw, agent.proc.logPath, conf)
	return b.String(), nil
}
