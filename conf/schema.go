package conf

// The user-facing schema. Every field has a yaml tag in snake_case; zero values mean "use the
// default" and Defaults() fills them so the effective config (admin /config) shows real values.
// Other packages never import these types on the hot path: the engine assembly (gateway/translate.go,
// both modes) translates them into each package's own Options.

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
	// Policies are named filters (rate limits, faults, API policies, plugins: one kind each, see
	// Policy) that routes and a sidecar's inbound and upstreams reference by name.
	Policies map[string]Policy `yaml:"policies"`
	// Redis backs cluster-wide rate limits. Optional.
	Redis *Redis `yaml:"redis"`
	// Identity makes this process a Connect peer (sidecar.go).
	Identity *Identity `yaml:"identity"`
	// Sidecar runs meshgate next to one local app (`meshgate sidecar`, sidecar.go).
	Sidecar *Sidecar `yaml:"sidecar"`
	// Plugins are out-of-process filters (plugins.go), declared once and used by policies.
	Plugins map[string]Plugin `yaml:"plugins"`
	// Tracing sends spans to an OpenTelemetry collector (tracing.go). Off when absent.
	Tracing *Tracing `yaml:"tracing"`

	// expanded marks the result of Expanded: its sidecar parts are already listeners, routes
	// and a static service, so the name-collision checks do not apply to them.
	expanded bool
}

// Policy is one named filter; exactly one of its blocks is set. Every field is one policy
// kind, named by its yaml key (PolicyKind), and nothing but a kind may be a field here: Kind,
// PolicyKinds, the "exactly one" check and the walk of Redacted are derived from these fields
// (policykind.go), and the deep copy from their types (clone.go), so that no list of kinds
// elsewhere can fall behind this struct.
//
// Adding a kind touches at most: a field here with its block type and a PolicyKind constant
// below; its defaults and validation (policies.go or edgepolicies.go); its case in
// Policy.redactKind (policykind.go), which decides what in it is secret; the case that builds
// its filter in gateway/policies.go (policyBuilder.build); and the filter package itself.
// TestPolicyKindsRoundTrip (conf: its policySecrets entry) and TestEveryPolicyKindBuilds
// (gateway: an example policy of the kind) find the new field and fail until all that is done.
type Policy struct {
	RateLimit *RateLimit `yaml:"rate_limit"`
	Fault     *Fault     `yaml:"fault"`
	// Plugin names an entry of the top-level plugins map (plugins.go): the request goes
	// through that out-of-process plugin at this point of the chain.
	Plugin string `yaml:"plugin"`
	// API-management policies (edgepolicies.go).
	JWT     *JWTPolicy     `yaml:"jwt"`
	APIKey  *APIKeyPolicy  `yaml:"api_key"`
	HMAC    *HMACPolicy    `yaml:"hmac"`
	IP      *IPPolicy      `yaml:"ip"`
	CORS    *CORSPolicy    `yaml:"cors"`
	Headers *HeadersPolicy `yaml:"headers"`
}

// PolicyKind is the kind of a Policy: the yaml key of its one block.
type PolicyKind string

// The policy kinds, one per field of Policy and spelled as its yaml key.
const (
	KindRateLimit PolicyKind = "rate_limit"
	KindFault     PolicyKind = "fault"
	KindPlugin    PolicyKind = "plugin"
	KindJWT       PolicyKind = "jwt"
	KindAPIKey    PolicyKind = "api_key"
	KindHMAC      PolicyKind = "hmac"
	KindIP        PolicyKind = "ip"
	KindCORS      PolicyKind = "cors"
	KindHeaders   PolicyKind = "headers"
)

// RateLimit is a token bucket: Requests per Per, bursting to Burst.
type RateLimit struct {
	Requests int      `yaml:"requests"` // required, > 0
	Per      Duration `yaml:"per"`      // default 1s
	Burst    int      `yaml:"burst"`    // default Requests
	// Key: client_ip (default), route, identity, or header:<Name>. Requests without the key
	// (missing header) share one bucket.
	Key string `yaml:"key"`
	// Cluster: share the limit across every meshgate instance through Redis (GCRA).
	Cluster bool `yaml:"cluster"`
	// OnRedisError: what a cluster limit does when Redis is unreachable: "local" (default:
	// enforce the limit per instance), "open" (allow), "closed" (reject with 503).
	OnRedisError string `yaml:"on_redis_error"`
	// IPv6Prefix: with key client_ip, an IPv6 client is keyed by its first IPv6Prefix bits
	// (1..128), because one host usually holds a whole /64. Default 64. IPv4 is per address.
	IPv6Prefix int `yaml:"ipv6_prefix"`
}

