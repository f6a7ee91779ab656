package main

import (
	"bytes"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"maps"
	"slices"
	"strings"
	"sync/atomic"

	"github.com/hashicorp/go-hclog"

	"github.com/meshgate/meshgate/plugins/sdk"
)

func main() {
	// -grpc-only makes the stamper a plugin that does not serve the host's socket, as one
	// built before the socket transport: the host's tests and benchmarks use it to exercise
	// the gRPC fallback.
	grpcOnly := flag.Bool("grpc-only", false, "serve every call over gRPC, ignoring the host's socket")
	flag.Parse()
	var opts []sdk.ServeOption
	if *grpcOnly {
		opts = append(opts, sdk.WithoutSocket())
	}
	sdk.Serve(newStamper(sdk.NewLogger()), opts...)
}

// config is the parsed configuration:
//
//	config:
//	  request:  { X-Stamped-By: meshgate }   # headers set on the upstream request
//	  response: { X-Served-Via: meshgate }   # headers set on the response
type config struct {
	Request  map[string]string `json:"request"`
	Response map[string]string `json:"response"`

	// Prebuilt once per Configure, so each call only returns them.
	decision sdk.Decision
	mutation sdk.ResponseMutation
}

type stamper struct {
	log hclog.Logger
	// cfg is swapped whole by Configure while requests read it.
	cfg atomic.Pointer[config]
}

var (
	_ sdk.Configurer      = (*stamper)(nil)
	_ sdk.RequestHandler  = (*stamper)(nil)
	_ sdk.ResponseHandler = (*stamper)(nil)
)

func newStamper(log hclog.Logger) *stamper {
	s := &stamper{log: log}
	s.cfg.Store(defaultConfig())
	return s
}

// defaultConfig is what an unconfigured stamper does, so that dropping it on a route shows
// that plugins run without writing any config.
func defaultConfig() *config {
	c := &config{Request: map[string]string{"X-Stamped-By": "stamper"}}
	c.build()
	return c
}

func (c *config) build() {
	// Sorted so the headers come out in the same order on every request.
	c.decision = sdk.Continue()
	for _, name := range slices.Sorted(maps.Keys(c.Request)) {
		c.decision = c.decision.SetHeader(name, c.Request[name])
	}
	c.mutation = sdk.ResponseMutation{}
	for _, name := range slices.Sorted(maps.Keys(c.Response)) {
		c.mutation = c.mutation.SetHeader(name, c.Response[name])
	}
}

func (s *stamper) Describe() sdk.Capabilities {
	caps := sdk.Capabilities{Name: "stamper", Version: "1.0.0"}
	// Only the phases this configuration uses: each is one call per request.
	if c := s.cfg.Load(); c != nil {
		if len(c.Request) > 0 {
			caps.Phases |= sdk.PhaseRequest
		}
		if len(c.Response) > 0 {
			caps.Phases |= sdk.PhaseResponse
		}
	}
	return caps
}

func (s *stamper) Configure(raw []byte) error {
	if len(bytes.TrimSpace(raw)) == 0 {
		s.cfg.Store(defaultConfig())
		return nil
	}
	var c config
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&c); err != nil {
		return fmt.Errorf("stamper: %w", err)
	}
	for _, name := range slices.Sorted(maps.Keys(c.Request)) {
		if !validName(name) {
			return fmt.Errorf("stamper: request: %q is not a valid header name", name)
		}
	}
	for _, name := range slices.Sorted(maps.Keys(c.Response)) {
		if !validName(name) {
			return fmt.Errorf("stamper: response: %q is not a valid header name", name)
		}
	}
	c.build()
	s.cfg.Store(&c)
	s.log.Info("configured", "request_headers", len(c.Request), "response_headers", len(c.Response))
	return nil
}

func (s *stamper) OnRequest(context.Context, *sdk.Request) (sdk.Decision, error) {
	return s.cfg.Load().decision, nil
}

func (s *stamper) OnResponse(context.Context, *sdk.Response) (sdk.ResponseMutation, error) {
	return s.cfg.Load().mutation, nil
}

// validName accepts RFC 9110 token characters; the host would refuse anything else anyway, but
// saying so at configuration time names the culprit.
func validName(name string) bool {
	if name == "" {
		return false
	}
	for i := 0; i < len(name); i++ {
		c := name[i]
		switch {
		case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9':
		case strings.IndexByte("!#$%&'*+-.^_`|~", c) >= 0:
		default:
			return false
		}
	}
	return true
}
