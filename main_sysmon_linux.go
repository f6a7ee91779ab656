package main

import (
	"os"
	"syscall"
)

// keepSysmonPolling re-executes this binary, in place (same PID, same open descriptors and
// arguments, so systemd, Nomad and socket activation see nothing), with the GODEBUG setting
// that keeps the runtime's monitor thread out of its deep sleep (see main_sysmon.go). It
// returns only when nothing is to be done or the exec failed; then the process runs as it is,
// with the runtime's default.
func keepSysmonPolling() {
	env, ok := sysmonEnv(os.Environ())
	if !ok {
		return
	}
	// The resolved path, not /proc/self/exe: the kernel names a process after the file it
	// executes, and ps, pkill and systemd should keep seeing "meshgate".
	exe, err := os.Executable()
	if err != nil {
		return
	}
	_ = syscall.Exec(exe, os.Args, env) //nolint:gosec // our own binary, our own arguments
}
