package sdk_test

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/go-plugin"

	"github.com/meshgate/meshgate/internal/await"
	pb "github.com/meshgate/meshgate/plugins/proto"
	"github.com/meshgate/meshgate/plugins/sdk"

	"github.com/meshgate/meshgate/internal/plugintest"
	"github.com/meshgate/meshgate/internal/syncbuf"
)

// These tests run the example plugins as real processes through go-plugin's client, configured
// the way the host does it: gRPC only, AutoMTLS, and the binary's SHA-256 checked before start.

// binDir holds the example plugins, built once by TestMain: building them per test would cost
// a link of gRPC each time on a 2-core machine.
var binDir string

func TestMain(m *testing.M) {
	os.Exit(plugintest.Main(m, &binDir))
}

func binary(name string) string { return filepath.Join(binDir, name) }

func checksum(t testing.TB, path string) []byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(b)
	return sum[:]
}

type launched struct {
	client *sdk.Client
	proc   *plugin.Client
	log    *syncbuf.Buffer
}

// clientConfig is how the host starts a plugin.
func clientConfig(path string, sum []byte, log io.Writer) *plugin.ClientConfig {
	return &plugin.ClientConfig{
		HandshakeConfig:  sdk.Handshake(),
		Plugins:          sdk.PluginSet(),
		Cmd:              exec.Command(path),
		AllowedProtocols: []plugin.Protocol{plugin.ProtocolGRPC},
		AutoMTLS:         true,
		SecureConfig:     &plugin.SecureConfig{Checksum: sum, Hash: sha256.New()},
		StartTimeout:     20 * time.Second,
		Logger:           hclog.New(&hclog.LoggerOptions{Name: "plugin", Output: log, Level: hclog.Debug}),
		// The plugin's raw stdio stream; its log lines come through Logger instead.
		SyncStdout: io.Discard,
		SyncStderr: io.Discard,
	}
}

func launch(t testing.TB, name string) launched {
	t.Helper()
	path := binary(name)
	log := &syncbuf.Buffer{}
	proc := plugin.NewClient(clientConfig(path, checksum(t, path), log))
	t.Cleanup(func() {
		proc.Kill()
		if t.Failed() {
			t.Logf("host log for %s:\n%s", name, log)
		}
	})
	cp, err := proc.Client()
	if err != nil {
		t.Fatalf("start %s: %v", name, err)
	}
	c, err := sdk.Dispense(cp)
	if err != nil {
		t.Fatal(err)
	}
	return launched{client: c, proc: proc, log: log}
}

// call bounds every plugin call the way the host does.
func call(t testing.TB) (context.Context, context.CancelFunc) {
	t.Helper()
	return context.WithTimeout(t.Context(), 10*time.Second)
}

func header(name, value string) *pb.Header {
	return &pb.Header{Name: []byte(name), Value: []byte(value)}
}

func TestStamper(t *testing.T) {
	t.Parallel()
	p := launch(t, "stamper")
	ctx, cancel := call(t)
	defer cancel()

	caps, err := p.client.Describe(ctx)
	if err != nil {
		t.Fatal(err)
	}
	// The default configuration stamps requests only, so the plugin narrows itself to that phase.
	if caps.Name != "stamper" || caps.Phases != sdk.PhaseRequest || caps.CanDeny ||
		caps.Request.Headers.All || len(caps.Request.Headers.Names) != 0 || caps.Request.Body {
		t.Errorf("capabilities = %+v", caps)
	}

	caps, err = p.client.Configure(ctx, []byte(`{"request":{"X-Stamp":"meshgate","X-A":"1"},"response":{"X-Served-Via":"meshgate"}}`))
	if err != nil {
		t.Fatal(err)
	}
	if caps.Phases != sdk.PhaseRequest|sdk.PhaseResponse {
		t.Errorf("configured with response headers: phases %v, want request and response", caps.Phases)
	}
	var d pb.RequestDecision
	if err := p.client.OnRequest(ctx, &pb.RequestPhase{Route: "all", Method: []byte("GET"), Path: []byte("/")}, &d); err != nil {
		t.Fatal(err)
	}
	want := []string{"X-A: 1", "X-Stamp: meshgate"}
	if got := headerLines(d.GetProceed().GetSetHeaders()); !slices.Equal(got, want) {
		t.Errorf("set headers = %q, want %q", got, want)
	}
	var m pb.ResponseMutation
	if err := p.client.OnResponse(ctx, &pb.ResponsePhase{Route: "all", Status: 200}, &m); err != nil {
		t.Fatal(err)
	}
	if got := headerLines(m.GetSetHeaders()); !slices.Equal(got, []string{"X-Served-Via: meshgate"}) {
		t.Errorf("response set headers = %q", got)
	}

	// A rejected configuration is the user's to read, and the previous one stays.
	_, err = p.client.Configure(ctx, []byte(`{"request":{"bad name":"x"}}`))
	if !errors.Is(err, sdk.ErrInvalidConfig) || !strings.Contains(err.Error(), `"bad name" is not a valid header name`) {
		t.Fatalf("bad config: err = %v", err)
	}
	if err := p.client.OnRequest(ctx, &pb.RequestPhase{}, &d); err != nil {
		t.Fatal(err)
	}
	if got := headerLines(d.GetProceed().GetSetHeaders()); !slices.Equal(got, want) {
		t.Errorf("after rejected config: set headers = %q, want %q", got, want)
	}

	// The plugin's own log line reaches the host's logger under the plugin's name, at its level.
	await.Until(t, 10*time.Second, "the plugin's log line in the host log", func() bool {
		return strings.Contains(p.log.String(), "[INFO]  plugin.stamper: configured")
	})
}

