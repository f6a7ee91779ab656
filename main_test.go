package main

// Two layers of tests: the CLI's contract (exit codes, what goes to stdout and stderr) through
// run(), in process; and process behaviour (signals, reload from disk, drain, start-up
// failures) against a real binary built once in TestMain, with the race detector, so a data
// race in a drain or reload path fails the test through exit status 66.

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/meshgate/meshgate/internal/syncbuf"
)

// Values stamped into the test binary, so `version` is checked against the linker flags the
// Makefile uses.
const (
	testVersion = "v0.0.0-test"
	testCommit  = "abc1234"
)

// meshgateBin is the binary built by TestMain; set once before any test runs, read-only after.
var meshgateBin string

func TestMain(m *testing.M) {
	os.Exit(testMain(m))
}

func testMain(m *testing.M) int {
	dir, err := os.MkdirTemp("", "meshgate-main-test-")
	if err != nil {
		fmt.Fprintln(os.Stderr, "main_test:", err)
		return 1
	}
	defer os.RemoveAll(dir)
	meshgateBin = filepath.Join(dir, "meshgate")
	build := exec.Command("go", "build", "-race",
		"-ldflags", "-X main.version="+testVersion+" -X main.commit="+testCommit,
		"-o", meshgateBin, ".")
	build.Stdout, build.Stderr = os.Stderr, os.Stderr
	if err := build.Run(); err != nil {
		fmt.Fprintln(os.Stderr, "main_test: building meshgate:", err)
		return 1
	}
	return m.Run()
}

// ---------------------------------------------------------------------------------------------
// CLI contract, in process.

func TestRunCommands(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name       string
		args       []string
		code       int
		stdout     []string // substrings
		stderr     []string // substrings
		quietOut   bool     // stdout must be empty
		quietError bool     // stderr must be empty
	}{
		{name: "no args", args: nil, code: 2, stderr: []string{"Usage:", "meshgate edge -config FILE"}, quietOut: true},
		{name: "unknown command", args: []string{"frobnicate"}, code: 2,
			stderr: []string{`unknown command "frobnicate"`, "Usage:"}, quietOut: true},
		{name: "sidecar with an edge file", args: []string{"sidecar", "-config", "conf/examples/static.yaml"}, code: 1,
			stderr: []string{"a sidecar config needs a sidecar: block"}, quietOut: true},
		{name: "edge with a sidecar file", args: []string{"edge", "-config", "conf/examples/sidecar.yaml"}, code: 1,
			stderr: []string{"run `meshgate sidecar -config conf/examples/sidecar.yaml`"}, quietOut: true},
		{name: "help", args: []string{"help"}, code: 0, stdout: []string{"Usage:", "meshgate validate -config FILE"}, quietError: true},
		{name: "version", args: []string{"version"}, code: 0,
			stdout: []string{"meshgate dev (commit ", runtime.Version() + ")"}, quietError: true},
		{name: "validate without -config", args: []string{"validate"}, code: 2,
			stderr: []string{"-config FILE is required"}, quietOut: true},
		{name: "validate with a positional file", args: []string{"validate", "conf/examples/static.yaml"}, code: 2,
			stderr: []string{`unexpected argument "conf/examples/static.yaml"`}, quietOut: true},
		{name: "validate unknown flag", args: []string{"validate", "-nope"}, code: 2,
			stderr: []string{"flag provided but not defined: -nope"}, quietOut: true},
		{name: "validate missing file", args: []string{"validate", "-config", "does/not/exist.yaml"}, code: 1,
			stderr: []string{"read config", "does/not/exist.yaml"}, quietOut: true},
		{name: "edge without -config", args: []string{"edge"}, code: 2,
			stderr: []string{"-config FILE is required"}, quietOut: true},
		{name: "health bad flag", args: []string{"health", "-addr"}, code: 2,
			stderr: []string{"flag needs an argument"}, quietOut: true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			var stdout, stderr bytes.Buffer
			code := run(tc.args, &stdout, &stderr)
			if code != tc.code {
				t.Errorf("exit code = %d, want %d\nstdout: %s\nstderr: %s", code, tc.code, &stdout, &stderr)
			}
			for _, s := range tc.stdout {
				if !strings.Contains(stdout.String(), s) {
					t.Errorf("stdout lacks %q:\n%s", s, &stdout)
				}
			}
			for _, s := range tc.stderr {
				if !strings.Contains(stderr.String(), s) {
					t.Errorf("stderr lacks %q:\n%s", s, &stderr)
				}
			}
			if tc.quietOut && stdout.Len() > 0 {
				t.Errorf("stdout should be empty, got:\n%s", &stdout)
			}
			if tc.quietError && stderr.Len() > 0 {
				t.Errorf("stderr should be empty, got:\n%s", &stderr)
			}
		})
	}
}

func TestVersionOfBuiltBinary(t *testing.T) {
	t.Parallel()
	out, err := exec.Command(meshgateBin, "version").Output()
	if err != nil {
		t.Fatalf("meshgate version: %v", err)
	}
	want := fmt.Sprintf("meshgate %s (commit %s, %s)\n", testVersion, testCommit, runtime.Version())
	if string(out) != want {
		t.Errorf("meshgate version printed %q, want %q", out, want)
	}
}

func TestValidateValidFile(t *testing.T) {
	t.Parallel()
	var stdout, stderr bytes.Buffer
	if code := run([]string{"validate", "-config", "conf/examples/static.yaml"}, &stdout, &stderr); code != 0 {
		t.Fatalf("exit code = %d, want 0; stderr:\n%s", code, &stderr)
	}
	want := "conf/examples/static.yaml: valid: 1 listener, 1 route, 1 service (static)\n"
	if stdout.String() != want {
		t.Errorf("stdout = %q, want the one-line summary %q", &stdout, want)
	}
	if stderr.Len() > 0 {
		t.Errorf("stderr should be empty, got %q", &stderr)
	}
}

