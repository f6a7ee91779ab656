package gateway

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/consul/api"
	"google.golang.org/grpc/codes"
	testpb "google.golang.org/grpc/interop/grpc_testing"
	grpcstatus "google.golang.org/grpc/status"

	"github.com/meshgate/meshgate/conf"
	"github.com/meshgate/meshgate/internal/await"
	"github.com/meshgate/meshgate/internal/consuldev"
)

// clusterProtocol reads a cluster's protocol from the admin /clusters page.
func clusterProtocol(t *testing.T, admin, name string) string {
	t.Helper()
	resp, err := http.Get("http://" + admin + "/clusters")
	if err != nil {
		return ""
	}
	defer resp.Body.Close()
	var out []struct {
		Name     string `json:"name"`
		Protocol string `json:"protocol"`
	}
	b, _ := io.ReadAll(resp.Body)
	if json.Unmarshal(b, &out) != nil {
		var wrapped struct {
			Clusters []struct {
				Name     string `json:"name"`
				Protocol string `json:"protocol"`
			} `json:"clusters"`
		}
		if json.Unmarshal(b, &wrapped) != nil {
			t.Fatalf("clusters page: %s", b)
		}
		for _, c := range wrapped.Clusters {
			out = append(out, struct {
				Name     string `json:"name"`
				Protocol string `json:"protocol"`
			}{c.Name, c.Protocol})
		}
	}
	for _, c := range out {
		if c.Name == name {
			return c.Protocol
		}
	}
	return ""
}

// TestGRPCThroughTheMesh: a gRPC app behind a meshgate sidecar, reached by the edge directly
// (the merged hop: h2 over Connect mTLS) and by another app through its own sidecar's
// upstream bind (h2c from the app, h2 between the sidecars). The protocol comes from Consul's
// service-defaults entry for the edge and web's sidecar; api's sidecar speaks h2c to its app
// because sidecar.service.protocol says grpc. Intentions with L7 permissions apply to gRPC
// method paths.
func TestGRPCThroughTheMesh(t *testing.T) {
	t.Parallel()
	agent := consuldev.Start(t)
	client := agentClient(t, agent.HTTPAddr)
	if _, _, err := client.ConfigEntries().Set(&api.ServiceConfigEntry{Kind: api.ServiceDefaults, Name: "api", Protocol: "grpc"}, nil); err != nil {
		t.Fatalf("service-defaults: %v", err)
	}
	if _, _, err := client.ConfigEntries().Set(&api.ServiceIntentionsConfigEntry{Kind: api.ServiceIntentions, Name: "api", Sources: []*api.SourceIntention{
		{Name: "edge", Permissions: []*api.IntentionPermission{
			{Action: api.IntentionActionDeny, HTTP: &api.IntentionHTTPPermission{PathExact: "/grpc.testing.TestService/EmptyCall"}},
			{Action: api.IntentionActionAllow, HTTP: &api.IntentionHTTPPermission{PathPrefix: "/grpc.testing.TestService/"}},
		}},
		{Name: "web", Action: api.IntentionActionAllow},
	}}, nil); err != nil {
		t.Fatalf("service-intentions: %v", err)
	}

	appAddr, svc := startGRPC(t, "api-app")
	_, port, _ := net.SplitHostPort(appAddr)
	apiCfg := strings.Replace(sidecarConfig(agent.HTTPAddr, "api", appAddr), "port: "+port+" }", "port: "+port+", protocol: grpc }", 1)
	apiSide := startEngine(t, apiCfg)
	webApp, _ := startUpstream(t, "web-app", nil)
	webSide := startEngine(t, sidecarConfig(agent.HTTPAddr, "web", hostport(webApp), "api"))
	edge := startEngine(t, connectEdgeConfig(agent.HTTPAddr))

	await.Until(t, 30*time.Second, "service-defaults reach the edge and web's sidecar", func() bool {
		return clusterProtocol(t, edge.admin, "api") == "grpc" && clusterProtocol(t, webSide.admin, "api") == "grpc"
	})
	if got := clusterProtocol(t, apiSide.admin, conf.SidecarLocalService("api")); got != "grpc" {
		t.Fatalf("api's sidecar speaks %q to its app, want grpc", got)
	}

	viaEdge := dialGRPC(t, edge.addr)
	await.Until(t, 20*time.Second, "edge reaches api's app over the mesh", func() bool {
		resp, err := viaEdge.UnaryCall(callCtx(t), &testpb.SimpleRequest{Payload: &testpb.Payload{Body: []byte("hi")}})
		return err == nil && string(resp.GetPayload().GetBody()) == "hi" && resp.GetServerId() == "api-app"
	})

	t.Run("bidirectional stream over the merged hop", func(t *testing.T) {
		st, err := viaEdge.FullDuplexCall(callCtx(t))
		if err != nil {
			t.Fatal(err)
		}
		for i := range 3 {
			if err := st.Send(&testpb.StreamingOutputCallRequest{Payload: &testpb.Payload{Body: []byte{byte(i)}}}); err != nil {
				t.Fatal(err)
			}
			if m, err := st.Recv(); err != nil || len(m.GetPayload().GetBody()) != 1 || m.GetPayload().GetBody()[0] != byte(i) {
				t.Fatalf("reply %d: %v %v", i, m, err)
			}
		}
		_ = st.CloseSend()
		if _, err := st.Recv(); !errors.Is(err, io.EOF) {
			t.Fatalf("end: %v", err)
		}
	})

	t.Run("an L7 deny is PERMISSION_DENIED and never reaches the app", func(t *testing.T) {
		before := svc.Calls.Load()
		_, err := viaEdge.EmptyCall(callCtx(t), &testpb.Empty{})
		if s, _ := grpcstatus.FromError(err); s.Code() != codes.PermissionDenied {
			t.Fatalf("EmptyCall = %v, want PermissionDenied", err)
		}
		if svc.Calls.Load() != before {
			t.Fatal("a denied call reached the app")
		}
	})

	t.Run("app to app through web's sidecar", func(t *testing.T) {
		viaWeb := dialGRPC(t, webSide.listener(conf.SidecarUpstreamName("api")))
		st, err := viaWeb.StreamingOutputCall(callCtx(t), &testpb.StreamingOutputCallRequest{ResponseParameters: []*testpb.ResponseParameters{{Size: 3}, {Size: 4}}})
		if err != nil {
			t.Fatal(err)
		}
		for _, want := range []int{3, 4} {
			m, err := st.Recv()
			if err != nil || len(m.GetPayload().GetBody()) != want {
				t.Fatalf("message: %v %v, want %d bytes", m, err, want)
			}
		}
		if _, err := st.Recv(); !errors.Is(err, io.EOF) {
			t.Fatalf("end: %v", err)
		}
	})
}

