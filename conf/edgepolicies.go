package conf

import (
	"net/netip"
	"net/url"
	"regexp"
	"slices"
	"strings"
	"time"
)

// The API-management policies of the edge (and of a sidecar's inbound): who may call (jwt,
// api_key, hmac, ip), from which browser origins (cors), and header/path transforms
// (headers). Each is one block of a named Policy.

// JWTPolicy verifies a bearer token.
type JWTPolicy struct {
	JWKSURL         string            `yaml:"jwks_url"`         // keys fetched and refreshed from here; https:// only
	PublicKeyFiles  []string          `yaml:"public_key_files"` // or static PEM public keys
	HMACSecretFile  string            `yaml:"hmac_secret_file"` // or a shared secret (then only HS algorithms)
	Issuer          string            `yaml:"issuer"`           // required iss, when set
	Audiences       []string          `yaml:"audiences"`        // any of them, when set
	Algorithms      []string          `yaml:"algorithms"`       // default RS256, ES256 (HS256 with a secret); never none
	Leeway          Duration          `yaml:"leeway"`           // clock skew allowed; default 30s
	RequiredClaims  map[string]string `yaml:"required_claims"`  // claim → value ("" = must exist)
	ForwardClaims   map[string]string `yaml:"forward_claims"`   // claim → upstream header
	IdentityClaim   string            `yaml:"identity_claim"`   // default sub
	Header          string            `yaml:"header"`           // default Authorization (Bearer)
	Cookie          string            `yaml:"cookie"`           // optional: token from this cookie
	RefreshInterval Duration          `yaml:"refresh_interval"` // JWKS refresh; default 1h
	// CacheTTL: a verified token is trusted without re-verifying its signature for at most this
	// long (and never past its exp); default 1m; a negative value verifies every request.
	CacheTTL Duration `yaml:"cache_ttl"`
	// StripToken removes the verified token (its header, or only its cookie) before the
	// request goes upstream; default true, so a backend never sees a credential it could replay.
	StripToken *bool `yaml:"strip_token"`
	// InsecureHTTPJWKS allows an http:// jwks_url. Keys fetched in clear text can be replaced by
	// anyone on the path, who then mints tokens the gateway accepts: only for a loopback IdP.
	InsecureHTTPJWKS bool `yaml:"insecure_http_jwks"`
	// JWKSCAFile: PEM CA certificates trusted for the jwks_url's TLS (a private IdP), instead
	// of the system roots.
	JWKSCAFile string `yaml:"jwks_ca_file"`
}

// Strips reports whether the verified token is removed before forwarding (strip_token).
func (j *JWTPolicy) Strips() bool { return j.StripToken == nil || *j.StripToken }

// APIKeyPolicy authenticates by a key; keys are stored hashed.
type APIKeyPolicy struct {
	File   string `yaml:"file"`   // lines "consumer:sha256hex"; read at start and on every reload (SIGHUP)
	Header string `yaml:"header"` // default X-Api-Key
	Query  string `yaml:"query"`  // optional query parameter
	// KeepHeader forwards the key upstream; by default it is removed.
	KeepHeader bool `yaml:"keep_header"`
}

// HMACPolicy verifies signed requests.
type HMACPolicy struct {
	SecretsFile string   `yaml:"secrets_file"` // lines "keyid:secret"
	Headers     []string `yaml:"headers"`      // signed headers beyond the defaults
	Window      Duration `yaml:"window"`       // allowed clock skew and replay window; default 5m
	// Replay is where accepted signatures are remembered: "memory" (default; this process,
	// kept across reloads) or "redis" (shared by every instance on the top-level redis block,
	// so a request accepted by one cannot be replayed to another; fails closed with 503 while
	// Redis cannot answer).
	Replay string `yaml:"replay"`
}

// HMAC replay stores.
const (
	HMACReplayMemory = "memory"
	HMACReplayRedis  = "redis"
)

// IPPolicy allows or denies by the trusted client address (X-Forwarded-For only through
// listeners[].trusted_proxies).
type IPPolicy struct {
	Allow []string `yaml:"allow"` // CIDRs or IPs; when set, everything else is denied
	Deny  []string `yaml:"deny"`  // wins over allow
}

