package gateway

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/meshgate/meshgate/conf"
	"github.com/meshgate/meshgate/internal/await"
	"github.com/meshgate/meshgate/internal/plugintest"
)

// examplePlugins builds the example plugins once per test binary: linking gRPC three times per
// test would dominate the run on two cores.
var examplePlugins = sync.OnceValues(plugintest.BuildExamples)

// pluginYAML is a plugins: entry for an example binary, with its real checksum.
func pluginYAML(t *testing.T, name, binary, extra string) string {
	t.Helper()
	dir, err := examplePlugins()
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, binary)
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(b)
	return fmt.Sprintf("  %s:\n    path: %s\n    sha256: %s\n%s", name, path, hex.EncodeToString(sum[:]), extra)
}

// TestPluginPoliciesEndToEnd: an auth plugin that denies with its own answer, and a stamper
// that edits the request and the response, in one route's chain, as real processes.
func TestPluginPoliciesEndToEnd(t *testing.T) {
	t.Parallel()
	up, seen := startUpstream(t, "origin", nil)
	keySum := sha256.Sum256([]byte("alice-key"))
	yaml := minimal(hostport(up)) + "plugins:\n" +
		pluginYAML(t, "auth", "apikey", "    config: { keys: [ { consumer: alice, sha256: "+hex.EncodeToString(keySum[:])+" } ] }\n") +
		pluginYAML(t, "stamp", "stamper", "    config: { request: { X-Stamped-By: meshgate }, response: { X-Stamp: out } }\n") +
		"policies: { auth: { plugin: auth }, stamp: { plugin: stamp } }\n"
	yaml = strings.Replace(yaml, "    to: [ { service: origin } ]\n", "    to: [ { service: origin } ]\n    policies: [ auth, stamp ]\n", 1)
	e := startEdge(t, yaml)

	resp, body := get(t, e.url+"/x", nil)
	if resp.StatusCode != http.StatusUnauthorized || resp.Header.Get("WWW-Authenticate") == "" {
		t.Fatalf("no key: %d %q %v", resp.StatusCode, body, resp.Header)
	}
	if len(seen.reqs) != 0 {
		t.Fatal("a denied request reached the upstream")
	}
	resp, body = get(t, e.url+"/x", map[string]string{"X-Api-Key": "alice-key"})
	if resp.StatusCode != http.StatusOK || string(body) != "hello from origin" {
		t.Fatalf("with key: %d %q", resp.StatusCode, body)
	}
	if resp.Header.Get("X-Stamp") != "out" {
		t.Fatalf("response header from the stamper missing: %v", resp.Header)
	}
	req, _ := seen.last(t)
	if req.Header.Get("X-Stamped-By") != "meshgate" || req.Header.Get("X-Api-Key") != "" {
		t.Fatalf("upstream saw X-Stamped-By %q, X-Api-Key %q", req.Header.Get("X-Stamped-By"), req.Header.Get("X-Api-Key"))
	}
	code, _ := status(t, "http://"+e.admin+"/plugins")
	if code != http.StatusOK {
		t.Fatalf("/plugins = %d", code)
	}

	// Reload with a new stamper config: applied without a restart of the proxy.
	cfg, err := conf.Parse("reload.yaml", []byte(strings.Replace(yaml, "X-Stamped-By: meshgate", "X-Stamped-By: reloaded", 1)))
	if err != nil {
		t.Fatal(err)
	}
	if err := e.edge.Reload(cfg); err != nil {
		t.Fatalf("reload: %v", err)
	}
	get(t, e.url+"/x", map[string]string{"X-Api-Key": "alice-key"})
	if req, _ = seen.last(t); req.Header.Get("X-Stamped-By") != "reloaded" {
		t.Fatalf("after reload the upstream saw X-Stamped-By %q", req.Header.Get("X-Stamped-By"))
	}

	// A plugin whose checksum does not match is refused, and the running config stays.
	if cfg, err = conf.Parse("bad.yaml", []byte(wrongChecksum(yaml, "stamper"))); err != nil {
		t.Fatal(err)
	}
	if err := e.edge.Reload(cfg); err == nil || !strings.Contains(err.Error(), "stamp") {
		t.Fatalf("reload with a wrong checksum: err = %v, want an error naming the plugin", err)
	}
	get(t, e.url+"/x", map[string]string{"X-Api-Key": "alice-key"})
	if req, _ = seen.last(t); req.Header.Get("X-Stamped-By") != "reloaded" {
		t.Fatalf("after a refused reload the upstream saw X-Stamped-By %q", req.Header.Get("X-Stamped-By"))
	}
}

// wrongChecksum flips the first hex digit of binary's sha256 in yaml.
func wrongChecksum(yaml, binary string) string {
	i := strings.Index(yaml, binary+"\n    sha256: ")
	j := i + len(binary+"\n    sha256: ")
	d := byte('0')
	if yaml[j] == '0' {
		d = '1'
	}
	return yaml[:j] + string(d) + yaml[j+1:]
}

// TestPluginCrashUnderLoad: a plugin process that dies mid-load is restarted; requests in the
// gap get the failure policy (closed: 503), never a crash of the proxy or a hang.
func TestPluginCrashUnderLoad(t *testing.T) {
	t.Parallel()
	up, _ := startUpstream(t, "origin", nil)
	yaml := minimal(hostport(up)) + "plugins:\n" +
		pluginYAML(t, "chaos", "misbehave", "    failure_policy: closed\n") +
		"policies: { chaos: { plugin: chaos } }\n"
	yaml = strings.Replace(yaml, "    to: [ { service: origin } ]\n", "    to: [ { service: origin } ]\n    policies: [ chaos ]\n", 1)
	e := startEdge(t, yaml)

	if code, _ := status(t, e.url+"/before"); code != http.StatusOK {
		t.Fatalf("before the crash: %d", code)
	}
	resp, _ := get(t, e.url+"/crash", map[string]string{"X-Misbehave": "crash"})
	if resp.StatusCode != http.StatusServiceUnavailable {
		t.Fatalf("the crashing call: %d, want 503 (closed)", resp.StatusCode)
	}
	var ok, unavailable, other atomic.Int64
	start := time.Now()
	await.Until(t, 20*time.Second, "plugin restarted and answering", func() bool {
		code, _ := status(t, e.url+"/after")
		switch code {
		case http.StatusOK:
			ok.Add(1)
			return true
		case http.StatusServiceUnavailable:
			unavailable.Add(1)
		default:
			other.Add(1)
		}
		return false
	})
	t.Logf("plugin back after %s; %d requests in the gap got 503", time.Since(start).Round(time.Millisecond), unavailable.Load())
	if other.Load() != 0 {
		t.Fatalf("%d requests in the gap got something other than 200 or 503", other.Load())
	}
	if got := edgeMetricValue(t, e.admin, `meshgate_plugin_restarts_total{plugin="chaos"}`); got == "" || got == "0" {
		t.Fatalf("restarts metric = %q, want ≥ 1", got)
	}
}
