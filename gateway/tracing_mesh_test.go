package gateway

import (
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hashicorp/consul/api"

	"github.com/meshgate/meshgate/conf"
	"github.com/meshgate/meshgate/internal/await"
	"github.com/meshgate/meshgate/internal/consuldev"
	"github.com/meshgate/meshgate/internal/otlptest"
)

// TestTraceContinuityThroughTheMesh: one trace for edge → web's sidecar → web app → web's
// sidecar → api's sidecar → api app, with a real Consul and Connect mTLS between the hops.
// The web app is not traced itself; like any instrumented app that only propagates, it
// sends the traceparent it received on its own call. Every meshgate on the way records a
// server and a client span, each the child of the one before, all in the trace the edge began.
func TestTraceContinuityThroughTheMesh(t *testing.T) {
	t.Parallel()
	agent := consuldev.Start(t)
	client := agentClient(t, agent.HTTPAddr)
	setIntentions(t, client, "web", &api.SourceIntention{Name: "edge", Action: api.IntentionActionAllow})
	setIntentions(t, client, "api", &api.SourceIntention{Name: "web", Action: api.IntentionActionAllow})
	rcv := otlptest.Start(t)
	tracing := fmt.Sprintf("tracing: { endpoint: %q, sample_ratio: 1, batch_size: 1, batch_interval: 10ms }\n", rcv.URL)

	apiApp, apiSeen := startUpstream(t, "api-app", nil)
	var upstream atomic.Value // web's sidecar's listener for api, known once it runs
	webApp, _ := startUpstream(t, "web-app", func(w http.ResponseWriter, r *http.Request) {
		u, _ := upstream.Load().(string)
		req, err := http.NewRequestWithContext(r.Context(), http.MethodGet, "http://"+u+"/from-web", nil)
		if err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
		req.Header.Set("Traceparent", r.Header.Get("Traceparent"))
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadGateway)
			return
		}
		defer func() { _ = resp.Body.Close() }() // read-side close
		b, _ := io.ReadAll(resp.Body)
		w.WriteHeader(resp.StatusCode)
		_, _ = w.Write(b)
	})
	_ = startEngine(t, sidecarConfig(agent.HTTPAddr, "api", hostport(apiApp))+tracing)
	webSide := startEngine(t, sidecarConfig(agent.HTTPAddr, "web", hostport(webApp), "api")+tracing)
	upstream.Store(webSide.listener(conf.SidecarUpstreamName("api")))
	edge := startEngine(t, strings.Replace(connectEdgeConfig(agent.HTTPAddr), "to: [ { service: api } ]", "to: [ { service: web } ]", 1)+tracing)

	var code int
	var body string
	await.Until(t, 30*time.Second, "edge → web → api through the sidecars", func() bool {
		code, body = status(t, edge.url+"/start")
		return code == http.StatusOK
	})
	if body != "hello from api-app" {
		t.Fatalf("body %q", body)
	}
	req, _ := apiSeen.last(t)
	trace, parent, flags := traceparentOf(t, req.Header.Get("Traceparent"))
	if flags != "01" {
		t.Fatalf("api app's traceparent flags %s, want 01 (sampled)", flags)
	}

	// Eight spans: a server and a client span on each of the four meshgate hops (edge, web's
	// inbound, web's upstream listener, api's inbound).
	await.Until(t, 10*time.Second, "eight spans of the trace", func() bool { return len(rcv.Trace(trace)) >= 8 })
	spans := rcv.Trace(trace)
	if len(spans) != 8 {
		t.Fatalf("%d spans in trace %s, want 8: %v", len(spans), trace, spans)
	}
	byID := map[string]otlptest.Span{}
	for _, s := range spans {
		byID[s.SpanID()] = s
	}
	// Walk up from the api app's parent: client, server, client, server, ... to the root.
	var chain []string
	var walked []otlptest.Span
	for id := parent; id != "" && id != "0000000000000000"; {
		s, ok := byID[id]
		if !ok {
			t.Fatalf("span %s (parent of %v) is not in the trace: %v", id, chain, spans)
		}
		chain = append(chain, s.Service+":"+strings.TrimPrefix(s.Kind.String(), "SPAN_KIND_"))
		walked = append(walked, s)
		id = s.ParentID()
	}
	want := []string{"api:CLIENT", "api:SERVER", "web:CLIENT", "web:SERVER", "web:CLIENT", "web:SERVER", "edge:CLIENT", "edge:SERVER"}
	if strings.Join(chain, " ") != strings.Join(want, " ") {
		t.Fatalf("span chain from the api app up: %v, want %v", chain, want)
	}
	// The two inbound (connect) listeners say which intention let the caller in; the edge's
	// public listener and web's upstream listener evaluate none.
	for i, wantIx := range map[int]string{1: "web→api allow", 3: "", 5: "edge→web allow", 7: ""} {
		s := walked[i]
		got, _ := s.Attr("meshgate.intention").(string)
		dec, _ := s.Attr("meshgate.intention.decision").(string)
		switch {
		case wantIx == "" && (got != "" || dec != ""):
			t.Errorf("%s: intention %q (%s), want none", chain[i], got, dec)
		case wantIx != "" && (got != wantIx || dec != "allow"):
			t.Errorf("%s: intention %q decision %q, want %q allow", chain[i], got, dec, wantIx)
		}
	}
}