// CORSPolicy answers preflights at the edge and decorates responses.
type CORSPolicy struct {
	Origins     []string `yaml:"origins"` // exact, "*", or https://*.example.com
	Methods     []string `yaml:"methods"` // default GET, HEAD, POST
	Headers     []string `yaml:"headers"`
	Expose      []string `yaml:"expose"`
	Credentials bool     `yaml:"credentials"`
	MaxAge      Duration `yaml:"max_age"` // default 10m
}

// HeadersPolicy transforms requests and responses.
type HeadersPolicy struct {
	Request  HeaderOps `yaml:"request"`
	Response HeaderOps `yaml:"response"`
	// RewritePathRegex and RewritePathReplacement rewrite the upstream path (RE2, $1 groups).
	RewritePathRegex       string `yaml:"rewrite_path_regex"`
	RewritePathReplacement string `yaml:"rewrite_path_replacement"`
}

// HeaderOps are applied remove, then set, then add.
type HeaderOps struct {
	Set    map[string]string `yaml:"set"`
	Add    map[string]string `yaml:"add"`
	Remove []string          `yaml:"remove"`
}

const (
	defaultJWTLeeway    = 30 * time.Second
	defaultJWKSRefresh  = time.Hour
	defaultJWTIdentity  = "sub"
	defaultAPIKeyHeader = "X-Api-Key"
	defaultHMACWindow   = 5 * time.Minute
	defaultCORSMaxAge   = 10 * time.Minute
)

func edgePolicyDefaults(p *Policy) {
	if j := p.JWT; j != nil {
		setDur(&j.Leeway, defaultJWTLeeway)
		setDur(&j.RefreshInterval, defaultJWKSRefresh)
		if j.IdentityClaim == "" {
			j.IdentityClaim = defaultJWTIdentity
		}
		if j.StripToken == nil {
			t := true
			j.StripToken = &t
		}
		if len(j.Algorithms) == 0 {
			if j.HMACSecretFile != "" {
				j.Algorithms = []string{"HS256"}
			} else {
				j.Algorithms = []string{"RS256", "ES256"}
			}
		}
	}
	if k := p.APIKey; k != nil && k.Header == "" {
		k.Header = defaultAPIKeyHeader
	}
	if h := p.HMAC; h != nil {
		setDur(&h.Window, defaultHMACWindow)
		if h.Replay == "" {
			h.Replay = HMACReplayMemory
		}
	}
	if c := p.CORS; c != nil {
		setDur(&c.MaxAge, defaultCORSMaxAge)
		if len(c.Methods) == 0 {
			c.Methods = []string{"GET", "HEAD", "POST"}
		}
	}
}

var jwtAlgorithms = []string{"RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512", "EdDSA", "HS256", "HS384", "HS512"}