func headerLines(hs []*pb.Header) []string {
	out := make([]string, len(hs))
	for i, h := range hs {
		out[i] = string(h.GetName()) + ": " + string(h.GetValue())
	}
	return out
}

func TestAPIKey(t *testing.T) {
	t.Parallel()
	p := launch(t, "apikey")
	ctx, cancel := call(t)
	defer cancel()

	caps, err := p.client.Describe(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if !caps.CanDeny || caps.Phases != sdk.PhaseRequest {
		t.Errorf("capabilities = %+v, want a request-phase plugin that can deny", caps)
	}

	// Unconfigured, it fails rather than deciding, so the host's (closed) policy answers.
	var d pb.RequestDecision
	if err := p.client.OnRequest(ctx, &pb.RequestPhase{}, &d); !errors.Is(err, sdk.ErrFailed) {
		t.Errorf("unconfigured: err = %v, want ErrFailed", err)
	}

	billing := sha256.Sum256([]byte("billing-secret"))
	config := fmt.Sprintf(`{"header":"X-Key","keys":[
		{"consumer":"billing","sha256":%q},
		{"consumer":"reports","key":"reports-secret","routes":["reports"]}]}`, hex.EncodeToString(billing[:]))
	caps, err = p.client.Configure(ctx, []byte(config))
	if err != nil {
		t.Fatal(err)
	}
	// What it needs follows its configuration: only the header it was told to read.
	if !slices.Equal(caps.Request.Headers.Names, []string{"X-Key"}) || caps.Request.Headers.All {
		t.Errorf("configured capabilities ask for %+v, want only X-Key", caps.Request.Headers)
	}

	tests := []struct {
		name         string
		route        string
		headers      []*pb.Header
		wantStatus   uint32 // 0: continue
		wantConsumer string
	}{
		{name: "missing", route: "api", wantStatus: 401},
		{name: "unknown", route: "api", headers: []*pb.Header{header("X-Key", "guess")}, wantStatus: 401},
		{name: "hashed key", route: "api", headers: []*pb.Header{header("x-key", "billing-secret")}, wantConsumer: "billing"},
		{name: "plain key on its route", route: "reports", headers: []*pb.Header{header("X-Key", "reports-secret")}, wantConsumer: "reports"},
		{name: "plain key elsewhere", route: "api", headers: []*pb.Header{header("X-Key", "reports-secret")}, wantStatus: 403},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var d pb.RequestDecision
			if err := p.client.OnRequest(ctx, &pb.RequestPhase{Route: tt.route, Headers: tt.headers}, &d); err != nil {
				t.Fatal(err)
			}
			if tt.wantStatus != 0 {
				r := d.GetRespond()
				if r.GetStatus() != tt.wantStatus {
					t.Fatalf("decision = %v, want status %d", &d, tt.wantStatus)
				}
				if tt.wantStatus == 401 && !slices.Contains(headerLines(r.GetHeaders()), `WWW-Authenticate: ApiKey header="X-Key"`) {
					t.Errorf("401 without a challenge: %q", headerLines(r.GetHeaders()))
				}
				return
			}
			c := d.GetProceed()
			if c.GetConsumer() != tt.wantConsumer {
				t.Errorf("decision = %v, want consumer %q", &d, tt.wantConsumer)
			}
			// The key never travels upstream.
			if len(c.GetRemoveHeaders()) != 1 || string(c.GetRemoveHeaders()[0]) != "X-Key" {
				t.Errorf("remove headers = %q, want X-Key", c.GetRemoveHeaders())
			}
		})
	}

	for _, bad := range []struct{ config, want string }{
		{`{"keys":[]}`, "at least one key"},
		{`{"keys":[{"consumer":"a","sha256":"abc"}]}`, "keys[0].sha256: want 64 hex digits"},
		{`{"keys":[{"consumer":"a","key":"k"},{"consumer":"b","key":"k"}]}`, "keys[1]: same key as keys[0]"},
		{`{"keys":[{"key":"k"}]}`, "keys[0].consumer: required"},
		{`{"keyz":[]}`, `unknown field "keyz"`},
	} {
		if _, err := p.client.Configure(ctx, []byte(bad.config)); !errors.Is(err, sdk.ErrInvalidConfig) || !strings.Contains(err.Error(), bad.want) {
			t.Errorf("Configure(%s): err = %v, want %q", bad.config, err, bad.want)
		}
	}
}

