package gateway

import (
	"bytes"
	"encoding"
	"encoding/json"
	"flag"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"reflect"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/meshgate/meshgate/conf"
	"github.com/meshgate/meshgate/discovery/consul"
	"github.com/meshgate/meshgate/gateway/route"
	"github.com/meshgate/meshgate/mesh/upstream"
)

var update = flag.Bool("update", false, "rewrite testdata/translate/*.golden from the current translation")

// translation is what translate.go makes of a config, as data: every value the engine packages
// receive from the config, nothing they receive from the process (handlers, loggers, metrics).
type translation struct {
	Listeners []listenerView          `json:"listeners"`
	Routes    map[string][]route.Spec `json:"routes"` // by listener, in config order
	Clusters  []clusterOptsView       `json:"clusters"`
	Policies  map[string]any          `json:"policies,omitempty"` // by name: its kind's Options, as data
	Register  any                     `json:"register,omitempty"` // what is registered in Consul, in order
	Identity  any                     `json:"identity,omitempty"` // the Connect identity and its intentions
	Consul    *consulView             `json:"consul,omitempty"`
	// WebSocketOff are the routes that refuse WebSocket handshakes (routes[].websocket: false).
	WebSocketOff []string `json:"websocket_off,omitempty"`
	Tracing      any      `json:"tracing,omitempty"` // the tracer's options
}

type listenerView struct {
	Name, Address                                             string
	ReadHeaderTimeout, ReadTimeout, WriteTimeout, IdleTimeout string
	MaxHeaderBytes, StreamThreshold, MaxConnections           int
	MaxConnectionsPerIP                                       int
	PerIPExempt                                               []string `json:",omitempty"`
	// The request engine's part.
	TLS, Connect    bool
	TrustedPeers    []string `json:",omitempty"`
	TrustedProxies  []string `json:",omitempty"`
	IdentityHeader  string
	MaxBodyBytes    int64
	Redirect        string `json:",omitempty"` // tls.redirect_from listener's address
	RedirectTimeout string `json:",omitempty"`
	WebSocketIdle   string
}

type clusterOptsView struct {
	Name, Policy                string
	ConnectTimeout, IdleTimeout string
	MaxConnsPerHost             int
	MaxResponseBytes            int64
	Retry                       upstream.RetryPolicy
	Outlier                     upstream.OutlierOptions
	Breaker                     upstream.BreakerOptions
	RetryBudget                 upstream.RetryBudgetOptions
	MaxInFlight                 int
	ConnectService              string `json:",omitempty"` // reached over Connect as this Consul service
}

type consulView struct {
	Address, Scheme, Datacenter, TokenFile, Wait string
	TokenSet                                     bool
	TLS                                          any
	Subsets                                      any
}

