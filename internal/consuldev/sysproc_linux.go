package consuldev

import "syscall"

// sysProcAttr makes the kernel kill the agent when the test binary dies without running its
// cleanups (a -timeout panic, a SIGKILL), so no orphaned agent outlives a CI run.
func sysProcAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
}
