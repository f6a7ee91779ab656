package main

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"time"
)

// harness is one run of one scenario: its settings, its temp dir, the peers it
// started and the binaries it built. Scenarios are methods on it.
type harness struct {
	scenario  string
	opt       options
	root      string // the meshgate checkout
	templates string // scripts/bench
	tmp       string
	stderr    io.Writer
	sup       *supervisor

	clkTck     int
	clkNote    string
	tools      []string // commands the scenario runs, from Debian's packages (debianPackage)
	loadDesc   string   // one line for the report: how the load was made
	loadBefore string
	bins       binaries
}

type binaries struct {
	origin, meshgate, fastproxy, faultload, rateload, jwtgen, consulbench string
	grpcorigin, grpcload, otlpsink                                        string
	stamper, stamperSHA                                                   string
}

func newHarness(scenario string, opt options, root string, stderr io.Writer) *harness {
	h := &harness{
		scenario:  scenario,
		opt:       opt,
		root:      root,
		templates: filepath.Join(root, "scripts", "bench"),
		stderr:    stderr,
	}
	h.sup = &supervisor{logf: h.logf}
	return h
}

func (h *harness) logf(format string, a ...any) {
	fmt.Fprintf(h.stderr, "[bench] "+format+"\n", a...)
}

// prepare installs and builds what the scenario needs and describes its load.
func (h *harness) prepare(ctx context.Context) error {
	o := h.opt
	wrkDesc := fmt.Sprintf("wrk -t%d -c%d -d%s, %d rounds (rotating order), %s warm-up",
		o.threads, o.conns, o.duration, o.rounds, o.warmup)
	rateDesc := fmt.Sprintf("; then scripts/bench/rateload: %d req/s open loop, %s (+%s warm-up), %d workers, %d rounds (rotating order)",
		o.rate, o.rateDuration, o.rateWarmup, o.rateConns, o.rounds)
	switch h.scenario {
	case "edge":
		h.tools = []string{"nginx", "haproxy", "wrk"}
		h.loadDesc = wrkDesc
		if o.edgeShip {
			h.tools = append(h.tools, "nats-server")
			h.loadDesc += fmt.Sprintf("; then meshgate-ship's broker outage: wrk %s with nats-server up, %s with it down, the drain polled every %s (at most %s)",
				o.shipOutage, o.shipOutage, o.shipPoll, o.shipDrainTimeout)
		}
	case "grpc":
		h.tools = []string{"nginx", "haproxy", "h2load"}
		h.loadDesc = "h2load and scripts/bench/grpcload (see each load below)"
	case "ratelimit":
		h.tools = []string{"wrk"}
		h.loadDesc = wrkDesc
	case "jwt":
		h.tools = []string{"wrk"}
		h.loadDesc = strings.Replace(wrkDesc, ", ", " -H 'Authorization: Bearer <token>', ", 1)
	case "fault":
		h.loadDesc = fmt.Sprintf("scripts/bench/faultload: %d keep-alive connections (fasthttp, no client retries) for %s, one origin SIGKILLed at %s, /clusters polled every %s",
			o.conns, o.faultDuration, o.faultKillAt, o.faultPoll)
	case "consul":
		h.loadDesc = fmt.Sprintf("scripts/bench/consulbench: %d services x 2 instances; %d sequential changes, then a burst changing every service; probes through meshgate (fasthttp, no client retries)",
			o.services, o.changes)
	case "sidecar":
		h.tools = []string{"wrk", "nginx"}
		h.loadDesc = wrkDesc + rateDesc
	case "plugins":
		h.tools = []string{"wrk"}
		h.loadDesc = wrkDesc + rateDesc
	}
	if h.scenario != "fault" && h.scenario != "consul" && o.rounds < 3 {
		h.logf("warning: ROUNDS=%d; use at least 3 for publishable figures", o.rounds)
	}
	if err := h.ensureTools(ctx); err != nil {
		return err
	}
	if err := h.build(ctx); err != nil {
		return err
	}
	h.clkTck, h.clkNote = clockTicks()
	h.logf("temp dir: %s", h.tmp)
	h.loadBefore = loadAverage()
	if l, err := strconv.ParseFloat(strings.Fields(h.loadBefore + " 0")[0], 64); err == nil && l > 1 {
		h.logf("warning: load average is %s; other work will make the figures noisy", h.loadBefore)
	}
	return nil
}

