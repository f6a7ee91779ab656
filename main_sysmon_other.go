//go:build !linux

package main

// keepSysmonPolling does nothing off Linux: the re-execution relies on /proc/self/exe, and the
// measurements behind it were made on Linux only.
func keepSysmonPolling() {}