// Every shipped example must stay valid: they are what users copy.
func TestValidateEveryExample(t *testing.T) {
	// The examples use ${PORT:-8080} and ${MESHGATE_ADMIN:-...}; make sure an outer environment
	// cannot change what is validated (an empty value selects the default).
	t.Setenv("PORT", "")
	t.Setenv("MESHGATE_ADMIN", "")
	files, err := filepath.Glob("conf/examples/*.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if len(files) < 2 {
		t.Fatalf("found %d examples in conf/examples, want at least 2 (static.yaml, full.yaml)", len(files))
	}
	for _, f := range files {
		t.Run(filepath.Base(f), func(t *testing.T) {
			var stdout, stderr bytes.Buffer
			if code := run([]string{"validate", "-config", f}, &stdout, &stderr); code != 0 {
				t.Fatalf("exit code = %d, want 0; stderr:\n%s", code, &stderr)
			}
			if lines := strings.Count(stdout.String(), "\n"); lines != 1 || !strings.HasPrefix(stdout.String(), f+": valid: ") {
				t.Errorf("stdout = %q, want one line %q", &stdout, f+": valid: ...")
			}
		})
	}
}

// problemLine is FILE:LINE: PATH: MSG, the shape of every reported config problem.
var problemLine = regexp.MustCompile(`^(.+):(\d+): ([^ :]+): (.+)$`)

type problem struct {
	line int
	path string
	msg  string // substring
}

func checkProblems(t *testing.T, output, file string, want []problem) {
	t.Helper()
	lines := strings.Split(strings.TrimRight(output, "\n"), "\n")
	if len(lines) != len(want) {
		t.Fatalf("got %d problem lines, want %d:\n%s", len(lines), len(want), output)
	}
	for i, l := range lines {
		m := problemLine.FindStringSubmatch(l)
		if m == nil {
			t.Errorf("line %d %q is not FILE:LINE: PATH: MSG", i+1, l)
			continue
		}
		if m[1] != file {
			t.Errorf("line %d: file = %q, want %q", i+1, m[1], file)
		}
		if n, _ := strconv.Atoi(m[2]); n != want[i].line {
			t.Errorf("line %d: config line = %d, want %d (%s)", i+1, n, want[i].line, l)
		}
		if m[3] != want[i].path {
			t.Errorf("line %d: path = %q, want %q (%s)", i+1, m[3], want[i].path, l)
		}
		if !strings.Contains(m[4], want[i].msg) {
			t.Errorf("line %d: message %q lacks %q", i+1, m[4], want[i].msg)
		}
	}
}

// threeProblems has one decode error, one validation error and one discovery error, so all
// three reporting paths show up in a single run.
const threeProblems = `admin:
  address: 127.0.0.1:9901
listeners:
  - name: public
    address: 127.0.0.1:8080
    read_timeout: 5
routes:
  - name: all
    match: { path_prefix: / }
    to: [ { service: origin } ]
    bogus: 1
discovery:
  static:
    origin: [ "127.0.0.1:notaport" ]
`

var threeProblemsWant = []problem{
	{line: 6, path: "listeners[0].read_timeout", msg: "needs a unit"},
	{line: 11, path: "routes[0].bogus", msg: `unknown key "bogus"`},
	{line: 14, path: "discovery.static.origin[0]", msg: "invalid address"},
}

func TestValidateInvalidFileReportsEveryProblem(t *testing.T) {
	t.Parallel()
	file := filepath.Join(t.TempDir(), "bad.yaml")
	if err := os.WriteFile(file, []byte(threeProblems), 0o600); err != nil {
		t.Fatal(err)
	}
	var stdout, stderr bytes.Buffer
	if code := run([]string{"validate", "-config", file}, &stdout, &stderr); code != 1 {
		t.Fatalf("exit code = %d, want 1; stderr:\n%s", code, &stderr)
	}
	if stdout.Len() > 0 {
		t.Errorf("stdout should be empty for an invalid file, got %q", &stdout)
	}
	checkProblems(t, stderr.String(), file, threeProblemsWant)
}

func TestHealthAgainstClosedPort(t *testing.T) {
	t.Parallel()
	addr := closedAddr(t)
	var stdout, stderr bytes.Buffer
	if code := run([]string{"health", "-addr", addr, "-timeout", "2s"}, &stdout, &stderr); code != 1 {
		t.Fatalf("health against closed %s: exit code = %d, want 1", addr, code)
	}
	if !strings.Contains(stderr.String(), "meshgate health:") {
		t.Errorf("stderr should explain the failure, got %q", &stderr)
	}
}

// ---------------------------------------------------------------------------------------------
// Process behaviour, against the built binary.

func TestHealthAgainstRunningEdge(t *testing.T) {
	t.Parallel()
	origin := startOrigin(t, "a", nil)
	e := startEdge(t, routesTo(origin))

	var stdout, stderr bytes.Buffer
	if code := run([]string{"health", "-addr", e.admin}, &stdout, &stderr); code != 0 {
		t.Errorf("in-process health: exit code = %d, want 0; stderr: %s", code, &stderr)
	}
	// The container health check runs the binary, so check that too.
	out, err := exec.Command(meshgateBin, "health", "-addr", e.admin).CombinedOutput()
	if err != nil {
		t.Errorf("meshgate health -addr %s: %v\n%s", e.admin, err, out)
	}
}