// Fault injects delays and aborts, for chaos tests in production traffic.
type Fault struct {
	Delay *FaultDelay `yaml:"delay"`
	Abort *FaultAbort `yaml:"abort"`
	// Header: inject only into requests carrying this header (any value).
	Header string `yaml:"header"`
}

// FaultDelay delays Percent of requests by Duration.
type FaultDelay struct {
	Duration Duration `yaml:"duration"`
	Percent  float64  `yaml:"percent"` // 0..100
}

// FaultAbort answers Percent of requests with Status without contacting the upstream.
type FaultAbort struct {
	Status  int     `yaml:"status"`  // 400..599
	Percent float64 `yaml:"percent"` // 0..100
}

// Redis is the connection to a Redis server for cluster-wide limits.
type Redis struct {
	Address      string   `yaml:"address"`       // host:port, required
	PasswordFile string   `yaml:"password_file"` // optional; the file's content (trimmed) is the password
	DB           int      `yaml:"db"`
	Timeout      Duration `yaml:"timeout"` // per command; default 50ms: a slow Redis must not slow requests
}

// Admin is the operator API (net/http): /live, /ready, /metrics, /config, /clusters, /routes.
type Admin struct {
	Address string `yaml:"address"` // default 127.0.0.1:9901
	// Pprof serves Go's profiler under /debug/pprof/ on the admin listener. Off by default:
	// profiles reveal internals and cost CPU while taken.
	Pprof bool `yaml:"pprof"`
	// AllowedHosts are the names (or IPs) besides loopback and the admin address's own IP that
	// a request's Host header may carry; any other Host gets 403 (DNS rebinding). Default: none.
	AllowedHosts []string `yaml:"allowed_hosts"`
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
	// MaxConnectionsPerIP caps one client address's open connections (trusted_proxies are
	// exempt: every client behind them shares their address). Default 1000; -1: no cap.
	MaxConnectionsPerIP int `yaml:"max_connections_per_ip"`
	// TrustedProxies are the proxy hops (CIDRs or IPs) in front of this listener: their
	// X-Forwarded-For/-Proto/-Host, X-Request-Id and budget header are believed, counted from
	// the right. Everyone else's are dropped. Default: none. Not with connect: true.
	TrustedProxies []string `yaml:"trusted_proxies"`
	// TrustedPeers are the Connect services (e.g. the edge) that may tell a connect listener the
	// client's address, scheme and host and pass a budget; any other peer is the client itself.
	// Default: none. Only with connect: true.
	TrustedPeers []string `yaml:"trusted_peers"`
	// Connect serves Connect mTLS with this process's identity (identity.connect required):
	// callers must present a certificate from the Consul CA and are authorised by Consul
	// intentions for identity.service. A sidecar's inbound listener is one of these.
	Connect bool `yaml:"connect"`
	// IdentityHeader names the request header that tells the upstream who the authenticated
	// caller is (a mesh peer's service, a JWT subject or an API-key consumer). Any value the
	// client sent under that name is removed. Default X-Meshgate-Identity; "-" disables it.
	IdentityHeader string `yaml:"identity_header"`
	// TLS terminates TLS on this listener with certificate files (not with connect: true).
	TLS *ListenerTLS `yaml:"tls"`
	// HTTP2 serves HTTP/2 beside HTTP/1.1 on the same port: ALPN h2 on TLS and connect
	// listeners, prior knowledge (h2c) in plaintext. Default true; false: HTTP/1.1 only.
	HTTP2 *bool `yaml:"http2"`
	// MaxConcurrentStreams bounds the open streams of one HTTP/2 connection. Default 100.
	MaxConcurrentStreams int `yaml:"max_concurrent_streams"`
	// WebSocketIdleTimeout closes an upgraded (WebSocket) connection when neither side sent a
	// byte for this long. Default 1h.
	WebSocketIdleTimeout Duration `yaml:"websocket_idle_timeout"`
}