func (v *validator) edgePolicy(c *Config, p path, pol Policy) {
	if j := pol.JWT; j != nil {
		jp := p.key("jwt")
		sources := 0
		for _, b := range []bool{j.JWKSURL != "", len(j.PublicKeyFiles) > 0, j.HMACSecretFile != ""} {
			if b {
				sources++
			}
		}
		if sources != 1 {
			v.add(jp, "exactly one of jwks_url, public_key_files, hmac_secret_file must be set")
		}
		if j.JWKSURL != "" {
			u, err := url.Parse(j.JWKSURL)
			switch {
			case err != nil || u.Host == "" || (u.Scheme != "https" && u.Scheme != "http"):
				v.add(jp.key("jwks_url"), "want an https:// URL")
			case u.Scheme == "http" && !j.InsecureHTTPJWKS:
				// Keys fetched in clear text can be swapped on the path: whoever does mints tokens.
				v.add(jp.key("jwks_url"), "must be https:// (keys fetched over plain http can be replaced in transit; set insecure_http_jwks: true only for a loopback IdP)")
			case u.Scheme == "http" && j.JWKSCAFile != "":
				v.add(jp.key("jwks_ca_file"), "is for an https:// jwks_url")
			}
		} else {
			if j.InsecureHTTPJWKS {
				v.add(jp.key("insecure_http_jwks"), "is only for jwks_url")
			}
			if j.JWKSCAFile != "" {
				v.add(jp.key("jwks_ca_file"), "is only for jwks_url")
			}
		}
		for i, a := range j.Algorithms {
			switch {
			case strings.EqualFold(a, "none"):
				v.add(jp.key("algorithms").idx(i), `"none" is never allowed`)
			case !slices.Contains(jwtAlgorithms, a):
				v.add(jp.key("algorithms").idx(i), "%q is not one of %s", a, strings.Join(jwtAlgorithms, ", "))
			case strings.HasPrefix(a, "HS") != (j.HMACSecretFile != ""):
				// Mixing HS with public-key algorithms is the RS/HS confusion attack's opening.
				v.add(jp.key("algorithms").idx(i), "%s: HS algorithms go only with hmac_secret_file, and hmac_secret_file only with HS algorithms", a)
			}
		}
		v.nonNegDur(jp.key("leeway"), j.Leeway)
		for claim, h := range j.ForwardClaims {
			switch {
			case !isToken(h):
				v.add(jp.key("forward_claims").key(claim), "invalid header name %q", h)
			case ownedHeader(h):
				v.add(jp.key("forward_claims").key(claim), "%s is set by the gateway itself (docs/security.md)", h)
			}
		}
	}
	if k := pol.APIKey; k != nil {
		if k.File == "" {
			v.add(p.key("api_key").key("file"), "the keys file is required (lines consumer:sha256hex)")
		}
		if !isToken(k.Header) {
			v.add(p.key("api_key").key("header"), "invalid header name %q", k.Header)
		}
	}
	if h := pol.HMAC; h != nil {
		if h.SecretsFile == "" {
			v.add(p.key("hmac").key("secrets_file"), "the secrets file is required (lines keyid:secret)")
		}
		if h.Window <= 0 {
			v.add(p.key("hmac").key("window"), "must be positive")
		}
		switch h.Replay {
		case HMACReplayMemory:
		case HMACReplayRedis:
			if c.Redis == nil {
				v.add(p.key("hmac").key("replay"), "a shared replay store needs the top-level redis block")
			}
		default:
			v.add(p.key("hmac").key("replay"), "%q is not one of memory, redis", h.Replay)
		}
	}
	if ip := pol.IP; ip != nil {
		if len(ip.Allow) == 0 && len(ip.Deny) == 0 {
			v.add(p.key("ip"), "allow or deny is required")
		}
		for name, list := range map[string][]string{"allow": ip.Allow, "deny": ip.Deny} {
			for i, s := range list {
				if _, err := netip.ParsePrefix(s); err != nil {
					if _, err := netip.ParseAddr(s); err != nil {
						v.add(p.key("ip").key(name).idx(i), "%q is not a CIDR or an IP address", s)
					}
				}
			}
		}
	}
	if c := pol.CORS; c != nil {
		if len(c.Origins) == 0 {
			v.add(p.key("cors").key("origins"), "at least one origin is required")
		}
		if c.Credentials && slices.Contains(c.Origins, "*") {
			v.add(p.key("cors").key("origins"), `"*" cannot be used with credentials: true (browsers refuse it)`)
		}
	}
	if h := pol.Headers; h != nil {
		hp := p.key("headers")
		for side, ops := range map[string]HeaderOps{"request": h.Request, "response": h.Response} {
			for _, m := range []map[string]string{ops.Set, ops.Add} {
				for name := range m {
					switch {
					case !isToken(name):
						v.add(hp.key(side).key(name), "invalid header name %q", name)
					case side == "request" && ownedHeader(name):
						// The gateway sends these exactly once, with its own value: a policy's
						// value would be overwritten, so say so rather than ignore it.
						v.add(hp.key(side).key(name), "%s is set by the gateway itself (docs/security.md)", name)
					}
				}
			}
		}
		if h.RewritePathRegex != "" {
			if _, err := regexp.Compile(h.RewritePathRegex); err != nil {
				v.add(hp.key("rewrite_path_regex"), "invalid regex: %v", err)
			}
		}
	}
}

// ownedHeader reports whether name is a request header the gateway owns and always sets itself
// (docs/security.md): forwarding headers, the request id and the deadline budget. The identity
// header is listener-specific and checked by the engine.
func ownedHeader(name string) bool {
	switch strings.ToLower(name) {
	case "x-forwarded-for", "x-forwarded-proto", "x-forwarded-host", "x-forwarded-port", "forwarded",
		"x-real-ip", "x-request-id", "x-meshgate-budget-ms":
		return true
	}
	return false
}
