package main

import (
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"go.yaml.in/yaml/v3"
)

func TestServiceName(t *testing.T) {
	t.Parallel()
	tests := []struct {
		i, services int
		want        string
	}{
		{0, 1000, "s0001"},
		{999, 1000, "s1000"},
		{0, 5, "s0001"},
		{41, 20000, "s00042"},
	}
	for _, tt := range tests {
		t.Run(tt.want, func(t *testing.T) {
			t.Parallel()
			if got := serviceName(tt.i, tt.services); got != tt.want {
				t.Fatalf("serviceName(%d, %d) = %q, want %q", tt.i, tt.services, got, tt.want)
			}
		})
	}
}

// TestRenderRealTemplate renders the template the harness uses and checks the result is YAML
// with one host route per service, each to the service of the same name.
func TestRenderRealTemplate(t *testing.T) {
	t.Parallel()
	_, file, _, ok := runtime.Caller(0)
	if !ok {
		t.Fatal("no caller information")
	}
	tmpl, err := os.ReadFile(filepath.Join(filepath.Dir(file), "..", "meshgate-consul.yaml.tmpl"))
	if err != nil {
		t.Fatal(err)
	}
	vals := map[string]string{"PORT": "1", "ADMIN_PORT": "2", "CONSUL_ADDR": "127.0.0.1:3", "DIR": "/tmp/x"}
	out, err := renderConfig(string(tmpl), 3, vals)
	if err != nil {
		t.Fatalf("renderConfig: %v", err)
	}
	var cfg struct {
		Routes []struct {
			Name  string `yaml:"name"`
			Match struct {
				Hosts []string `yaml:"hosts"`
			} `yaml:"match"`
			To []struct {
				Service string `yaml:"service"`
			} `yaml:"to"`
		} `yaml:"routes"`
		Discovery struct {
			Consul struct {
				Address     string `yaml:"address"`
				SnapshotDir string `yaml:"snapshot_dir"`
			} `yaml:"consul"`
		} `yaml:"discovery"`
	}
	if err := yaml.Unmarshal([]byte(out), &cfg); err != nil {
		t.Fatalf("rendered config is not YAML: %v\n%s", err, out)
	}
	if len(cfg.Routes) != 3 {
		t.Fatalf("%d routes, want 3:\n%s", len(cfg.Routes), out)
	}
	for i, r := range cfg.Routes {
		name := serviceName(i, 3)
		if r.Name != name || len(r.Match.Hosts) != 1 || r.Match.Hosts[0] != name+".bench" ||
			len(r.To) != 1 || r.To[0].Service != name {
			t.Fatalf("route %d = %+v, want %s on host %s.bench", i, r, name, name)
		}
	}
	if cfg.Discovery.Consul.Address != "127.0.0.1:3" || cfg.Discovery.Consul.SnapshotDir != "/tmp/x/snapshot" {
		t.Fatalf("discovery.consul = %+v", cfg.Discovery.Consul)
	}
}

func TestRenderConfigErrors(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name, tmpl, wantErr string
	}{
		{"no routes placeholder", "routes: []\n", "@ROUTES@"},
		{"unfilled", "a: @PORT@\nroutes:\n@ROUTES@\nb: @MISSING@\n", "@MISSING@"},
		{"comment may mention placeholders", "# fills @ANY@\na: @PORT@\nroutes:\n@ROUTES@\n", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			_, err := renderConfig(tt.tmpl, 2, map[string]string{"PORT": "1"})
			if tt.wantErr == "" {
				if err != nil {
					t.Fatalf("renderConfig: %v", err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("error = %v, want it to mention %q", err, tt.wantErr)
			}
		})
	}
}

func TestNextOrigin(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		inst []instance
		n    int
		want int
	}{
		{"after the newest", []instance{{origin: 0}, {origin: 1}}, 8, 2},
		{"wraps around", []instance{{origin: 6}, {origin: 7}}, 8, 0},
		{"skips a used origin", []instance{{origin: 0}, {origin: 7}}, 8, 1},
		{"three origins", []instance{{origin: 2}, {origin: 0}}, 3, 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			got := nextOrigin(tt.inst, tt.n)
			if got != tt.want {
				t.Fatalf("nextOrigin = %d, want %d", got, tt.want)
			}
			for _, in := range tt.inst {
				if in.origin == got {
					t.Fatalf("nextOrigin picked origin %d, which an instance uses", got)
				}
			}
		})
	}
}

