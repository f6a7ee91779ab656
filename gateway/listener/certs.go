package listener

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/rs/zerolog"
)

// CertFile is one certificate chain and its private key, both PEM files.
type CertFile struct {
	Cert, Key string
}

// CertOptions configures a reloading certificate set for TLS termination.
type CertOptions struct {
	// Files are the certificate pairs; the first is the default for clients whose SNI matches
	// no certificate (or who send none, e.g. connecting by IP). Required.
	Files []CertFile
	// Interval between stats of the files; default 2s.
	Interval time.Duration
	Logger   zerolog.Logger
	// Reloads counts reload attempts by result ("ok", "error"); optional.
	Reloads *prometheus.CounterVec
}

// Certificates serves TLS certificates by SNI from files that may change while the process runs.
// GetCertificate reads one atomic pointer, so handshakes never wait for a reload.
type Certificates struct {
	opts CertOptions
	cur  atomic.Pointer[certSet]

	mu   sync.Mutex // serialises reloads (Watch and explicit Reload calls)
	seen string     // stat signature of the files behind cur (or of the last bad attempt)
}

// certSet is one immutable generation of certificates.
type certSet struct {
	def   *tls.Certificate
	exact map[string]*tls.Certificate // lowercase DNS SAN → cert
	wild  map[string]*tls.Certificate // "mesh.test" for a "*.mesh.test" SAN → cert
}

// NewCertificates loads every pair; any error here is fatal, as there is nothing to fall back on.
func NewCertificates(opts CertOptions) (*Certificates, error) {
	if len(opts.Files) == 0 {
		return nil, errors.New("listener: tls: at least one certificate is required")
	}
	if opts.Interval <= 0 {
		opts.Interval = 2 * time.Second
	}
	c := &Certificates{opts: opts}
	c.seen = c.signature()
	set, err := loadCerts(opts.Files)
	if err != nil {
		return nil, err
	}
	c.cur.Store(set)
	return c, nil
}

// TLSConfig is a server config that serves these certificates with TLS 1.2 as the minimum:
// TLS 1.0 and 1.1 are deprecated (RFC 8996) and refused.
func (c *Certificates) TLSConfig() *tls.Config {
	return &tls.Config{
		MinVersion:     tls.VersionTLS12,
		GetCertificate: c.GetCertificate,
		NextProtos:     []string{"http/1.1"}, // fasthttp speaks HTTP/1.1 only; never offer h2
	}
}

// GetCertificate picks the certificate for hello's SNI: an exact SAN, then a wildcard SAN one
// label up, then the default.
func (c *Certificates) GetCertificate(hello *tls.ClientHelloInfo) (*tls.Certificate, error) {
	set := c.cur.Load()
	name := strings.ToLower(strings.TrimSuffix(hello.ServerName, "."))
	if name == "" {
		return set.def, nil
	}
	if cert, ok := set.exact[name]; ok {
		return cert, nil
	}
	if _, parent, ok := strings.Cut(name, "."); ok {
		if cert, ok := set.wild[parent]; ok {
			return cert, nil
		}
	}
	return set.def, nil
}

// Watch reloads the certificates when any file changes, until ctx ends.
//
// Why stat polling rather than inotify: certificate managers and secret mounts replace files by
// rename or by swapping a symlink, after which a watch on the old inode sees nothing more;
// stat on the path follows the replacement and costs a few syscalls per interval.
func (c *Certificates) Watch(ctx context.Context) {
	t := time.NewTicker(c.opts.Interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			_ = c.reload(false)
		}
	}
}

// Reload loads the files now (e.g. on SIGHUP), even if they look unchanged. On error the
// current certificates stay in use.
func (c *Certificates) Reload() error { return c.reload(true) }

func (c *Certificates) reload(force bool) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	sig := c.signature()
	if !force && sig == c.seen {
		return nil
	}
	// Remember the attempt even if it fails, so a bad file is reported once per change rather
	// than every interval; a half-written pair changes again when the writer finishes.
	c.seen = sig
	set, err := loadCerts(c.opts.Files)
	if err != nil {
		c.count("error")
		c.opts.Logger.Error().Err(err).Msg("tls certificate reload failed; keeping the previous certificates")
		return err
	}
	c.cur.Store(set)
	c.count("ok")
	c.opts.Logger.Info().Int("certificates", len(c.opts.Files)).Msg("tls certificates reloaded")
	return nil
}

func (c *Certificates) count(result string) {
	if c.opts.Reloads != nil {
		c.opts.Reloads.WithLabelValues(result).Inc()
	}
}

// signature summarises size and modification time of every file; missing files count too.
func (c *Certificates) signature() string {
	var b strings.Builder
	for _, f := range c.opts.Files {
		for _, p := range []string{f.Cert, f.Key} {
			if st, err := os.Stat(p); err == nil {
				fmt.Fprintf(&b, "%d:%d;", st.Size(), st.ModTime().UnixNano())
			} else {
				b.WriteString("missing;")
			}
		}
	}
	return b.String()
}

func loadCerts(files []CertFile) (*certSet, error) {
	set := &certSet{exact: map[string]*tls.Certificate{}, wild: map[string]*tls.Certificate{}}
	for i, f := range files {
		cert, err := tls.LoadX509KeyPair(f.Cert, f.Key)
		if err != nil {
			return nil, fmt.Errorf("listener: tls: certificate %d (%s): %w", i, f.Cert, err)
		}
		if cert.Leaf == nil {
			return nil, fmt.Errorf("listener: tls: certificate %d (%s): no leaf", i, f.Cert)
		}
		if time.Now().After(cert.Leaf.NotAfter) {
			// Serving an expired certificate fails every client; keep the previous one instead.
			return nil, fmt.Errorf("listener: tls: certificate %d (%s): expired at %s", i, f.Cert, cert.Leaf.NotAfter)
		}
		cp := &cert
		if i == 0 {
			set.def = cp
		}
		for _, n := range cert.Leaf.DNSNames {
			n = strings.ToLower(n)
			m, key := set.exact, n
			if parent, ok := strings.CutPrefix(n, "*."); ok {
				m, key = set.wild, parent
			}
			// The first file naming a host wins, so list order is the tie-break users control.
			if _, dup := m[key]; !dup {
				m[key] = cp
			}
		}
	}
	return set, nil
}
