package main

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"

	"github.com/meshgate/meshgate/scripts/bench/procfs"
)

// cpuTicks returns utime+stime of pid, in clock ticks, from /proc/PID/stat.
func cpuTicks(pid int) (uint64, error) {
	t, _, err := procfs.ReadStat(pid)
	if err != nil {
		return 0, fmt.Errorf("read stat: %w", err)
	}
	return t, nil
}

// parseStatTicks is utime+stime of a /proc/PID/stat line.
func parseStatTicks(stat string) (uint64, error) {
	t, _, err := procfs.ParseStat(stat)
	return t, err
}

// memory is a process's resident set (the tools share procfs, so they report it one way).
type memory = procfs.Memory

func parseStatus(status string) (memory, error) { return procfs.ParseStatus(status) }
func readMemory(pid int) (memory, error)        { return procfs.ReadMemory(pid) }

// megabytes converts kB (KiB, as /proc says) to decimal MB, the unit of the target.
func megabytes(kb int64) float64 { return float64(kb) * 1024 / 1e6 }

// metricsSnapshot holds the few meshgate metrics the bench reads.
type metricsSnapshot struct {
	endpoints    map[string]float64 // meshgate_discovery_endpoints by service
	watches      float64            // meshgate_discovery_consul_watches
	queryErrors  float64            // sum of meshgate_discovery_consul_queries_total{result="error"}
	queryOK      float64            // sum of ...{result="success"}
	degraded     float64            // meshgate_discovery_degraded
	haveWatchers bool
}

func scrape(ctx context.Context, client *http.Client, admin string) (metricsSnapshot, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+admin+"/metrics", nil)
	if err != nil {
		return metricsSnapshot{}, err
	}
	resp, err := client.Do(req)
	if err != nil {
		return metricsSnapshot{}, err
	}
	defer func() { _ = resp.Body.Close() }() // read-side close: nothing to act on
	if resp.StatusCode != http.StatusOK {
		return metricsSnapshot{}, fmt.Errorf("GET /metrics: %s", resp.Status)
	}
	return parseMetrics(resp.Body)
}

// parseMetrics reads Prometheus text exposition; only unlabelled metrics and the service and
// result labels the discovery metrics use are understood, which is all the bench needs.
func parseMetrics(r io.Reader) (metricsSnapshot, error) {
	m := metricsSnapshot{endpoints: map[string]float64{}}
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if !strings.HasPrefix(line, "meshgate_discovery_") {
			continue
		}
		sp := strings.LastIndexByte(line, ' ')
		if sp < 0 {
			continue
		}
		v, err := strconv.ParseFloat(line[sp+1:], 64)
		if err != nil {
			return m, fmt.Errorf("metrics line %q: %w", line, err)
		}
		series := line[:sp]
		name, labels, _ := strings.Cut(series, "{")
		switch name {
		case "meshgate_discovery_endpoints":
			if svc, ok := label(labels, "service"); ok {
				m.endpoints[svc] = v
			}
		case "meshgate_discovery_consul_watches":
			m.watches, m.haveWatchers = v, true
		case "meshgate_discovery_degraded":
			m.degraded = v
		case "meshgate_discovery_consul_queries_total":
			switch res, _ := label(labels, "result"); res {
			case "error":
				m.queryErrors += v
			case "success":
				m.queryOK += v
			}
		}
	}
	if err := sc.Err(); err != nil {
		return m, fmt.Errorf("read metrics: %w", err)
	}
	return m, nil
}

// label finds name="value" in a label list (service names here never contain quotes).
func label(labels, name string) (string, bool) {
	_, rest, ok := strings.Cut(labels, name+`="`)
	if !ok {
		return "", false
	}
	v, _, ok := strings.Cut(rest, `"`)
	return v, ok
}
