package gateway

import (
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"os"
	"slices"
	"strings"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/rs/zerolog"

	"github.com/meshgate/meshgate/conf"
	"github.com/meshgate/meshgate/gateway/auth/apikey"
	"github.com/meshgate/meshgate/gateway/auth/hmac"
	"github.com/meshgate/meshgate/gateway/auth/jwt"
	"github.com/meshgate/meshgate/gateway/cors"
	"github.com/meshgate/meshgate/gateway/fault"
	"github.com/meshgate/meshgate/gateway/filter"
	"github.com/meshgate/meshgate/gateway/headers"
	"github.com/meshgate/meshgate/gateway/ipfilter"
	"github.com/meshgate/meshgate/gateway/ratelimit"
	"github.com/meshgate/meshgate/plugins/host"
)

// policyBuilder turns cfg.Policies into each route's filter chain. It lives as long as the
// Edge: the rate-limit manager holds bucket state and the Redis client across reloads.
type policyBuilder struct {
	log     zerolog.Logger
	running []io.Closer // background work of the plan in use
	limits  *ratelimit.Manager
	faults  *fault.Metrics
	plugins *host.Manager // plugin processes outlive reloads (plugins/host)
}

func newPolicyBuilder(reg prometheus.Registerer, log zerolog.Logger) (*policyBuilder, error) {
	limits, err := ratelimit.New(ratelimit.Options{Registerer: reg, Logger: log})
	if err != nil {
		return nil, fmt.Errorf("edge: %w", err)
	}
	faults, err := fault.NewMetrics(reg)
	if err != nil {
		limits.Close()
		return nil, fmt.Errorf("edge: %w", err)
	}
	plugins, err := host.NewManager(host.ManagerOptions{Logger: log, Registerer: reg})
	if err != nil {
		limits.Close()
		return nil, fmt.Errorf("edge: %w", err)
	}
	return &policyBuilder{log: log, limits: limits, faults: faults, plugins: plugins}, nil
}

// policyPlan is a config's policies translated into package options, before anything live is
// touched; building it is the part of a reload that may fail.
type policyPlan struct {
	redis  *ratelimit.RedisOptions
	limits map[string]ratelimit.Policy
	faults map[string]filter.Filter // stateless: safe to build before the swap
	// plugins are the started (or reconfigured) plugins by policy name. Ensuring them is the
	// one step of plan that touches live state: it runs last, so nothing after it can fail.
	plugins map[string]pluginFilter
	// edge are the API-management filters by policy name (planEdge).
	edge map[string]filter.Filter
	// closers end the background work of this plan's filters (JWKS refresh) when the plan is
	// replaced or abandoned.
	closers []io.Closer
	routes  [][]string // policy names per route index
}

// pluginFilter is a plugin as the request path uses it: request phase and response phase.
type pluginFilter interface {
	filter.Filter
	filter.ResponseFilter
}

func (b *policyBuilder) plan(cfg *conf.Config) (_ *policyPlan, err error) {
	p := &policyPlan{limits: map[string]ratelimit.Policy{}, faults: map[string]filter.Filter{},
		plugins: map[string]pluginFilter{}, edge: map[string]filter.Filter{}, routes: make([][]string, len(cfg.Routes))}
	defer func() {
		if err != nil { // an abandoned plan must not leave JWKS refreshers running
			closeAll(p.closers)
		}
	}()
	if r := cfg.Redis; r != nil {
		p.redis = &ratelimit.RedisOptions{Address: r.Address, DB: r.DB, Timeout: r.Timeout.D()}
		if r.PasswordFile != "" {
			pw, err := os.ReadFile(r.PasswordFile)
			if err != nil {
				return nil, fmt.Errorf("redis.password_file: %w", err)
			}
			p.redis.Password = strings.TrimSpace(string(pw))
		}
	}
	for i, r := range cfg.Routes {
		p.routes[i] = r.Policies
		for _, name := range r.Policies {
			pol, ok := cfg.Policies[name]
			switch {
			case !ok:
				return nil, fmt.Errorf("route %q: no policy named %q", r.Name, name)
			case pol.RateLimit != nil:
				rl := pol.RateLimit
				p.limits[name] = ratelimit.Policy{Name: name, Requests: rl.Requests, Per: rl.Per.D(), Burst: rl.Burst,
					Key: rl.Key, Cluster: rl.Cluster, OnRedisError: rl.OnRedisError, IPv6Prefix: rl.IPv6Prefix}
			case pol.JWT != nil || pol.APIKey != nil || pol.HMAC != nil || pol.IP != nil || pol.CORS != nil || pol.Headers != nil:
				if err := b.planEdge(name, pol, p); err != nil {
					return nil, err
				}
			case pol.Fault != nil && p.faults[name] == nil:
				f, err := fault.New(faultOptions(name, pol.Fault, b.faults))
				if err != nil {
					return nil, fmt.Errorf("policies.%s: %w", name, err)
				}
				p.faults[name] = f
			}
		}
	}
	return p, b.ensurePlugins(cfg, p)
}

