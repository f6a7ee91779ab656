//go:build unix

package host

import (
	"os"
	"syscall"
)

// socketpair makes the pair of connected unix sockets a plugin's per-request calls travel
// on: host is ours, child goes to the plugin process at exec (exec.Cmd.ExtraFiles). Both are
// close-on-exec, made so under ForkLock: another plugin started at the same moment must not
// inherit either end. exec dups child into the new process without the flag, so that process
// is the only one holding the other end, and its exit is what closes the socket under us.
// SOCK_STREAM rather than SOCK_SEQPACKET: a call with a body can be megabytes, more than one
// datagram can carry, and the framing already delimits messages.
func socketpair() (host, child *os.File, err error) {
	syscall.ForkLock.RLock()
	fds, err := syscall.Socketpair(syscall.AF_UNIX, syscall.SOCK_STREAM, 0)
	if err == nil {
		syscall.CloseOnExec(fds[0])
		syscall.CloseOnExec(fds[1])
	}
	syscall.ForkLock.RUnlock()
	if err != nil {
		return nil, nil, os.NewSyscallError("socketpair", err)
	}
	return os.NewFile(uintptr(fds[0]), "plugin-socket"), os.NewFile(uintptr(fds[1]), "plugin-socket-child"), nil
}
