package consul

import (
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"strings"
	"time"

	"github.com/hashicorp/consul/api"
)

// Environment variables consulted for the ACL token when the config sets none; the same names
// the consul CLI uses.
const (
	EnvToken     = "CONSUL_HTTP_TOKEN"
	EnvTokenFile = "CONSUL_HTTP_TOKEN_FILE"
)

// ErrEmptyToken is returned when a token file exists but holds no token: a templater that
// has not rendered yet, most likely, and running tokenless would only earn 403s.
var ErrEmptyToken = errors.New("token file is empty")

// ResolveToken applies the documented precedence: tokenFile, then token, then the file named
// by CONSUL_HTTP_TOKEN_FILE, then CONSUL_HTTP_TOKEN. getenv nil means os.Getenv. An empty
// result means "no token" (the agent's default token applies).
func ResolveToken(token, tokenFile string, getenv func(string) string) (string, error) {
	if getenv == nil {
		getenv = os.Getenv
	}
	switch {
	case tokenFile != "":
		return readToken(tokenFile)
	case token != "":
		return token, nil
	}
	if f := getenv(EnvTokenFile); f != "" {
		return readToken(f)
	}
	return getenv(EnvToken), nil
}

func readToken(path string) (string, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return "", fmt.Errorf("read token file: %w", err)
	}
	tok := strings.TrimSpace(string(data))
	if tok == "" {
		return "", fmt.Errorf("%s: %w", path, ErrEmptyToken)
	}
	return tok, nil
}

// newClient builds an api.Client from our options only. We hand api.NewClient a ready
// http.Client so it does not pull TLS settings from CONSUL_* variables behind the config's back;
// the resolved token is also sent per query (QueryOptions.Token), which overrides whatever the
// api package picked up from the environment.
func newClient(o Options, token string) (*api.Client, *http.Transport, error) {
	tr := &http.Transport{
		// No proxy, whatever HTTP_PROXY/HTTPS_PROXY say: every request carries the ACL token,
		// and Connect answers carry the leaf certificate's private key. The agent is local (or
		// named in the config); a proxy inherited from a shell or a unit's environment must
		// never see them.
		Proxy: nil,
		DialContext: (&net.Dialer{
			Timeout: dialTimeout,
			// Keep-alive probes notice a silently dead agent connection long before a 5 minute
			// blocking query would time out.
			KeepAlive: 15 * time.Second,
		}).DialContext,
		// One connection per in-flight blocking query: with many watched services the pool must
		// keep them all, or every answer costs a new connection.
		MaxIdleConnsPerHost: 4096,
		IdleConnTimeout:     90 * time.Second,
		// Every watched service holds a connection; net/http's 4 KiB defaults per direction add
		// up to megabytes at a thousand services. Requests are one short GET line, and answers
		// larger than the read buffer are simply read in more calls.
		WriteBufferSize:     1 << 10,
		ReadBufferSize:      2 << 10,
		TLSHandshakeTimeout: 10 * time.Second,
	}
	if o.Scheme == "https" || o.TLS != (TLSOptions{}) {
		tc, err := api.SetupTLSConfig(&api.TLSConfig{
			Address:            o.TLS.ServerName,
			CAFile:             o.TLS.CAFile,
			CertFile:           o.TLS.CertFile,
			KeyFile:            o.TLS.KeyFile,
			InsecureSkipVerify: o.TLS.InsecureSkipVerify,
		})
		if err != nil {
			return nil, nil, fmt.Errorf("tls: %w", err)
		}
		tc.MinVersion = tls.VersionTLS12
		tr.TLSClientConfig = tc
	}
	c, err := api.NewClient(&api.Config{
		Address:    o.Address,
		Scheme:     o.Scheme,
		Datacenter: o.Datacenter,
		// Set here too so NewClient does not go and read CONSUL_HTTP_TOKEN_FILE itself.
		Token:      token,
		Transport:  tr,
		HttpClient: &http.Client{Transport: tr},
	})
	if err != nil {
		return nil, nil, err
	}
	return c, tr, nil
}

// ClientOptions are the agent connection: what Options and RegistrarOptions carry when they
// build a client of their own.
type ClientOptions struct {
	Address    string // default DefaultAddress
	Scheme     string // "http" (default) or "https"
	Datacenter string
	Token      string
	TokenFile  string
	Getenv     func(string) string // nil: os.Getenv (CONSUL_HTTP_TOKEN(_FILE))
	TLS        TLSOptions
}

// Client is one connection to the Consul agent: its address, resolved ACL token, TLS settings
// and a connection pool sized for many blocking queries. A process builds one and shares it
// between discovery, KV, registration, Connect certificates and intentions, so every reader
// and writer follows the same rules (no proxy, the config's token and TLS) and one pool holds
// every blocking query.
type Client struct {
	api   *api.Client
	tr    *http.Transport
	token string
	dc    string
	// address and tls (nil for http) are how the health watches dial the agent themselves
	// (agentconn.go).
	address string
	tls     *tls.Config
}

// NewClient checks the options, resolves the token and builds the client; it does not contact
// Consul.
func NewClient(o ClientOptions) (*Client, error) {
	if o.Address == "" {
		o.Address = DefaultAddress
	}
	switch o.Scheme {
	case "":
		o.Scheme = "http"
	case "http", "https":
	default:
		return nil, fmt.Errorf("consul: scheme %q: want http or https", o.Scheme)
	}
	token, err := ResolveToken(o.Token, o.TokenFile, o.Getenv)
	if err != nil {
		return nil, fmt.Errorf("consul: token: %w", err)
	}
	// The token goes into a request header the health watches write themselves: a control
	// character in it would end the header early.
	if strings.ContainsFunc(token, func(r rune) bool { return r < 0x20 || r == 0x7f }) {
		return nil, errors.New("consul: token: contains a control character")
	}
	c, tr, err := newClient(Options{Address: o.Address, Scheme: o.Scheme, Datacenter: o.Datacenter, TLS: o.TLS}, token)
	if err != nil {
		return nil, fmt.Errorf("consul: client: %w", err)
	}
	cl := &Client{api: c, tr: tr, token: token, dc: o.Datacenter, address: o.Address}
	if o.Scheme == "https" {
		cl.tls = tr.TLSClientConfig
	}
	return cl, nil
}

// API is the agent client, for readers outside this package (mesh/identity, mesh/intentions).
func (c *Client) API() *api.Client { return c.api }

// Token is the resolved ACL token; callers send it per query.
func (c *Client) Token() string { return c.token }

// closeIdle closes pooled connections nobody is using; connections in use are not touched, so
// one user of a shared client closing does not cut another's blocking query.
func (c *Client) closeIdle() { c.tr.CloseIdleConnections() }
