package conf

// The user-facing schema. Every field has a yaml tag in snake_case; zero values mean "use the
// default" and Defaults() fills them so the effective config (admin /config) shows real values.
// Other packages never import these types on the hot path: the assemblies (gateway/edge.go,
// mesh/sidecar.go) translate them into each package's own Options.

// Config is one whole meshgate configuration file.
type Config struct {
	Admin     Admin              `yaml:"admin"`
	Listeners []Listener         `yaml:"listeners"`
	Routes    []Route            `yaml:"routes"`
	Services  map[string]Service `yaml:"services"`
	Discovery Discovery          `yaml:"discovery"`
	AccessLog AccessLog          `yaml:"access_log"`
	Log       Log                `yaml:"log"`
	Shutdown  Shutdown           `yaml:"shutdown"`
}

// Admin is the operator API (net/http): /live, /ready, /metrics, /config, /clusters, /routes.
type Admin struct {
	Address string `yaml:"address"` // default 127.0.0.1:9901
	// Pprof serves Go's profiler under /debug/pprof/ on the admin listener. Off by default:
	// profiles reveal internals and cost CPU while taken.
	Pprof bool `yaml:"pprof"`
}

// Listener is one downstream HTTP/1.1 listener.
type Listener struct {
	Name              string   `yaml:"name"`
	Address           string   `yaml:"address"`
	ReadHeaderTimeout Duration `yaml:"read_header_timeout"` // default 10s: the head must arrive in this time (slowloris)
	ReadTimeout       Duration `yaml:"read_timeout"`        // default 60s: whole request incl. body
	WriteTimeout      Duration `yaml:"write_timeout"`       // default 60s
	IdleTimeout       Duration `yaml:"idle_timeout"`        // default 60s: keep-alive between requests
	MaxHeaderBytes    ByteSize `yaml:"max_header_bytes"`    // default 16KiB; larger → 431
	MaxBodyBytes      ByteSize `yaml:"max_body_bytes"`      // default 10MiB; larger → 413
	MaxConnections    int      `yaml:"max_connections"`     // default 10000
	// StreamThreshold: request and response bodies larger than this are streamed, not buffered.
	StreamThreshold ByteSize `yaml:"stream_threshold"` // default 64KiB
	// TrustedProxies are CIDRs whose X-Forwarded-For we extend rather than replace. Default: none.
	TrustedProxies []string `yaml:"trusted_proxies"`
}

// Route sends matching requests to one or more services.
type Route struct {
	Name     string   `yaml:"name"`
	Priority int      `yaml:"priority"` // higher first; ties keep file order
	Match    Match    `yaml:"match"`
	To       []Target `yaml:"to"`
	// Listeners restricts the route to the named listeners; empty means all.
	Listeners []string `yaml:"listeners"`
	Rewrite   Rewrite  `yaml:"rewrite"`
	Timeout   Duration `yaml:"timeout"` // whole request incl. retries; default 15s; expiry → 504
	Retry     *Retry   `yaml:"retry"`   // overrides the service's retry policy
}

// Match: every condition given must hold. At most one of Path, PathPrefix, PathRegex.
type Match struct {
	Hosts      []string      `yaml:"hosts"` // "api.example.com" or "*.example.com"
	Path       string        `yaml:"path"`
	PathPrefix string        `yaml:"path_prefix"`
	PathRegex  string        `yaml:"path_regex"` // RE2, anchored to the whole path
	Methods    []string      `yaml:"methods"`
	Headers    []HeaderMatch `yaml:"headers"`
	Query      []QueryMatch  `yaml:"query"`
}

// HeaderMatch: exactly one of Exact, Regex, Present.
type HeaderMatch struct {
	Name    string `yaml:"name"`
	Exact   string `yaml:"exact"`
	Regex   string `yaml:"regex"`
	Present *bool  `yaml:"present"`
}

// QueryMatch: exactly one of Exact, Regex, Present.
type QueryMatch struct {
	Name    string `yaml:"name"`
	Exact   string `yaml:"exact"`
	Regex   string `yaml:"regex"`
	Present *bool  `yaml:"present"`
}

// Rewrite changes the request before it goes upstream.
type Rewrite struct {
	// PathPrefix replaces the matched match.path_prefix with this value.
	PathPrefix string `yaml:"path_prefix"`
}

// Target is one destination of a route; weights split traffic.
type Target struct {
	Service string `yaml:"service"`
	// Weight is relative. When no target of the route sets one, each gets 1 (an even split);
	// once any target sets a weight, an omitted one is 0 (no traffic), e.g. a drained canary.
	Weight int `yaml:"weight"`
}

// Service is the per-service (cluster) policy.
type Service struct {
	LoadBalancer     LoadBalancer `yaml:"load_balancer"`
	ConnectTimeout   Duration     `yaml:"connect_timeout"`    // default 2s
	IdleTimeout      Duration     `yaml:"idle_timeout"`       // default 30s: shorter than typical upstream keep-alive (nginx 75s, node 5s → set lower for node)
	MaxConnsPerHost  int          `yaml:"max_conns_per_host"` // default 1024
	MaxResponseBytes ByteSize     `yaml:"max_response_bytes"` // default 64MiB; beyond → 502
	Retry            *Retry       `yaml:"retry"`
	TLS              *UpstreamTLS `yaml:"tls"`             // reserved for Connect; nil = plaintext
	RequestTimeout   Duration     `yaml:"request_timeout"` // default per-route timeout when route has none
}

// LoadBalancer selects the balancing policy.
type LoadBalancer struct {
	Policy string `yaml:"policy"` // round_robin (default), random, least_request, p2c_ewma, ring_hash
	Hash   *Hash  `yaml:"hash"`   // ring_hash only: exactly one key source
}

// Hash picks the consistent-hash key for ring_hash.
type Hash struct {
	Header   string `yaml:"header"`
	Cookie   string `yaml:"cookie"`
	SourceIP bool   `yaml:"source_ip"`
}

// Retry is a retry policy. Non-idempotent requests are only retried when they cannot have
// reached the upstream (connect failure), whatever this says.
type Retry struct {
	Attempts      int      `yaml:"attempts"`        // total tries incl. the first; default 2
	PerTryTimeout Duration `yaml:"per_try_timeout"` // default: none (the route timeout bounds all)
	On            []string `yaml:"on"`              // connect-failure, reset, timeout, 5xx, gateway-error, or a status like "503"; default [connect-failure, reset]
}

// UpstreamTLS is reserved for a later milestone (Connect mTLS); rejected when set for now.
type UpstreamTLS struct {
	ServerName string `yaml:"server_name"`
}

// Discovery lists where endpoints come from.
type Discovery struct {
	Static map[string][]string `yaml:"static"` // service → ["host:port", "host:port weight=3"]
}

// AccessLog is the per-request log. It never blocks the request path.
type AccessLog struct {
	Output     string `yaml:"output"`      // "stdout" (default), "off", or a file path
	BufferSize int    `yaml:"buffer_size"` // entries buffered before dropping; default 8192
}

// Log is the process log (zerolog).
type Log struct {
	Level  string `yaml:"level"`  // debug, info (default), warn, error
	Format string `yaml:"format"` // json (default) or console
}

// Shutdown controls the drain on SIGTERM/SIGINT.
type Shutdown struct {
	DrainTimeout Duration `yaml:"drain_timeout"` // default 30s
	// ReadyDelay keeps serving after /ready turns 503 so balancers notice before we stop accepting.
	ReadyDelay Duration `yaml:"ready_delay"` // default 0
}
