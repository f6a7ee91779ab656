package identity

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/svid/x509svid"
)

// Provider is the seam over wherever Connect material comes from. Both calls are blocking
// queries: index 0 answers at once, a non-zero index blocks until the material changes past it
// (or the source's wait time elapses) and returns the new index. Consul's agent endpoints are
// deprecated upstream, so nothing outside ConsulProvider may know they exist.
type Provider interface {
	Roots(ctx context.Context, index uint64) (*Roots, uint64, error)
	Leaf(ctx context.Context, service string, index uint64) (*Leaf, uint64, error)
}

// Roots is the set of CA certificates peers are verified against. During a CA rotation it
// holds the old and the new root, so both generations of leaf verify.
type Roots struct {
	TrustDomain string
	Pool        *x509.CertPool
	PEMs        []string
}

// Leaf is this service's certificate and key. Cert.Leaf is always populated.
type Leaf struct {
	Cert     tls.Certificate
	SPIFFEID string
	NotAfter time.Time
}

// ErrVerify marks a peer that failed chain or SPIFFE ID verification.
var ErrVerify = errors.New("peer verification failed")

// NewRoots parses PEM root certificates. An empty trust domain or no parsable certificate is an
// error: a pool that trusts nothing would reject every peer with a confusing message.
func NewRoots(trustDomain string, pems []string) (*Roots, error) {
	if trustDomain == "" {
		return nil, errors.New("roots: empty trust domain")
	}
	if _, err := spiffeid.TrustDomainFromString(trustDomain); err != nil {
		return nil, fmt.Errorf("roots: trust domain %q: %w", trustDomain, err)
	}
	pool := x509.NewCertPool()
	n := 0
	for _, p := range pems {
		if pool.AppendCertsFromPEM([]byte(p)) {
			n++
		}
	}
	if n == 0 {
		return nil, errors.New("roots: no valid root certificate")
	}
	return &Roots{TrustDomain: trustDomain, Pool: pool, PEMs: append([]string(nil), pems...)}, nil
}

// NewLeaf parses a PEM certificate (chain) and private key and extracts the SPIFFE ID.
func NewLeaf(certPEM, keyPEM []byte) (*Leaf, error) {
	cert, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		return nil, fmt.Errorf("leaf: key pair: %w", err)
	}
	if cert.Leaf == nil {
		if cert.Leaf, err = x509.ParseCertificate(cert.Certificate[0]); err != nil {
			return nil, fmt.Errorf("leaf: parse: %w", err)
		}
	}
	id, err := x509svid.IDFromCert(cert.Leaf)
	if err != nil {
		return nil, fmt.Errorf("leaf: spiffe id: %w", err)
	}
	return &Leaf{Cert: cert, SPIFFEID: id.String(), NotAfter: cert.Leaf.NotAfter}, nil
}

// ServiceID is the parsed form of a Consul service SPIFFE ID,
// spiffe://<trust-domain>[/ap/<partition>]/ns/<ns>/dc/<dc>/svc/<name>.
type ServiceID struct {
	TrustDomain string
	Partition   string
	Namespace   string
	Datacenter  string
	Service     string
}

// ParseServiceID parses a Consul service identity; other SPIFFE IDs (agents, mesh gateways)
// are errors because only services may be peers of a proxy.
func ParseServiceID(s string) (ServiceID, error) {
	id, err := spiffeid.FromString(s)
	if err != nil {
		return ServiceID{}, fmt.Errorf("spiffe id %q: %w", s, err)
	}
	return serviceIDFrom(id)
}

func serviceIDFrom(id spiffeid.ID) (ServiceID, error) {
	n, ok := ParsePath(id.Path())
	if !ok {
		return ServiceID{}, fmt.Errorf("spiffe id %q is not a consul service identity", id)
	}
	return ServiceID{TrustDomain: id.TrustDomain().Name(), Partition: n.Partition, Namespace: n.Namespace,
		Datacenter: n.Datacenter, Service: n.Service}, nil
}

// DefaultTenancy is the partition of an ID without /ap/, and the only partition and namespace
// Consul CE has.
const DefaultTenancy = "default"

// PathName is the tenancy-qualified service name in a Consul service SPIFFE ID's path. Its
// strings are slices of the path, so parsing it costs no allocation on the request path.
type PathName struct {
	Partition  string // DefaultTenancy when the path has no /ap/<partition> prefix
	Namespace  string
	Datacenter string
	Service    string
}

