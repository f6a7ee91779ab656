package admin

import (
	"io"
	"net/http"
	"strings"
	"testing"
)

// doHost sends GET path with the given Host header, as a DNS-rebinding browser would (its Host
// is the attacker's name while the socket is ours).
func doHost(t *testing.T, base, path, host string) response {
	t.Helper()
	client := &http.Client{Timeout: waitLimit, Transport: &http.Transport{DisableKeepAlives: true}}
	req, err := http.NewRequestWithContext(t.Context(), http.MethodGet, base+path, nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Host = host
	resp, err := client.Do(req)
	if err != nil {
		t.Fatalf("GET %s Host %q: %v", path, host, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return response{status: resp.StatusCode, header: resp.Header, body: string(body)}
}

func TestHostCheckRefusesForeignHosts(t *testing.T) {
	t.Parallel()
	opts := testOptions(t)
	opts.AllowedHosts = []string{"admin.internal", "10.1.2.3"}
	r := start(t, opts)
	port := r.base[strings.LastIndex(r.base, ":")+1:]
	tests := []struct {
		host, path string
		want       int
	}{
		{"localhost:" + port, "/config", 200},
		{"LOCALHOST.", "/config", 200},
		{"127.0.0.1:" + port, "/config", 200},
		{"127.9.8.7", "/clusters", 200},
		{"[::1]:" + port, "/config", 200},
		{"[::1]", "/routes", 200},
		{"admin.internal:" + port, "/config", 200},
		{"Admin.Internal", "/metrics", 200},
		{"10.1.2.3:9901", "/config", 200},
		{"evil.example", "/config", 403},
		{"evil.example:" + port, "/ready", 403},
		{"evil.example", "/metrics", 403},
		{"evil.example", "/nope", 403}, // no probing of which paths exist either
		{"localhost.evil.example", "/config", 403},
		{"127.0.0.1.evil.example", "/config", 403},
		{"sub.admin.internal", "/config", 403},
		{"10.1.2.4", "/config", 403},
		{"0x7f000001", "/config", 403},
		// /live stays open for orchestrator probes (see hostGuard.wrap).
		{"evil.example", "/live", 200},
	}
	for _, tt := range tests {
		t.Run(tt.host+tt.path, func(t *testing.T) {
			t.Parallel()
			got := doHost(t, r.base, tt.path, tt.host)
			if got.status != tt.want {
				t.Fatalf("status = %d, want %d (body %q)", got.status, tt.want, got.body)
			}
			if tt.want == 403 {
				if got.body != hostRefused {
					t.Errorf("body = %q, want %q", got.body, hostRefused)
				}
				if strings.Contains(got.body, "admin:\n  address") {
					t.Error("refused request still got the config")
				}
			}
		})
	}
}

func TestHostGuardBoundIP(t *testing.T) {
	t.Parallel()
	tests := []struct {
		address, host string
		want          bool
	}{
		// A Consul HTTP check or curl to the admin's own IP carries that IP as Host.
		{"10.0.0.5:9901", "10.0.0.5:9901", true},
		{"10.0.0.5:9901", "10.0.0.6:9901", false},
		{"[fd00::5]:9901", "[fd00::5]:9901", true},
		// A wildcard bind names no IP: only loopback and allowed_hosts.
		{"0.0.0.0:9901", "0.0.0.0:9901", false},
		{"0.0.0.0:9901", "10.0.0.5:9901", false},
		{"0.0.0.0:9901", "127.0.0.1:9901", true},
		{"0.0.0.0:9901", "[::ffff:127.0.0.1]:9901", true},
		{"0.0.0.0:9901", "", true},
	}
	for _, tt := range tests {
		if got := newHostGuard(tt.address, nil).allows(tt.host); got != tt.want {
			t.Errorf("address %s: allows(%q) = %v, want %v", tt.address, tt.host, got, tt.want)
		}
	}
}
