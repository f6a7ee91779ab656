package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
)

// fault runs the minimal config in front of three origins and SIGKILLs one
// under load (scripts/bench/faultload does the load, the kill and the
// observation on one clock). One run; no rounds.
func (h *harness) fault(ctx context.Context) (string, error) {
	const victim = 2
	var origins []*target
	h.logf("starting 3 origins")
	for i := 1; i <= 3; i++ {
		o, err := h.startOrigin(ctx, fmt.Sprintf("origin%d", i))
		if err != nil {
			return "", err
		}
		origins = append(origins, o)
	}
	h.logf("starting meshgate")
	mg, err := h.startMeshgate(ctx, meshgateSpec{
		name: "meshgate", tmpl: "meshgate-fault.yaml.tmpl",
		note: "edge mode, minimal config: 3 origins, round_robin, default resilience; access log on (file)",
		vals: map[string]string{
			"ORIGIN_PORT_1": strconv.Itoa(origins[0].port),
			"ORIGIN_PORT_2": strconv.Itoa(origins[1].port),
			"ORIGIN_PORT_3": strconv.Itoa(origins[2].port),
		},
	})
	if err != nil {
		return "", err
	}
	v := origins[victim-1]
	pid := v.proc.pid()
	// The kill must hit benchorigin itself: the supervisor starts it without
	// a shell, so this is a check, not a search.
	if c := comm(pid); c != "benchorigin" {
		return "", fmt.Errorf("pid %d (origin%d) is %q, not benchorigin", pid, victim, c)
	}
	host := addr(v.port)
	raw := h.rawDir()
	if err := os.MkdirAll(raw, 0o755); err != nil {
		return "", err
	}
	o := h.opt
	h.logf("loading meshgate for %s with %d connections; SIGKILL of origin%d (%s, pid %d) at %s",
		o.faultDuration, o.conns, victim, host, pid, o.faultKillAt)
	cmd := exec.CommandContext(ctx, h.bins.faultload,
		"-url", mg.url("/"), "-admin", addr(mg.admin), "-host", host, "-kill-pid", strconv.Itoa(pid),
		"-conns", strconv.Itoa(o.conns), "-duration", o.faultDuration.String(), "-kill-at", o.faultKillAt.String(),
		"-after-from", o.faultAfterFrom.String(), "-poll", o.faultPoll.String(), "-expect-bytes", "1024")
	var stderr strings.Builder
	cmd.Stderr = &stderr
	report, err := cmd.Output()
	_ = os.WriteFile(filepath.Join(raw, "faultload.md"), report, 0o644)
	_ = os.WriteFile(filepath.Join(raw, "faultload.stderr"), []byte(stderr.String()), 0o644)
	if err != nil {
		return "", fmt.Errorf("faultload failed: %w\n%s", err, stderr.String())
	}
	h.logf("%s", strings.TrimSpace(tail(filepath.Join(raw, "faultload.stderr"), 1)))
	h.sup.forget(v.proc)
	status := fmt.Sprintf("ended with %v", v.proc.err)
	var ee *exec.ExitError
	killed := false
	if errors.As(v.proc.err, &ee) {
		if ws, ok := ee.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
			status = fmt.Sprintf("exit status %d", 128+int(ws.Signal()))
			killed = ws.Signal() == syscall.SIGKILL
		}
	}
	if !killed {
		h.logf("warning: origin%d %s, not by SIGKILL", victim, status)
	}

	var b strings.Builder
	b.WriteString(h.head("meshgate benchmark"))
	b.WriteString("## Setup\n\n")
	fmt.Fprintf(&b, "- meshgate: %s\n- origins: 3 x benchorigin (fixed 1 KiB body) on", mg.note)
	for _, x := range origins {
		fmt.Fprintf(&b, " %s", addr(x.port))
	}
	fmt.Fprintf(&b, "\n- killed: origin%d (%s) with SIGKILL at %s (%s)\n", victim, host, o.faultKillAt, status)
	b.WriteString("- lost: any answer other than 200 with the 1 KiB body, or a transport error or 5 s timeout, as the client saw it (the client never retries)\n")
	fmt.Fprintf(&b, "- note: the load generator, meshgate and the origins share the same %d CPUs.\n\n", nproc())
	b.Write(report)
	fmt.Fprintf(&b, "\n## meshgate warnings\n\n```text\n%s\n```\n\nRaw output: %s/\n", tail(mg.proc.logPath, 20), raw)
	return b.String(), nil
}