// TestGRPCSidecarLocalFollowsServiceDefaults: a sidecar whose config names no protocol for its
// app delivers to it as its own service's service-defaults entry says, as every other cluster
// follows Consul's entry. The gRPC app speaks h2c only, so grpc-go reaching it through the
// edge proves api's sidecar spoke HTTP/2 to it without sidecar.service.protocol. A change of
// the entry applies without a restart, and a protocol in the sidecar's config wins.
func TestGRPCSidecarLocalFollowsServiceDefaults(t *testing.T) {
	t.Parallel()
	agent := consuldev.Start(t)
	client := agentClient(t, agent.HTTPAddr)
	setDefaults := func(name, proto string) {
		t.Helper()
		if _, _, err := client.ConfigEntries().Set(&api.ServiceConfigEntry{Kind: api.ServiceDefaults, Name: name, Protocol: proto}, nil); err != nil {
			t.Fatalf("service-defaults %s: %v", name, err)
		}
	}
	setDefaults("api", "grpc")
	setDefaults("legacy", "grpc")
	if _, _, err := client.ConfigEntries().Set(&api.ServiceIntentionsConfigEntry{Kind: api.ServiceIntentions, Name: "api",
		Sources: []*api.SourceIntention{{Name: "edge", Action: api.IntentionActionAllow}}}, nil); err != nil {
		t.Fatalf("service-intentions: %v", err)
	}

	appAddr, _ := startGRPC(t, "api-app")
	apiSide := startEngine(t, sidecarConfig(agent.HTTPAddr, "api", appAddr)) // no protocol
	local := conf.SidecarLocalService("api")
	// /ready waits for Consul's first answers, the protocol among them: a caller the sidecar
	// lets in is never delivered in http1 to a gRPC app first.
	if got := clusterProtocol(t, apiSide.admin, local); got != "grpc" {
		t.Fatalf("api's sidecar speaks %q to its app once ready, want grpc from service-defaults", got)
	}
	edge := startEngine(t, connectEdgeConfig(agent.HTTPAddr))
	viaEdge := dialGRPC(t, edge.addr)
	call := func() error {
		resp, err := viaEdge.UnaryCall(callCtx(t), &testpb.SimpleRequest{Payload: &testpb.Payload{Body: []byte("hi")}})
		if err == nil && (string(resp.GetPayload().GetBody()) != "hi" || resp.GetServerId() != "api-app") {
			err = errors.New("unexpected reply " + resp.String())
		}
		return err
	}
	await.Until(t, 20*time.Second, "grpc-go reaches api's h2c app through the edge and api's sidecar", func() bool { return call() == nil })

	t.Run("a change of the entry applies without a restart", func(t *testing.T) {
		setDefaults("api", "http")
		await.Until(t, 30*time.Second, "api's sidecar follows service-defaults to http", func() bool {
			return clusterProtocol(t, apiSide.admin, local) == "http1"
		})
		setDefaults("api", "grpc")
		await.Until(t, 30*time.Second, "and back to grpc", func() bool {
			return clusterProtocol(t, apiSide.admin, local) == "grpc" && call() == nil
		})
	})

	t.Run("a reload keeps the protocol and the app's connection", func(t *testing.T) {
		if err := call(); err != nil {
			t.Fatal(err)
		}
		before := localConns(t, apiSide.admin, local)
		if before == 0 {
			t.Fatal("no connection to the app after a call")
		}
		cfg, err := conf.Parse("test.yaml", []byte(sidecarConfig(agent.HTTPAddr, "api", appAddr)))
		if err != nil {
			t.Fatal(err)
		}
		if err := apiSide.edge.Reload(cfg); err != nil {
			t.Fatal(err)
		}
		// Were the static endpoints applied before Consul's known protocol, the cluster would
		// have been http1 for a moment and its host rebuilt, dropping the pooled connection.
		if got, conns := clusterProtocol(t, apiSide.admin, local), localConns(t, apiSide.admin, local); got != "grpc" || conns != before {
			t.Fatalf("after a reload: protocol %q with %d connections to the app, want grpc with %d", got, conns, before)
		}
		if err := call(); err != nil {
			t.Fatal(err)
		}
	})

	t.Run("sidecar.service.protocol wins over the entry", func(t *testing.T) {
		web, _ := startUpstream(t, "legacy-app", nil)
		_, port, _ := net.SplitHostPort(hostport(web))
		cfg := strings.Replace(sidecarConfig(agent.HTTPAddr, "legacy", hostport(web)), "port: "+port+" }", "port: "+port+", protocol: http1 }", 1)
		side := startEngine(t, cfg)
		// Were the entry followed, /ready would have waited for it and this would say grpc.
		if got := clusterProtocol(t, side.admin, conf.SidecarLocalService("legacy")); got != "http1" {
			t.Fatalf("legacy's sidecar speaks %q to its app, want http1 as its config says", got)
		}
	})
}