// GRPCRetryCode gives the code number of a gRPC status that retry.on may name. A named status
// is retried (in a Trailers-Only answer, before any response byte reached the client) and
// counts as a host failure for outlier detection; UNAVAILABLE always counts.
func GRPCRetryCode(name string) (int, bool) {
	switch name {
	case "cancelled":
		return 1, true
	case "deadline-exceeded":
		return 4, true
	case "resource-exhausted":
		return 8, true
	case "internal":
		return 13, true
	case "unavailable":
		return 14, true
	}
	return 0, false
}

// HTTP2Enabled reports whether the listener speaks HTTP/2 (http2 unset means yes).
func (l *Listener) HTTP2Enabled() bool { return l.HTTP2 == nil || *l.HTTP2 }

// ListenerTLS is TLS termination with certificate files: TLS 1.2 minimum, SNI picks among the
// certificates (the first is the default), and files replaced on disk are picked up without a
// restart (a bad new file keeps the old certificate).
type ListenerTLS struct {
	Certificates []CertificateFiles `yaml:"certificates"`
	// RedirectFrom: also listen on this address with plain HTTP and answer every request with a
	// 308 to the same URL on https.
	RedirectFrom string `yaml:"redirect_from"`
}

// CertificateFiles is one PEM certificate (chain) and its key.
type CertificateFiles struct {
	CertFile string `yaml:"cert_file"`
	KeyFile  string `yaml:"key_file"`
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
	// Policies are names from the top-level policies map, applied in order before forwarding.
	Policies []string `yaml:"policies"`
	Timeout  Duration `yaml:"timeout"` // whole request incl. retries; default 15s; expiry → 504
	Retry    *Retry   `yaml:"retry"`   // overrides the service's retry policy
	// WebSocket forwards WebSocket handshakes (Upgrade: websocket) on this route after its
	// policies ran; false refuses them with 403. Default true.
	WebSocket *bool `yaml:"websocket"`
}

// Match is a route's match: every condition given must hold. At most one of Path, PathPrefix, PathRegex.
type Match struct {
	Hosts      []string      `yaml:"hosts"` // "api.example.com" or "*.example.com"
	Path       string        `yaml:"path"`
	PathPrefix string        `yaml:"path_prefix"`
	PathRegex  string        `yaml:"path_regex"` // RE2, anchored to the whole path
	Methods    []string      `yaml:"methods"`
	Headers    []HeaderMatch `yaml:"headers"`
	Query      []QueryMatch  `yaml:"query"`
}

// HeaderMatch matches one request header: exactly one of Exact, Regex, Present.
type HeaderMatch struct {
	Name    string `yaml:"name"`
	Exact   string `yaml:"exact"`
	Regex   string `yaml:"regex"`
	Present *bool  `yaml:"present"`
}

// QueryMatch matches one query parameter: exactly one of Exact, Regex, Present.
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
	// Protocol the instances speak: http1 (default), http2 (h2c in plaintext, h2 over TLS and
	// Connect) or grpc (HTTP/2, with gRPC's statuses). Unset with Consul: the service's
	// service-defaults Protocol (http, http2, grpc) decides.
	Protocol       string       `yaml:"protocol"`
	Retry          *Retry       `yaml:"retry"`
	TLS            *UpstreamTLS `yaml:"tls"`             // reserved (rejected when set); nil = plaintext
	RequestTimeout Duration     `yaml:"request_timeout"` // default per-route timeout when route has none

	// Resilience (safe defaults with no configuration; see docs/resilience.md).
	OutlierDetection OutlierDetection `yaml:"outlier_detection"`
	CircuitBreaker   CircuitBreaker   `yaml:"circuit_breaker"`
	RetryBudget      RetryBudget      `yaml:"retry_budget"`
	// MaxInFlight caps concurrent requests to the whole service; beyond it requests fail at once
	// with 503 upstream_overflow instead of queueing. Default 10000.
	MaxInFlight int `yaml:"max_in_flight"`
}

