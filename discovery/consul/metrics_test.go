package consul

import (
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
)

// The per-label counts are exported as the vectors they replace were: counters once they
// moved, the endpoints gauge while a watch of the label has a set (zero included), and a
// label's counters keep their values when its watch stops and starts again.
func TestLabelMetricsExposition(t *testing.T) {
	m := newMetrics()
	reg := prometheus.NewPedanticRegistry()
	if err := m.register(reg, func() bool { return false }); err != nil {
		t.Fatal(err)
	}
	api := m.of("api")
	api.ok.Add(3)
	api.failed.Add(1)
	api.updates.Add(2)
	api.endpoints.Store(2)
	m.of("connect:api").endpoints.Store(0)
	m.of("kv:routes/").ok.Add(1)
	m.of("never") // created, never moved: no series at all

	const head = `
# HELP meshgate_discovery_consul_queries_total Consul queries by service (health and connect; kv:<prefix>; config:service-defaults) and result (success, error).
# TYPE meshgate_discovery_consul_queries_total counter
meshgate_discovery_consul_queries_total{result="error",service="api"} 1
meshgate_discovery_consul_queries_total{result="success",service="api"} 3
meshgate_discovery_consul_queries_total{result="success",service="kv:routes/"} 1
# HELP meshgate_discovery_updates_total Endpoint sets delivered from Consul because they changed.
# TYPE meshgate_discovery_updates_total counter
meshgate_discovery_updates_total{service="api"} 2
# HELP meshgate_discovery_endpoints Endpoints in the current set of each watched service.
# TYPE meshgate_discovery_endpoints gauge
`
	names := []string{"meshgate_discovery_consul_queries_total", "meshgate_discovery_updates_total", "meshgate_discovery_endpoints"}
	want := head + `meshgate_discovery_endpoints{service="api"} 2
meshgate_discovery_endpoints{service="connect:api"} 0
`
	if err := testutil.GatherAndCompare(reg, strings.NewReader(want), names...); err != nil {
		t.Fatal(err)
	}

	// The api watch stops (its gauge goes), then a new one starts and counts on.
	api.endpoints.Store(noEndpoints)
	again := m.of("api")
	if again != api {
		t.Fatal("a label's second watch got new counts: its counters would go back to zero")
	}
	again.updates.Add(1)
	want = strings.Replace(head, `meshgate_discovery_updates_total{service="api"} 2`, `meshgate_discovery_updates_total{service="api"} 3`, 1) +
		`meshgate_discovery_endpoints{service="connect:api"} 0
`
	if err := testutil.GatherAndCompare(reg, strings.NewReader(want), names...); err != nil {
		t.Fatal(err)
	}
}
