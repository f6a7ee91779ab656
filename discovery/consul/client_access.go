package consul

import "github.com/hashicorp/consul/api"

// APIClient is the Source's agent client, for the other Consul readers of the process (Connect
// certificates in mesh/identity, intentions in mesh/intentions). Sharing it shares the address,
// token and TLS rules, and one connection pool sized for many blocking queries.
func (s *Source) APIClient() *api.Client { return s.client }

// Token is the resolved ACL token; callers send it per query like the Source does.
func (s *Source) Token() string { return s.token }
