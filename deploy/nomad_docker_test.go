package deploy

import (
	"debug/elf"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/hcl/v2"
	"github.com/hashicorp/hcl/v2/hclsyntax"
)

// parseNomad parses a Nomad job file with the HCL native syntax parser.
func parseNomad(t *testing.T, path string) *hclsyntax.Body {
	t.Helper()
	src, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	f, diags := hclsyntax.ParseConfig(src, path, hcl.InitialPos)
	if diags.HasErrors() {
		t.Fatalf("%s: %s", path, diags.Error())
	}
	return f.Body.(*hclsyntax.Body)
}

func blocks(b *hclsyntax.Body, typ string) []*hclsyntax.Block {
	var out []*hclsyntax.Block
	for _, bl := range b.Blocks {
		if bl.Type == typ {
			out = append(out, bl)
		}
	}
	return out
}

// literal returns the value of a literal string or bool attribute (template strings without
// interpolation included); ok is false when absent.
func literal(t *testing.T, b *hclsyntax.Body, name string) (string, bool) {
	t.Helper()
	a, ok := b.Attributes[name]
	if !ok {
		return "", false
	}
	v, diags := a.Expr.Value(nil)
	if diags.HasErrors() {
		t.Fatalf("attribute %s is not a literal: %s", name, diags.Error())
	}
	if v.Type().FriendlyName() == "bool" {
		if v.True() {
			return "true", true
		}
		return "false", true
	}
	return v.AsString(), true
}

// walkAll calls fn for every block in the tree.
func walkAll(b *hclsyntax.Body, fn func(*hclsyntax.Block)) {
	for _, bl := range b.Blocks {
		fn(bl)
		walkAll(bl.Body, fn)
	}
}

type task struct {
	group, name string
	body        *hclsyntax.Body
}

func tasks(t *testing.T, body *hclsyntax.Body) []task {
	t.Helper()
	jobs := blocks(body, "job")
	if len(jobs) != 1 {
		t.Fatalf("want one job block, got %d", len(jobs))
	}
	var out []task
	for _, g := range blocks(jobs[0].Body, "group") {
		for _, tk := range blocks(g.Body, "task") {
			out = append(out, task{g.Labels[0], tk.Labels[0], tk.Body})
		}
	}
	if len(out) == 0 {
		t.Fatal("no job → group → task found")
	}
	return out
}

// isMeshgate reports whether a task runs meshgate edge or meshgate sidecar.
func isMeshgate(tk task) (mode string) {
	for _, c := range blocks(tk.body, "config") {
		a, ok := c.Body.Attributes["args"]
		if !ok {
			continue
		}
		v, diags := a.Expr.Value(nil)
		if diags.HasErrors() || !v.CanIterateElements() || v.LengthInt() == 0 {
			continue
		}
		first := v.AsValueSlice()[0]
		if first.Type().FriendlyName() == "string" {
			switch s := first.AsString(); s {
			case "edge", "sidecar":
				return s
			}
		}
	}
	return ""
}

// checkStopSettings checks that a meshgate task is stopped with a signal meshgate drains on,
// with time to drain (drain_timeout defaults to 30s), after a shutdown delay.
func checkStopSettings(t *testing.T, file string, tk task) {
	t.Helper()
	sig, ok := literal(t, tk.body, "kill_signal")
	if !ok || (sig != "SIGINT" && sig != "SIGTERM") {
		t.Errorf("%s: task %s: kill_signal = %q, want SIGINT or SIGTERM", file, tk.name, sig)
	}
	kt, ok := literal(t, tk.body, "kill_timeout")
	d, err := time.ParseDuration(kt)
	if !ok || err != nil || d < 30*time.Second {
		t.Errorf("%s: task %s: kill_timeout = %q, want ≥ 30s (the default drain_timeout)", file, tk.name, kt)
	}
	sd, ok := literal(t, tk.body, "shutdown_delay")
	if d, err := time.ParseDuration(sd); !ok || err != nil || d <= 0 {
		t.Errorf("%s: task %s: shutdown_delay = %q, want a positive duration", file, tk.name, sd)
	}
}