func TestMisbehaveCrash(t *testing.T) {
	t.Parallel()
	p := launch(t, "misbehave")
	ctx, cancel := call(t)
	defer cancel()

	var d pb.RequestDecision
	if err := p.client.OnRequest(ctx, &pb.RequestPhase{}, &d); err != nil {
		t.Fatalf("well-behaved call: %v", err)
	}
	err := p.client.OnRequest(ctx, &pb.RequestPhase{Headers: []*pb.Header{header("X-Misbehave", "crash")}}, &d)
	if !errors.Is(err, sdk.ErrUnavailable) {
		t.Errorf("crash mid-call: err = %v, want ErrUnavailable", err)
	}
	select {
	case <-p.client.Exited():
	case <-time.After(10 * time.Second):
		t.Fatal("Client.Exited() not closed 10s after the crash")
	}
	if !p.proc.Exited() {
		t.Error("plugin.Client.Exited() = false after the crash")
	}
	// Later calls fail at once instead of dialling a dead socket.
	start := time.Now()
	if err := p.client.OnRequest(ctx, &pb.RequestPhase{}, &d); !errors.Is(err, sdk.ErrUnavailable) {
		t.Errorf("call after exit: err = %v, want ErrUnavailable", err)
	}
	if took := time.Since(start); took > time.Second {
		t.Errorf("call after exit took %s", took)
	}
	await.Until(t, 10*time.Second, "the crash in the host log", func() bool {
		return strings.Contains(p.log.String(), "crashing on command")
	})
}

func TestMisbehaveHangHitsTheDeadline(t *testing.T) {
	t.Parallel()
	p := launch(t, "misbehave")
	ctx, cancel := context.WithTimeout(t.Context(), 200*time.Millisecond)
	defer cancel()

	var d pb.RequestDecision
	start := time.Now()
	err := p.client.OnRequest(ctx, &pb.RequestPhase{Headers: []*pb.Header{header("X-Misbehave", "hang")}}, &d)
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("hang: err = %v, want context.DeadlineExceeded", err)
	}
	if took := time.Since(start); took > 5*time.Second {
		t.Errorf("hang returned after %s, want about the 200ms deadline", took)
	}

	// The hung call costs the plugin nothing: the next one is answered.
	ctx2, cancel2 := call(t)
	defer cancel2()
	if err := p.client.OnRequest(ctx2, &pb.RequestPhase{}, &d); err != nil {
		t.Errorf("call after a hang: %v", err)
	}
	if p.proc.Exited() {
		t.Error("plugin exited after a hang")
	}
}