// ensurePlugins starts the plugins the routes use (or hands a running one its new config) and
// stops those no route uses any more. A plugin that cannot start or rejects its config fails
// the whole load or reload, naming the plugin.
func (b *policyBuilder) ensurePlugins(cfg *conf.Config, p *policyPlan) error {
	var keep []string
	for _, names := range p.routes {
		for _, name := range names {
			pol := cfg.Policies[name]
			if pol.Plugin == "" || p.plugins[name] != nil {
				continue
			}
			pc := cfg.Plugins[pol.Plugin]
			js, err := json.Marshal(pc.Config)
			if err != nil {
				return fmt.Errorf("plugins.%s.config: %w", pol.Plugin, err)
			}
			pl, err := b.plugins.Ensure(host.Options{Name: pol.Plugin, Path: pc.Path, SHA256: pc.SHA256, Args: pc.Args,
				Config: js, Timeout: pc.Timeout.D(), FailurePolicy: pc.FailurePolicy})
			if err != nil {
				return fmt.Errorf("plugin %s: %w", pol.Plugin, err)
			}
			p.plugins[name] = pl.Filter()
			if !slices.Contains(keep, pol.Plugin) {
				keep = append(keep, pol.Plugin)
			}
		}
	}
	b.plugins.Retain(keep)
	return nil
}

func faultOptions(name string, f *conf.Fault, m *fault.Metrics) fault.Options {
	o := fault.Options{Name: name, Header: f.Header, Metrics: m}
	if f.Delay != nil {
		o.Delay, o.DelayPercent = f.Delay.Duration.D(), f.Delay.Percent
	}
	if f.Abort != nil {
		o.AbortStatus, o.AbortPercent = f.Abort.Status, f.Abort.Percent
	}
	return o
}

// apply makes plan live in the rate-limit manager and returns the chain of each route and the
// response filters (plugins' response phase) of each route. Only invalid options (which conf
// rejects) can make it fail.
func (b *policyBuilder) apply(p *policyPlan) ([]filter.Chain, [][]filter.ResponseFilter, error) {
	b.limits.SetRedis(p.redis)
	built := make(map[string]filter.Filter, len(p.limits)+len(p.faults))
	names := make([]string, 0, len(p.limits))
	for name, pol := range p.limits {
		f, err := b.limits.Filter(pol)
		if err != nil {
			return nil, nil, err
		}
		built[name] = f
		names = append(names, name)
	}
	for name, f := range p.faults {
		built[name] = f
	}
	for name, f := range p.plugins {
		built[name] = f
	}
	for name, f := range p.edge {
		built[name] = f
	}
	b.limits.Retain(names)
	// The previous plan's JWKS refreshers stop; filters of the old generation still in flight
	// keep verifying with the keys they already hold.
	closeAll(b.running)
	b.running = p.closers
	chains := make([]filter.Chain, len(p.routes))
	resp := make([][]filter.ResponseFilter, len(p.routes))
	for i, rp := range p.routes {
		for _, name := range rp {
			chains[i] = append(chains[i], built[name])
			if pf := p.plugins[name]; pf != nil {
				resp[i] = append(resp[i], pf)
			}
			if rf, ok := p.edge[name].(filter.ResponseFilter); ok {
				resp[i] = append(resp[i], rf)
			}
		}
	}
	return chains, resp, nil
}

func closeAll(cs []io.Closer) {
	for _, c := range cs {
		_ = c.Close()
	}
}

func (b *policyBuilder) close() {
	closeAll(b.running)
	b.limits.Close()
	b.plugins.Close()
}

