package main

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"time"
)

const (
	jwtIssuer   = "meshgate-bench-issuer"
	jwtAudience = "bench-api"
)

// jwt compares two edges that differ only in an RS256 jwt policy whose key
// comes from a loopback JWKS (target: ≥ 85% of the throughput).
func (h *harness) jwt(ctx context.Context) (string, error) {
	origin, err := h.startOrigin(ctx, "origin")
	if err != nil {
		return "", err
	}
	h.logf("generating the key pair and token; starting the JWKS server")
	dir, err := h.dir("jwks")
	if err != nil {
		return "", err
	}
	out, err := exec.CommandContext(ctx, h.bins.jwtgen, "-dir", dir, "-issuer", jwtIssuer, "-audience", jwtAudience,
		"-subject", "bench-user", "-kid", "bench-1", "-ttl", "1h").Output()
	token := strings.TrimSpace(string(out))
	if err != nil || token == "" {
		return "", fmt.Errorf("jwtgen failed (%v) or printed no token", err)
	}
	jwks, err := serveJWKS(ctx, filepath.Join(dir, "jwks.json"))
	if err != nil {
		return "", err
	}
	defer jwks.close()
	bearer := "Authorization: Bearer " + token
	vals := func(policies string) map[string]string {
		return map[string]string{"ORIGIN_PORT": strconv.Itoa(origin.port), "ROUTE_POLICIES": policies,
			"JWKS_URL": jwks.url, "ISSUER": jwtIssuer, "AUDIENCE": jwtAudience}
	}
	var ts []*target
	for _, s := range []struct{ name, note, policies string }{
		{"nojwt", "meshgate edge, route without policies (the token header is sent but ignored), access log off", "[ ]"},
		{"jwt", "meshgate edge, route with a jwt policy (RS256, RSA-2048, key from a loopback JWKS, issuer and audience checked), access log off", "[ token ]"},
	} {
		h.logf("starting %s", s.name)
		t, err := h.startMeshgate(ctx, meshgateSpec{name: s.name, tmpl: "meshgate-jwt.yaml.tmpl", note: s.note,
			vals: vals(s.policies), readyHeader: bearer})
		if err != nil {
			return "", err
		}
		ts = append(ts, t)
	}
	nojwt, jwtT := ts[0], ts[1]
	checksBefore, ok := jwtChecks(ctx, jwtT, nojwt, token)
	if !ok {
		return "", fmt.Errorf("the jwt policy does not behave as expected; not measuring:\n%s", checksBefore)
	}
	h.logf("status checks passed")
	fetchesBefore := jwks.fetches.Load()
	extra := []string{"-H", bearer}
	r, err := h.measure(ctx, ts, extra)
	if err != nil {
		return "", err
	}
	fetchesAfter := jwks.fetches.Load()
	checksAfter, _ := jwtChecks(ctx, jwtT, nojwt, token)
	names := []string{"nojwt", "jwt"}
	rr := r.median("jwt", rps) / r.median("nojwt", rps)

	var b strings.Builder
	b.WriteString(h.head("meshgate JWT verification overhead"))
	b.WriteString(h.resultsTable(r, names))
	fmt.Fprintf(&b, "jwt/nojwt req/s ratio (of medians): %s — %s\n", ratio(r.median("jwt", rps), r.median("nojwt", rps)), targetVerdict(rr, 0.85))
	fmt.Fprintf(&b, "jwt/nojwt p50 ratio: %s, p99 ratio: %s (lower is better)\n\n",
		ratio(r.median("jwt", p50), r.median("nojwt", p50)), ratio(r.median("jwt", p99), r.median("nojwt", p99)))
	b.WriteString(perRoundRatios(r, "jwt", "nojwt", "Per round (jwt/nojwt req/s):"))
	fmt.Fprintf(&b, "\n## Policy check\n\nBefore the load:\n\n%s\nAfter the load:\n\n%s\n", checksBefore, checksAfter)
	b.WriteString("- wrk errors column: any non-2xx from the jwt edge is a token it rejected under load.\n")
	fmt.Fprintf(&b, "- JWKS fetches (both edges, GET /jwks.json): %d at start, %d during the load (0 = keys served from cache)\n\n",
		fetchesBefore, fetchesAfter-fetchesBefore)
	b.WriteString("## Targets\n\n")
	for _, t := range ts {
		fmt.Fprintf(&b, "- %s: %s\n", t.name, t.note)
	}
	fmt.Fprintf(&b, "- token: RS256, RSA-2048, %d bytes, kid/iss/aud/sub/iat/exp (1 h), fresh per run (scripts/bench/jwtgen)\n", len(token))
	b.WriteString("- both instances run side by side (started once) and wrk alternates between them; only one is loaded at a time. wrk sends the same Authorization header to both.\n")
	fmt.Fprintf(&b, "- note: wrk, meshgate and the origin share the same %d CPUs.\n\n", nproc())
	b.WriteString(h.roundsTable("Rounds", r, names))
	fmt.Fprintf(&b, "Raw wrk output: %s/\n", h.rawDir())
	return b.String(), nil
}

// jwtChecks is one markdown line per expected answer of the two edges, and
// whether every answer was the expected one.
func jwtChecks(ctx context.Context, jwtT, nojwt *target, token string) (string, bool) {
	// Flip the signature's first character: same header and claims, bad signature.
	i := strings.LastIndexByte(token, '.')
	flip := "A"
	if token[i+1] == 'A' {
		flip = "B"
	}
	bad := token[:i+1] + flip + token[i+2:]
	checks := []struct {
		what   string
		want   int
		url    string
		header string
	}{
		{"jwt edge, valid token", 200, jwtT.url("/"), "Authorization: Bearer " + token},
		{"jwt edge, no token", 401, jwtT.url("/"), ""},
		{"jwt edge, tampered signature", 401, jwtT.url("/"), "Authorization: Bearer " + bad},
		{"nojwt edge, no token", 200, nojwt.url("/"), ""},
	}
	var b strings.Builder
	ok := true
	for _, c := range checks {
		got, _, err := httpDo(ctx, http.MethodGet, c.url, c.header, nil)
		if err == nil && got == c.want {
			fmt.Fprintf(&b, "- %s: %d (expected %d)\n", c.what, got, c.want)
			continue
		}
		ok = false
		fmt.Fprintf(&b, "- **FLAGGED** %s: %d (expected %d; %v)\n", c.what, got, c.want, err)
	}
	return b.String(), ok
}

// jwksServer serves the run's JWKS on loopback and counts its fetches: the
// policy must fetch it once and then serve every request from its cache.
type jwksServer struct {
	url     string
	fetches atomic.Int64
	srv     *http.Server
}

func serveJWKS(ctx context.Context, path string) (*jwksServer, error) {
	body, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	l, err := (&net.ListenConfig{}).Listen(ctx, "tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	j := &jwksServer{url: fmt.Sprintf("http://%s/jwks.json", l.Addr())}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /jwks.json", func(w http.ResponseWriter, _ *http.Request) {
		j.fetches.Add(1)
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write(body)
	})
	j.srv = &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	go func() { _ = j.srv.Serve(l) }()
	return j, nil
}

func (j *jwksServer) close() { _ = j.srv.Close() }
