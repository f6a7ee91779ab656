package admin

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log"
	"net"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/rs/zerolog"
)

// DefaultAddress is used when Options.Address is empty: loopback, because the admin API exposes
// the deployment's topology and is not authenticated.
const DefaultAddress = "127.0.0.1:9901"

// Paths of the built-in endpoints.
const (
	PathLive     = "/live"
	PathReady    = "/ready"
	PathMetrics  = "/metrics"
	PathConfig   = "/config"
	PathClusters = "/clusters"
	PathRoutes   = "/routes"
)

// Log field names.
const (
	fieldComponent = "component"
	fieldPath      = "path"
	fieldAddress   = "address"
	componentName  = "admin"
)

const (
	contentTypeText = "text/plain; charset=utf-8"
	contentTypeJSON = "application/json"
	contentTypeYAML = "text/yaml; charset=utf-8"

	// Generous for an operator API, but bounded: slowloris protection (gosec G112) and no
	// connection lives forever.
	readHeaderTimeout = 5 * time.Second
	readTimeout       = 10 * time.Second
	writeTimeout      = 30 * time.Second
	idleTimeout       = 60 * time.Second
	maxHeaderBytes    = 16 << 10
	shutdownTimeout   = 5 * time.Second
	// Scrapes are cheap but not free; more than a few at once means something is wrong.
	maxConcurrentScrapes = 4
)

// Sentinel errors, for errors.Is.
var (
	ErrNotListening     = errors.New("admin: Serve called before Listen")
	ErrAlreadyListening = errors.New("admin: already listening")
	ErrAlreadyServing   = errors.New("admin: already serving")
)

// Options configures the admin server. The assemblies translate conf into it.
type Options struct {
	// Address is host:port to bind; DefaultAddress when empty. Port 0 picks a free port.
	Address string
	// Gatherer is scraped by /metrics. Required.
	Gatherer prometheus.Gatherer
	// Ready reports readiness for /ready; detail is shown to the caller (after "ready" when
	// ok, e.g. "degraded: ..."), so it must not contain secrets. Required.
	Ready func() (ok bool, detail string)
	// Config returns the effective config with secrets redacted, as YAML. Optional: /config is
	// 404 when nil.
	Config func() ([]byte, error)
	// Clusters returns a JSON-marshalable view of clusters and endpoints. Optional (404 when nil).
	Clusters func() any
	// Routes returns a JSON-marshalable view of the route table. Optional (404 when nil).
	Routes func() any
	// Logger receives server errors (handler failures, TLS/protocol errors from net/http).
	Logger zerolog.Logger
	// AllowedHosts are host names or IPs (no port) accepted in the Host header besides the
	// loopback names and the IP of Address; every other Host is refused with 403 (DNS rebinding
	// defence, see hostGuard).
	AllowedHosts []string
}

// Server is the admin HTTP server.
type Server struct {
	address string
	log     zerolog.Logger
	mux     *http.ServeMux
	srv     *http.Server

	mu      sync.Mutex
	ln      net.Listener
	serving bool
}

