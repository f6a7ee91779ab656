package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"strconv"
	"strings"
)

// cpuTicks returns utime+stime of pid, in clock ticks, from /proc/PID/stat.
func cpuTicks(pid int) (uint64, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, fmt.Errorf("read stat: %w", err)
	}
	return parseStatTicks(string(b))
}

// parseStatTicks reads fields 14 and 15 of a /proc/PID/stat line. The command name (field 2)
// may contain spaces and parentheses, so fields are counted after its last ')'.
func parseStatTicks(stat string) (uint64, error) {
	i := strings.LastIndexByte(stat, ')')
	if i < 0 {
		return 0, errors.New("stat: no command name")
	}
	f := strings.Fields(stat[i+1:])
	// f[0] is field 3 (state), so utime (14) and stime (15) are f[11] and f[12].
	if len(f) < 13 {
		return 0, fmt.Errorf("stat: %d fields after the command name", len(f))
	}
	ut, err := strconv.ParseUint(f[11], 10, 64)
	if err != nil {
		return 0, fmt.Errorf("stat utime: %w", err)
	}
	st, err := strconv.ParseUint(f[12], 10, 64)
	if err != nil {
		return 0, fmt.Errorf("stat stime: %w", err)
	}
	return ut + st, nil
}

// memory is a process's resident set, in kB as the kernel reports it.
type memory struct {
	rssKB int64 // VmRSS: now
	hwmKB int64 // VmHWM: the peak so far
}

func readMemory(pid int) (memory, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return memory{}, fmt.Errorf("read status: %w", err)
	}
	return parseStatus(string(b))
}

func parseStatus(status string) (memory, error) {
	var m memory
	var haveRSS, haveHWM bool
	for line := range strings.Lines(status) {
		k, v, ok := strings.Cut(line, ":")
		if !ok || (k != "VmRSS" && k != "VmHWM") {
			continue
		}
		f := strings.Fields(v)
		if len(f) != 2 || f[1] != "kB" {
			return m, fmt.Errorf("status %s: unexpected value %q", k, strings.TrimSpace(v))
		}
		n, err := strconv.ParseInt(f[0], 10, 64)
		if err != nil {
			return m, fmt.Errorf("status %s: %w", k, err)
		}
		if k == "VmRSS" {
			m.rssKB, haveRSS = n, true
		} else {
			m.hwmKB, haveHWM = n, true
		}
	}
	if !haveRSS || !haveHWM {
		return m, errors.New("status: no VmRSS or VmHWM")
	}
	return m, nil
}

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
