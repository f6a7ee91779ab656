package conf

import (
	"encoding/hex"
	"maps"
	"path/filepath"
	"slices"
	"strings"
	"time"
)

// Plugin is one out-of-process plugin (hashicorp/go-plugin over gRPC). It is started once per
// process and shared by every policy that names it; a reload that changes its settings restarts
// or reconfigures it without dropping requests.
type Plugin struct {
	// Path is the plugin executable (absolute, or relative to the working directory).
	Path string `yaml:"path"`
	// SHA256 is the executable's hex sha256 (`sha256sum PATH`): the plugin is refused if the
	// file differs, so a replaced binary never runs inside the request path.
	SHA256 string   `yaml:"sha256"`
	Args   []string `yaml:"args"`
	// Config is handed to the plugin as JSON by its Configure call, at start and after every
	// restart. It may hold secrets, so /config shows it redacted.
	Config any `yaml:"config"`
	// Timeout bounds each call (capped by the request's remaining deadline); default 50ms.
	Timeout Duration `yaml:"timeout"`
	// FailurePolicy is what a request gets when the plugin cannot answer (crashed, restarting,
	// timed out, breaker open): "closed" → 503, "open" → continue without it. Default: closed
	// for plugins that declare they can deny (auth), open for the rest.
	FailurePolicy string `yaml:"failure_policy"`
	// Procs is the plugin process's GOMAXPROCS (a plugin written in Go): how many threads run
	// its Go code at once. Default 1: a call is a short piece of work between two reads of one
	// socket, and with one P the goroutine a call starts runs on the thread that read it
	// instead of waking a second one (plugins/host/instance.go).
	Procs int `yaml:"procs"`
}

const (
	defaultPluginTimeout = 50 * time.Millisecond
	defaultPluginProcs   = 1
	maxPluginProcs       = 1024
)

var pluginFailurePolicies = []string{"closed", "open"}

func pluginDefaults(c *Config) {
	for name, p := range c.Plugins {
		setDur(&p.Timeout, defaultPluginTimeout)
		if p.Procs == 0 {
			p.Procs = defaultPluginProcs
		}
		c.Plugins[name] = p
	}
}

func (v *validator) plugins(c *Config) {
	for _, name := range slices.Sorted(maps.Keys(c.Plugins)) {
		pl := c.Plugins[name]
		p := path{"plugins", name}
		if !validServiceName(name) {
			v.add(p, "invalid plugin name %q: use letters, digits, '-', '_' and '.'", name)
		}
		if pl.Path == "" {
			v.add(p.key("path"), "the plugin executable is required")
		} else if filepath.Clean(pl.Path) != pl.Path && !strings.HasPrefix(pl.Path, "./") {
			v.add(p.key("path"), "%q is not a clean path (want %q)", pl.Path, filepath.Clean(pl.Path))
		}
		if b, err := hex.DecodeString(pl.SHA256); err != nil || len(b) != 32 {
			v.add(p.key("sha256"), "want the executable's sha256 as 64 hex digits (sha256sum %s)", pl.Path)
		}
		if pl.Timeout <= 0 {
			v.add(p.key("timeout"), "must be positive (got %s)", pl.Timeout)
		}
		if pl.Procs < 0 || pl.Procs > maxPluginProcs {
			v.add(p.key("procs"), "must be 1..%d (got %d)", maxPluginProcs, pl.Procs)
		}
		if pl.FailurePolicy != "" && !slices.Contains(pluginFailurePolicies, pl.FailurePolicy) {
			v.add(p.key("failure_policy"), "%q is not one of %s", pl.FailurePolicy, strings.Join(pluginFailurePolicies, ", "))
		}
	}
}