// New validates opts and builds the server without binding. Call Listen, then Serve.
func New(opts Options) (*Server, error) {
	if opts.Gatherer == nil {
		return nil, errors.New("admin: gatherer is required")
	}
	if opts.Ready == nil {
		return nil, errors.New("admin: ready func is required")
	}
	addr := opts.Address
	if addr == "" {
		addr = DefaultAddress
	}
	if _, _, err := net.SplitHostPort(addr); err != nil {
		return nil, fmt.Errorf("admin: address %q: %w", addr, err)
	}
	logger := opts.Logger.With().Str(fieldComponent, componentName).Logger()
	s := &Server{address: addr, log: logger, mux: http.NewServeMux()}

	builtins := []endpoint{
		{PathLive, http.HandlerFunc(serveLive)},
		{PathReady, readyHandler(opts.Ready)},
		{PathMetrics, promhttp.HandlerFor(opts.Gatherer, promhttp.HandlerOpts{
			ErrorLog:            promLogger{logger},
			ErrorHandling:       promhttp.ContinueOnError, // partial metrics beat none
			MaxRequestsInFlight: maxConcurrentScrapes,
		})},
	}
	if opts.Config != nil {
		builtins = append(builtins, endpoint{PathConfig, s.configHandler(opts.Config)})
	}
	if opts.Clusters != nil {
		builtins = append(builtins, endpoint{PathClusters, s.jsonHandler(opts.Clusters)})
	}
	if opts.Routes != nil {
		builtins = append(builtins, endpoint{PathRoutes, s.jsonHandler(opts.Routes)})
	}
	for _, b := range builtins {
		if err := s.Handle(b.path, b.h); err != nil {
			return nil, err
		}
	}

	s.srv = &http.Server{
		Handler:           commonHeaders(newHostGuard(addr, opts.AllowedHosts).wrap(s.mux)),
		ReadHeaderTimeout: readHeaderTimeout,
		ReadTimeout:       readTimeout,
		WriteTimeout:      writeTimeout,
		IdleTimeout:       idleTimeout,
		MaxHeaderBytes:    maxHeaderBytes,
		ErrorLog:          log.New(logger, "", 0),
	}
	return s, nil
}

type endpoint struct {
	path string
	h    http.Handler
}

// Handle registers an extra endpoint, for features that arrive later (e.g. /plugins). A pattern
// without a method ("/plugins") is registered as "GET /plugins", which also serves HEAD, so the
// admin API stays read-only unless a feature asks for a method explicitly ("POST /plugins/x").
// Patterns follow net/http.ServeMux; a conflicting or malformed pattern is an error. Handle is
// safe to call while serving.
func (s *Server) Handle(pattern string, h http.Handler) (err error) {
	if h == nil {
		return fmt.Errorf("admin: handle %q: nil handler", pattern)
	}
	if !strings.Contains(pattern, " ") {
		pattern = http.MethodGet + " " + pattern
	}
	// ServeMux reports bad and conflicting patterns only by panicking; turn that into the
	// error a constructor-style caller expects.
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("admin: handle %q: %v", pattern, r)
		}
	}()
	s.mux.Handle(pattern, h)
	return nil
}

// Listen binds the configured address. It is separate from Serve so that the caller can report a
// bind error (port in use, bad address) before starting anything else.
func (s *Server) Listen() (net.Addr, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.ln != nil {
		return nil, ErrAlreadyListening
	}
	var lc net.ListenConfig
	ln, err := lc.Listen(context.Background(), "tcp", s.address)
	if err != nil {
		return nil, fmt.Errorf("admin: listen %s: %w", s.address, err)
	}
	s.ln = ln
	return ln.Addr(), nil
}

// Addr returns the bound address, or nil before Listen.
func (s *Server) Addr() net.Addr {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.ln == nil {
		return nil
	}
	return s.ln.Addr()
}

// Serve serves on the listener from Listen until ctx ends, then shuts down gracefully: in-flight
// requests get up to 5s, after which connections are closed. It returns nil after a clean
// shutdown and an error if serving fails or shutdown times out.
func (s *Server) Serve(ctx context.Context) error {
	s.mu.Lock()
	ln, serving := s.ln, s.serving
	if ln != nil && !serving {
		s.serving = true
	}
	s.mu.Unlock()
	switch {
	case ln == nil:
		return ErrNotListening
	case serving:
		return ErrAlreadyServing
	}

	s.log.Info().Str(fieldAddress, ln.Addr().String()).Msg("admin API listening")
	errc := make(chan error, 1)
	go func() { errc <- s.srv.Serve(ln) }()

	select {
	case err := <-errc:
		if errors.Is(err, http.ErrServerClosed) {
			return nil // Close was called
		}
		return fmt.Errorf("admin: serve: %w", err)
	case <-ctx.Done():
	}

	// ctx is already done: shutdown needs its own deadline, but keeps ctx's values.
	shutdownCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), shutdownTimeout)
	defer cancel()
	err := s.srv.Shutdown(shutdownCtx)
	if serveErr := <-errc; !errors.Is(serveErr, http.ErrServerClosed) {
		s.log.Warn().Err(serveErr).Msg("admin serve loop ended unexpectedly")
	}
	if err != nil {
		_ = s.srv.Close() // shutdown timed out: drop the stragglers
		return fmt.Errorf("admin: shutdown: %w", err)
	}
	return nil
}