func TestPercentile(t *testing.T) {
	t.Parallel()
	ds := make([]time.Duration, 100)
	for i := range ds {
		ds[i] = time.Duration(100-i) * time.Millisecond // unsorted on purpose
	}
	tests := []struct {
		name string
		ds   []time.Duration
		p    float64
		want time.Duration
	}{
		{"p50 of 1..100", ds, 50, 50 * time.Millisecond},
		{"p99 of 1..100", ds, 99, 99 * time.Millisecond},
		{"max", ds, 100, 100 * time.Millisecond},
		{"p0 is the minimum", ds, 0, time.Millisecond},
		{"one value", []time.Duration{7}, 99, 7},
		{"empty", nil, 50, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			if got := percentile(tt.ds, tt.p); got != tt.want {
				t.Fatalf("percentile(p%v) = %s, want %s", tt.p, got, tt.want)
			}
		})
	}
	if ds[0] != 100*time.Millisecond {
		t.Fatal("percentile sorted its input in place")
	}
}

func TestParseStatTicks(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name, stat string
		want       uint64
		wantErr    bool
	}{
		{"plain", "42 (meshgate) S 1 42 42 0 -1 4194560 100 0 0 0 150 25 0 0 20 0 9 0 100 1000 200", 175, false},
		{"name with spaces and parens", "42 (a (b) c) R 1 42 42 0 -1 0 0 0 0 0 7 3 0 0 20 0 1 0 1 1 1", 10, false},
		{"truncated", "42 (x) S 1 2 3", 0, true},
		{"no name", "42 x S", 0, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			got, err := parseStatTicks(tt.stat)
			if (err != nil) != tt.wantErr || got != tt.want {
				t.Fatalf("parseStatTicks = %d, %v; want %d, error %v", got, err, tt.want, tt.wantErr)
			}
		})
	}
}

func TestParseStatus(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name, status string
		want         memory
		wantErr      bool
	}{
		{"both", "Name:\tmeshgate\nVmHWM:\t   61000 kB\nVmRSS:\t   40000 kB\nThreads:\t9\n", memory{RSSKB: 40000, HWMKB: 61000}, false},
		{"missing HWM", "VmRSS:\t 1 kB\n", memory{RSSKB: 1}, true},
		{"bad unit", "VmRSS:\t 1 MB\nVmHWM:\t 1 kB\n", memory{}, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			got, err := parseStatus(tt.status)
			if (err != nil) != tt.wantErr || (!tt.wantErr && got != tt.want) {
				t.Fatalf("parseStatus = %+v, %v; want %+v, error %v", got, err, tt.want, tt.wantErr)
			}
		})
	}
	// Our own status must parse: the format is the kernel's, not a guess.
	if _, err := readMemory(os.Getpid()); err != nil && runtime.GOOS == "linux" {
		t.Fatalf("readMemory(self): %v", err)
	}
}

func TestParseMetrics(t *testing.T) {
	t.Parallel()
	text := `# HELP meshgate_discovery_endpoints Endpoints in the current set of each watched service.
# TYPE meshgate_discovery_endpoints gauge
meshgate_discovery_endpoints{service="s0001"} 2
meshgate_discovery_endpoints{service="s0002"} 1
meshgate_discovery_consul_watches 2
meshgate_discovery_consul_queries_total{result="error",service="s0001"} 3
meshgate_discovery_consul_queries_total{result="success",service="s0001"} 5
meshgate_discovery_consul_queries_total{result="success",service="s0002"} 4
meshgate_discovery_degraded 0
meshgate_requests_total{route="x"} 9
`
	m, err := parseMetrics(strings.NewReader(text))
	if err != nil {
		t.Fatal(err)
	}
	if m.endpoints["s0001"] != 2 || m.endpoints["s0002"] != 1 || len(m.endpoints) != 2 {
		t.Fatalf("endpoints = %v", m.endpoints)
	}
	if !m.haveWatchers || m.watches != 2 || m.queryErrors != 3 || m.queryOK != 9 || m.degraded != 0 {
		t.Fatalf("metrics = %+v", m)
	}
	if got := countAtLeast(m.endpoints, 2); got != 1 {
		t.Fatalf("countAtLeast = %d, want 1", got)
	}
}

func TestParseRunOptions(t *testing.T) {
	t.Parallel()
	req := []string{"-consul", "127.0.0.1:1", "-proxy", "127.0.0.1:2", "-admin", "127.0.0.1:3", "-pid", "42"}
	with := func(extra ...string) []string { return append(append([]string{}, req...), extra...) }
	tests := []struct {
		name    string
		args    []string
		wantErr string
	}{
		{"defaults", req, ""},
		{"missing pid", req[:6], "required"},
		{"changes above services", with("-services", "10", "-changes", "11"), "changes"},
		{"two origins", with("-origins", "2"), "origins"},
		{"zero pollers", with("-pollers", "0"), "pollers"},
		{"zero idle", with("-idle", "0s"), "idle"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			o, err := parseRunOptions(tt.args)
			if tt.wantErr == "" {
				if err != nil {
					t.Fatalf("parseRunOptions: %v", err)
				}
				if o.services != 1000 || o.changes != 100 || o.idle != 10*time.Second || o.poll != time.Millisecond {
					t.Fatalf("defaults = %+v", o)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("error = %v, want it to contain %q", err, tt.wantErr)
			}
		})
	}
}