// OutlierDetection ejects hosts that fail passively observed requests. On by default.
type OutlierDetection struct {
	Disabled bool `yaml:"disabled"`
	// ConsecutiveErrors: 5xx responses, connect failures, resets and timeouts in a row that
	// eject a host. Default 5.
	ConsecutiveErrors int `yaml:"consecutive_errors"`
	// BaseEjectionTime × number of times ejected (capped by MaxEjectionTime). Defaults 10s, 5m.
	BaseEjectionTime Duration `yaml:"base_ejection_time"`
	MaxEjectionTime  Duration `yaml:"max_ejection_time"`
	// MaxEjectionPercent of hosts may be ejected at once (at least one). Default 50.
	MaxEjectionPercent int `yaml:"max_ejection_percent"`
	// PanicThreshold: when fewer than this percent of hosts are healthy, balance across all of
	// them rather than crush the survivors. Default 50.
	PanicThreshold int `yaml:"panic_threshold"`
}

// CircuitBreaker is a per-host breaker (mesh/upstream's, gobreaker's state machine). On by default.
type CircuitBreaker struct {
	Disabled bool `yaml:"disabled"`
	// The breaker opens when, within Interval, at least MinRequests were made and
	// FailureRatio of them failed. Defaults: 20 requests, 0.5, 10s.
	MinRequests  int      `yaml:"min_requests"`
	FailureRatio float64  `yaml:"failure_ratio"`
	Interval     Duration `yaml:"interval"`
	// OpenTimeout: how long the breaker stays open before letting probes through. Default 5s.
	OpenTimeout Duration `yaml:"open_timeout"`
	// HalfOpenRequests: probes allowed while half-open. Default 1.
	HalfOpenRequests int `yaml:"half_open_requests"`
}

// RetryBudget bounds retries so they cannot multiply load during an outage: retries in flight
// may not exceed Ratio × requests in flight plus MinRetriesPerSecond.
type RetryBudget struct {
	Ratio               float64 `yaml:"ratio"`                  // default 0.2
	MinRetriesPerSecond int     `yaml:"min_retries_per_second"` // default 10
	// Backoff between tries: full jitter over [0, base × 2^n), capped. Defaults 25ms, 250ms.
	BackoffBase Duration `yaml:"backoff_base"`
	BackoffMax  Duration `yaml:"backoff_max"`
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
	On            []string `yaml:"on"`              // connect-failure, reset, timeout, 5xx, gateway-error, a status like "503", or a gRPC status (unavailable, resource-exhausted, cancelled, deadline-exceeded, internal); default [connect-failure, reset]
}

// UpstreamTLS is reserved for TLS to upstreams with certificates of their own; validation
// rejects it when set. Connect mTLS to upstreams is configured by Identity, not here.
type UpstreamTLS struct {
	ServerName string `yaml:"server_name"`
}

// Discovery lists where endpoints come from.
type Discovery struct {
	Static map[string][]string `yaml:"static"` // service → ["host:port", "host:port weight=3"]
	// Consul resolves every routed service not listed under static (passing instances only).
	Consul *Consul `yaml:"consul"`
}

// Consul is the connection to the local Consul agent and what meshgate does with it.
type Consul struct {
	Address    string `yaml:"address"`    // host:port of the agent's HTTP API; default 127.0.0.1:8500
	Scheme     string `yaml:"scheme"`     // http (default) or https
	Datacenter string `yaml:"datacenter"` // default: the agent's
	// Token: ACL token. TokenFile wins over Token; with neither, CONSUL_HTTP_TOKEN_FILE and then
	// CONSUL_HTTP_TOKEN from the environment are used.
	Token     string     `yaml:"token"`
	TokenFile string     `yaml:"token_file"`
	TLS       *ConsulTLS `yaml:"tls"`
	// SnapshotDir keeps the last applied endpoint sets (and KV routes) on disk so meshgate can
	// start and serve while Consul is unreachable. Default: none (no snapshot).
	SnapshotDir string `yaml:"snapshot_dir"`
	// Wait is the blocking-query wait; default 5m (Consul's maximum is 10m).
	Wait Duration `yaml:"wait"`
	// Services narrows a routed service to a subset of its Consul instances.
	Services map[string]ConsulService `yaml:"services"`
	// Register registers this meshgate (or the service it fronts) in Consul. Optional.
	Register *Registration `yaml:"register"`
	// KVPrefix: dynamic routes and policies are read from this KV prefix (each key one YAML
	// document with routes/policies/services), validated like the file. Default: off.
	KVPrefix string `yaml:"kv_prefix"`
	// KVMaxPriority caps the priority of document routes (higher wins). Default: the highest
	// priority of a file route, so a document route never ranks above every file route and a
	// file route wins a tie; a document route above the cap rejects its document.
	KVMaxPriority *int `yaml:"kv_max_priority"`
}

