package host

import "syscall"

// sysProcAttr makes the kernel kill a plugin when meshgate dies without stopping it (SIGKILL,
// the OOM killer): a plugin orphaned that way would otherwise run on forever, and the next
// meshgate starts its own. The signal follows the thread that started the process; Go
// retires threads only when a goroutine exits while locked to one, which ours never are.
func sysProcAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
}
