package gateway

import (
	"crypto/sha256"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"slices"
	"strings"
	"time"

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
// Server: the rate-limit manager holds bucket state and the Redis client across reloads, and so
// do the JWKS key sets (by what they fetch) and the HMAC replay caches (by policy name).
type policyBuilder struct {
	log     zerolog.Logger
	running []io.Closer // background work of the plan in use
	limits  *ratelimit.Manager
	faults  *fault.Metrics
	plugins *host.Manager // plugin processes outlive reloads (plugins/host)
	// jwks are the key sets the plan in use verifies with. A reload that keeps a jwks_url
	// reuses its set: no synchronous refetch (a slow IdP would stall the reload) and the keys
	// stay. Sets no policy uses are closed after the swap.
	jwks map[jwksKey]*jwt.JWKS
	// replay are the HMAC replay caches of the plan in use, by policy name: a reload must not
	// forget the signatures already accepted, or each one could be replayed right after it.
	replay map[string]*hmac.ReplayCache
	// store is the shared (Redis) replay store of hmac policies with replay: redis, kept while
	// the redis block is unchanged; storeOpts is what it was built from.
	store     *hmac.RedisReplay
	storeOpts hmac.RedisOptions
}

// jwksKey is what decides a key set's content and how it is fetched.
type jwksKey struct {
	url      string
	refresh  time.Duration
	insecure bool
	ca       [sha256.Size]byte // of jwks_ca_file's content; zero = system roots
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
	redis *ratelimit.RedisOptions
	// planned are the policies the routes use, by name, each planned once however many routes
	// name it (build).
	planned map[string]planned
	// closers end the background work of this plan's filters (JWKS refresh) when the plan is
	// replaced or abandoned.
	closers []io.Closer
	routes  [][]string // policy names per route index
	// jwks and replay become the builder's on apply; fresh are the key sets this plan
	// created (closed if the plan is abandoned).
	jwks   map[jwksKey]*jwt.JWKS
	fresh  []*jwt.JWKS
	replay map[string]*hmac.ReplayCache
	// store is the Redis replay store when a policy uses one; freshStore when this plan made it.
	store      *hmac.RedisReplay
	storeOpts  hmac.RedisOptions
	freshStore bool
}

// planned is one policy as build leaves it: its filter, except for the two kinds whose filter
// touches live state and so is made by a later step, after everything that can fail.
type planned struct {
	filter filter.Filter
	// limit is a rate limit's policy: apply has the manager make its filter, keeping the
	// buckets of the running generation (they outlive reloads).
	limit *ratelimit.Policy
	// plugin names a plugins: entry: ensurePlugins, the last step of plan, starts or
	// reconfigures its process and fills filter.
	plugin string
}

func newPolicyPlan(routes int) *policyPlan {
	return &policyPlan{planned: map[string]planned{}, routes: make([][]string, routes),
		jwks: map[jwksKey]*jwt.JWKS{}, replay: map[string]*hmac.ReplayCache{}}
}

func (b *policyBuilder) plan(cfg *conf.Config) (_ *policyPlan, err error) {
	p := newPolicyPlan(len(cfg.Routes))
	defer func() {
		if err != nil { // an abandoned plan must not leave JWKS refreshers running
			closeAll(p.closers)
			for _, k := range p.fresh {
				_ = k.Close()
			}
			if p.freshStore {
				_ = p.store.Close()
			}
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
			if _, done := p.planned[name]; done {
				continue
			}
			pol, ok := cfg.Policies[name]
			if !ok {
				return nil, fmt.Errorf("route %q: no policy named %q", r.Name, name)
			}
			pl, err := b.build(name, pol, p)
			if err != nil {
				return nil, fmt.Errorf("policies.%s: %w", name, err)
			}
			p.planned[name] = pl
		}
	}
	return p, b.ensurePlugins(cfg, p)
}

// build translates one policy into its filter (or what a later step makes it from): the one
// place that dispatches on a policy's kind. Filters built here are stateless or keep their own
// state, so building them before the swap is safe; state that must outlive a reload (JWKS, HMAC
// replay caches, rate-limit buckets, plugin processes) belongs to the policyBuilder.
//
// Adding a policy kind touches at most: its schema and validation in conf (the rule is stated
// at conf.Policy), a case here, and its filter package. TestEveryPolicyKindBuilds fails for a
// kind without a case.
func (b *policyBuilder) build(name string, pol conf.Policy, p *policyPlan) (planned, error) {
	var f filter.Filter
	var err error
	switch pol.Kind() {
	case conf.KindRateLimit:
		rl := rateLimitPolicy(name, pol.RateLimit)
		return planned{limit: &rl}, nil
	case conf.KindPlugin:
		return planned{plugin: pol.Plugin}, nil
	case conf.KindFault:
		o := faultOptions(name, pol.Fault)
		o.Metrics = b.faults
		f, err = fault.New(o)
	case conf.KindIP:
		f, err = ipfilter.New(ipOptions(name, pol.IP))
	case conf.KindCORS:
		f, err = cors.New(corsOptions(name, pol.CORS))
	case conf.KindHeaders:
		f, err = headers.New(headersOptions(name, pol.Headers))
	case conf.KindJWT:
		var jf *jwt.Filter
		if jf, err = b.jwtFilter(name, pol.JWT, p); err == nil {
			p.closers = append(p.closers, jf)
			f = jf
		}
	case conf.KindAPIKey:
		f, err = apikey.New(apiKeyOptions(name, pol.APIKey))
	case conf.KindHMAC:
		f, err = b.hmacFilter(name, pol.HMAC, p)
	default:
		// Refuse rather than ignore: a config asking for authentication must never run without it.
		return planned{}, errors.New("this policy kind is not available in this build yet")
	}
	return planned{filter: f}, err
}

// ensurePlugins starts the plugins the routes use (or hands a running one its new config) and
// stops those no route uses any more. A plugin that cannot start or rejects its config fails
// the whole load or reload, naming the plugin.
func (b *policyBuilder) ensurePlugins(cfg *conf.Config, p *policyPlan) error {
	var keep []string
	for _, names := range p.routes {
		for _, name := range names {
			pl := p.planned[name]
			if pl.plugin == "" || pl.filter != nil {
				continue
			}
			pc := cfg.Plugins[pl.plugin]
			js, err := json.Marshal(pc.Config)
			if err != nil {
				return fmt.Errorf("plugins.%s.config: %w", pl.plugin, err)
			}
			plug, err := b.plugins.Ensure(host.Options{Name: pl.plugin, Path: pc.Path, SHA256: pc.SHA256, Args: pc.Args,
				Config: js, Timeout: pc.Timeout.D(), FailurePolicy: pc.FailurePolicy, Procs: pc.Procs})
			if err != nil {
				return fmt.Errorf("plugin %s: %w", pl.plugin, err)
			}
			pl.filter = plug.Filter() // both phases: apply finds the response phase by type
			p.planned[name] = pl
			if !slices.Contains(keep, pl.plugin) {
				keep = append(keep, pl.plugin)
			}
		}
	}
	b.plugins.Retain(keep)
	return nil
}

// apply makes plan live in the rate-limit manager and returns the chain of each route and the
// response filters (plugins' response phase) of each route. Only invalid options (which conf
// rejects) can make it fail.
func (b *policyBuilder) apply(p *policyPlan) ([]filter.Chain, [][]filter.ResponseFilter, error) {
	b.limits.SetRedis(p.redis)
	built := make(map[string]filter.Filter, len(p.planned))
	var limits []string // the rate limits whose buckets the manager keeps
	for name, pl := range p.planned {
		f := pl.filter
		if pl.limit != nil {
			rl, err := b.limits.Filter(*pl.limit)
			if err != nil {
				return nil, nil, err
			}
			f = rl
			limits = append(limits, name)
		}
		built[name] = f
	}
	b.limits.Retain(limits)
	// The previous plan's JWKS refreshers stop unless this plan reuses them; filters of the old
	// generation still in flight keep verifying with the keys they already hold.
	closeAll(b.running)
	b.running = p.closers
	for k, ks := range b.jwks {
		if p.jwks[k] != ks {
			_ = ks.Close()
		}
	}
	b.jwks, b.replay = p.jwks, p.replay
	if b.store != nil && b.store != p.store {
		_ = b.store.Close()
	}
	b.store, b.storeOpts = p.store, p.storeOpts
	chains := make([]filter.Chain, len(p.routes))
	resp := make([][]filter.ResponseFilter, len(p.routes))
	for i, rp := range p.routes {
		for _, name := range rp {
			chains[i] = append(chains[i], built[name])
			// A filter that also acts on responses (plugins, cors, headers) says so by its type.
			if rf, ok := built[name].(filter.ResponseFilter); ok {
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
	for _, ks := range b.jwks {
		_ = ks.Close()
	}
	b.jwks = nil
	if b.store != nil {
		_ = b.store.Close()
		b.store = nil
	}
	b.limits.Close()
	b.plugins.Close()
}

// hmacFilter builds an hmac policy's filter on the replay cache the policy had (a reload must
// not forget the signatures already accepted, or each one could be replayed right after it).
func (b *policyBuilder) hmacFilter(name string, h *conf.HMACPolicy, p *policyPlan) (filter.Filter, error) {
	files, err := loadPolicyFiles(conf.Policy{HMAC: h})
	if err != nil {
		return nil, err
	}
	o, err := hmacOptions(name, h, files)
	if err != nil {
		return nil, err
	}
	// Same window: the same cache. A changed window gets a new cache that consults the old one
	// until its entries expire (hmac.ReplayCache.Resized).
	o.Replay = b.replay[name].Resized(h.Window.D(), 0, time.Now())
	p.replay[name] = o.Replay
	if h.Replay == conf.HMACReplayRedis {
		if o.Store, err = b.replayStore(p); err != nil {
			return nil, err
		}
	}
	return hmac.New(o)
}
func (b *policyBuilder) jwtFilter(name string, j *conf.JWTPolicy, p *policyPlan) (*jwt.Filter, error) {
	files, err := loadPolicyFiles(conf.Policy{JWT: j})
	if err != nil {
		return nil, err
	}
	o := jwtOptions(name, j, files)
	o.Logger = b.log
	if j.JWKSURL != "" {
		if o.JWKS, err = b.keySet(name, j, files.caPEM, p); err != nil {
			return nil, err
		}
	}
	return jwt.New(o)
}

// policyFiles is what the files a policy names hold, read by loadPolicyFiles before the pure
// translation (translate.go) so that translation does no I/O.
type policyFiles struct {
	publicKeys [][]byte          // jwt public_key_files, in order
	secret     []byte            // jwt hmac_secret_file, trimmed
	caPEM      []byte            // jwt jwks_ca_file
	secrets    map[string][]byte // hmac secrets_file, parsed
}

// loadPolicyFiles reads the files pol names. An api_key policy's file is read by its filter,
// which also re-reads it on SIGHUP.
func loadPolicyFiles(pol conf.Policy) (policyFiles, error) {
	var out policyFiles
	if j := pol.JWT; j != nil {
		for _, file := range j.PublicKeyFiles {
			pem, err := os.ReadFile(file)
			if err != nil {
				return out, err
			}
			out.publicKeys = append(out.publicKeys, pem)
		}
		if j.HMACSecretFile != "" {
			b, err := os.ReadFile(j.HMACSecretFile)
			if err != nil {
				return out, err
			}
			out.secret = []byte(strings.TrimSpace(string(b)))
		}
		if j.JWKSCAFile != "" {
			pem, err := os.ReadFile(j.JWKSCAFile)
			if err != nil {
				return out, fmt.Errorf("jwks_ca_file: %w", err)
			}
			out.caPEM = pem
		}
	}
	if h := pol.HMAC; h != nil {
		data, err := os.ReadFile(h.SecretsFile)
		if err != nil {
			return out, err
		}
		if out.secrets, err = parseSecrets(h.SecretsFile, data); err != nil {
			return out, err
		}
	}
	return out, nil
}

// replayStore returns the shared replay store on the plan's redis block (conf requires one):
// the running one while the block is unchanged, so a reload keeps its connections.
func (b *policyBuilder) replayStore(p *policyPlan) (hmac.ReplayStore, error) {
	if p.store != nil {
		return p.store, nil
	}
	if p.redis == nil {
		return nil, errors.New("hmac replay: redis needs the top-level redis block")
	}
	o := hmac.RedisOptions{Address: p.redis.Address, Password: p.redis.Password, DB: p.redis.DB, Timeout: p.redis.Timeout}
	if b.store != nil && b.storeOpts == o {
		p.store, p.storeOpts = b.store, o
		return p.store, nil
	}
	p.store, p.storeOpts, p.freshStore = hmac.NewRedisReplay(o), o, true
	return p.store, nil
}

// keySet returns the JWKS for j's URL: the plan's own if another policy asked already, the
// running plan's if it fetches the same way, else a new one (which fetches synchronously).
func (b *policyBuilder) keySet(name string, j *conf.JWTPolicy, pemCA []byte, p *policyPlan) (*jwt.JWKS, error) {
	k := jwksKey{url: j.JWKSURL, refresh: j.RefreshInterval.D(), insecure: j.InsecureHTTPJWKS}
	var roots *x509.CertPool
	if j.JWKSCAFile != "" {
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pemCA) {
			return nil, fmt.Errorf("jwks_ca_file %s: no PEM certificates", j.JWKSCAFile)
		}
		k.ca, roots = sha256.Sum256(pemCA), pool
	}
	if ks := p.jwks[k]; ks != nil {
		return ks, nil
	}
	if ks := b.jwks[k]; ks != nil {
		p.jwks[k] = ks
		return ks, nil
	}
	ks, err := jwt.NewJWKS(jwt.JWKSOptions{Name: name, URLs: []string{j.JWKSURL}, AllowHTTP: j.InsecureHTTPJWKS,
		RootCAs: roots, RefreshInterval: k.refresh, Logger: b.log})
	if err != nil {
		return nil, err
	}
	p.jwks[k] = ks
	p.fresh = append(p.fresh, ks)
	return ks, nil
}