func TestMisbehaveOnCommand(t *testing.T) {
	t.Parallel()
	p := launch(t, "misbehave")
	ctx, cancel := call(t)
	defer cancel()

	var d pb.RequestDecision
	start := time.Now()
	if err := p.client.OnRequest(ctx, &pb.RequestPhase{Headers: []*pb.Header{header("X-Misbehave", "slow=50ms")}}, &d); err != nil {
		t.Fatal(err)
	}
	if took := time.Since(start); took < 50*time.Millisecond {
		t.Errorf("slow=50ms answered in %s", took)
	}
	for _, cmd := range []string{"error", "panic", "bogus"} {
		err := p.client.OnRequest(ctx, &pb.RequestPhase{Headers: []*pb.Header{header("X-Misbehave", cmd)}}, &d)
		if !errors.Is(err, sdk.ErrFailed) {
			t.Errorf("%s: err = %v, want ErrFailed", cmd, err)
		}
	}
	if p.proc.Exited() {
		t.Fatal("a panic in a handler took the plugin process down")
	}

	// From config: every second request errors, and the header is no longer obeyed.
	caps, err := p.client.Configure(ctx, []byte(`{"mode":"error","every":2,"obey_header":false}`))
	if err != nil {
		t.Fatal(err)
	}
	if len(caps.Request.Headers.Names) != 0 {
		t.Errorf("ignoring the header, it still asks for %v", caps.Request.Headers.Names)
	}
	failed := 0
	for range 4 {
		if err := p.client.OnRequest(ctx, &pb.RequestPhase{Headers: []*pb.Header{header("X-Misbehave", "crash")}}, &d); err != nil {
			failed++
		}
	}
	if failed != 2 {
		t.Errorf("every=2: %d of 4 calls failed, want 2", failed)
	}
	if _, err := p.client.Configure(ctx, []byte(`{"mode":"slow"}`)); !errors.Is(err, sdk.ErrInvalidConfig) ||
		!strings.Contains(err.Error(), "slow needs a duration") {
		t.Errorf("bad mode: err = %v", err)
	}
}

func TestChecksumMismatchIsRefused(t *testing.T) {
	t.Parallel()
	// The stamper's binary with the apikey's checksum: what a swapped or tampered file looks like.
	log := &syncbuf.Buffer{}
	proc := plugin.NewClient(clientConfig(binary("stamper"), checksum(t, binary("apikey")), log))
	defer proc.Kill()
	_, err := proc.Client()
	if !errors.Is(err, plugin.ErrChecksumsDoNotMatch) {
		t.Fatalf("err = %v, want plugin.ErrChecksumsDoNotMatch", err)
	}
	if !strings.Contains(err.Error(), "checksums did not match") {
		t.Errorf("err = %q, want a message that says the checksums did not match", err)
	}
}

func TestStartedByHandExplains(t *testing.T) {
	t.Parallel()
	ctx, cancel := call(t)
	defer cancel()
	out, err := exec.CommandContext(ctx, binary("stamper")).CombinedOutput()
	var exit *exec.ExitError
	if !errors.As(err, &exit) || exit.ExitCode() != 1 {
		t.Fatalf("err = %v, want exit status 1", err)
	}
	if !strings.Contains(string(out), "This binary is a plugin") {
		t.Errorf("output = %q", out)
	}
}

// BenchmarkOnRequest is the round trip of one OnRequest call to the stamper (which asks for no
// request parts and sets one header): gRPC over go-plugin's unix socket with AutoMTLS. It
// reports the p50 and p99 of single calls besides the mean.
func BenchmarkOnRequest(b *testing.B) {
	p := launch(b, "stamper")
	ctx := b.Context()
	in := &pb.RequestPhase{RequestId: []byte("0af7651916cd43dd8448eb211c80319c"), Route: "all",
		Method: []byte("GET"), Path: []byte("/api/orders")}
	var out pb.RequestDecision
	// Warm the connection so the first measured call is not the TLS handshake.
	for range 100 {
		if err := p.client.OnRequest(ctx, in, &out); err != nil {
			b.Fatal(err)
		}
	}
	lat := make([]time.Duration, 0, 1<<16)
	b.ResetTimer()
	for b.Loop() {
		start := time.Now()
		callCtx, cancel := context.WithTimeout(ctx, time.Second)
		err := p.client.OnRequest(callCtx, in, &out)
		cancel()
		if err != nil {
			b.Fatal(err)
		}
		if len(lat) < cap(lat) {
			lat = append(lat, time.Since(start))
		}
	}
	b.StopTimer()
	slices.Sort(lat)
	if len(lat) > 0 {
		b.ReportMetric(float64(lat[len(lat)/2].Nanoseconds()), "p50-ns")
		b.ReportMetric(float64(lat[len(lat)*99/100].Nanoseconds()), "p99-ns")
	}
}

// BenchmarkOnRequestParallel is the same call from many goroutines, as a busy proxy makes it.
func BenchmarkOnRequestParallel(b *testing.B) {
	p := launch(b, "stamper")
	ctx := b.Context()
	in := &pb.RequestPhase{Route: "all", Method: []byte("GET"), Path: []byte("/api/orders")}
	b.RunParallel(func(pb_ *testing.PB) {
		var out pb.RequestDecision
		for pb_.Next() {
			callCtx, cancel := context.WithTimeout(ctx, time.Second)
			err := p.client.OnRequest(callCtx, in, &out)
			cancel()
			if err != nil {
				b.Error(err)
				return
			}
		}
	})
}