func TestEdgeProxiesAndReloadsOnFileChange(t *testing.T) {
	t.Parallel()
	a := startOrigin(t, "a", nil)
	b := startOrigin(t, "b", nil)
	e := startEdge(t, routesTo(a))
	e.expectBody(t, "/anything", "a")

	// An editor or a template engine replaces the file by rename.
	withV2 := routesWithV2(a, b)
	e.writeConfig(t, withV2, true)
	eventually(t, 10*time.Second, "the new /v2 route answers", func() error {
		return e.bodyIs("/v2/x", "b")
	})
	e.expectBody(t, "/anything", "a")
	eventually(t, 5*time.Second, "reload counted", func() error {
		return e.metricIs(`meshgate_config_reloads_total{result="success"}`, "1")
	})

	// An invalid file: the running config stays and the log says exactly what is wrong.
	invalid := strings.Replace(withV2, "    to: [ { service: b } ]\n", "    to: [ { service: b } ]\n    bogus: 1\n", 1)
	invalid = strings.Replace(invalid, "static:\n", "static:\n    broken: [ \"127.0.0.1:notaport\" ]\n", 1)
	full := e.render(invalid)
	e.writeConfig(t, invalid, true)
	want := []string{
		fmt.Sprintf(`%s:%d: routes[0].bogus: unknown key "bogus"`, e.cfgPath, lineOf(t, full, "bogus: 1")),
		fmt.Sprintf(`%s:%d: discovery.static.broken[0]: invalid address`, e.cfgPath, lineOf(t, full, "broken:")),
	}
	eventually(t, 10*time.Second, "the invalid config is logged with file:line", func() error {
		for _, l := range e.proc.logLines() {
			if l.Message != "config file invalid; keeping the running config" {
				continue
			}
			for _, w := range want {
				if !strings.Contains(l.Error, w) {
					return fmt.Errorf("logged error %q lacks %q", l.Error, w)
				}
			}
			return nil
		}
		return errors.New("no 'config file invalid' log line yet")
	})
	e.expectBody(t, "/v2/x", "b")
	e.expectBody(t, "/anything", "a")
	_, cfg, err := get("http://" + e.admin + "/config")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(cfg, "name: v2") || strings.Contains(cfg, "broken") || strings.Contains(cfg, "bogus") {
		t.Errorf("/config should still show the last good config (with route v2, without the invalid parts):\n%s", cfg)
	}
	if err := e.metricIs(`meshgate_config_reloads_total{result="success"}`, "1"); err != nil {
		t.Errorf("an invalid file must not be applied: %v", err)
	}
}

func TestEdgeReloadsOnSIGHUP(t *testing.T) {
	t.Parallel()
	a := startOrigin(t, "a", nil)
	b := startOrigin(t, "b", nil)
	e := startEdge(t, routesTo(a))

	// The file watcher skips a file whose bytes did not change, so a reload of an unchanged
	// file can only come from SIGHUP: this is what proves the signal path.
	e.proc.signal(t, syscall.SIGHUP)
	eventually(t, 10*time.Second, "SIGHUP reloads an unchanged file", func() error {
		return e.metricIs(`meshgate_config_reloads_total{result="success"}`, "1")
	})
	if !e.proc.logged("SIGHUP: reloading config") {
		t.Errorf("no SIGHUP log line:\n%s", e.proc.stderr)
	}

	// Changed in place (truncate and write, as `cat > file` does), then SIGHUP.
	e.writeConfig(t, routesWithV2(a, b), false)
	e.proc.signal(t, syscall.SIGHUP)
	eventually(t, 10*time.Second, "the /v2 route added in place answers", func() error {
		return e.bodyIs("/v2/x", "b")
	})
	e.expectBody(t, "/anything", "a")
	e.proc.signal(t, syscall.SIGTERM)
	if code := e.proc.wait(t, 15*time.Second); code != 0 {
		t.Errorf("exit code = %d, want 0\n%s", code, e.proc.stderr)
	}
}

func TestEdgeDrainsOnSignal(t *testing.T) {
	t.Parallel()
	for _, sig := range []syscall.Signal{syscall.SIGTERM, syscall.SIGINT} {
		t.Run(sig.String(), func(t *testing.T) {
			t.Parallel()
			entered := make(chan struct{}, 1)
			release := make(chan struct{})
			var once sync.Once
			origin := startOrigin(t, "a", func(w http.ResponseWriter, r *http.Request) {
				if r.URL.Path != "/slow" {
					fmt.Fprint(w, "a")
					return
				}
				select {
				case entered <- struct{}{}:
				default:
				}
				select {
				case <-release:
				case <-r.Context().Done():
					return
				case <-time.After(30 * time.Second): // a bound, should the test itself break
				}
				fmt.Fprint(w, "slow done")
			})
			// Cleanups run last-in first-out: this one, registered after the origin's, releases
			// the handler before httptest's Close waits for it.
			t.Cleanup(func() { once.Do(func() { close(release) }) })
			e := startEdge(t, routesTo(origin))

			type result struct {
				code int
				body string
				err  error
			}
			res := make(chan result, 1)
			go func() {
				code, body, err := get("http://" + e.listen + "/slow")
				res <- result{code, body, err}
			}()
			select {
			case <-entered:
			case <-time.After(10 * time.Second):
				t.Fatal("the slow request never reached the origin")
			}

			e.proc.signal(t, sig)
			eventually(t, 10*time.Second, "/ready turns 503 while draining", func() error {
				code, _, err := get("http://" + e.admin + "/ready")
				if err != nil {
					return err
				}
				if code != http.StatusServiceUnavailable {
					return fmt.Errorf("/ready = %d", code)
				}
				return nil
			})
			var stderr bytes.Buffer
			if code := run([]string{"health", "-addr", e.admin}, io.Discard, &stderr); code != 1 {
				t.Errorf("health while draining: exit code = %d, want 1", code)
			}
			if e.proc.exited() {
				t.Fatalf("process exited with a request in flight:\n%s", e.proc.stderr)
			}

			once.Do(func() { close(release) })
			select {
			case r := <-res:
				if r.err != nil || r.code != http.StatusOK || r.body != "slow done" {
					t.Errorf("in-flight request: code=%d body=%q err=%v, want 200 %q", r.code, r.body, r.err, "slow done")
				}
			case <-time.After(10 * time.Second):
				t.Fatal("the in-flight request did not complete")
			}
			if code := e.proc.wait(t, 15*time.Second); code != 0 {
				t.Errorf("exit code after %s = %d, want 0\n%s", sig, code, e.proc.stderr)
			}
			if !e.proc.logged("draining") || !e.proc.logged("meshgate edge stopped") {
				t.Errorf("expected draining and stopped log lines:\n%s", e.proc.stderr)
			}
		})
	}
}