// ensureTools installs the scenario's missing tools from Debian's packages.
// Nothing else is ever downloaded: the rest is built from this tree.
func (h *harness) ensureTools(ctx context.Context) error {
	var missing []string
	for _, t := range h.tools {
		if _, err := exec.LookPath(t); err != nil {
			missing = append(missing, debianPackage(t))
		}
	}
	if len(missing) > 0 {
		if os.Geteuid() != 0 {
			return fmt.Errorf("missing %s; run as root to install them with apt-get", strings.Join(missing, " "))
		}
		h.logf("installing %s from Debian packages", strings.Join(missing, " "))
		// On hosts without a policy-rc.d the packages start their default
		// services; they listen on standard ports, not ours, so no clash.
		// stdout is the report, so apt's chatter goes to stderr.
		for _, args := range [][]string{{"update", "-q"}, append([]string{"install", "-y", "-q"}, missing...)} {
			cmd := exec.CommandContext(ctx, "apt-get", args...)
			cmd.Env = append(os.Environ(), "DEBIAN_FRONTEND=noninteractive")
			cmd.Stdout, cmd.Stderr = h.stderr, h.stderr
			if err := cmd.Run(); err != nil {
				return fmt.Errorf("apt-get %s: %w", args[0], err)
			}
		}
	}
	for _, t := range append([]string{"go"}, h.tools...) {
		if _, err := exec.LookPath(t); err != nil {
			return fmt.Errorf("%s not found", t)
		}
	}
	return nil
}

// debianPackage is the Debian package that installs command; most are named alike.
func debianPackage(command string) string {
	if command == "h2load" {
		return "nghttp2-client"
	}
	return command
}

// build compiles the in-tree programs the scenario runs into the cache. go
// build is incremental through Go's build cache, so always building costs
// little and never leaves a stale binary behind. They are built as
// docs/operations.md and the container image build meshgate, static
// (CGO_ENABLED=0) and with -trimpath: a binary linked against libc maps it
// and the dynamic loader too, 2 MB more of an idle meshgate's RSS.
func (h *harness) build(ctx context.Context) error {
	if err := os.MkdirAll(h.opt.cache, 0o755); err != nil {
		return err
	}
	goBuild := func(name, pkg string) (string, error) {
		out := filepath.Join(h.opt.cache, name)
		h.logf("building %s", pkg)
		cmd := exec.CommandContext(ctx, "go", "build", "-trimpath", "-o", out, pkg)
		cmd.Dir = h.root
		cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
		cmd.Stdout, cmd.Stderr = h.stderr, h.stderr
		if err := cmd.Run(); err != nil {
			return "", fmt.Errorf("building %s: %w", pkg, err)
		}
		return out, nil
	}
	var err error
	b := &h.bins
	if b.origin, err = goBuild("benchorigin", "./scripts/benchorigin"); err != nil {
		return err
	}
	if !h.opt.skipMeshgate {
		if h.opt.meshgateBin != "" {
			if st, err := os.Stat(h.opt.meshgateBin); err != nil || st.Mode()&0o111 == 0 {
				return fmt.Errorf("MESHGATE_BIN=%s is not executable", h.opt.meshgateBin)
			}
			b.meshgate = h.opt.meshgateBin
		} else if b.meshgate, err = goBuild("meshgate", "."); err != nil {
			return fmt.Errorf("%w; set MESHGATE_BIN or SKIP_MESHGATE=1", err)
		}
	}
	builds := map[string][]struct {
		dst       *string
		name, pkg string
	}{
		"edge":    {{&b.fastproxy, "fastproxy", "./scripts/bench/fastproxy"}},
		"fault":   {{&b.faultload, "faultload", "./scripts/bench/faultload"}},
		"sidecar": {{&b.rateload, "rateload", "./scripts/bench/rateload"}},
		"plugins": {{&b.rateload, "rateload", "./scripts/bench/rateload"}, {&b.stamper, "stamper", "./plugins/examples/stamper"}},
		"jwt":     {{&b.jwtgen, "jwtgen", "./scripts/bench/jwtgen"}},
		"grpc":    {{&b.grpcorigin, "grpcorigin", "./scripts/bench/grpcorigin"}, {&b.grpcload, "grpcload", "./scripts/bench/grpcload"}},
		"consul":  {{&b.consulbench, "consulbench", "./scripts/bench/consulbench"}},
	}
	if h.scenario == "edge" && h.opt.edgeTracing {
		builds["edge"] = append(builds["edge"], struct {
			dst       *string
			name, pkg string
		}{&b.otlpsink, "otlpsink", "./scripts/bench/otlpsink"})
	}
	for _, x := range builds[h.scenario] {
		if *x.dst, err = goBuild(x.name, x.pkg); err != nil {
			return err
		}
	}
	if b.stamper != "" {
		bin, err := os.ReadFile(b.stamper)
		if err != nil {
			return err
		}
		sum := sha256.Sum256(bin)
		b.stamperSHA = hex.EncodeToString(sum[:])
	}
	return nil
}

