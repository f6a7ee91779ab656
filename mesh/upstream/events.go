package upstream

import (
	"sync/atomic"
	"time"

	"github.com/rs/zerolog"
)

type eventKind uint8

const (
	evEjected eventKind = iota
	evReturned
	evEjectionLimited
	evPanicStart
	evPanicEnd
	evBreaker
)

// event is one resilience state change, queued for the Manager's log goroutine. It is a value
// with no pointers into live state, so queuing it allocates nothing.
type event struct {
	kind           eventKind
	service, host  string
	until          time.Time
	ejections      int
	consecutive    int
	healthy, total int
	from, to       breakerState
}

// eventSink decouples the places state changes (request goroutines, a breaker's locked
// replace) from logging: emit never blocks, and a full queue drops and counts.
type eventSink struct {
	ch      chan event
	dropped atomic.Uint64
}

func newEventSink(size int) *eventSink { return &eventSink{ch: make(chan event, size)} }

func (s *eventSink) emit(ev event) {
	select {
	case s.ch <- ev:
	default:
		s.dropped.Add(1)
	}
}

// logEvent writes one event. Ejections and open breakers are warnings: someone should look.
func logEvent(log *zerolog.Logger, ev event) {
	switch ev.kind {
	case evEjected:
		log.Warn().Str("service", ev.service).Str("host", ev.host).Int("consecutive_errors", ev.consecutive).
			Int("ejections", ev.ejections).Time("until", ev.until).Int("healthy", ev.healthy).Int("hosts", ev.total).
			Msg("upstream host ejected")
	case evReturned:
		log.Info().Str("service", ev.service).Str("host", ev.host).Int("ejections", ev.ejections).
			Msg("upstream host returned from ejection")
	case evEjectionLimited:
		log.Warn().Str("service", ev.service).Str("host", ev.host).Int("healthy", ev.healthy).Int("hosts", ev.total).
			Msg("upstream host not ejected: max_ejection_percent reached")
	case evPanicStart:
		log.Warn().Str("service", ev.service).Int("healthy", ev.healthy).Int("hosts", ev.total).
			Msg("upstream panic mode: too few healthy hosts, balancing across all of them")
	case evPanicEnd:
		log.Info().Str("service", ev.service).Int("healthy", ev.healthy).Int("hosts", ev.total).
			Msg("upstream panic mode over")
	case evBreaker:
		lvl := zerolog.InfoLevel
		if ev.to == breakerOpen {
			lvl = zerolog.WarnLevel
		}
		log.WithLevel(lvl).Str("service", ev.service).Str("host", ev.host).Str("from", ev.from.String()).Str("to", ev.to.String()).
			Msg("upstream circuit breaker state changed")
	}
}