func TestEdgeInvalidConfigAtStart(t *testing.T) {
	t.Parallel()
	file := filepath.Join(t.TempDir(), "bad.yaml")
	if err := os.WriteFile(file, []byte(threeProblems), 0o600); err != nil {
		t.Fatal(err)
	}
	p := startProc(t, "edge", "-config", file)
	if code := p.wait(t, 15*time.Second); code != 1 {
		t.Fatalf("exit code = %d, want 1\n%s", code, p.stderr)
	}
	checkProblems(t, p.stderr.String(), file, threeProblemsWant)
}

func TestEdgePortInUse(t *testing.T) {
	t.Parallel()
	origin := startOrigin(t, "a", nil)
	taken, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = taken.Close() })
	busy := taken.Addr().String()

	tests := []struct {
		name          string
		listen, admin string
		want          []string
	}{
		{name: "listener", listen: busy, admin: closedAddr(t), want: []string{`listener "public"`, busy, "address already in use"}},
		{name: "admin", listen: closedAddr(t), admin: busy, want: []string{"admin", busy, "address already in use"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			file := filepath.Join(t.TempDir(), "meshgate.yaml")
			if err := os.WriteFile(file, []byte(renderConfig(tc.listen, tc.admin, routesTo(origin))), 0o600); err != nil {
				t.Fatal(err)
			}
			p := startProc(t, "edge", "-config", file)
			if code := p.wait(t, 15*time.Second); code != 1 {
				t.Fatalf("exit code = %d, want 1\n%s", code, p.stderr)
			}
			var msg string
			for _, l := range p.logLines() {
				if l.Message == "cannot start" {
					msg = l.Error
				}
			}
			for _, w := range tc.want {
				if !strings.Contains(msg, w) {
					t.Errorf("'cannot start' error %q lacks %q\nstderr:\n%s", msg, w, p.stderr)
				}
			}
		})
	}
}

// TestDemoSelftest runs the quick start, scripts/demo.sh, in self-test mode: it builds meshgate,
// the demo app and its gRPC client, starts a Consul dev agent, web-1, api-1, api-2 and echo-1
// (gRPC) each behind a meshgate sidecar, and a Connect edge, then checks the mesh with curl
// (edge → sidecar → app over mTLS, both api instances, the web → api chain, intentions allowing
// and denying) and with one grpc-go call (edge → echo-1's sidecar over h2 and mTLS → echo-1),
// finds one request's trace in Jaeger and its access-log lines in nats-server's JetStream, and
// stops it all.
func TestDemoSelftest(t *testing.T) {
	if testing.Short() {
		t.Skip("builds four binaries and Consul (cached) and runs the whole demo; skipped with -short")
	}
	for _, tool := range []string{"bash", "curl"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("%s not available: %v", tool, err)
		}
	}
	// The demo would build Jaeger (minutes) or apt-get nats-server itself, longer than this
	// test may take: scripts/test.sh provides both beforehand.
	if _, err := demoJaegerBinary(os.Getenv); err != nil {
		if os.Getenv("CI") != "" {
			t.Fatalf("%v: CI must run scripts/install-jaeger.sh first (scripts/test.sh does)", err)
		}
		t.Skipf("%v; run scripts/install-jaeger.sh (several minutes, once) to run the demo's self-test", err)
	}
	if _, err := demoNATSServer(os.Getenv); err != nil {
		if os.Getenv("CI") != "" {
			t.Fatalf("%v: CI must install Debian's nats-server package (scripts/test.sh does)", err)
		}
		t.Skipf("%v; install Debian's nats-server package to run the demo's self-test", err)
	}
	t.Parallel()
	ctx, cancel := context.WithTimeout(t.Context(), 4*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "bash", "scripts/demo.sh")
	cmd.Env = append(os.Environ(), "DEMO_SELFTEST=1", "DEMO_BIN="+t.TempDir())
	// Its own process group, so a timeout can stop everything it started too.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
	cmd.WaitDelay = 10 * time.Second
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("DEMO_SELFTEST=1 scripts/demo.sh: %v\n%s", err, out)
	}
	for _, want := range []string{
		// What the user is told to try.
		"curl -s http://127.0.0.1:", "/calls-api", "/v1/config", "/identity", "/ui/", "Dashboard (open it in a browser",
		"/grpccall -addr 127.0.0.1:",
		"Traces (Jaeger", "/api/traces --data-urlencode service=edge", "natstail -server nats://127.0.0.1:",
		// Each check of the self-test.
		"selftest: ok: edge → web-1's sidecar (mTLS, identity edge) → web-1",
		"selftest: ok: edge → api alternates over both instances",
		"selftest: ok: web-1 → its sidecar → api-",
		"selftest: ok: L7 intention: POST /api/hello from edge → 403",
		"selftest: ok: deny intention web → api: /calls-api answers 403",
		"selftest: ok: allow intention restored",
		"selftest: ok: gRPC UnaryCall: grpc-go → edge → echo-1's sidecar (h2, mTLS, identity edge) → echo-1",
		"selftest: ok: admin APIs answer",
		"selftest: ok: trace in jaeger: edge → web-1's sidecar → web-1 → its sidecar → api-",
		"selftest: ok: access logs in nats: request ",
		"selftest: ok: dashboard http://127.0.0.1:",
		"selftest: ok: edge and sidecars exit 0 on SIGTERM; sidecars deregistered from consul",
		"selftest: PASS",
	} {
		if !bytes.Contains(out, []byte(want)) {
			t.Errorf("demo output lacks %q:\n%s", want, out)
		}
	}
	// The promise: after the first build, a request goes edge → sidecar → app within a
	// minute. The build is not timed here (a cold build cache under -race is slow).
	m := regexp.MustCompile(`first request edge → sidecar → app answered ([0-9.]+)s after start \(build ([0-9.]+)s, mesh ([0-9.]+)s\)`).FindSubmatch(out)
	if m == nil {
		t.Fatalf("demo output lacks the time to the first request:\n%s", out)
	}
	if mesh, _ := strconv.ParseFloat(string(m[3]), 64); mesh >= 60 {
		t.Errorf("from starting consul to the first request took %ss, want under a minute", m[3])
	}
	t.Logf("demo: first request %ss after start (build %ss, mesh %ss)", m[1], m[2], m[3])
}