func checkNoEnvoyConnect(t *testing.T, file string, body *hclsyntax.Body) {
	t.Helper()
	walkAll(body, func(b *hclsyntax.Block) {
		switch b.Type {
		case "connect", "sidecar_service", "sidecar_task":
			t.Errorf("%s:%d: %s block: Nomad's Connect sidecar assumes Envoy", file, b.TypeRange.Start.Line, b.Type)
		}
	})
}

func TestNomadEdgeJob(t *testing.T) {
	const file = "nomad/edge.nomad.hcl"
	body := parseNomad(t, file)
	checkNoEnvoyConnect(t, file, body)
	var edge *task
	for _, tk := range tasks(t, body) {
		if isMeshgate(tk) == "edge" {
			edge = &tk
		}
	}
	if edge == nil {
		t.Fatal("no task runs meshgate edge")
	}
	checkStopSettings(t, file, *edge)

	// A Consul service with an HTTP check on the admin /ready (in the group or the task).
	readyCheck := false
	walkAll(body, func(b *hclsyntax.Block) {
		if b.Type != "service" {
			return
		}
		for _, c := range blocks(b.Body, "check") {
			typ, _ := literal(t, c.Body, "type")
			path, _ := literal(t, c.Body, "path")
			if typ == "http" && path == "/ready" {
				readyCheck = true
			}
		}
	})
	if !readyCheck {
		t.Error("edge: no service with an http check on /ready")
	}
	if len(blocks(blocks(body, "job")[0].Body, "update")) == 0 {
		t.Error("edge: no update block for rolling deploys")
	}
	if !hasTemplate(t, edge.body, "local/meshgate.yaml") {
		t.Error("edge: no template rendering local/meshgate.yaml")
	}
}

func hasTemplate(t *testing.T, body *hclsyntax.Body, dest string) bool {
	t.Helper()
	for _, tp := range blocks(body, "template") {
		if d, _ := literal(t, tp.Body, "destination"); d == dest {
			return true
		}
	}
	return false
}

func TestNomadAppWithSidecarJob(t *testing.T) {
	const file = "nomad/app-with-sidecar.nomad.hcl"
	body := parseNomad(t, file)
	checkNoEnvoyConnect(t, file, body)
	all := tasks(t, body)
	var sc *task
	for _, tk := range all {
		if isMeshgate(tk) == "sidecar" {
			sc = &tk
		}
	}
	if sc == nil {
		t.Fatal("no task runs meshgate sidecar")
	}
	others := 0
	for _, tk := range all {
		if tk.group == sc.group && tk.name != sc.name {
			others++
		}
	}
	if others == 0 {
		t.Error("the sidecar's group has no app task")
	}
	lc := blocks(sc.body, "lifecycle")
	if len(lc) != 1 {
		t.Fatalf("sidecar task: want one lifecycle block, got %d", len(lc))
	}
	if hook, _ := literal(t, lc[0].Body, "hook"); hook != "prestart" {
		t.Errorf("sidecar lifecycle hook = %q, want prestart", hook)
	}
	if s, _ := literal(t, lc[0].Body, "sidecar"); s != "true" {
		t.Errorf("sidecar lifecycle sidecar = %q, want true", s)
	}
	checkStopSettings(t, file, *sc)
	if !hasTemplate(t, sc.body, "local/meshgate.yaml") {
		t.Error("sidecar: no template rendering local/meshgate.yaml (the -config path)")
	}
}

// dockerfile returns the Dockerfile with continuation lines joined.
func dockerfile(t *testing.T) []string {
	t.Helper()
	src, err := os.ReadFile("docker/Dockerfile")
	if err != nil {
		t.Fatal(err)
	}
	joined := strings.ReplaceAll(string(src), "\\\n", " ")
	var lines []string
	for _, l := range strings.Split(joined, "\n") {
		l = strings.TrimSpace(l)
		if l != "" && !strings.HasPrefix(l, "#") {
			lines = append(lines, l)
		}
	}
	return lines
}