// cleanup stops every peer and drops the access logs, which reach hundreds of
// MB per run and which the results do not need (with EDGE_SHIP also the JetStream
// store, which holds the same lines, and whatever a spool still holds).
func (h *harness) cleanup() {
	h.sup.stopAll(h.opt.stopTimeout)
	if h.tmp != "" && !h.opt.keepLogs {
		logs, _ := filepath.Glob(filepath.Join(h.tmp, "*", "access.log"))
		for _, l := range logs {
			_ = os.Remove(l)
		}
		_ = os.RemoveAll(filepath.Join(h.tmp, "nats", "store"))
		_ = os.RemoveAll(filepath.Join(h.tmp, "meshgate-ship", "spool"))
	}
}

// dir makes and returns the temp subdirectory of one peer.
func (h *harness) dir(name string) (string, error) {
	d := filepath.Join(h.tmp, name)
	return d, os.MkdirAll(d, 0o755)
}

// render fills the @KEY@ placeholders of one of scripts/bench's templates.
func (h *harness) render(tmpl, out string, vals map[string]string) error {
	b, err := os.ReadFile(filepath.Join(h.templates, tmpl))
	if err != nil {
		return err
	}
	s, err := renderTemplate(string(b), vals)
	if err != nil {
		return fmt.Errorf("%s: %w", tmpl, err)
	}
	return os.WriteFile(out, []byte(s), 0o644)
}

// renderTemplate substitutes every @KEY@ and fails on one left in a line that
// is not a comment (comments may mention placeholders).
func renderTemplate(tmpl string, vals map[string]string) (string, error) {
	pairs := make([]string, 0, 2*len(vals))
	for k, v := range vals {
		pairs = append(pairs, "@"+k+"@", v)
	}
	s := strings.NewReplacer(pairs...).Replace(tmpl)
	for line := range strings.Lines(s) {
		if strings.HasPrefix(strings.TrimSpace(line), "#") {
			continue
		}
		if i := strings.Index(line, "@"); i >= 0 {
			if j := strings.Index(line[i+1:], "@"); j > 0 && isPlaceholder(line[i+1:i+1+j]) {
				return "", fmt.Errorf("unfilled placeholder @%s@", line[i+1:i+1+j])
			}
		}
	}
	return s, nil
}