// demoJaegerBinary is the jaeger binary scripts/demo.sh will use: $MESHGATE_JAEGER_BIN, else
// the one scripts/install-jaeger.sh caches (the same layout: per Jaeger version and Go
// toolchain). It fails when that is not an executable file.
func demoJaegerBinary(getenv func(string) string) (string, error) {
	path := getenv("MESHGATE_JAEGER_BIN")
	if path == "" {
		cache := getenv("MESHGATE_CACHE")
		if cache == "" {
			base := getenv("XDG_CACHE_HOME")
			if base == "" {
				base = filepath.Join(getenv("HOME"), ".cache")
			}
			cache = filepath.Join(base, "meshgate")
		}
		path = filepath.Join(cache, "jaeger-1.75.0-"+runtime.Version(), "jaeger")
	}
	return path, executableFile(path, "jaeger")
}

// demoNATSServer is the nats-server scripts/demo.sh will use: $MESHGATE_NATS_SERVER_BIN, else
// nats-server on PATH, else Debian's /usr/sbin/nats-server (/usr/sbin is not on every PATH).
func demoNATSServer(getenv func(string) string) (string, error) {
	if path := getenv("MESHGATE_NATS_SERVER_BIN"); path != "" {
		return path, executableFile(path, "nats-server")
	}
	path, err := exec.LookPath("nats-server")
	if err != nil {
		if executableFile("/usr/sbin/nats-server", "nats-server") == nil {
			return "/usr/sbin/nats-server", nil
		}
		return "", fmt.Errorf("nats-server not found: %w", err)
	}
	return path, nil
}

func executableFile(path, what string) error {
	fi, err := os.Stat(path)
	if err != nil {
		return fmt.Errorf("%s not found: %w", what, err)
	}
	if !fi.Mode().IsRegular() || fi.Mode().Perm()&0o111 == 0 {
		return fmt.Errorf("%s: %s is not an executable file", what, path)
	}
	return nil
}

// ---------------------------------------------------------------------------------------------
// Helpers.

// proc is a running meshgate process. It is killed in t.Cleanup if the test did not end it.
type proc struct {
	cmd            *exec.Cmd
	stdout, stderr *syncbuf.Buffer
	done           chan struct{} // closed when the process has exited and its output is copied
	code           int           // valid after done
}

func startProc(t *testing.T, args ...string) *proc {
	t.Helper()
	return startProcEnv(t, nil, args...)
}

// startProcEnv is startProc with extra environment variables on top of the test's own.
func startProcEnv(t *testing.T, env []string, args ...string) *proc {
	t.Helper()
	p := &proc{cmd: exec.Command(meshgateBin, args...), stdout: &syncbuf.Buffer{}, stderr: &syncbuf.Buffer{}, done: make(chan struct{})}
	p.cmd.Stdout, p.cmd.Stderr = p.stdout, p.stderr
	if env != nil {
		p.cmd.Env = append(os.Environ(), env...)
	}
	if err := p.cmd.Start(); err != nil {
		t.Fatalf("start meshgate %v: %v", args, err)
	}
	go func() {
		defer close(p.done)
		err := p.cmd.Wait()
		var ee *exec.ExitError
		switch {
		case err == nil:
		case errors.As(err, &ee):
			p.code = ee.ExitCode() // -1 when killed by a signal
		default:
			p.code = -2
		}
	}()
	t.Cleanup(func() {
		if !p.exited() {
			_ = p.cmd.Process.Kill()
		}
		<-p.done
	})
	return p
}

func (p *proc) exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// wait returns the exit code, failing the test if the process outlives timeout.
func (p *proc) wait(t *testing.T, timeout time.Duration) int {
	t.Helper()
	select {
	case <-p.done:
		return p.code
	case <-time.After(timeout):
		t.Fatalf("meshgate did not exit within %s\nstderr:\n%s", timeout, p.stderr)
		return 0
	}
}

func (p *proc) signal(t *testing.T, sig os.Signal) {
	t.Helper()
	if err := p.cmd.Process.Signal(sig); err != nil {
		t.Fatalf("signal %s: %v", sig, err)
	}
}

type logLine struct {
	Level   string `json:"level"`
	Message string `json:"message"`
	Error   string `json:"error"`
}

// logLines parses the process's JSON log; lines that are not JSON (config problems printed
// before the logger exists) are skipped.
func (p *proc) logLines() []logLine {
	var out []logLine
	sc := bufio.NewScanner(strings.NewReader(p.stderr.String()))
	sc.Buffer(make([]byte, 0, 64*1024), 1<<20)
	for sc.Scan() {
		var l logLine
		if json.Unmarshal(sc.Bytes(), &l) == nil {
			out = append(out, l)
		}
	}
	return out
}

func (p *proc) logged(message string) bool {
	for _, l := range p.logLines() {
		if l.Message == message {
			return true
		}
	}
	return false
}

// edge is a running `meshgate edge` with its config file and addresses.
type edge struct {
	proc          *proc
	cfgPath       string
	listen, admin string
}

// renderConfig is the common part of every test config; body adds routes and discovery.
func renderConfig(listen, admin, body string) string {
	return fmt.Sprintf(`# written by main_test.go
admin:
  address: %s
listeners:
  - name: public
    address: %s
access_log: { output: "off" }
shutdown: { drain_timeout: 10s }
`, admin, listen) + body
}

func (e *edge) render(body string) string { return renderConfig(e.listen, e.admin, body) }

func routesTo(origin string) string {
	return fmt.Sprintf(`routes:
  - name: all
    match: { path_prefix: / }
    to: [ { service: a } ]
discovery:
  static:
    a: [ %s ]
`, origin)
}

// routesWithV2 adds /v2/ → b in front of the catch-all (equal priorities keep file order).
func routesWithV2(a, b string) string {
	return fmt.Sprintf(`routes:
  - name: v2
    match: { path_prefix: /v2/ }
    to: [ { service: b } ]
  - name: all
    match: { path_prefix: / }
    to: [ { service: a } ]
discovery:
  static:
    a: [ %s ]
    b: [ %s ]
`, a, b)
}

