package gateway

import (
	"errors"
	"fmt"
	"io"
	"net"
	"strings"
	"testing"

	"github.com/rs/zerolog"

	"github.com/meshgate/meshgate/conf"
)

// A construction that fails part way (here: the second listener's port is taken) names the
// failing part and unwinds what it built, in reverse: the first listener's port is free again
// and a second server can take it at once.
func TestFailedConstructionUnwinds(t *testing.T) {
	t.Parallel()
	taken, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer taken.Close()
	free, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	freeAddr := free.Addr().String()
	free.Close()
	yaml := fmt.Sprintf(`
admin: { address: 127.0.0.1:0 }
access_log: { output: "off" }
listeners:
  - { name: first, address: %s }
  - { name: second, address: %s }
routes: [ { name: all, to: [ { service: origin } ] } ]
discovery: { static: { origin: [ 127.0.0.1:9 ] } }
`, freeAddr, taken.Addr())
	cfg, err := conf.Parse("test.yaml", []byte(yaml))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := NewServer(cfg, ServerOptions{Logger: zerolog.New(io.Discard)}); err == nil || !strings.Contains(err.Error(), `"second"`) {
		t.Fatalf("NewServer = %v, want the second listener's bind error", err)
	}
	ln, err := net.Listen("tcp", freeAddr)
	if err != nil {
		t.Fatalf("the first listener was not closed by the unwind: %v", err)
	}
	ln.Close()
}

// unwind closes parts in reverse order of construction, each once.
func TestUnwindOrder(t *testing.T) {
	t.Parallel()
	var got []string
	s := &Server{}
	for _, n := range []string{"clusters", "discovery", "listener", "admin"} {
		s.add(component{name: n, close: func() { got = append(got, n) }})
	}
	s.add(component{name: "no close"})
	s.unwind()
	s.unwind() // a second call has nothing left to close
	if strings.Join(got, ",") != "admin,listener,discovery,clusters" {
		t.Fatalf("closed in order %v", got)
	}
}

// The mode entry points refuse a config of the other shape, so `meshgate edge` never runs a
// sidecar file (or the reverse) by accident.
func TestModeEntryPoints(t *testing.T) {
	t.Parallel()
	edgeCfg, err := conf.Parse("edge.yaml", []byte("listeners: [ { address: 127.0.0.1:0 } ]\nroutes: [ { name: r, to: [ { service: s } ] } ]\ndiscovery: { static: { s: [ 127.0.0.1:9 ] } }\n"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := NewSidecar(edgeCfg, ServerOptions{Logger: zerolog.New(io.Discard)}); !errors.Is(err, ErrMode) {
		t.Errorf("NewSidecar(edge config) = %v, want ErrMode", err)
	}
	side, err := conf.Load("../conf/examples/sidecar.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := NewEdge(side, ServerOptions{Logger: zerolog.New(io.Discard)}); !errors.Is(err, ErrMode) {
		t.Errorf("NewEdge(sidecar config) = %v, want ErrMode", err)
	}
}
