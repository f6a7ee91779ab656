package consul

import (
	"context"
	"maps"
	"slices"
	"strings"
	"sync"

	"github.com/hashicorp/consul/api"
	"github.com/rs/zerolog"

	"github.com/meshgate/meshgate/discovery"
)

// Upstream protocols from service-defaults: one blocking query on
// /v1/config/service-defaults (every entry at once: one loop for all services is one agent
// connection, where a query per service would be one each) while any service watch runs:
//
//	first service watch ─▶ protocols loop: GET /v1/config/service-defaults?index=N&wait=5m
//	                       ├─ ok: Consul name → Protocol; if anything changed, every service
//	                       │      watch whose set's protocol is now different delivers it again
//	                       │      (same endpoints, new Set.Protocol) and saves it
//	                       └─ error: keep the last map, backoff, index = 0 (the health loops' rules)
//	last service watch ends, or Close ─▶ the loop ends
//
// Each set's Protocol is the protocol of the entry named like the watch's Consul service
// (Subset.Name: a canary subset or a Connect watch of "api" reads api's entry). Until the loop's
// first successful answer nothing is known, so a set keeps the protocol it had (its snapshot's):
// a restart during an outage keeps speaking to a gRPC service in gRPC. After that the map is
// Consul's word: no entry (or a deleted one) means unset.
//
// The loop is registered as the watch "config:service-defaults", so Close stops it, Synced
// waits for its first answer (the edge's /ready does not open with protocols still unknown),
// Health reports it while it fails, and the query metrics count it under that name. It is not
// in meshgate_discovery_consul_watches, which stays one per service and KV loop.

// protocolsLabel names the protocols loop in metrics, logs and Health.
const protocolsLabel = "config:" + api.ServiceDefaults

// protocols is the state of the protocols loop besides its watch entry.
type protocols struct {
	w   *watch
	log zerolog.Logger

	mu sync.Mutex // guards the fields below; taken after any watch.mu
	// known: a successful answer was applied, so raw is Consul's word rather than "no idea".
	known bool
	raw   map[string]string // Consul service name → its entry's Protocol, lower-cased
	// warned holds, per service, the unusable protocol it was last warned about: an entry
	// saying "tcp" is reported once, not at every answer (any entry's change wakes the loop).
	warned map[string]string
}

// protocolFromConsul maps a service-defaults Protocol to meshgate's. ok is false for a value
// meshgate cannot proxy as one (tcp: raw TCP is not proxied) or does not know; "" (an entry
// that sets other things only) is simply unset.
func protocolFromConsul(raw string) (proto string, ok bool) {
	switch raw {
	case "":
		return "", true
	case "http":
		return discovery.ProtocolHTTP1, true
	case "http2":
		return discovery.ProtocolHTTP2, true
	case "grpc":
		return discovery.ProtocolGRPC, true
	}
	return "", false
}

// resolve is the protocol of Consul service name, or fallback while no answer is known. It
// warns once per service and value when the entry names a protocol meshgate does not use.
func (p *protocols) resolve(name, fallback string) string {
	p.mu.Lock()
	defer p.mu.Unlock()
	if !p.known {
		return fallback
	}
	raw := p.raw[name]
	proto, ok := protocolFromConsul(raw)
	if !ok && p.warned[name] != raw {
		p.warned[name] = raw
		p.log.Warn().Str(fieldService, name).Str("protocol", raw).
			Msg("service-defaults names a protocol meshgate does not proxy; leaving the service's protocol unset (meshgate's config, else http1)")
	}
	return proto
}

// startProtocols starts the protocols loop. Called with s.mu held, by the first service watch.
func (s *Source) startProtocols() *protocols {
	ctx, cancel := context.WithCancel(context.Background())
	p := &protocols{
		w: &watch{key: "\x00config\x00" + api.ServiceDefaults, service: protocolsLabel, label: protocolsLabel, stop: cancel,
			unknown: "no protocols known yet"},
		log:    s.log,
		warned: map[string]string{},
	}
	s.watches[p.w.key] = p.w
	// Not counted in meshgate_discovery_consul_watches, whose series stay one per service
	// (and KV) loop: dashboards and tests compare it with the number of watched services.
	s.wg.Add(1)
	go s.runProtocols(ctx, p)
	return p
}

