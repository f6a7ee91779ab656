package conf

import (
	"os"
	"path/filepath"
	"testing"
)

// Every shipped example must stay valid: they are the documentation.
func TestExamplesValid(t *testing.T) {
	t.Parallel()
	files, err := filepath.Glob("examples/*.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if len(files) < 2 {
		t.Fatalf("found %d examples, want at least static.yaml and full.yaml", len(files))
	}
	noEnv := func(string) (string, bool) { return "", false }
	for _, f := range files {
		t.Run(filepath.Base(f), func(t *testing.T) {
			t.Parallel()
			data, err := os.ReadFile(f)
			if err != nil {
				t.Fatal(err)
			}
			if _, err := parse(f, data, noEnv); err != nil {
				t.Fatalf("example is invalid:\n%v", err)
			}
		})
	}
}

// The minimal config in docs/configuration.md is a compatibility contract.
func TestStaticExampleShape(t *testing.T) {
	t.Parallel()
	c, err := Load("examples/static.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if c.Admin.Address != "127.0.0.1:9901" || len(c.Listeners) != 1 || c.Listeners[0].Name != "public" ||
		c.Listeners[0].Address != "127.0.0.1:8080" {
		t.Fatalf("admin/listeners = %+v %+v", c.Admin, c.Listeners)
	}
	if len(c.Routes) != 1 || c.Routes[0].Name != "all" || c.Routes[0].Match.PathPrefix != "/" ||
		len(c.Routes[0].To) != 1 || c.Routes[0].To[0].Service != "origin" {
		t.Fatalf("routes = %+v", c.Routes)
	}
	if got := c.Discovery.Static["origin"]; len(got) != 1 || got[0] != "127.0.0.1:9000" {
		t.Fatalf("static = %v", c.Discovery.Static)
	}
}