// Close stops the server immediately, dropping in-flight requests. Serve (if running) returns nil.
// It exists for the startup path: release the port when a later component fails to start before
// Serve was ever called. Normal shutdown is cancelling Serve's ctx.
func (s *Server) Close() error {
	s.mu.Lock()
	ln, serving := s.ln, s.serving
	s.mu.Unlock()
	if ln == nil {
		return nil
	}
	if !serving {
		// http.Server.Close only closes listeners it is serving on.
		if err := ln.Close(); err != nil && !errors.Is(err, net.ErrClosed) {
			return fmt.Errorf("admin: close: %w", err)
		}
	}
	if err := s.srv.Close(); err != nil {
		return fmt.Errorf("admin: close: %w", err)
	}
	return nil
}

func commonHeaders(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h := w.Header()
		// Operator data is always current and must never be content-sniffed by a browser.
		h.Set("Cache-Control", "no-store")
		h.Set("X-Content-Type-Options", "nosniff")
		next.ServeHTTP(w, r)
	})
}

func writeText(w http.ResponseWriter, status int, body string) {
	w.Header().Set("Content-Type", contentTypeText)
	w.WriteHeader(status)
	_, _ = w.Write([]byte(body)) // a client that went away is not worth logging
}

func serveLive(w http.ResponseWriter, _ *http.Request) {
	writeText(w, http.StatusOK, "ok\n")
}

func readyHandler(ready func() (bool, string)) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		ok, detail := ready()
		if ok {
			// Ready with a detail is "serving, but degraded" (e.g. endpoints from a snapshot
			// while Consul is down): still 200, the first line stays "ready" for scripts.
			body := "ready\n"
			if detail != "" {
				body += strings.TrimRight(detail, "\n") + "\n"
			}
			writeText(w, http.StatusOK, body)
			return
		}
		if detail == "" {
			detail = "not ready"
		}
		writeText(w, http.StatusServiceUnavailable, strings.TrimRight(detail, "\n")+"\n")
	})
}

func (s *Server) configHandler(config func() ([]byte, error)) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, err := config()
		if err != nil {
			s.internalError(w, r, err)
			return
		}
		w.Header().Set("Content-Type", contentTypeYAML)
		_, _ = w.Write(body)
	})
}

func (s *Server) jsonHandler(view func() any) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		// Marshal before writing headers so an unmarshalable view yields a clean 500.
		body, err := json.MarshalIndent(view(), "", "  ")
		if err != nil {
			s.internalError(w, r, err)
			return
		}
		w.Header().Set("Content-Type", contentTypeJSON)
		_, _ = w.Write(append(body, '\n'))
	})
}

// internalError logs err and sends a generic body: error texts may name files or hosts and are
// not for HTTP clients (style.md, Errors).
func (s *Server) internalError(w http.ResponseWriter, r *http.Request, err error) {
	s.log.Error().Err(err).Str(fieldPath, r.URL.Path).Msg("admin handler failed")
	writeText(w, http.StatusInternalServerError, "internal error\n")
}

// promLogger adapts zerolog to promhttp's Println-style logger.
type promLogger struct{ log zerolog.Logger }

func (p promLogger) Println(v ...any) {
	p.log.Error().Msg(strings.TrimRight(fmt.Sprintln(v...), "\n"))
}
