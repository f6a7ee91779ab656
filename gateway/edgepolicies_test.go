package gateway

import (
	"net/http"
	"strings"
	"testing"
)

// TestEdgePoliciesEndToEnd: ip, cors and headers policies on routes of a real edge.
func TestEdgePoliciesEndToEnd(t *testing.T) {
	t.Parallel()
	up, seen := startUpstream(t, "origin", nil)
	yaml := strings.Replace(minimal(hostport(up)), "    to: [ { service: origin } ]\n",
		"    to: [ { service: origin } ]\n    policies: [ browsers, transform ]\n", 1) + `
policies:
  browsers: { cors: { origins: [ "https://*.example.test" ], methods: [ GET, PUT ], headers: [ X-Token ], credentials: true } }
  transform:
    headers:
      request: { set: { X-From-Edge: "1" }, remove: [ X-Internal ] }
      response: { set: { X-Served-By: meshgate } }
      rewrite_path_regex: "^/v1/(.*)$"
      rewrite_path_replacement: "/api/$1"
  office: { ip: { allow: [ 10.0.0.0/8 ] } }
routes_extra: {}
`
	yaml = strings.Replace(yaml, "routes_extra: {}\n", "", 1)
	e := startEdge(t, yaml)

	// Preflight answered at the edge.
	req, _ := http.NewRequest(http.MethodOptions, e.url+"/v1/x", nil)
	req.Header.Set("Origin", "https://app.example.test")
	req.Header.Set("Access-Control-Request-Method", "PUT")
	req.Header.Set("Access-Control-Request-Headers", "X-Token")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusNoContent || resp.Header.Get("Access-Control-Allow-Origin") != "https://app.example.test" {
		t.Fatalf("preflight: %d %v", resp.StatusCode, resp.Header)
	}
	if len(seen.reqs) != 0 {
		t.Fatal("the preflight reached the upstream")
	}

	// Actual request: headers transformed both ways, path rewritten, CORS echoed.
	got, body := get(t, e.url+"/v1/items?q=1", map[string]string{"Origin": "https://app.example.test", "X-Internal": "secret"})
	if got.StatusCode != http.StatusOK || string(body) != "hello from origin" {
		t.Fatalf("GET: %d %q", got.StatusCode, body)
	}
	if got.Header.Get("X-Served-By") != "meshgate" || got.Header.Get("Access-Control-Allow-Credentials") != "true" {
		t.Fatalf("response headers: %v", got.Header)
	}
	r, _ := seen.last(t)
	if r.URL.Path != "/api/items" || r.URL.RawQuery != "q=1" || r.Header.Get("X-From-Edge") != "1" || r.Header.Get("X-Internal") != "" {
		t.Fatalf("upstream saw %s?%s with headers %v", r.URL.Path, r.URL.RawQuery, r.Header)
	}

	// A disallowed origin's preflight is refused.
	req, _ = http.NewRequest(http.MethodOptions, e.url+"/v1/x", nil)
	req.Header.Set("Origin", "https://evil.test")
	req.Header.Set("Access-Control-Request-Method", "PUT")
	if resp, err = http.DefaultClient.Do(req); err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusForbidden || resp.Header.Get("Access-Control-Allow-Origin") != "" {
		t.Fatalf("evil preflight: %d %v", resp.StatusCode, resp.Header)
	}
}

// TestIPPolicyUsesTrustedClientAddress: an allow list for 10/8 refuses a loopback client even
// when it claims a 10/8 address in X-Forwarded-For (loopback is not a trusted proxy here).
func TestIPPolicyUsesTrustedClientAddress(t *testing.T) {
	t.Parallel()
	up, seen := startUpstream(t, "origin", nil)
	yaml := strings.Replace(minimal(hostport(up)), "    to: [ { service: origin } ]\n",
		"    to: [ { service: origin } ]\n    policies: [ office ]\n", 1) +
		"policies: { office: { ip: { allow: [ 10.0.0.0/8 ] } } }\n"
	e := startEdge(t, yaml)
	resp, body := get(t, e.url+"/", map[string]string{"X-Forwarded-For": "10.1.2.3"})
	if resp.StatusCode != http.StatusForbidden || !strings.Contains(string(body), "ip_denied") {
		t.Fatalf("spoofed XFF: %d %s", resp.StatusCode, body)
	}
	if len(seen.reqs) != 0 {
		t.Fatal("a denied request reached the upstream")
	}
}
