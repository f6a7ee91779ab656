package gateway

import (
	"fmt"
	"os"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/meshgate/meshgate/conf"
	"github.com/meshgate/meshgate/gateway/accesslog"
	"github.com/meshgate/meshgate/gateway/accesslog/ship"
)

// startLogSinks starts one shipper per access_log.sinks entry. Each is a component of its own,
// added before the access log so that unwinding closes the logger first: its last lines then
// still reach the shippers, which publish or spool them.
func (e *Server) startLogSinks(cfg *conf.Config, reg prometheus.Registerer) ([]accesslog.Sink, error) {
	if len(cfg.AccessLog.Sinks) == 0 {
		return nil, nil
	}
	m, err := ship.NewMetrics(reg)
	if err != nil {
		return nil, err
	}
	var out []accesslog.Sink
	host, _ := os.Hostname() // host.name of the OTLP resource; left out when unknown
	for _, so := range logSinkOptions(cfg) {
		var pub ship.Publisher
		var err error
		switch so.Kind {
		case conf.SinkOTLP:
			so.OTLP.HostName = host
			pub, err = ship.NewOTLP(so.OTLP)
		default:
			pub, err = ship.DialNATS(so.NATS)
		}
		if err != nil {
			return nil, err
		}
		so.Ship.Publisher, so.Ship.Metrics = pub, m
		s, err := ship.New(so.Ship)
		if err != nil {
			_ = pub.Close()
			return nil, fmt.Errorf("sink %s: %w", so.Ship.Name, err)
		}
		e.add(component{name: "access log sink " + so.Ship.Name, close: func() { _ = s.Close() }})
		out = append(out, s)
	}
	return out, nil
}
