package jwt

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"time"

	"github.com/MicahParks/jwkset"
	"github.com/MicahParks/keyfunc/v3"
	gojwt "github.com/golang-jwt/jwt/v5"
	"github.com/rs/zerolog"
	"golang.org/x/time/rate"
)

// ErrInsecureJWKS is returned for a JWKS URL that is not https:// without AllowHTTP: keys
// fetched in clear text can be replaced by anyone on the path, who then mints valid tokens.
var ErrInsecureJWKS = errors.New("jwt: jwks url must be https")

// JWKSOptions configures a remote key set.
type JWKSOptions struct {
	Name string   // for log lines: the (first) policy using it
	URLs []string // https:// unless AllowHTTP
	// AllowHTTP accepts http:// URLs (a loopback IdP in a test or a benchmark).
	AllowHTTP bool

	HTTPClient         *http.Client   // default: a private client with FetchTimeout and RootCAs
	RootCAs            *x509.CertPool // the private client's TLS roots; nil = the system's
	FetchTimeout       time.Duration  // default DefaultFetchTimeout
	RefreshInterval    time.Duration  // background refresh; default DefaultRefreshInterval
	UnknownKIDInterval time.Duration  // least time between unknown-kid refreshes; default 1m
	Logger             zerolog.Logger
}

// JWKS is a remote key set: one storage per URL refreshed in the background, and the
// unknown-kid gate. It is separate from Filter so that a key set can outlive the filters using
// it: the gateway keeps one per URL across reloads, so a reload neither refetches the keys
// synchronously nor forgets them. Safe for concurrent use; Close stops the refresh.
type JWKS struct {
	kf        keyfunc.Keyfunc
	cancel    context.CancelFunc
	transport *http.Transport // ours to close; nil when the caller gave a client
}

// NewJWKS validates opts and fetches every URL once (synchronously, bounded by FetchTimeout).
// A failed first fetch is not an error: the IdP may be down while we start, and the
// unknown-kid refresh recovers once it is back (requests fail closed meanwhile).
func NewJWKS(opts JWKSOptions) (*JWKS, error) {
	if len(opts.URLs) == 0 {
		return nil, errors.New("jwt: jwks: no urls")
	}
	for _, u := range opts.URLs {
		pu, err := url.Parse(u)
		switch {
		case err != nil || pu.Host == "":
			return nil, fmt.Errorf("jwt: jwks url %q: not an absolute URL", u)
		case pu.Scheme == "https":
		case pu.Scheme == "http" && opts.AllowHTTP:
		default:
			return nil, fmt.Errorf("%w: %q", ErrInsecureJWKS, u)
		}
	}
	if opts.FetchTimeout <= 0 {
		opts.FetchTimeout = DefaultFetchTimeout
	}
	if opts.RefreshInterval <= 0 {
		opts.RefreshInterval = DefaultRefreshInterval
	}
	if opts.UnknownKIDInterval <= 0 {
		opts.UnknownKIDInterval = DefaultUnknownKIDInterval
	}
	k := &JWKS{}
	client := opts.HTTPClient
	if client == nil {
		k.transport = http.DefaultTransport.(*http.Transport).Clone()
		if opts.RootCAs != nil {
			k.transport.TLSClientConfig = &tls.Config{RootCAs: opts.RootCAs, MinVersion: tls.VersionTLS12}
		}
		client = &http.Client{Timeout: opts.FetchTimeout, Transport: k.transport}
	}
	ctx, cancel := context.WithCancel(context.Background())
	kf, err := newRemote(ctx, opts, client)
	if err != nil {
		cancel()
		return nil, err
	}
	k.kf, k.cancel = kf, cancel
	return k, nil
}

// Close stops the background refresh. Filters still holding the set verify against the keys
// it already has.
func (k *JWKS) Close() error {
	k.cancel()
	if k.transport != nil {
		k.transport.CloseIdleConnections()
	}
	return nil
}

func (k *JWKS) keyfunc(t *gojwt.Token) (any, error) { return k.kf.Keyfunc(t) }

// newRemote builds the JWKS cache: one storage per URL refreshed in the background, read
// through a storage that refreshes synchronously on an unknown kid at most once per
// UnknownKIDInterval. keyfunc's own unknown-kid limiter blocks the caller until the next token
// (up to a minute by default); ours fails fast instead, so a flood of random kids costs one fetch
// per interval and no parked request goroutines.
func newRemote(ctx context.Context, opts JWKSOptions, client *http.Client) (keyfunc.Keyfunc, error) {
	log := opts.Logger
	urls := make(map[string]jwkset.Storage, len(opts.URLs))
	for _, u := range opts.URLs {
		s, err := jwkset.NewStorageFromHTTP(u, jwkset.HTTPClientStorageOptions{
			Client:                    client,
			Ctx:                       ctx,
			HTTPTimeout:               opts.FetchTimeout,
			NoErrorReturnFirstHTTPReq: true,
			RefreshInterval:           opts.RefreshInterval,
			RefreshErrorHandler: func(_ context.Context, err error) {
				log.Warn().Str("policy", opts.Name).Str("jwks_url", u).Err(err).Msg("jwks refresh failed")
			},
		})
		if err != nil {
			return nil, fmt.Errorf("jwt: jwks url %q: %w", u, err)
		}
		urls[u] = s
	}
	plain, err := jwkset.NewHTTPClient(jwkset.HTTPClientOptions{HTTPURLs: urls})
	if err != nil {
		return nil, fmt.Errorf("jwt: jwks: %w", err)
	}
	refreshing, err := jwkset.NewHTTPClient(jwkset.HTTPClientOptions{
		HTTPURLs: urls,
		// Our gate already decided; the library must not wait again. RateLimitWaitMax also
		// bounds the refresh fetch itself.
		RefreshUnknownKID: rate.NewLimiter(rate.Inf, 1),
		RateLimitWaitMax:  opts.FetchTimeout,
	})
	if err != nil {
		return nil, fmt.Errorf("jwt: jwks: %w", err)
	}
	gated := gatedStorage{
		Storage:    plain,
		refreshing: refreshing,
		gate:       rate.NewLimiter(rate.Every(opts.UnknownKIDInterval), 1),
	}
	return keyfunc.New(keyfunc.Options{Ctx: ctx, Storage: gated})
}

// gatedStorage reads from the cache and, on a miss the gate allows, refreshes every URL once.
type gatedStorage struct {
	jwkset.Storage
	refreshing jwkset.Storage
	gate       *rate.Limiter
}

func (g gatedStorage) KeyRead(ctx context.Context, kid string) (jwkset.JWK, error) {
	jwk, err := g.Storage.KeyRead(ctx, kid)
	if errors.Is(err, jwkset.ErrKeyNotFound) && g.gate.Allow() {
		return g.refreshing.KeyRead(ctx, kid)
	}
	return jwk, err
}
