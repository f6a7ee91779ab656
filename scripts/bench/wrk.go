package main

import (
	"bufio"
	"errors"
	"fmt"
	"strconv"
	"strings"
)

// wrkResult holds the figures of one wrk run the reports use.
type wrkResult struct {
	rps        float64
	p50ms      float64
	p99ms      float64
	requests   int64 // completed responses ("N requests in ..."), the CPU divisor
	non2xx     int64
	socketErrs int64 // connect + read + write + timeout
}

// parseWrk reads wrk's text report (run with --latency). The figures bench.sh
// read with awk: Requests/sec, the 50% and 99% lines of the latency
// distribution, the request count, socket errors and non-2xx answers.
func parseWrk(out string) (wrkResult, error) {
	var r wrkResult
	var haveRPS, have50, have99, haveReq bool
	sc := bufio.NewScanner(strings.NewReader(out))
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) == 0 {
			continue
		}
		var err error
		switch {
		case f[0] == "Requests/sec:" && len(f) >= 2:
			r.rps, err = strconv.ParseFloat(f[1], 64)
			haveRPS = err == nil
		case f[0] == "50%" && len(f) >= 2 && !have50:
			r.p50ms, err = wrkMillis(f[1])
			have50 = err == nil
		case f[0] == "99%" && len(f) >= 2 && !have99:
			r.p99ms, err = wrkMillis(f[1])
			have99 = err == nil
		case len(f) >= 3 && f[1] == "requests" && f[2] == "in":
			r.requests, err = strconv.ParseInt(f[0], 10, 64)
			haveReq = err == nil
		case f[0] == "Socket" && len(f) >= 10 && f[1] == "errors:":
			// Socket errors: connect 0, read 0, write 0, timeout 0
			for _, i := range []int{3, 5, 7, 9} {
				n, perr := strconv.ParseInt(strings.TrimSuffix(f[i], ","), 10, 64)
				if perr != nil {
					err = perr
					break
				}
				r.socketErrs += n
			}
		case strings.HasPrefix(sc.Text(), "  Non-2xx or 3xx responses:") && len(f) == 5:
			r.non2xx, err = strconv.ParseInt(f[4], 10, 64)
		}
		if err != nil {
			return r, fmt.Errorf("wrk line %q: %w", sc.Text(), err)
		}
	}
	if !haveRPS || !have50 || !have99 || !haveReq {
		return r, errors.New("wrk output lacks Requests/sec, the 50%/99% latency or the request count (was --latency given?)")
	}
	return r, nil
}

// wrkMillis converts wrk's latency notation (512.00us, 1.20ms, 1.01s, 1.00m)
// to milliseconds.
func wrkMillis(v string) (float64, error) {
	units := []struct {
		suffix string
		factor float64
	}{{"us", 0.001}, {"ms", 1}, {"m", 60000}, {"s", 1000}}
	for _, u := range units {
		if n, ok := strings.CutSuffix(v, u.suffix); ok {
			// "1.00m" must not be read as "1.00" + "m" of "ms", hence the
			// order above: us and ms before m and s.
			f, err := strconv.ParseFloat(n, 64)
			if err != nil {
				return 0, fmt.Errorf("latency %q: %w", v, err)
			}
			return f * u.factor, nil
		}
	}
	return 0, fmt.Errorf("latency %q: unknown unit", v)
}

// wrkRequestCount is the "N requests in" figure of any wrk report (with or
// without --latency); 0 when absent.
func wrkRequestCount(out string) int64 {
	for line := range strings.Lines(out) {
		f := strings.Fields(line)
		if len(f) >= 3 && f[1] == "requests" && f[2] == "in" {
			n, _ := strconv.ParseInt(f[0], 10, 64)
			return n
		}
	}
	return 0
}