// startEdge writes a config on ports picked now and starts meshgate until /ready answers 200.
// A port picked free can be taken by someone else before meshgate binds it; then it retries
// with new ports.
func startEdge(t *testing.T, body string) *edge {
	t.Helper()
	return startEdgeEnv(t, body, nil)
}

// startEdgeEnv is startEdge with extra environment variables on top of the test's own (a later
// value of the same name wins).
func startEdgeEnv(t *testing.T, body string, env []string) *edge {
	t.Helper()
	dir := t.TempDir()
	for attempt := 1; ; attempt++ {
		e := &edge{cfgPath: filepath.Join(dir, "meshgate.yaml"), listen: closedAddr(t), admin: closedAddr(t)}
		e.writeConfig(t, body, false)
		e.proc = startProcEnv(t, env, "edge", "-config", e.cfgPath)
		err := waitReady(e.proc, e.admin, 20*time.Second)
		if err == nil {
			return e
		}
		if e.proc.exited() && strings.Contains(e.proc.stderr.String(), "address already in use") && attempt < 3 {
			t.Logf("port clash, retrying: %s", e.proc.stderr)
			continue
		}
		t.Fatalf("meshgate edge did not become ready: %v\nstderr:\n%s", err, e.proc.stderr)
	}
}

func waitReady(p *proc, admin string, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for {
		if p.exited() {
			return fmt.Errorf("exited with code %d", p.code)
		}
		code, _, err := get("http://" + admin + "/ready")
		if err == nil && code == http.StatusOK {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("not ready within %s: code=%d err=%v", timeout, code, err)
		}
		time.Sleep(20 * time.Millisecond) // poll interval, not synchronisation
	}
}

// writeConfig replaces the config file, by rename (what editors and templaters do) or in place.
func (e *edge) writeConfig(t *testing.T, body string, rename bool) {
	t.Helper()
	data := []byte(e.render(body))
	if !rename {
		if err := os.WriteFile(e.cfgPath, data, 0o600); err != nil {
			t.Fatal(err)
		}
		return
	}
	tmp := e.cfgPath + ".tmp"
	if err := os.WriteFile(tmp, data, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, e.cfgPath); err != nil {
		t.Fatal(err)
	}
}

func (e *edge) bodyIs(path, want string) error {
	code, body, err := get("http://" + e.listen + path)
	if err != nil {
		return err
	}
	if code != http.StatusOK || body != want {
		return fmt.Errorf("GET %s = %d %q, want 200 %q", path, code, body, want)
	}
	return nil
}

func (e *edge) expectBody(t *testing.T, path, want string) {
	t.Helper()
	if err := e.bodyIs(path, want); err != nil {
		t.Error(err)
	}
}

// metricIs checks one sample line of /metrics, e.g. `name{label="x"}` has value want.
func (e *edge) metricIs(series, want string) error {
	_, body, err := get("http://" + e.admin + "/metrics")
	if err != nil {
		return err
	}
	for _, l := range strings.Split(body, "\n") {
		if v, ok := strings.CutPrefix(l, series+" "); ok {
			if v != want {
				return fmt.Errorf("%s = %s, want %s", series, v, want)
			}
			return nil
		}
	}
	return fmt.Errorf("%s not in /metrics", series)
}

// client never reuses connections: a kept-alive idle connection would make drain tests depend
// on how the server treats idle clients rather than on in-flight requests.
var client = &http.Client{
	Timeout:   15 * time.Second,
	Transport: &http.Transport{DisableKeepAlives: true},
}

func get(url string) (int, string, error) {
	resp, err := client.Get(url)
	if err != nil {
		return 0, "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b), err
}

// startOrigin is an upstream answering name (or running h) on a port picked by the kernel.
func startOrigin(t *testing.T, name string, h http.HandlerFunc) string {
	t.Helper()
	if h == nil {
		h = func(w http.ResponseWriter, _ *http.Request) { fmt.Fprint(w, name) }
	}
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	return strings.TrimPrefix(srv.URL, "http://")
}

// closedAddr picks a loopback port that was free a moment ago.
func closedAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	if err := ln.Close(); err != nil {
		t.Fatal(err)
	}
	return addr
}

// eventually polls cond until it succeeds or timeout passes.
func eventually(t *testing.T, timeout time.Duration, what string, cond func() error) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		err := cond()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within %s: %v", what, timeout, err)
		}
		time.Sleep(25 * time.Millisecond) // poll interval, not synchronisation
	}
}

// lineOf is the 1-based line of the first line of text containing s.
func lineOf(t *testing.T, text, s string) int {
	t.Helper()
	for i, l := range strings.Split(text, "\n") {
		if strings.Contains(l, s) {
			return i + 1
		}
	}
	t.Fatalf("%q not in config", s)
	return 0
}

// ---------------------------------------------------------------------------------------------
// systemd notification (Type=notify), against the real binary.

// notifySocket is a unixgram socket standing in for systemd's NOTIFY_SOCKET; every datagram
// the process sends arrives on msgs in order.
type notifySocket struct {
	path string
	msgs chan string
}

func listenNotify(t *testing.T) *notifySocket {
	t.Helper()
	// A short directory of its own: a unix socket path must fit in 108 bytes, which a
	// t.TempDir() under a long test name can exceed.
	dir, err := os.MkdirTemp("", "sdn")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	n := &notifySocket{path: filepath.Join(dir, "notify"), msgs: make(chan string, 64)}
	conn, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: n.path, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		buf := make([]byte, 4096)
		for {
			m, _, err := conn.ReadFromUnix(buf)
			if err != nil {
				return // closed by the cleanup below
			}
			n.msgs <- string(buf[:m])
		}
	}()
	t.Cleanup(func() { conn.Close(); <-done })
	return n
}

