package identity

import (
	"crypto/x509"
	"errors"
	"testing"
	"time"

	"github.com/meshgate/meshgate/discovery/snapshot"
)

// The real snapshot store must satisfy the hook, and accept our document kinds as-is.
var _ Snapshot = (*snapshot.Store)(nil)

func TestSnapshotKindsArePlain(t *testing.T) {
	t.Parallel()
	for _, k := range []string{SnapshotKindRoots, SnapshotKindLeaf} {
		if snapshot.Escape(k) != k {
			t.Fatalf("kind %q escapes to %q; the store would refuse it", k, snapshot.Escape(k))
		}
	}
}

func TestVerifyPeer(t *testing.T) {
	t.Parallel()
	ca := newTestCA(t, "consul")
	other := newTestCA(t, "other")
	roots := ca.roots(t, testTD)
	good := ca.leaf(t, testTD, "web").Cert.Leaf
	tests := []struct {
		name  string
		roots *Roots
		certs []*x509.Certificate
		now   time.Time
		want  string // service, or "" for an ErrVerify
	}{
		{"valid", roots, []*x509.Certificate{good}, time.Now(), "web"},
		{"no roots yet", nil, []*x509.Certificate{good}, time.Now(), ""},
		{"no certificate", roots, nil, time.Now(), ""},
		{"other CA", roots, []*x509.Certificate{other.leaf(t, testTD, "web").Cert.Leaf}, time.Now(), ""},
		{"other trust domain", roots, []*x509.Certificate{ca.leaf(t, "other.consul", "web").Cert.Leaf}, time.Now(), ""},
		{"expired", roots, []*x509.Certificate{good}, time.Now().Add(48 * time.Hour), ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			sid, err := verifyPeer(tt.roots, tt.certs, tt.now)
			if tt.want == "" {
				if !errors.Is(err, ErrVerify) {
					t.Fatalf("err = %v, want ErrVerify", err)
				}
				return
			}
			if err != nil || sid.Service != tt.want {
				t.Fatalf("verifyPeer = %+v, %v; want service %q", sid, err, tt.want)
			}
		})
	}
}

func TestNewRootsRejects(t *testing.T) {
	t.Parallel()
	ca := newTestCA(t, "consul")
	tests := []struct {
		name string
		td   string
		pems []string
	}{
		{"empty trust domain", "", []string{ca.pem}},
		{"bad trust domain", "Bad Domain", []string{ca.pem}},
		{"no pems", testTD, nil},
		{"garbage pem", testTD, []string{"not a cert"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			if r, err := NewRoots(tt.td, tt.pems); err == nil {
				t.Fatalf("NewRoots = %+v, want error", r)
			}
		})
	}
}
