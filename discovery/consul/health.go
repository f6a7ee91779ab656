package consul

import (
	"fmt"
	"maps"
	"slices"
	"strings"
	"time"
)

// Health reports whether every watched service is served from a current Consul answer. When it
// is not, detail starts with "degraded: " and names each affected service with what it is
// serving and why, e.g.
//
//	degraded: api: consul query failing for 12s (serving the snapshot saved 2026-01-02T03:04:05Z): connection refused
//
// Degraded is not "not ready": the edge keeps /ready at 200 and puts detail in its body, because
// a load balancer that pulled every meshgate during a Consul outage would turn a registry
// problem into a traffic outage — serving the last known good set is the point of it. detail
// never contains the token (it is sent as a header, and URLs are stripped from errors).
func (s *Source) Health() (ok bool, detail string) {
	s.mu.Lock()
	ws := slices.Collect(maps.Values(s.watches))
	s.mu.Unlock()
	slices.SortFunc(ws, func(a, b *watch) int { return strings.Compare(a.key, b.key) })
	now := s.now()
	var problems []string
	for _, w := range ws {
		w.mu.Lock()
		p := w.problem(now)
		w.mu.Unlock()
		if p != "" {
			problems = append(problems, p)
		}
	}
	if len(problems) == 0 {
		return true, ""
	}
	return false, "degraded: " + strings.Join(problems, "; ")
}

// Synced reports whether every watched service has a set to serve or has had its first query
// answered (successfully or not). The edge holds /ready at 503 until then at start-up, so a
// load balancer does not send traffic in the milliseconds before the first answer, when a
// service without a snapshot has no endpoints; a failing Consul does not hold it back.
func (s *Source) Synced() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, w := range s.watches {
		w.mu.Lock()
		ok := w.have || w.answered
		w.mu.Unlock()
		if !ok {
			return false
		}
	}
	return true
}

// problem describes what is wrong with one watch, or "" when nothing is. Called with w.mu held.
func (w *watch) problem(now time.Time) string {
	var serving string
	switch {
	case !w.have && w.unknown != "":
		serving = w.unknown
	case !w.have:
		serving = "no endpoints known yet"
	case w.cur.Source == SourceSnapshot:
		serving = "serving the snapshot saved " + w.snapshotAt.UTC().Format(time.RFC3339)
	default:
		serving = fmt.Sprintf("serving the consul answer of %s ago", round(now.Sub(w.lastOK)))
	}
	switch {
	case w.lastErr != nil:
		return fmt.Sprintf("%s: consul query failing for %s (%s): %v", w.label, round(now.Sub(w.failSince)), serving, w.lastErr)
	case w.have && w.cur.Source == SourceSnapshot:
		return fmt.Sprintf("%s: %s, waiting for consul", w.label, serving)
	}
	return ""
}

func round(d time.Duration) time.Duration {
	if d < time.Second {
		return d.Round(time.Millisecond)
	}
	return d.Round(time.Second)
}