// localConns is the open connections of cluster name's one host, from the admin /clusters page.
func localConns(t *testing.T, admin, name string) int {
	t.Helper()
	resp, err := http.Get("http://" + admin + "/clusters")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var out []struct {
		Name  string `json:"name"`
		Hosts []struct {
			Conns int `json:"open_conns"`
		} `json:"hosts"`
	}
	b, _ := io.ReadAll(resp.Body)
	if err := json.Unmarshal(b, &out); err != nil {
		t.Fatalf("clusters page: %v: %s", err, b)
	}
	for _, c := range out {
		if c.Name == name && len(c.Hosts) == 1 {
			return c.Hosts[0].Conns
		}
	}
	t.Fatalf("no cluster %s with one host: %s", name, b)
	return 0
}

// TestLocalFollowsRegistry: which sidecar configs leave their app's protocol to Consul.
func TestLocalFollowsRegistry(t *testing.T) {
	t.Parallel()
	base := `
discovery: { consul: { address: 127.0.0.1:8500 } }
sidecar:
  service: { name: api, port: 9000%s }
  inbound: { address: 127.0.0.1:0 }
%s`
	cases := []struct {
		name, svc, extra, want string
	}{
		{"unset: Consul's entry decides", "", "", "api"},
		{"sidecar.service.protocol wins", ", protocol: grpc", "", ""},
		{"services.local-api.protocol wins", "", "services: { local-api: { protocol: http1 } }", ""},
	}
	for _, tc := range cases {
		cfg, err := conf.Parse("t.yaml", []byte(strings.TrimSpace(fmt.Sprintf(base, tc.svc, tc.extra))))
		if err != nil {
			t.Fatalf("%s: %v", tc.name, err)
		}
		local, name := localFollowsRegistry(cfg.Expanded())
		if name != tc.want || (name != "" && local != conf.SidecarLocalService("api")) {
			t.Errorf("%s: localFollowsRegistry = %q, %q; want %q", tc.name, local, name, tc.want)
		}
	}
	edge, err := conf.Parse("t.yaml", []byte(connectEdgeConfig("127.0.0.1:8500")))
	if err != nil {
		t.Fatal(err)
	}
	if local, name := localFollowsRegistry(edge.Expanded()); local != "" || name != "" {
		t.Errorf("an edge has no local app, got %q, %q", local, name)
	}
}
