//go:build !linux

package consuldev

import "syscall"

// sysProcAttr has no parent-death signal off Linux; t.Cleanup is then the only reaper.
func sysProcAttr() *syscall.SysProcAttr {
	return nil
}
