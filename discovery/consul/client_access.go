package consul

import "github.com/hashicorp/consul/api"

// APIClient is the Source's agent client (Options.Client's, when one was given: the process
// shares one Client between all its Consul users, see Client).
func (s *Source) APIClient() *api.Client { return s.client }

// Token is the resolved ACL token; callers send it per query like the Source does.
func (s *Source) Token() string { return s.token }