// next returns the next datagram, failing the test after timeout.
func (n *notifySocket) next(t *testing.T, p *proc, what string, timeout time.Duration) string {
	t.Helper()
	select {
	case m := <-n.msgs:
		return m
	case <-time.After(timeout):
		t.Fatalf("no sd_notify message %s within %s\nstderr:\n%s", what, timeout, p.stderr)
		return ""
	}
}

// untilReady reads the messages of one reload: one or more RELOADING=1 (the first with
// MONOTONIC_USEC, which Type=notify-reload needs), then READY=1.
func (n *notifySocket) untilReady(t *testing.T, p *proc, what string) {
	t.Helper()
	first := n.next(t, p, what+": RELOADING=1", 10*time.Second)
	if !hasLine(first, "RELOADING=1") || !regexp.MustCompile(`(?m)^MONOTONIC_USEC=[1-9][0-9]*$`).MatchString(first) {
		t.Fatalf("%s: first message = %q, want RELOADING=1 with MONOTONIC_USEC", what, first)
	}
	for {
		m := n.next(t, p, what+": READY=1", 10*time.Second)
		if hasLine(m, "READY=1") {
			return
		}
		if !hasLine(m, "RELOADING=1") {
			t.Fatalf("%s: got %q between RELOADING=1 and READY=1", what, m)
		}
	}
}

func hasLine(msg, line string) bool {
	for _, l := range strings.Split(msg, "\n") {
		if l == line {
			return true
		}
	}
	return false
}

func TestEdgeNotifiesSystemd(t *testing.T) {
	t.Parallel()
	n := listenNotify(t)
	a := startOrigin(t, "a", nil)
	b := startOrigin(t, "b", nil)
	e := &edge{cfgPath: filepath.Join(t.TempDir(), "meshgate.yaml"), listen: closedAddr(t), admin: closedAddr(t)}
	e.writeConfig(t, routesTo(a), false)
	e.proc = startProcEnv(t, []string{"NOTIFY_SOCKET=" + n.path}, "edge", "-config", e.cfgPath)

	// READY=1 must be the first message, and at the moment it arrives the listener must already
	// accept and /ready must already answer 200: systemd starts dependent units on READY=1.
	var first string
	select {
	case first = <-n.msgs:
	case <-e.proc.done:
		t.Fatalf("exited with %d before READY=1\nstderr:\n%s", e.proc.code, e.proc.stderr)
	case <-time.After(20 * time.Second):
		t.Fatalf("no READY=1 within 20s\nstderr:\n%s", e.proc.stderr)
	}
	conn, dialErr := net.DialTimeout("tcp", e.listen, 2*time.Second)
	readyCode, _, readyErr := get("http://" + e.admin + "/ready")
	if first != "READY=1" {
		t.Fatalf("first sd_notify message = %q, want READY=1", first)
	}
	if dialErr != nil {
		t.Fatalf("READY=1 arrived but the listener does not accept: %v", dialErr)
	}
	conn.Close()
	if readyErr != nil || readyCode != http.StatusOK {
		t.Fatalf("READY=1 arrived but /ready = %d, %v", readyCode, readyErr)
	}
	e.expectBody(t, "/x", "a")

	// SIGHUP of an unchanged file: what `systemctl reload` sends.
	e.proc.signal(t, syscall.SIGHUP)
	n.untilReady(t, e.proc, "SIGHUP")

	// A file change with no signal is a reload too.
	e.writeConfig(t, routesWithV2(a, b), true)
	n.untilReady(t, e.proc, "file change")
	e.expectBody(t, "/v2/x", "b")

	// An invalid file on SIGHUP is rejected, and systemd still must hear READY=1 or
	// `systemctl reload` hangs until its timeout.
	if err := os.WriteFile(e.cfgPath, []byte("listeners: [ {"), 0o600); err != nil {
		t.Fatal(err)
	}
	e.proc.signal(t, syscall.SIGHUP)
	// The invalid write itself may be seen by the watcher first (OnError sends a bare READY=1);
	// what matters is that the SIGHUP's RELOADING=1 is followed by READY=1.
	for {
		m := n.next(t, e.proc, "invalid file: RELOADING=1", 10*time.Second)
		if hasLine(m, "RELOADING=1") {
			break
		}
		if m != "READY=1" {
			t.Fatalf("invalid file: got %q, want RELOADING=1", m)
		}
	}
	for m := ""; !hasLine(m, "READY=1"); {
		m = n.next(t, e.proc, "invalid file: READY=1", 10*time.Second)
		if !hasLine(m, "READY=1") && !hasLine(m, "RELOADING=1") {
			t.Fatalf("invalid file: got %q, want READY=1", m)
		}
	}
	e.expectBody(t, "/v2/x", "b") // the running config stayed

	e.proc.signal(t, syscall.SIGTERM)
	if m := n.next(t, e.proc, "after SIGTERM", 10*time.Second); m != "STOPPING=1" {
		t.Fatalf("after SIGTERM: message = %q, want STOPPING=1", m)
	}
	if code := e.proc.wait(t, 15*time.Second); code != 0 {
		t.Fatalf("exit code = %d, want 0\n%s", code, e.proc.stderr)
	}
	// Nothing may follow STOPPING=1: a late READY=1 would tell systemd a stopping unit is up.
	select {
	case m := <-n.msgs:
		t.Fatalf("message after STOPPING=1: %q", m)
	default:
	}
}

// ---------------------------------------------------------------------------------------------
// systemd units (deploy/systemd).

