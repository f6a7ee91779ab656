package intentions

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"time"

	"github.com/hashicorp/consul/api"
)

// ConsulSourceOptions configures a ConsulSource.
type ConsulSourceOptions struct {
	// Client is built by the caller (discovery/consul knows the address, token and TLS rules).
	Client *api.Client
	// Token is sent per query so it overrides whatever the api package read from the
	// environment. It needs intentions:read on the destination (service:read grants it).
	Token string
	// WaitTime bounds one blocking query; zero means Consul's default (5 minutes).
	WaitTime time.Duration
}

// ConsulSource reads intentions from GET /v1/connect/intentions/match?by=destination, a
// blocking query on Consul 1.16 (TestConsulSource checks it): it answers as soon as
// an intention that matches the destination changes, and ignores changes to other services.
type ConsulSource struct {
	client *api.Client
	token  string
	wait   time.Duration
}

var _ Source = (*ConsulSource)(nil)

// NewConsulSource returns a Source backed by a Consul agent.
func NewConsulSource(o ConsulSourceOptions) (*ConsulSource, error) {
	if o.Client == nil {
		return nil, errors.New("intentions: consul source: nil client")
	}
	return &ConsulSource{client: o.Client, token: o.Token, wait: o.WaitTime}, nil
}

// Match implements Source.
func (s *ConsulSource) Match(ctx context.Context, destination string, index uint64) ([]Intention, uint64, error) {
	q := (&api.QueryOptions{WaitIndex: index, WaitTime: s.wait, Token: s.token}).WithContext(ctx)
	out, meta, err := s.client.Connect().IntentionMatch(&api.IntentionMatch{
		By: api.IntentionMatchDestination, Names: []string{destination},
	}, q)
	if err != nil {
		return nil, 0, fmt.Errorf("consul intentions match %s: %w", destination, err)
	}
	ixns := out[destination]
	list := make([]Intention, 0, len(ixns))
	for _, ix := range ixns {
		if ix != nil {
			list = append(list, fromAPI(ix))
		}
	}
	if err := s.markEntryJWT(ctx, list); err != nil {
		return nil, 0, err
	}
	return list, meta.LastIndex, nil
}

// markEntryJWT flags intentions whose service-intentions entry has a top-level JWT
// requirement. The match answer carries it (structs.Intention.JWT), but api.Intention has no
// such field, so the api client drops it; reading it back from the entry keeps us from
// allowing what Consul would only allow with a valid token. Per-permission JWT survives
// decoding and needs no extra query.
func (s *ConsulSource) markEntryJWT(ctx context.Context, list []Intention) error {
	checked := make(map[string]bool, 2)
	for i := range list {
		name := list[i].DestinationName
		jwt, ok := checked[name]
		if !ok {
			var err error
			if jwt, err = s.entryRequiresJWT(ctx, name); err != nil {
				return err
			}
			checked[name] = jwt
		}
		list[i].RequiresJWT = list[i].RequiresJWT || jwt
	}
	return nil
}

func (s *ConsulSource) entryRequiresJWT(ctx context.Context, name string) (bool, error) {
	q := (&api.QueryOptions{Token: s.token}).WithContext(ctx)
	e, _, err := s.client.ConfigEntries().Get(api.ServiceIntentions, name, q)
	if err != nil {
		// Legacy intentions have no config entry.
		if se := (api.StatusError{}); errors.As(err, &se) && se.Code == http.StatusNotFound {
			return false, nil
		}
		return false, fmt.Errorf("consul service-intentions %s: %w", name, err)
	}
	si, ok := e.(*api.ServiceIntentionsConfigEntry)
	return ok && si.JWT != nil && len(si.JWT.Providers) > 0, nil
}

func fromAPI(ix *api.Intention) Intention {
	out := Intention{
		SourceName:           ix.SourceName,
		SourceNamespace:      ix.SourceNS,
		SourcePartition:      ix.SourcePartition,
		SourcePeer:           ix.SourcePeer,
		SourceSamenessGroup:  ix.SourceSamenessGroup,
		SourceType:           string(ix.SourceType),
		DestinationName:      ix.DestinationName,
		DestinationNamespace: ix.DestinationNS,
		DestinationPartition: ix.DestinationPartition,
		Action:               Action(ix.Action),
		Precedence:           ix.Precedence,
		Description:          ix.Description,
	}
	for _, p := range ix.Permissions {
		if p == nil {
			continue
		}
		perm := Permission{
			Action:      Action(p.Action),
			RequiresJWT: p.JWT != nil && len(p.JWT.Providers) > 0,
		}
		if h := p.HTTP; h != nil {
			m := &HTTPMatch{
				PathExact: h.PathExact, PathPrefix: h.PathPrefix, PathRegex: h.PathRegex,
				Methods: h.Methods,
			}
			for _, hh := range h.Header {
				m.Header = append(m.Header, HeaderMatch{
					Name: hh.Name, Present: hh.Present, Exact: hh.Exact, Prefix: hh.Prefix,
					Suffix: hh.Suffix, Contains: hh.Contains, Regex: hh.Regex,
					Invert: hh.Invert, IgnoreCase: hh.IgnoreCase,
				})
			}
			perm.HTTP = m
		}
		out.Permissions = append(out.Permissions, perm)
	}
	return out
}