// ParsePath parses the path of a Consul service SPIFFE ID, /ns/<ns>/dc/<dc>/svc/<name> or
// /ap/<partition>/ns/<ns>/dc/<dc>/svc/<name>. Every segment must be non-empty: a caller is
// identified by all of partition, namespace and name, never by a name found anywhere in the
// path.
func ParsePath(p string) (PathName, bool) {
	var out PathName
	rest, ok := strings.CutPrefix(p, "/")
	if !ok {
		return PathName{}, false
	}
	next := func(key string) (string, bool) {
		k, r, ok := strings.Cut(rest, "/")
		if !ok || k != key {
			return "", false
		}
		v, r, _ := strings.Cut(r, "/")
		rest = r
		return v, v != ""
	}
	out.Partition = DefaultTenancy
	if strings.HasPrefix(rest, "ap/") {
		if out.Partition, ok = next("ap"); !ok {
			return PathName{}, false
		}
	}
	if out.Namespace, ok = next("ns"); !ok {
		return PathName{}, false
	}
	if out.Datacenter, ok = next("dc"); !ok {
		return PathName{}, false
	}
	k, v, found := strings.Cut(rest, "/")
	if !found || k != "svc" || v == "" || strings.Contains(v, "/") {
		return PathName{}, false
	}
	out.Service = v
	return out, true
}

// PeerID returns the verified identity of the peer of a connection made with one of the
// Manager's configs; authorisation (intentions) keys off it.
func PeerID(cs tls.ConnectionState) (ServiceID, error) {
	if len(cs.PeerCertificates) == 0 {
		return ServiceID{}, fmt.Errorf("%w: no peer certificate", ErrVerify)
	}
	id, err := x509svid.IDFromCert(cs.PeerCertificates[0])
	if err != nil {
		return ServiceID{}, fmt.Errorf("%w: %w", ErrVerify, err)
	}
	return serviceIDFrom(id)
}

// verifyPeer checks the chain against roots and returns the peer's service identity. Consul
// leaf certificates carry a SPIFFE URI SAN and no DNS names that would match a dial address,
// so stdlib hostname verification is replaced by this.
func verifyPeer(roots *Roots, certs []*x509.Certificate, now time.Time) (ServiceID, error) {
	if roots == nil {
		return ServiceID{}, fmt.Errorf("%w: no trusted roots yet", ErrVerify)
	}
	if len(certs) == 0 {
		return ServiceID{}, fmt.Errorf("%w: no peer certificate", ErrVerify)
	}
	inter := x509.NewCertPool()
	for _, c := range certs[1:] {
		inter.AddCert(c)
	}
	// Consul leaf certificates carry both client and server auth, but other CAs plugged in
	// behind Consul need not; the SPIFFE ID is what authenticates, not the EKU.
	_, err := certs[0].Verify(x509.VerifyOptions{
		Roots: roots.Pool, Intermediates: inter, CurrentTime: now,
		KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageAny},
	})
	if err != nil {
		return ServiceID{}, fmt.Errorf("%w: chain: %w", ErrVerify, err)
	}
	id, err := x509svid.IDFromCert(certs[0])
	if err != nil {
		return ServiceID{}, fmt.Errorf("%w: %w", ErrVerify, err)
	}
	sid, err := serviceIDFrom(id)
	if err != nil {
		return ServiceID{}, fmt.Errorf("%w: %w", ErrVerify, err)
	}
	if sid.TrustDomain != roots.TrustDomain {
		return ServiceID{}, fmt.Errorf("%w: trust domain %q, want %q", ErrVerify, sid.TrustDomain, roots.TrustDomain)
	}
	return sid, nil
}

// encodeLeaf renders a Leaf back to PEM for persistence.
func encodeLeaf(l *Leaf) (certPEM, keyPEM []byte, err error) {
	for _, der := range l.Cert.Certificate {
		certPEM = append(certPEM, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})...)
	}
	der, err := x509.MarshalPKCS8PrivateKey(l.Cert.PrivateKey)
	if err != nil {
		return nil, nil, fmt.Errorf("marshal leaf key: %w", err)
	}
	return certPEM, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), nil
}