// ConsulTLS configures TLS to the agent.
type ConsulTLS struct {
	CAFile             string `yaml:"ca_file"`
	CertFile           string `yaml:"cert_file"`
	KeyFile            string `yaml:"key_file"`
	ServerName         string `yaml:"server_name"`
	InsecureSkipVerify bool   `yaml:"insecure_skip_verify"`
}

// ConsulService selects a subset of a Consul service's instances for a routed service name.
type ConsulService struct {
	Name string            `yaml:"name"` // the Consul service name; default: the routed name
	Tags []string          `yaml:"tags"` // every tag must be present
	Meta map[string]string `yaml:"meta"` // every key must have this value
}

// Registration is a service instance meshgate registers in Consul.
type Registration struct {
	Name    string            `yaml:"name"`    // required
	ID      string            `yaml:"id"`      // default name-address-port
	Address string            `yaml:"address"` // default: the first listener's host
	Port    int               `yaml:"port"`    // default: the first listener's port
	Tags    []string          `yaml:"tags"`
	Meta    map[string]string `yaml:"meta"`
	// Check: "http" (default: GET the admin /ready) or "ttl" (meshgate passes it itself).
	Check         string   `yaml:"check"`
	CheckInterval Duration `yaml:"check_interval"` // default 2s
	// DeregisterAfter: Consul removes the instance after its check is critical this long.
	DeregisterAfter Duration `yaml:"deregister_after"` // default 1m
	// DrainWait bounds how long shutdown waits for Consul to stop reporting us as passing
	// (after setting maintenance mode) before draining. Default 10s.
	DrainWait Duration `yaml:"drain_wait"`
}

// AccessLog is the per-request log. It never blocks the request path.
type AccessLog struct {
	Output     string `yaml:"output"`      // "stdout" (default), "off", or a file path
	BufferSize int    `yaml:"buffer_size"` // entries buffered before dropping; default 8192
	// FlushInterval bounds how long a written line may wait in the writer's 64 KiB buffer
	// before it reaches the output; default 1s (Envoy's file_flush_interval).
	FlushInterval Duration `yaml:"flush_interval"`
	// Sinks receive every line as well as Output (log shipping); Spool is where lines wait
	// while a sink fails. See accesslog.go.
	Sinks []LogSink `yaml:"sinks"`
	Spool LogSpool  `yaml:"spool"`
}

// LogSink is one destination for shipped access-log lines.
type LogSink struct {
	Name string `yaml:"name"` // metrics label and spool subdirectory; default: kind
	Kind string `yaml:"kind"` // "nats" (JetStream) or "otlp" (OTLP/HTTP logs)
	// nats
	URL     string `yaml:"url"`     // nats://host:port, several comma-separated
	Subject string `yaml:"subject"` // subject every line is published on
	Stream  string `yaml:"stream"`  // JetStream stream capturing subject; created if missing
	// otlp
	Endpoint string            `yaml:"endpoint"` // http(s)://collector:4318; lines go to its /v1/logs
	Headers  map[string]string `yaml:"headers"`  // sent with every export (auth); redacted in /config
	// The shipper's batching, per sink (0: the default).
	BatchSize     int      `yaml:"batch_size"`     // lines per publish; default 256
	FlushInterval Duration `yaml:"flush_interval"` // a partial batch waits this long; default 50ms
	AckTimeout    Duration `yaml:"ack_timeout"`    // bound on one publish; default 5s
	QueueSize     int      `yaml:"queue_size"`     // lines waiting for the shipper; default 8192
}

// LogSpool is the disk spool of the sinks; each sink has a subdirectory named after it.
type LogSpool struct {
	Dir      string   `yaml:"dir"`       // required with sinks
	MaxBytes ByteSize `yaml:"max_bytes"` // per sink; default 1GiB
	MaxAge   Duration `yaml:"max_age"`   // default 24h
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