func isPlaceholder(s string) bool {
	for _, r := range s {
		if (r < 'A' || r > 'Z') && r != '_' && (r < '0' || r > '9') {
			return false
		}
	}
	return s != ""
}

// version runs a tool's version flag and returns its first line.
func version(name string, args ...string) string {
	// wrk has no version flag: -v prints the banner and exits 1; nginx -v
	// prints to stderr. Both are fine: the output is what matters.
	out, _ := exec.Command(name, args...).CombinedOutput()
	line, _, _ := strings.Cut(strings.TrimSpace(string(out)), "\n")
	return line
}

func (h *harness) uses(tool string) bool { return slices.Contains(h.tools, tool) }

// head is the title and the machine description every report starts with.
func (h *harness) head(title string) string {
	var b strings.Builder
	fmt.Fprintf(&b, "# %s (scenario: %s)\n\n## Machine\n\n", title, h.scenario)
	model := "unknown"
	if ci, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		for line := range strings.Lines(string(ci)) {
			if k, v, ok := strings.Cut(line, ":"); ok && strings.TrimSpace(k) == "model name" {
				model = strings.TrimSpace(v)
				break
			}
		}
	}
	fmt.Fprintf(&b, "- CPUs: %d x %s\n", runtime.NumCPU(), model)
	fmt.Fprintf(&b, "- Kernel: %s\n", version("uname", "-srm"))
	if h.uses("nginx") {
		fmt.Fprintf(&b, "- nginx: %s\n", strings.TrimPrefix(version("nginx", "-v"), "nginx version: "))
	}
	if h.uses("haproxy") {
		fmt.Fprintf(&b, "- HAProxy: %s\n", version("haproxy", "-v"))
	}
	if h.uses("wrk") {
		fmt.Fprintf(&b, "- wrk: %s\n", version("wrk", "-v"))
	}
	if h.uses("nats-server") {
		fmt.Fprintf(&b, "- nats-server: %s\n", version("nats-server", "--version"))
	}
	if h.uses("h2load") {
		fmt.Fprintf(&b, "- h2load: %s\n", version("h2load", "--version"))
	}
	fmt.Fprintf(&b, "- Go: %s\n", version("go", "version"))
	// meshgate's serving commands change one runtime setting for themselves (builds from
	// 2026-12-03 on); say what the harness asked for. A MESHGATE_BIN from before then, or a
	// GODEBUG of the harness's own, decides otherwise.
	switch {
	case os.Getenv("MESHGATE_SYSMON") == "sleep":
		fmt.Fprintf(&b, "- meshgate's Go runtime: MESHGATE_SYSMON=sleep (Go's default monitor thread)\n")
	case strings.Contains(os.Getenv("GODEBUG"), "schedtrace="):
		fmt.Fprintf(&b, "- meshgate's Go runtime: the harness's own GODEBUG=%s\n", os.Getenv("GODEBUG"))
	default:
		fmt.Fprintf(&b, "- meshgate's Go runtime: its own default, GODEBUG=schedtrace=2147483647 (docs/operations.md#runtime; MESHGATE_SYSMON=sleep for Go's default)\n")
	}
	// Other work on the machine (builds, tests) skews everything, p99 most.
	fmt.Fprintf(&b, "- Load average (1/5/15 min): before %s, after %s\n", h.loadBefore, loadAverage())
	fmt.Fprintf(&b, "- Load: %s\n", h.loadDesc)
	fmt.Fprintf(&b, "- CPU time: utime+stime from /proc/PID/stat (the process and its direct children), clock ticks per second %s\n\n", h.clkNote)
	return b.String()
}

// nproc is for the notes that say how many CPUs every process shares.
func nproc() int { return runtime.NumCPU() }

// sleep waits d or until ctx ends.
func sleep(ctx context.Context, d time.Duration) error {
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-time.After(d):
		return nil
	}
}
