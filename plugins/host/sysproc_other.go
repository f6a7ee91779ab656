//go:build !linux

package host

import "syscall"

// sysProcAttr has no parent-death signal off Linux: a plugin outlives a meshgate that was
// killed outright.
func sysProcAttr() *syscall.SysProcAttr {
	return nil
}
