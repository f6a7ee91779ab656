package identity

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/hashicorp/consul/api"
)

// ConsulProviderOptions configures a ConsulProvider.
type ConsulProviderOptions struct {
	// Client is built by the caller (discovery/consul knows the address, token and TLS rules).
	Client *api.Client
	// Token is sent per query so it overrides whatever the api package read from the environment.
	Token string
	// WaitTime bounds one blocking query; zero means Consul's default (5 minutes). Leaf queries
	// wait at least leafMinWait, so CA rotation is not slowed by a short wait.
	WaitTime time.Duration
}

// leafMinWait floors the wait of a blocking leaf query. After a CA root change the agent (1.16,
// agent/leafcert) re-issues each leaf at a random point within 30 s of noticing it, but it draws
// that point afresh on every blocking query that times out first. With a short wait the draw is
// repeated until one lands inside a query, so rotation has a long tail (measured with a
// 2 s wait: leaves still on the old root 46-51 s after the change). A wait longer than
// the window always contains the point, so every leaf moves within 30 s.
const leafMinWait = 35 * time.Second

// ConsulProvider reads Connect material from the local agent's cached endpoints
// /v1/agent/connect/ca/roots and /v1/agent/connect/ca/leaf/<service>.
type ConsulProvider struct {
	client *api.Client
	token  string
	wait   time.Duration
}

var _ Provider = (*ConsulProvider)(nil)

// NewConsulProvider returns a Provider backed by a Consul agent.
func NewConsulProvider(o ConsulProviderOptions) (*ConsulProvider, error) {
	if o.Client == nil {
		return nil, errors.New("consul provider: nil client")
	}
	return &ConsulProvider{client: o.Client, token: o.Token, wait: o.WaitTime}, nil
}

func (p *ConsulProvider) opts(ctx context.Context, index uint64) *api.QueryOptions {
	return (&api.QueryOptions{WaitIndex: index, WaitTime: p.wait, Token: p.token}).WithContext(ctx)
}

// Roots implements Provider.
func (p *ConsulProvider) Roots(ctx context.Context, index uint64) (*Roots, uint64, error) {
	list, meta, err := p.client.Agent().ConnectCARoots(p.opts(ctx, index))
	if err != nil {
		return nil, 0, fmt.Errorf("consul ca roots: %w", err)
	}
	pems := make([]string, 0, len(list.Roots))
	for _, r := range list.Roots {
		pems = append(pems, r.RootCertPEM)
	}
	roots, err := NewRoots(list.TrustDomain, pems)
	if err != nil {
		return nil, 0, fmt.Errorf("consul ca roots: %w", err)
	}
	return roots, meta.LastIndex, nil
}

// Leaf implements Provider.
func (p *ConsulProvider) Leaf(ctx context.Context, service string, index uint64) (*Leaf, uint64, error) {
	o := p.opts(ctx, index)
	if p.wait > 0 && p.wait < leafMinWait { // zero is Consul's 5 minutes
		o.WaitTime = leafMinWait
	}
	lc, meta, err := p.client.Agent().ConnectCALeaf(service, o)
	if err != nil {
		return nil, 0, fmt.Errorf("consul ca leaf %s: %w", service, err)
	}
	leaf, err := NewLeaf([]byte(lc.CertPEM), []byte(lc.PrivateKeyPEM))
	if err != nil {
		return nil, 0, fmt.Errorf("consul ca leaf %s: %w", service, err)
	}
	return leaf, meta.LastIndex, nil
}
