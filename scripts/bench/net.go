package main

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"time"
)

// freePorts returns n distinct free loopback TCP ports. They are held open
// together while chosen so that the n are distinct; the window between release
// and use is tiny and only other processes on this machine could race us.
func freePorts(n int) ([]int, error) {
	var held []net.Listener
	defer func() {
		for _, l := range held {
			_ = l.Close()
		}
	}()
	ports := make([]int, 0, n)
	for range n {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, fmt.Errorf("free port: %w", err)
		}
		held = append(held, l)
		ports = append(ports, l.Addr().(*net.TCPAddr).Port)
	}
	return ports, nil
}

// freeTCPUDPPorts is freePorts for a Consul agent, whose DNS and serf ports
// use both protocols: a TCP-only probe can hand out a port whose UDP side is
// taken (what scripts/freeports.py does for demo.sh).
func freeTCPUDPPorts(n int) ([]int, error) {
	var held []io.Closer
	defer func() {
		for _, c := range held {
			_ = c.Close()
		}
	}()
	ports := make([]int, 0, n)
	for len(ports) < n {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, fmt.Errorf("free port: %w", err)
		}
		// Kept open even when UDP fails, so the port is not picked again.
		held = append(held, l)
		port := l.Addr().(*net.TCPAddr).Port
		u, err := net.ListenPacket("udp", fmt.Sprintf("127.0.0.1:%d", port))
		if err != nil {
			continue
		}
		held = append(held, u)
		ports = append(ports, port)
	}
	return ports, nil
}

// httpClient is the harness's own client for checks (not load): short
// timeouts, no proxy from the environment (every peer is on loopback).
func httpClient() *http.Client {
	return &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{Proxy: nil, DisableKeepAlives: true}}
}

// httpDo sends one request and returns the status and body. header is
// "Name: value" or empty.
func httpDo(ctx context.Context, method, url, header string, body []byte) (int, []byte, error) {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, method, url, bytes.NewReader(body))
	if err != nil {
		return 0, nil, err
	}
	if name, value, ok := strings.Cut(header, ":"); ok {
		req.Header.Set(strings.TrimSpace(name), strings.TrimSpace(value))
	}
	resp, err := httpClient().Do(req)
	if err != nil {
		return 0, nil, err
	}
	defer func() { _ = resp.Body.Close() }() // read-side close: nothing to act on
	b, err := io.ReadAll(resp.Body)
	return resp.StatusCode, b, err
}

func httpGet(ctx context.Context, url string) ([]byte, error) {
	st, b, err := httpDo(ctx, http.MethodGet, url, "", nil)
	if err != nil {
		return nil, err
	}
	if st != http.StatusOK {
		return b, fmt.Errorf("GET %s: status %d", url, st)
	}
	return b, nil
}

// originOK is the readiness of a path: 200 with the origin's 1024-byte body
// proves the whole chain (proxy → origin) works, not just that a port is open.
func originOK(header string) func(ctx context.Context, url string) bool {
	return func(ctx context.Context, url string) bool {
		st, b, err := httpDo(ctx, http.MethodGet, url, header, nil)
		return err == nil && st == http.StatusOK && len(b) == 1024
	}
}

// nonEmptyOK is the readiness of a Consul agent (/v1/status/leader answers
// "" before it has a leader) and of meshgate's /ready.
func nonEmptyOK(ctx context.Context, url string) bool {
	st, b, err := httpDo(ctx, http.MethodGet, url, "", nil)
	b = bytes.TrimSpace(b)
	return err == nil && st == http.StatusOK && len(b) > 0 && string(b) != `""`
}

// waitReady polls url every 100 ms until ok says so, p exits (errExited) or
// timeout passes; the errors carry the tail of p's log.
func waitReady(ctx context.Context, p *proc, url string, timeout time.Duration, ok func(context.Context, string) bool) error {
	deadline := time.Now().Add(timeout)
	for !ok(ctx, url) {
		if p.exited() {
			return fmt.Errorf("%s %w (log %s):\n%s", p.name, errExited, p.logPath, tail(p.logPath, 20))
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%s not ready at %s after %s (log %s):\n%s", p.name, url, timeout, p.logPath, tail(p.logPath, 20))
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
	}
	return nil
}
