package gateway

import (
	"slices"
	"strings"
	"testing"

	"github.com/meshgate/meshgate/conf"
	"github.com/meshgate/meshgate/discovery/consul"
)

// effectiveConfig is pure and keeps its order: file, then KV documents (a rejected one falls
// back to its last accepted version), then the sidecar expansion, so KV routes never land on the
// listeners a sidecar generates.
func TestEffectiveConfigOrder(t *testing.T) {
	t.Parallel()
	file, err := conf.Parse("sidecar.yaml", []byte(`
admin: { address: 127.0.0.1:19001 }
discovery: { consul: { address: 127.0.0.1:8500, kv_prefix: meshgate/routes } }
listeners: [ { name: extra, address: 127.0.0.1:9100 } ]
routes: [ { name: own, match: { path_prefix: /own }, to: [ { service: api } ] } ]
sidecar:
  service: { name: web, address: 127.0.0.1, port: 8080 }
  inbound: { address: 127.0.0.1:21000 }
  upstreams: [ { service: api, bind: 127.0.0.1:10001 } ]
`))
	if err != nil {
		t.Fatal(err)
	}
	good := consul.KVDoc{Key: "meshgate/routes/kv", Value: []byte("routes: [ { name: from-kv, match: { path_prefix: /kv }, to: [ { service: api } ] } ]\n"), ModifyIndex: 7}
	broken := consul.KVDoc{Key: good.Key, Value: []byte("routes: [ { name: from-kv, match: { path_prefix: /kv }, to: [ ] } ]\n"), ModifyIndex: 9}

	cfg, res := effectiveConfig(file, &kvInputs{docs: []consul.KVDoc{broken}, good: map[string]consul.KVDoc{good.Key: good}})
	if res == nil || len(res.applied) != 1 || res.applied[0].ModifyIndex != 7 || len(res.rejected) != 1 {
		t.Fatalf("merge result %+v: want the broken document rejected and its accepted version (7) applied", res)
	}
	var names []string
	for _, r := range cfg.Routes {
		names = append(names, r.Name+"@"+strings.Join(r.Listeners, ","))
	}
	// The KV route and the user's route are on the user's listener only; the sidecar's own
	// routes come from the expansion, after the merge.
	for _, want := range []string{"own@extra", "from-kv@extra", conf.SidecarInboundName + "@" + conf.SidecarInboundName} {
		if !slices.Contains(names, want) {
			t.Errorf("routes %v lack %s", names, want)
		}
	}
	if file.Routes[0].Listeners != nil || len(file.Routes) != 1 {
		t.Errorf("the file config was modified: %+v", file.Routes)
	}

	plain, none := effectiveConfig(file, nil)
	if none != nil || len(plain.Listeners) != 3 { // extra, inbound, upstream-api
		t.Errorf("without KV: result %v, %d listeners", none, len(plain.Listeners))
	}
}
