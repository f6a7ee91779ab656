//go:build !linux

package main

// keepSysmonPolling does nothing off Linux: the re-execution in place is syscall.Exec's Linux
// behaviour, and the measurements behind it were made on Linux only.
func keepSysmonPolling() {}