func TestDockerfileShape(t *testing.T) {
	lines := dockerfile(t)
	var buildStage, user, health, entry bool
	fromRe := regexp.MustCompile(`(?i)^FROM\s+\S+\s+AS\s+build$`)
	for _, l := range lines {
		switch {
		case fromRe.MatchString(l):
			buildStage = true
		case l == "USER nonroot":
			user = true
		case strings.HasPrefix(l, "HEALTHCHECK") && strings.Contains(l, `CMD ["/meshgate", "health", "-addr", "127.0.0.1:9901"]`):
			health = true
		case l == `ENTRYPOINT ["/meshgate"]`:
			entry = true
		}
		if strings.HasPrefix(l, "FROM") && strings.Contains(l, ".") && !strings.Contains(l, "${") {
			t.Errorf("FROM with a literal image reference (use a build ARG): %s", l)
		}
	}
	if !buildStage || !user || !health || !entry {
		t.Errorf("Dockerfile: build stage %v, USER nonroot %v, HEALTHCHECK meshgate health %v, ENTRYPOINT %v",
			buildStage, user, health, entry)
	}
}

// buildCommand extracts the build stage's `RUN CGO_ENABLED=0 go build ...` line as
// environment assignments and arguments.
func buildCommand(t *testing.T) (env, args []string) {
	t.Helper()
	for _, l := range dockerfile(t) {
		if !strings.HasPrefix(l, "RUN ") || !strings.Contains(l, "go build") {
			continue
		}
		words := shellWords(t, strings.TrimPrefix(l, "RUN "))
		for len(words) > 0 && strings.Contains(words[0], "=") {
			env = append(env, words[0])
			words = words[1:]
		}
		return env, words
	}
	t.Fatal("no RUN ... go build line in the Dockerfile")
	return nil, nil
}

// shellWords splits a simple shell command line: whitespace-separated words, double quotes.
func shellWords(t *testing.T, s string) []string {
	t.Helper()
	if strings.ContainsAny(s, "'$`;&|\\") {
		t.Fatalf("build line too complex to reproduce: %s", s)
	}
	var words []string
	var cur strings.Builder
	inQ, has := false, false
	for _, r := range s {
		switch {
		case r == '"':
			inQ, has = !inQ, true
		case (r == ' ' || r == '\t') && !inQ:
			if has {
				words = append(words, cur.String())
				cur.Reset()
				has = false
			}
		default:
			cur.WriteRune(r)
			has = true
		}
	}
	if inQ {
		t.Fatalf("unbalanced quote: %s", s)
	}
	if has {
		words = append(words, cur.String())
	}
	return words
}

func TestDockerBuildStageIsStatic(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the binary")
	}
	env, args := buildCommand(t)
	if len(args) < 2 || args[0] != "go" || args[1] != "build" {
		t.Fatalf("build line is not a go build: %q", args)
	}
	if !contains(env, "CGO_ENABLED=0") {
		t.Errorf("build env %q lacks CGO_ENABLED=0", env)
	}
	for _, want := range []string{"-trimpath", "-ldflags"} {
		if !contains(args, want) {
			t.Errorf("build args %q lack %s", args, want)
		}
	}
	out := filepath.Join(t.TempDir(), "meshgate")
	for i, a := range args {
		if a == "-o" && i+1 < len(args) {
			args[i+1] = out // /out/meshgate in the image
		}
	}
	cmd := exec.Command(args[0], args[1:]...)
	cmd.Dir = ".." // the Dockerfile builds from the repository root (WORKDIR /src, COPY . .)
	cmd.Env = append(os.Environ(), env...)
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("%s %q: %v\n%s", env, args, err, b)
	}

	v, err := exec.Command(out, "version").CombinedOutput()
	if err != nil || !strings.Contains(string(v), "meshgate") {
		t.Fatalf("meshgate version: %v: %s", err, v)
	}

	f, err := elf.Open(out)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	for _, p := range f.Progs {
		if p.Type == elf.PT_INTERP {
			t.Error("binary has a PT_INTERP program header: dynamically linked")
		}
	}
	if libs, err := f.ImportedLibraries(); err == nil && len(libs) > 0 {
		t.Errorf("binary needs shared libraries: %v", libs)
	}
	if f.Section(".symtab") != nil {
		t.Error("binary has a symbol table: -ldflags -s was not applied")
	}
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}