func translateForTest(t *testing.T, cfg *conf.Config) translation {
	t.Helper()
	out := translation{Routes: map[string][]route.Spec{}}
	for _, lc := range cfg.Listeners {
		lo, ho := listenerOptions(lc), handlerOptions(lc)
		v := listenerView{
			Name: lo.Name, Address: lo.Address,
			ReadHeaderTimeout: lo.ReadHeaderTimeout.String(), ReadTimeout: lo.ReadTimeout.String(),
			WriteTimeout: lo.WriteTimeout.String(), IdleTimeout: lo.IdleTimeout.String(),
			MaxHeaderBytes: lo.MaxHeaderBytes, StreamThreshold: lo.StreamThreshold, MaxConnections: lo.MaxConnections,
			MaxConnectionsPerIP: lo.MaxConnectionsPerIP,
			TLS:                 ho.TLS, Connect: ho.Connect, TrustedPeers: ho.TrustedPeers,
			IdentityHeader: ho.IdentityHeader, MaxBodyBytes: ho.MaxBodyBytes,
			WebSocketIdle: ho.WebSocketIdleTimeout.String(),
		}
		for _, p := range lo.PerIPExempt {
			v.PerIPExempt = append(v.PerIPExempt, p.String())
		}
		for _, p := range ho.TrustedProxies {
			v.TrustedProxies = append(v.TrustedProxies, p.String())
		}
		if lc.TLS != nil && lc.TLS.RedirectFrom != "" {
			ro := redirectOptions(lc)
			v.Redirect, v.RedirectTimeout = ro.Address, ro.ReadTimeout.String()
		}
		out.Listeners = append(out.Listeners, v)
	}
	specs := make([]route.Spec, len(cfg.Routes))
	for i, r := range cfg.Routes {
		specs[i] = routeSpec(i, r)
		if !routeWebSocket(r) {
			out.WebSocketOff = append(out.WebSocketOff, r.Name)
		}
	}
	for name, ls := range listenerRoutes(cfg, specs) {
		out.Routes[name] = ls
	}
	for _, name := range referencedServices(cfg) {
		o, err := clusterOptions(name, cfg.Services[name])
		if err != nil {
			t.Fatalf("services.%s: %v", name, err)
		}
		policy := ""
		if n, ok := o.Policy.(interface{ Name() string }); ok {
			policy = n.Name()
		}
		cv := clusterOptsView{Name: o.Name, Policy: policy, ConnectTimeout: o.ConnectTimeout.String(), IdleTimeout: o.IdleTimeout.String(),
			MaxConnsPerHost: o.MaxConnsPerHost, MaxResponseBytes: o.MaxResponseBytes, Retry: o.Retry, Outlier: o.Outlier,
			Breaker: o.Breaker, RetryBudget: o.RetryBudget, MaxInFlight: o.MaxInFlight}
		if cs, ok := connectService(cfg, name); ok {
			cv.ConnectService = cs
		}
		out.Clusters = append(out.Clusters, cv)
	}
	for name, pol := range cfg.Policies {
		if out.Policies == nil {
			out.Policies = map[string]any{}
		}
		var o any
		switch pol.Kind() {
		case conf.KindRateLimit:
			o = rateLimitPolicy(name, pol.RateLimit)
		case conf.KindFault:
			o = faultOptions(name, pol.Fault)
		case conf.KindIP:
			o = ipOptions(name, pol.IP)
		case conf.KindCORS:
			o = corsOptions(name, pol.CORS)
		case conf.KindHeaders:
			o = headersOptions(name, pol.Headers)
		case conf.KindAPIKey:
			o = apiKeyOptions(name, pol.APIKey)
		case conf.KindJWT:
			o = jwtOptions(name, pol.JWT, policyFiles{}) // file contents are the loading step's
		case conf.KindHMAC:
			o, _ = hmacOptions(name, pol.HMAC, policyFiles{secrets: map[string][]byte{}})
		case conf.KindPlugin:
			o = map[string]string{"plugin": pol.Plugin}
		}
		out.Policies[name] = map[string]any{string(pol.Kind()): plain(reflect.ValueOf(o))}
	}
	// Registration, for listeners bound where the config says (a real run fills port 0).
	bound := map[string]net.Addr{}
	for _, lc := range cfg.Listeners {
		if a, err := net.ResolveTCPAddr("tcp", lc.Address); err == nil {
			bound[lc.Name] = a
		}
	}
	checkURL := "http://" + cfg.Admin.Address + "/ready"
	switch cc := cfg.Discovery.Consul; {
	case cc == nil:
	case cfg.Sidecar != nil:
		out.Register = plain(reflect.ValueOf(sidecarRegistrations(cfg.Sidecar, bound, checkURL)))
	case cc.Register != nil && len(cfg.Listeners) > 0:
		out.Register = plain(reflect.ValueOf([]consul.RegistrarOptions{edgeRegistrarOptions(*cc.Register, addrPort(bound[cfg.Listeners[0].Name]), checkURL)}))
	}
	if ic := cfg.Identity; ic != nil && ic.Connect {
		out.Identity = map[string]any{"identity": plain(reflect.ValueOf(identityOptions(ic))),
			"intentions": plain(reflect.ValueOf(intentionsOptions(ic)))}
	}
	if cfg.Tracing != nil {
		out.Tracing = plain(reflect.ValueOf(tracingOptions(cfg)))
	}
	if cc := cfg.Discovery.Consul; cc != nil {
		cl, co := clientOptions(cc), consulOptions(cc)
		out.Consul = &consulView{Address: cl.Address, Scheme: cl.Scheme, Datacenter: cl.Datacenter, TokenFile: cl.TokenFile,
			Wait: co.Wait.String(), TokenSet: cl.Token != "", TLS: cl.TLS, Subsets: co.Subsets}
	}
	return out
}