// planEdge builds the API-management filters (jwt, api_key, hmac, ip, cors, headers). They are
// stateless (or keep their own state), so building them before the swap is safe.
func (b *policyBuilder) planEdge(name string, pol conf.Policy, p *policyPlan) error {
	if p.edge[name] != nil {
		return nil
	}
	var f filter.Filter
	var err error
	switch {
	case pol.IP != nil:
		f, err = ipfilter.New(ipfilter.Options{Name: name, Allow: parsePrefixes(pol.IP.Allow), Deny: parsePrefixes(pol.IP.Deny)})
	case pol.CORS != nil:
		c := pol.CORS
		f, err = cors.New(cors.Options{Name: name, AllowOrigins: c.Origins, AllowMethods: c.Methods, AllowHeaders: c.Headers,
			ExposeHeaders: c.Expose, AllowCredentials: c.Credentials, MaxAge: c.MaxAge.D()})
	case pol.Headers != nil:
		h := pol.Headers
		f, err = headers.New(headers.Options{Name: name, Request: headerOps(h.Request), Response: headerOps(h.Response),
			Path: headers.PathRewrite{Regex: h.RewritePathRegex, Replacement: h.RewritePathReplacement}})
	case pol.JWT != nil:
		var jf *jwt.Filter
		jf, err = jwtFilter(name, pol.JWT, b.log)
		if err == nil {
			p.closers = append(p.closers, jf)
			f = jf
		}
	case pol.APIKey != nil:
		k := pol.APIKey
		f, err = apikey.New(apikey.Options{Name: name, File: k.File, Header: k.Header, Query: k.Query, KeepCredential: k.KeepHeader})
	case pol.HMAC != nil:
		var secrets map[string][]byte
		if secrets, err = readSecrets(pol.HMAC.SecretsFile); err == nil {
			f, err = hmac.New(hmac.Options{Name: name, Secrets: secrets, SignedHeaders: pol.HMAC.Headers, Skew: pol.HMAC.Window.D()})
		}
	default:
		// Refuse rather than ignore: a config asking for authentication must never run without it.
		return fmt.Errorf("policies.%s: this policy kind is not available in this build yet", name)
	}
	if err != nil {
		return fmt.Errorf("policies.%s: %w", name, err)
	}
	p.edge[name] = f
	return nil
}

// headerOps turns a YAML map into ordered header edits (sorted by name, so a config always
// applies the same way).
func headerOps(o conf.HeaderOps) headers.Transform {
	t := headers.Transform{Remove: o.Remove}
	for _, k := range slices.Sorted(maps.Keys(o.Set)) {
		t.Set = append(t.Set, headers.Header{Name: k, Value: o.Set[k]})
	}
	for _, k := range slices.Sorted(maps.Keys(o.Add)) {
		t.Add = append(t.Add, headers.Header{Name: k, Value: o.Add[k]})
	}
	return t
}

func jwtFilter(name string, j *conf.JWTPolicy, log zerolog.Logger) (*jwt.Filter, error) {
	o := jwt.Options{Name: name, Algorithms: j.Algorithms, Issuer: j.Issuer, Audiences: j.Audiences,
		Leeway: j.Leeway.D(), IdentityClaim: j.IdentityClaim, TokenHeader: j.Header, TokenCookie: j.Cookie,
		StripToken: false, RefreshInterval: j.RefreshInterval.D(), CacheTTL: j.CacheTTL.D(), Logger: log}
	if j.JWKSURL != "" {
		o.JWKSURLs = []string{j.JWKSURL}
	}
	for _, file := range j.PublicKeyFiles {
		pem, err := os.ReadFile(file)
		if err != nil {
			return nil, err
		}
		o.PublicKeys = append(o.PublicKeys, jwt.PublicKey{PEM: pem})
	}
	if j.HMACSecretFile != "" {
		b, err := os.ReadFile(j.HMACSecretFile)
		if err != nil {
			return nil, err
		}
		o.Secret = []byte(strings.TrimSpace(string(b)))
	}
	for _, c := range slices.Sorted(maps.Keys(j.RequiredClaims)) {
		rc := jwt.RequiredClaim{Name: c}
		if v := j.RequiredClaims[c]; v != "" {
			rc.Values = []string{v}
		}
		o.Claims = append(o.Claims, rc)
	}
	for _, c := range slices.Sorted(maps.Keys(j.ForwardClaims)) {
		o.Forward = append(o.Forward, jwt.ForwardClaim{Claim: c, Header: j.ForwardClaims[c]})
	}
	return jwt.New(o)
}

// readSecrets reads "keyid:secret" lines (blank lines and # comments ignored).
func readSecrets(path string) (map[string][]byte, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	out := map[string][]byte{}
	for i, line := range strings.Split(string(b), "\n") {
		line = strings.TrimSpace(line)
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		id, secret, ok := strings.Cut(line, ":")
		if !ok || id == "" || secret == "" {
			return nil, fmt.Errorf("%s:%d: want keyid:secret", path, i+1)
		}
		out[id] = []byte(secret)
	}
	return out, nil
}