// stopProtocols ends the loop once no service watch needs it. Called with s.mu held.
func (s *Source) stopProtocols() {
	p := s.proto
	s.proto = nil
	if p == nil || s.watches[p.w.key] != p.w {
		return
	}
	delete(s.watches, p.w.key)
	p.w.stop()
	s.retire(p.w)
}

// runProtocols is the service-defaults query loop; blockingLoop holds the rules it shares
// with the health and KV loops.
func (s *Source) runProtocols(ctx context.Context, p *protocols) {
	defer s.wg.Done()
	s.blockingLoop(ctx, func(index uint64) (uint64, error) {
		raw, got, err := s.queryProtocols(ctx, index)
		if err == nil && ctx.Err() == nil {
			s.applyProtocols(p, raw)
		}
		return got, err
	}, func(err error, failures int) {
		s.m.of(protocolsLabel).failed.Add(1)
		err = s.markFailed(p.w, err)
		s.log.WithLevel(retryLevel(failures)).Err(err).Str(fieldService, protocolsLabel).Int("failures", failures).
			Msg("consul service-defaults query failed; keeping the last known protocols")
	})
}

func (s *Source) queryProtocols(ctx context.Context, index uint64) (map[string]string, uint64, error) {
	qctx, cancel := context.WithTimeout(ctx, s.wait+s.wait/16+queryGrace)
	defer cancel()
	q := (&api.QueryOptions{Datacenter: s.dc, WaitIndex: index, WaitTime: s.wait, Token: s.token}).WithContext(qctx)
	entries, meta, err := s.client.ConfigEntries().List(api.ServiceDefaults, q)
	if err != nil {
		return nil, 0, err
	}
	raw := make(map[string]string, len(entries))
	for _, e := range entries {
		if sd, ok := e.(*api.ServiceConfigEntry); ok && sd != nil && sd.Name != "" {
			// Consul stores what was written; Envoy's side treats the value case-insensitively.
			raw[sd.Name] = strings.ToLower(strings.TrimSpace(sd.Protocol))
		}
	}
	return raw, meta.LastIndex, nil
}

// applyProtocols installs a successful answer and re-delivers the sets whose protocol it
// changed, then marks the loop answered (after the deliveries, so Synced means "applied").
func (s *Source) applyProtocols(p *protocols, raw map[string]string) {
	s.m.of(protocolsLabel).ok.Add(1)
	p.mu.Lock()
	changed := !p.known || !maps.Equal(p.raw, raw)
	p.known, p.raw = true, raw
	for name, v := range p.warned {
		if raw[name] != v {
			delete(p.warned, name) // deleted or changed: a later "tcp" is news again
		}
	}
	p.mu.Unlock()
	if changed {
		s.reapplyProtocols(p)
	}
	if recovered, down := s.markOK(p.w); recovered {
		s.log.Info().Str(fieldService, protocolsLabel).Dur("down", down).Msg("consul answers again")
	}
}

// reapplyProtocols gives every service watch that has a set the protocol p now says, and
// delivers (and saves) the sets that changed. The protocol is read under each watch's mu, as
// apply does: whichever of the two runs last sees the newest map, so neither can leave a set
// with a stale protocol.
func (s *Source) reapplyProtocols(p *protocols) {
	s.mu.Lock()
	var ws []*watch
	for _, w := range s.watches {
		if w.proto == p {
			ws = append(ws, w)
		}
	}
	s.mu.Unlock()
	slices.SortFunc(ws, func(a, b *watch) int { return strings.Compare(a.key, b.key) })
	for _, w := range ws {
		w.mu.Lock()
		if !w.have {
			w.mu.Unlock()
			continue // its first answer will carry the protocol
		}
		proto := p.resolve(w.sub.Name, w.cur.Protocol)
		if proto == w.cur.Protocol {
			w.mu.Unlock()
			continue
		}
		set := w.cur
		set.Protocol = proto
		w.cur = set
		w.metrics.updates.Add(1) // before delivery, as in apply
		for _, fn := range w.subs {
			fn(set)
		}
		w.mu.Unlock()

		s.log.Info().Str(fieldService, w.label).Str("protocol", orUnset(proto)).Msg("protocol from service-defaults")
		s.saveCurrent(w)
	}
}

func orUnset(proto string) string {
	if proto == "" {
		return "unset"
	}
	return proto
}