// TestTranslateExamples: each shipped example translates to its committed golden file. A change
// to translation (or to an example) shows up as a diff of these files in review; run
// `go test ./gateway -run TestTranslateExamples -update` to accept it.
func TestTranslateExamples(t *testing.T) {
	files, err := filepath.Glob("../conf/examples/*.yaml")
	if err != nil || len(files) < 5 {
		t.Fatalf("examples: %v %v", files, err)
	}
	for _, f := range files {
		name := strings.TrimSuffix(filepath.Base(f), ".yaml")
		t.Run(name, func(t *testing.T) {
			cfg, err := conf.Load(f)
			if err != nil {
				t.Fatal(err)
			}
			got, err := json.MarshalIndent(translateForTest(t, cfg.Expanded()), "", "  ")
			if err != nil {
				t.Fatal(err)
			}
			got = append(got, '\n')
			golden := filepath.Join("testdata", "translate", name+".golden")
			if *update {
				if err := os.MkdirAll(filepath.Dir(golden), 0o755); err != nil {
					t.Fatal(err)
				}
				if err := os.WriteFile(golden, got, 0o644); err != nil {
					t.Fatal(err)
				}
				return
			}
			want, err := os.ReadFile(golden)
			if err != nil {
				t.Fatalf("%v (run with -update to create it)", err)
			}
			if !bytes.Equal(got, want) {
				t.Errorf("%s: translation differs from %s (run with -update to accept):\n%s", f, golden, lineDiff(string(want), string(got)))
			}
		})
	}
}

// lineDiff lists the lines that differ, enough to see what changed without a diff tool.
func lineDiff(want, got string) string {
	w, g := strings.Split(want, "\n"), strings.Split(got, "\n")
	var b strings.Builder
	for i := 0; i < max(len(w), len(g)); i++ {
		var wl, gl string
		if i < len(w) {
			wl = w[i]
		}
		if i < len(g) {
			gl = g[i]
		}
		if wl != gl {
			b.WriteString("  line " + strconv.Itoa(i+1) + ":\n    want " + wl + "\n    got  " + gl + "\n")
		}
	}
	return b.String()
}

// plain is v as data for the golden files: exported fields only, without functions, channels
// and loggers (the process's, not the config's); durations, prefixes and other text values as
// their text.
func plain(v reflect.Value) any {
	if !v.IsValid() {
		return nil
	}
	if v.Kind() != reflect.Interface && v.Kind() != reflect.Pointer || !v.IsNil() {
		if tm, ok := v.Interface().(encoding.TextMarshaler); ok && v.Kind() != reflect.Pointer {
			b, _ := tm.MarshalText()
			return string(b)
		}
		if d, ok := v.Interface().(time.Duration); ok {
			return d.String()
		}
	}
	switch v.Kind() {
	case reflect.Pointer, reflect.Interface:
		if v.IsNil() {
			return nil
		}
		return plain(v.Elem())
	case reflect.Struct:
		out := map[string]any{}
		for i := 0; i < v.NumField(); i++ {
			f := v.Type().Field(i)
			if !f.IsExported() || f.Type == reflect.TypeOf(zerolog.Logger{}) {
				continue
			}
			switch f.Type.Kind() {
			case reflect.Func, reflect.Chan, reflect.UnsafePointer:
				continue
			}
			if pv := plain(v.Field(i)); pv != nil {
				out[f.Name] = pv
			}
		}
		return out
	case reflect.Slice, reflect.Array:
		if v.Kind() == reflect.Slice && v.IsNil() {
			return nil
		}
		out := make([]any, v.Len())
		for i := range out {
			out[i] = plain(v.Index(i))
		}
		return out
	case reflect.Map:
		if v.IsNil() {
			return nil
		}
		out := map[string]any{}
		for _, k := range v.MapKeys() {
			out[fmt.Sprint(k.Interface())] = plain(v.MapIndex(k))
		}
		return out
	}
	return v.Interface()
}
