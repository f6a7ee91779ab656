package main

import (
	"strings"
)

// The Go runtime's monitor thread (sysmon) goes into a deep sleep whenever every P is idle, and
// the next system call any goroutine makes wakes it with a futex, after which it polls every
// 20 µs for a while before sleeping again (runtime/proc.go, sysmon; golang/go#18236: its tick
// cannot be configured). A proxy at a moderate rate is idle between nearly every two requests,
// so it pays that wake-up, and the polls after it, on every request: on this project's 2-vCPU
// test machine the edge at 1000 req/s cost 0.147 vCPU with it and 0.093 without, and p50
// dropped by 40 µs (docs/operations.md#runtime). The one switch that keeps sysmon from the deep
// sleep is GODEBUG=schedtrace=N: sysmon then never sleeps longer than 10 ms, which costs an idle
// process about 100 short wake-ups a second (0.4% of a core here). It also prints one scheduler
// line to stderr whenever the host's uptime passes a multiple of N ms, and a scheduler dump
// (a line per goroutine) before the message of a fatal panic. The runtime reads GODEBUG's
// schedtrace once, at start-up, so the serving commands re-execute the binary with it set.
// N is the largest value, 24.8 days, so that the line comes at most once a process start on
// a host up longer than that, and every 24.8 days after.

// sysmonEnvVar opts out: MESHGATE_SYSMON=sleep keeps the Go runtime's default.
const sysmonEnvVar = "MESHGATE_SYSMON"

// schedtraceSetting is the GODEBUG field that keeps sysmon polling (milliseconds; int32 max).
const schedtraceSetting = "schedtrace=2147483647"

// sysmonEnv returns environ with schedtraceSetting added to GODEBUG, and whether the process
// should re-execute itself with it: not when the operator opted out, and not when GODEBUG
// already names schedtrace (theirs, or ours after the re-execution).
func sysmonEnv(environ []string) ([]string, bool) {
	godebug := -1
	for i, kv := range environ {
		k, v, _ := strings.Cut(kv, "=")
		switch k {
		case sysmonEnvVar:
			if v == "sleep" {
				return environ, false
			}
		case "GODEBUG":
			for f := range strings.SplitSeq(v, ",") {
				if strings.HasPrefix(f, "schedtrace=") {
					return environ, false
				}
			}
			godebug = i
		}
	}
	env := append([]string(nil), environ...)
	if godebug < 0 {
		return append(env, "GODEBUG="+schedtraceSetting), true
	}
	if env[godebug] == "GODEBUG=" {
		env[godebug] += schedtraceSetting
	} else {
		env[godebug] += "," + schedtraceSetting
	}
	return env, true
}
