package main

import (
	"bytes"
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"sync/atomic"

	"github.com/hashicorp/go-hclog"

	"github.com/meshgate/meshgate/plugins/sdk"
)

func main() {
	sdk.Serve(newAPIKey(sdk.NewLogger()))
}

// defaultHeader is where clients put the key unless configured otherwise.
const defaultHeader = "X-Api-Key"

// rawConfig is what the user writes:
//
//	config:
//	  header: X-Api-Key          # optional
//	  hide_credentials: true     # optional (default true): strip the key before going upstream
//	  keys:
//	    - consumer: billing
//	      sha256: 9f86d0…        # hex SHA-256 of the key (preferred: the key is not in the file)
//	    - consumer: reports
//	      key: ${REPORTS_KEY}    # or the key itself, hashed at load and then forgotten
//	      routes: [ reports ]    # optional: only these routes; others get 403
type rawConfig struct {
	Header          string   `json:"header"`
	HideCredentials *bool    `json:"hide_credentials"`
	Keys            []rawKey `json:"keys"`
}

type rawKey struct {
	Consumer string   `json:"consumer"`
	SHA256   string   `json:"sha256"`
	Key      string   `json:"key"`
	Routes   []string `json:"routes"`
}

type config struct {
	header string
	hide   bool
	keys   []key
	// challenge is the WWW-Authenticate value sent with 401s.
	challenge string
}

type key struct {
	consumer string
	hash     [sha256.Size]byte
	routes   []string // empty: every route
}

type apiKey struct {
	log hclog.Logger
	cfg atomic.Pointer[config] // nil until configured: every request is then refused
}

var (
	_ sdk.Configurer     = (*apiKey)(nil)
	_ sdk.RequestHandler = (*apiKey)(nil)
)

func newAPIKey(log hclog.Logger) *apiKey { return &apiKey{log: log} }

func (a *apiKey) Describe() sdk.Capabilities {
	header := defaultHeader
	if c := a.cfg.Load(); c != nil {
		header = c.header
	}
	return sdk.Capabilities{
		Name:    "apikey",
		Version: "1.0.0",
		Request: sdk.RequestParts{Headers: sdk.HeaderNames(header)},
		CanDeny: true,
	}
}

func (a *apiKey) Configure(raw []byte) error {
	c, err := parseConfig(raw)
	if err != nil {
		return err
	}
	a.cfg.Store(c)
	a.log.Info("configured", "keys", len(c.keys), "header", c.header)
	return nil
}

func parseConfig(raw []byte) (*config, error) {
	var rc rawConfig
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&rc); err != nil {
		return nil, fmt.Errorf("apikey: %w", err)
	}
	c := &config{header: rc.Header, hide: rc.HideCredentials == nil || *rc.HideCredentials}
	if c.header == "" {
		c.header = defaultHeader
	}
	c.challenge = fmt.Sprintf("ApiKey header=%q", c.header)
	if len(rc.Keys) == 0 {
		return nil, errors.New("apikey: keys: at least one key is required")
	}
	for i, rk := range rc.Keys {
		k := key{consumer: rk.Consumer, routes: rk.Routes}
		if k.consumer == "" {
			return nil, fmt.Errorf("apikey: keys[%d].consumer: required", i)
		}
		switch {
		case rk.SHA256 != "" && rk.Key != "":
			return nil, fmt.Errorf("apikey: keys[%d]: set sha256 or key, not both", i)
		case rk.SHA256 != "":
			b, err := hex.DecodeString(rk.SHA256)
			if err != nil || len(b) != sha256.Size {
				return nil, fmt.Errorf("apikey: keys[%d].sha256: want %d hex digits", i, 2*sha256.Size)
			}
			copy(k.hash[:], b)
		case rk.Key != "":
			k.hash = sha256.Sum256([]byte(rk.Key))
		default:
			return nil, fmt.Errorf("apikey: keys[%d]: sha256 or key is required", i)
		}
		for j := range c.keys {
			if c.keys[j].hash == k.hash {
				return nil, fmt.Errorf("apikey: keys[%d]: same key as keys[%d]", i, j)
			}
		}
		c.keys = append(c.keys, k)
	}
	return c, nil
}

func (a *apiKey) OnRequest(_ context.Context, r *sdk.Request) (sdk.Decision, error) {
	c := a.cfg.Load()
	if c == nil {
		// The host configures a plugin before sending it traffic; failing here (rather than
		// answering 401) lets its fail-closed policy answer, and logs why.
		return sdk.Decision{}, errors.New("apikey: not configured")
	}
	presented := r.Header(c.header)
	if presented == "" {
		return sdk.Respond(401, "missing API key\n").SetHeader("WWW-Authenticate", c.challenge), nil
	}
	sum := sha256.Sum256([]byte(presented))
	// Compare with every key, without stopping at a match, so the time taken says nothing
	// about which key (or whether any) matched.
	match := -1
	for i := range c.keys {
		if subtle.ConstantTimeCompare(sum[:], c.keys[i].hash[:]) == 1 {
			match = i
		}
	}
	if match < 0 {
		a.log.Debug("unknown API key", "request_id", r.RequestID, "route", r.Route)
		return sdk.Respond(401, "invalid API key\n").SetHeader("WWW-Authenticate", c.challenge), nil
	}
	k := &c.keys[match]
	if len(k.routes) > 0 && !slices.Contains(k.routes, r.Route) {
		a.log.Debug("API key not allowed on route", "request_id", r.RequestID, "route", r.Route, "consumer", k.consumer)
		return sdk.Respond(403, "API key not allowed on this route\n"), nil
	}
	d := sdk.Continue().WithConsumer(k.consumer)
	if c.hide {
		// The upstream has no use for the key, and every log it writes would leak it.
		d = d.RemoveHeader(c.header)
	}
	return d, nil
}
