package main

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/meshgate/meshgate/scripts/bench/procfs"
)

// processTicks returns utime+stime of pid plus its direct children's: nginx's
// master does no proxying, its workers do, and meshgate's plugins are its
// children. Threads (HAProxy's, Go's) are already in the process's own figure.
func processTicks(pid int) (uint64, error) {
	total, _, err := readStat(pid)
	if err != nil {
		return 0, fmt.Errorf("pid %d: %w", pid, err)
	}
	dirs, err := filepath.Glob("/proc/[0-9]*")
	if err != nil {
		return 0, err
	}
	for _, d := range dirs {
		child, err := strconv.Atoi(filepath.Base(d))
		if err != nil || child == pid {
			continue
		}
		// A process may exit between the glob and the read: not an error.
		if t, ppid, err := readStat(child); err == nil && ppid == pid {
			total += t
		}
	}
	return total, nil
}

// memory is a process's resident set (the tools share procfs, so they report it one way).
type memory = procfs.Memory

func parseStat(s string) (uint64, int, error)   { return procfs.ParseStat(s) }
func readStat(pid int) (uint64, int, error)     { return procfs.ReadStat(pid) }
func parseStatus(status string) (memory, error) { return procfs.ParseStatus(status) }
func readMemory(pid int) (memory, error)        { return procfs.ReadMemory(pid) }

// comm is the process's command name, to check that a pid is the program it
// should be and not a wrapper.
func comm(pid int) string {
	b, _ := os.ReadFile(fmt.Sprintf("/proc/%d/comm", pid))
	return strings.TrimSpace(string(b))
}

// clockTicks is sysconf(_SC_CLK_TCK), read once through getconf because Go
// has no sysconf without cgo. The kernel's USER_HZ is 100 on every Linux
// architecture Go supports, so that is the fallback, and the note says which.
func clockTicks() (int, string) {
	out, err := exec.Command("getconf", "CLK_TCK").Output()
	if err == nil {
		if n, err := strconv.Atoi(strings.TrimSpace(string(out))); err == nil && n > 0 {
			return n, fmt.Sprintf("%d (getconf CLK_TCK)", n)
		}
	}
	return 100, "100 (assumed: getconf CLK_TCK failed)"
}

// cpuStat is the first line of /proc/stat, for the steal share.
func cpuStat() string {
	b, _ := os.ReadFile("/proc/stat")
	line, _, _ := strings.Cut(string(b), "\n")
	return line
}

// stealPct is the steal share of all CPU time between two "cpu" lines of
// /proc/stat (field 9 is steal).
func stealPct(a, b string) string {
	x, y := strings.Fields(a), strings.Fields(b)
	if len(x) < 9 || len(x) != len(y) {
		return "n/a"
	}
	var total, steal float64
	for i := 1; i < len(x); i++ {
		u, err1 := strconv.ParseFloat(x[i], 64)
		v, err2 := strconv.ParseFloat(y[i], 64)
		if err1 != nil || err2 != nil {
			return "n/a"
		}
		total += v - u
		if i == 8 {
			steal = v - u
		}
	}
	if total <= 0 {
		return "n/a"
	}
	return fmt.Sprintf("%.1f%%", 100*steal/total)
}

func loadAverage() string {
	b, _ := os.ReadFile("/proc/loadavg")
	f := strings.Fields(string(b))
	if len(f) < 3 {
		return "?"
	}
	return strings.Join(f[:3], " ")
}
