package gateway

import (
	"context"
	"errors"
	"net/http"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hashicorp/consul/api"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/rs/zerolog"
	"github.com/valyala/fasthttp"

	"github.com/meshgate/meshgate/discovery"
	"github.com/meshgate/meshgate/gateway/listener"
	"github.com/meshgate/meshgate/internal/consuldev"
	"github.com/meshgate/meshgate/mesh/identity"
	"github.com/meshgate/meshgate/mesh/lb"
	"github.com/meshgate/meshgate/mesh/upstream"
)

// startIdentity runs an identity manager for service against the agent until the test ends.
func startIdentity(t *testing.T, p identity.Provider, service string) *identity.Manager {
	t.Helper()
	m, err := identity.New(identity.Options{Provider: p, Service: service, Logger: zerolog.Nop()})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- m.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("identity %s: Run: %v", service, err)
			}
		case <-time.After(10 * time.Second):
			t.Errorf("identity %s: Run did not return", service)
		}
	})
	return m
}

// TestMeshMTLSHop wires one merged hop by hand, with Consul Connect certificates: an upstream
// cluster dialling as "web" with ClientTLSConfig("api") reaches a TLS listener serving as
// "api" with ServerTLSConfig, which sees the caller's identity; a cluster expecting "db"
// refuses the same server during the handshake, before anything is sent.
func TestMeshMTLSHop(t *testing.T) {
	t.Parallel()
	agent := consuldev.Start(t)
	tr := &http.Transport{}
	t.Cleanup(tr.CloseIdleConnections)
	client, err := api.NewClient(&api.Config{Address: agent.HTTPAddr, Transport: tr})
	if err != nil {
		t.Fatal(err)
	}
	p, err := identity.NewConsulProvider(identity.ConsulProviderOptions{Client: client, WaitTime: 2 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	apiID := startIdentity(t, p, "api")
	webID := startIdentity(t, p, "web")
	waitFor(t, "identities ready", func() bool { return apiID.Ready() && webID.Ready() })

	var served atomic.Int64
	ln, err := listener.New(listener.Options{
		Name:              "inbound",
		Address:           "127.0.0.1:0",
		ReadHeaderTimeout: 10 * time.Second,
		ReadTimeout:       10 * time.Second,
		WriteTimeout:      10 * time.Second,
		IdleTimeout:       time.Minute,
		MaxHeaderBytes:    16 << 10,
		StreamThreshold:   64 << 10,
		Logger:            zerolog.Nop(),
		TLSConfig:         apiID.ServerTLSConfig(),
		Handler: func(ctx *fasthttp.RequestCtx) {
			served.Add(1)
			peer, err := identity.PeerID(*ctx.TLSConnectionState())
			if err != nil {
				ctx.Error(err.Error(), fasthttp.StatusForbidden)
				return
			}
			ctx.SetBodyString("api sees " + peer.Service)
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	serveDone := make(chan error, 1)
	go func() { serveDone <- ln.Serve() }()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := ln.Shutdown(ctx); err != nil {
			t.Errorf("shutdown: %v", err)
		}
		if err := <-serveDone; err != nil {
			t.Errorf("serve: %v", err)
		}
	})

	um, err := upstream.NewManager(upstream.ManagerOptions{Registerer: prometheus.NewRegistry(), Logger: zerolog.Nop()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(um.Close)

	tests := []struct {
		name    string
		expect  string
		wantErr bool
	}{
		{name: "web expecting api", expect: "api"},
		{name: "web expecting db", expect: "db", wantErr: true},
	}
	// Sequential: both count requests on the shared listener.
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := um.Ensure(upstream.Options{
				Name:           "to-" + tt.expect,
				Policy:         lb.NewRoundRobin(),
				ConnectTimeout: 5 * time.Second,
				TLS:            webID.ClientTLSConfig(tt.expect),
			})
			if err != nil {
				t.Fatal(err)
			}
			c.Apply(discovery.Set{Service: tt.expect, Source: "test",
				Endpoints: []discovery.Endpoint{{Address: ln.Addr().String(), Weight: 1}}})
			req, resp := fasthttp.AcquireRequest(), fasthttp.AcquireResponse()
			defer fasthttp.ReleaseRequest(req)
			defer fasthttp.ReleaseResponse(resp)
			req.SetRequestURI("/hello")
			req.Header.SetHost(tt.expect)
			err = c.Do(req, resp, &upstream.Call{Idempotent: true, Replayable: true,
				Deadline: time.Now().Add(10 * time.Second)})
			if tt.wantErr {
				if !errors.Is(err, upstream.ErrConnect) || !errors.Is(err, identity.ErrVerify) {
					t.Fatalf("err = %v, want ErrConnect carrying identity.ErrVerify", err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if resp.StatusCode() != 200 || string(resp.Body()) != "api sees web" {
				t.Fatalf("status %d body %q", resp.StatusCode(), resp.Body())
			}
		})
	}
	// The successful request was answered, so its handler has run.
	if served := served.Load(); served != 1 {
		t.Fatalf("api served %d requests, want 1 (the refused handshake must send nothing)", served)
	}
}