// TestSystemdUnitsVerify runs `systemd-analyze verify` on the shipped units. verify only warns
// (exit 0) about unknown keys and unparsable values, so any output at all fails the test. It
// checks that ExecStart's binary exists, so the units are verified from a copy pointing at the
// binary TestMain built; the template is verified through an instance, which is what loads it.
func TestSystemdUnitsVerify(t *testing.T) {
	analyze, err := exec.LookPath("systemd-analyze")
	if err != nil {
		if os.Getenv("CI") != "" {
			t.Fatalf("systemd-analyze not found (%v): CI must install Debian's systemd package", err)
		}
		t.Skipf("systemd-analyze not found (%v); install the systemd package to verify the units", err)
	}
	dir := t.TempDir()
	for _, name := range []string{"meshgate.service", "meshgate@.service"} {
		data, err := os.ReadFile(filepath.Join("deploy", "systemd", name))
		if err != nil {
			t.Fatal(err)
		}
		unit := string(data)
		for _, want := range []string{
			"Type=notify\n", "ExecReload=/bin/kill -HUP $MAINPID\n", "KillSignal=SIGTERM\n",
			"DynamicUser=yes\n", "NoNewPrivileges=yes\n", "ProtectSystem=strict\n",
			"CapabilityBoundingSet=CAP_NET_BIND_SERVICE\n", "LimitNOFILE=1048576\n", "Restart=on-failure\n",
		} {
			if !strings.Contains(unit, "\n"+want) {
				t.Errorf("%s: missing %q", name, strings.TrimSpace(want))
			}
		}
		// The stop timeout must outlast the default drain, or systemd kills requests the drain
		// would have finished.
		m := regexp.MustCompile(`(?m)^TimeoutStopSec=(\d+)s$`).FindStringSubmatch(unit)
		if m == nil {
			t.Errorf("%s: no TimeoutStopSec=<n>s", name)
		} else if n, _ := strconv.Atoi(m[1]); time.Duration(n)*time.Second <= 30*time.Second {
			t.Errorf("%s: TimeoutStopSec=%ss does not exceed the 30s default drain_timeout", name, m[1])
		}
		// validate must check the very file the service then runs.
		pre := regexp.MustCompile(`(?m)^ExecStartPre=/usr/local/bin/meshgate validate -config (\S+)$`).FindStringSubmatch(unit)
		start := regexp.MustCompile(`(?m)^ExecStart=/usr/local/bin/meshgate edge -config (\S+)$`).FindStringSubmatch(unit)
		if pre == nil || start == nil || pre[1] != start[1] {
			t.Errorf("%s: ExecStartPre validate and ExecStart edge must name the same -config; got %q and %q", name, pre, start)
		}
		unit = strings.ReplaceAll(unit, "/usr/local/bin/meshgate", meshgateBin)
		if err := os.WriteFile(filepath.Join(dir, name), []byte(unit), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, analyze, "verify",
		filepath.Join(dir, "meshgate.service"), filepath.Join(dir, "meshgate@edge1.service"))
	out, err := cmd.CombinedOutput()
	if err != nil || len(bytes.TrimSpace(out)) > 0 {
		t.Fatalf("systemd-analyze verify: %v\n%s", err, out)
	}
}

func TestSysmonEnv(t *testing.T) {
	t.Parallel()
	for _, c := range []struct {
		name    string
		environ []string
		want    []string // nil: no re-execution
	}{
		{"no GODEBUG", []string{"PATH=/bin"}, []string{"PATH=/bin", "GODEBUG=" + schedtraceSetting}},
		{"other GODEBUG settings kept", []string{"GODEBUG=madvdontneed=1", "HOME=/"}, []string{"GODEBUG=madvdontneed=1," + schedtraceSetting, "HOME=/"}},
		{"empty GODEBUG", []string{"GODEBUG="}, []string{"GODEBUG=" + schedtraceSetting}},
		{"the operator's own schedtrace wins", []string{"GODEBUG=gctrace=1,schedtrace=1000"}, nil},
		{"already re-executed", []string{"GODEBUG=" + schedtraceSetting}, nil},
		{"opted out", []string{"MESHGATE_SYSMON=sleep", "PATH=/bin"}, nil},
		{"another value is not an opt-out", []string{"MESHGATE_SYSMON=poll"}, []string{"MESHGATE_SYSMON=poll", "GODEBUG=" + schedtraceSetting}},
	} {
		in := append([]string(nil), c.environ...)
		got, reexec := sysmonEnv(in)
		if reexec != (c.want != nil) || (c.want != nil && strings.Join(got, "\n") != strings.Join(c.want, "\n")) {
			t.Errorf("%s: sysmonEnv(%q) = %q, %v; want %q", c.name, c.environ, got, reexec, c.want)
		}
		if strings.Join(in, "\n") != strings.Join(c.environ, "\n") {
			t.Errorf("%s: the caller's slice was modified: %q", c.name, in)
		}
	}
}

// TestServingCommandsKeepSysmonPolling: `meshgate edge` re-executes itself in place with the
// GODEBUG setting (main_sysmon.go): the process the test started, same PID, runs with it and is
// still named after the binary, and `version` (a short command) is never re-executed.
func TestServingCommandsKeepSysmonPolling(t *testing.T) {
	t.Parallel()
	if runtime.GOOS != "linux" {
		t.Skip("the re-execution is Linux only")
	}
	// Whatever the developer's shell exports (MESHGATE_SYSMON=sleep for a benchmark A/B, a
	// GODEBUG of their own), this edge starts from the default.
	e := startEdgeEnv(t, routesTo(startOrigin(t, "a", nil)), []string{sysmonEnvVar + "=", "GODEBUG="})
	pid := e.proc.cmd.Process.Pid
	environ, err := os.ReadFile(fmt.Sprintf("/proc/%d/environ", pid))
	if err != nil {
		t.Fatal(err)
	}
	vars := strings.Split(string(environ), "\x00")
	if !slices.Contains(vars, "GODEBUG="+schedtraceSetting) {
		godebug := slices.DeleteFunc(vars, func(kv string) bool {
			return !strings.HasPrefix(kv, "GODEBUG=") && !strings.HasPrefix(kv, sysmonEnvVar+"=")
		})
		t.Errorf("edge (pid %d) runs without GODEBUG=%s; it has %q", pid, schedtraceSetting, godebug)
	}
	comm, err := os.ReadFile(fmt.Sprintf("/proc/%d/comm", pid))
	if err != nil {
		t.Fatal(err)
	}
	if got, want := strings.TrimSpace(string(comm)), filepath.Base(meshgateBin); !strings.HasPrefix(want, got) {
		t.Errorf("the re-executed edge is named %q, want %q", got, want)
	}
	e.expectBody(t, "/x", "a")
}
