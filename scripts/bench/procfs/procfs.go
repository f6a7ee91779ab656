package procfs

import (
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
)

// ParseStat returns utime+stime (clock ticks) and the parent pid from the text of
// /proc/PID/stat. The command name (field 2) may contain spaces and parentheses, so fields are
// counted after its last ')'.
func ParseStat(s string) (ticks uint64, ppid int, err error) {
	i := strings.LastIndexByte(s, ')')
	if i < 0 {
		return 0, 0, errors.New("stat: no command name")
	}
	f := strings.Fields(s[i+1:])
	// f[0] is field 3 (state): ppid (4) is f[1], utime (14) and stime (15) f[11] and f[12].
	if len(f) < 13 {
		return 0, 0, fmt.Errorf("stat: %d fields after the command name", len(f))
	}
	ppid, err = strconv.Atoi(f[1])
	if err != nil {
		return 0, 0, fmt.Errorf("stat ppid: %w", err)
	}
	ut, err := strconv.ParseUint(f[11], 10, 64)
	if err != nil {
		return 0, 0, fmt.Errorf("stat utime: %w", err)
	}
	st, err := strconv.ParseUint(f[12], 10, 64)
	if err != nil {
		return 0, 0, fmt.Errorf("stat stime: %w", err)
	}
	return ut + st, ppid, nil
}

// ReadStat is ParseStat of pid's /proc/PID/stat.
func ReadStat(pid int) (ticks uint64, ppid int, err error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, 0, err
	}
	return ParseStat(string(b))
}

// Memory is a process's resident set, in kB as the kernel reports it.
type Memory struct {
	RSSKB int64 // VmRSS: now
	HWMKB int64 // VmHWM: the peak so far
}

// ParseStatus reads VmRSS and VmHWM from the text of /proc/PID/status.
func ParseStatus(status string) (Memory, error) {
	var m Memory
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
			m.RSSKB, haveRSS = n, true
		} else {
			m.HWMKB, haveHWM = n, true
		}
	}
	if !haveRSS || !haveHWM {
		return m, errors.New("status: no VmRSS or VmHWM")
	}
	return m, nil
}

// ReadMemory is ParseStatus of pid's /proc/PID/status.
func ReadMemory(pid int) (Memory, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return Memory{}, fmt.Errorf("read status: %w", err)
	}
	return ParseStatus(string(b))
}
