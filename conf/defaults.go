package conf

import (
	"fmt"
	"strings"
	"time"
)

// Documented defaults. Constants, so the effective config and docs cannot drift apart at run time.
const (
	defaultAdminAddress      = "127.0.0.1:9901"
	defaultReadHeaderTimeout = 10 * time.Second
	defaultReadTimeout       = 60 * time.Second
	defaultWriteTimeout      = 60 * time.Second
	defaultListenerIdle      = 60 * time.Second
	defaultMaxHeaderBytes    = 16 << 10
	defaultMaxBodyBytes      = 10 << 20
	defaultMaxConnections    = 10000
	defaultMaxConnsPerIP     = 1000
	defaultStreamThreshold   = 64 << 10
	defaultRouteTimeout      = 15 * time.Second
	defaultPolicy            = "round_robin"
	defaultConnectTimeout    = 2 * time.Second
	defaultServiceIdle       = 30 * time.Second
	defaultMaxConnsPerHost   = 1024
	defaultMaxResponseBytes  = 64 << 20
	defaultRetryAttempts     = 2
	defaultAccessLogOutput   = "stdout"
	defaultAccessLogBuffer   = 8192
	defaultAccessLogFlush    = time.Second
	defaultLogLevel          = "info"
	defaultLogFormat         = "json"
	defaultDrainTimeout      = 30 * time.Second
	defaultWebSocketIdle     = time.Hour
)

// defaultRetryOn returns a fresh slice each time so configs never share backing arrays.
func defaultRetryOn() []string { return []string{"connect-failure", "reset"} }

// Defaults fills every zero value with its documented default so the effective config (admin
// /config) shows the values actually in force. It is idempotent and never fails; Parse calls it
// before validation, and hand-built configs should call it before Validate.
//
// Beyond plain zero-filling it: names unnamed listeners "listener-N" (N = index, matching the
// error path listeners[N]); adds a Services entry for every service a route references; gives
// every target weight 1 when no target of the route sets a weight (once any weight is set,
// an omitted one means 0, i.e. no traffic); upper-cases methods and lower-cases hosts; and
// gives a route without a timeout its first target service's request_timeout, else 15s.
func (c *Config) Defaults() {
	if c.Admin.Address == "" {
		c.Admin.Address = defaultAdminAddress
	}
	for i := range c.Listeners {
		l := &c.Listeners[i]
		if l.Name == "" {
			l.Name = fmt.Sprintf("listener-%d", i)
		}
		setDur(&l.ReadHeaderTimeout, defaultReadHeaderTimeout)
		setDur(&l.ReadTimeout, defaultReadTimeout)
		setDur(&l.WriteTimeout, defaultWriteTimeout)
		setDur(&l.IdleTimeout, defaultListenerIdle)
		setDur(&l.WebSocketIdleTimeout, defaultWebSocketIdle)
		setSize(&l.MaxHeaderBytes, defaultMaxHeaderBytes)
		setSize(&l.MaxBodyBytes, defaultMaxBodyBytes)
		setSize(&l.StreamThreshold, defaultStreamThreshold)
		if l.MaxConnections == 0 {
			l.MaxConnections = defaultMaxConnections
		}
		if l.MaxConnectionsPerIP == 0 {
			l.MaxConnectionsPerIP = defaultMaxConnsPerIP
		}
		if l.IdentityHeader == "" {
			l.IdentityHeader = defaultIdentityHeader
		}
	}

	for _, r := range c.Routes {
		for _, t := range r.To {
			if t.Service == "" {
				continue
			}
			if c.Services == nil {
				c.Services = make(map[string]Service)
			}
			if _, ok := c.Services[t.Service]; !ok {
				c.Services[t.Service] = Service{}
			}
		}
	}
	for name, s := range c.Services {
		s.defaults()
		c.Services[name] = s
	}

	for i := range c.Routes {
		r := &c.Routes[i]
		for j, h := range r.Match.Hosts {
			r.Match.Hosts[j] = strings.ToLower(h)
		}
		anyWeight := false
		for _, t := range r.To {
			anyWeight = anyWeight || t.Weight != 0
		}
		if !anyWeight {
			for j := range r.To {
				r.To[j].Weight = 1
			}
		}
		if r.Retry != nil {
			r.Retry.defaults()
		}
		if r.Timeout == 0 && len(r.To) > 0 {
			r.Timeout = c.Services[r.To[0].Service].RequestTimeout
		}
		setDur(&r.Timeout, defaultRouteTimeout)
		if r.WebSocket == nil {
			on := true
			r.WebSocket = &on
		}
	}

	if c.AccessLog.Output == "" {
		c.AccessLog.Output = defaultAccessLogOutput
	}
	if c.AccessLog.BufferSize == 0 {
		c.AccessLog.BufferSize = defaultAccessLogBuffer
	}
	setDur(&c.AccessLog.FlushInterval, defaultAccessLogFlush)
	c.AccessLog.defaults() // accesslog.go
	if c.Log.Level == "" {
		c.Log.Level = defaultLogLevel
	}
	if c.Log.Format == "" {
		c.Log.Format = defaultLogFormat
	}
	setDur(&c.Shutdown.DrainTimeout, defaultDrainTimeout)
	policyDefaults(c)
	consulDefaults(c)
	sidecarDefaults(c)
	pluginDefaults(c)
	c.tracingDefaults() // tracing.go
}

func (s *Service) defaults() {
	if s.LoadBalancer.Policy == "" {
		s.LoadBalancer.Policy = defaultPolicy
	}
	setDur(&s.ConnectTimeout, defaultConnectTimeout)
	setDur(&s.IdleTimeout, defaultServiceIdle)
	if s.MaxConnsPerHost == 0 {
		s.MaxConnsPerHost = defaultMaxConnsPerHost
	}
	setSize(&s.MaxResponseBytes, defaultMaxResponseBytes)
	if s.Retry == nil {
		s.Retry = &Retry{}
	}
	s.Retry.defaults()
	s.resilienceDefaults()
}

func (r *Retry) defaults() {
	if r.Attempts == 0 {
		r.Attempts = defaultRetryAttempts
	}
	if len(r.On) == 0 {
		r.On = defaultRetryOn()
	}
}

// defaultIdentityHeader carries the authenticated caller to upstreams (Listener.IdentityHeader).
const defaultIdentityHeader = "X-Meshgate-Identity"

func setDur(d *Duration, def time.Duration) {
	if *d == 0 {
		*d = Duration(def)
	}
}

func setSize(b *ByteSize, def ByteSize) {
	if *b == 0 {
		*b = def
	}
}
