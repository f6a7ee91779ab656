package static

import (
	"context"
	"errors"
	"testing"

	"github.com/meshgate/meshgate/discovery"
)

func TestWatchDeliversCopyOnce(t *testing.T) {
	t.Parallel()
	in := map[string][]discovery.Endpoint{"api": {{Address: "127.0.0.1:1"}, {Address: "127.0.0.1:2", Weight: 3}}}
	src, err := New(Options{Services: in})
	if err != nil {
		t.Fatal(err)
	}
	in["api"][0].Address = "mutated" // the source must have copied
	var got []discovery.Set
	if err := src.Watch(context.Background(), "api", func(s discovery.Set) { got = append(got, s) }); err != nil {
		t.Fatal(err)
	}
	if len(got) != 1 || got[0].Source != "static" || len(got[0].Endpoints) != 2 {
		t.Fatalf("deliveries: %+v", got)
	}
	if e := got[0].Endpoints; e[0].Address != "127.0.0.1:1" || e[0].Weight != 1 || e[1].Weight != 3 {
		t.Errorf("endpoints %+v: want a copy with weight defaulted to 1", e)
	}
	if !src.Has("api") || src.Has("nope") {
		t.Error("Has")
	}
}

func TestUnknownServiceAndBadEndpoint(t *testing.T) {
	t.Parallel()
	src, _ := New(Options{})
	err := src.Watch(context.Background(), "nope", func(discovery.Set) { t.Error("delivered an unknown service") })
	if !errors.Is(err, discovery.ErrUnknownService) {
		t.Errorf("err = %v, want ErrUnknownService", err)
	}
	if _, err := New(Options{Services: map[string][]discovery.Endpoint{"x": {{}}}}); err == nil {
		t.Error("an endpoint without address was accepted")
	}
}
