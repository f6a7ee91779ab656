package main

import (
	"sync"

	"github.com/coreos/go-systemd/v22/daemon"
	"github.com/rs/zerolog"
)

// sdNotifier tells systemd (Type=notify) where the process is in its life: READY=1 once the
// listeners serve, RELOADING=1 and READY=1 around each reload, STOPPING=1 when the drain starts.
// Without NOTIFY_SOCKET every call is a no-op, so the same binary runs unchanged under Nomad,
// Docker or a shell.
//
// The state it keeps exists because the reload and stop paths run on other goroutines than
// start-up: the config watcher can report a change (or an invalid file) before the listeners
// serve, and a reload can finish after the drain began. Telling systemd READY=1 in either
// case would be a lie — early, it would start dependent units before we accept connections;
// late, it would undo STOPPING=1 and make systemd think a stopping service is up again.
type sdNotifier struct {
	log zerolog.Logger

	mu       sync.Mutex
	serving  bool // READY=1 has been sent for start-up
	stopping bool // STOPPING=1 has been sent; nothing after it
}

// send writes one message. A failure is logged, never fatal: a process that serves but cannot
// reach systemd is still better than one that refuses to serve, and systemd's own start
// timeout reports the missing READY=1.
func (n *sdNotifier) send(state string) {
	if _, err := daemon.SdNotify(false, state); err != nil {
		n.log.Warn().Err(err).Msg("sd_notify failed")
	}
}

// ready is called once the listeners accept connections.
func (n *sdNotifier) ready() {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.serving || n.stopping {
		return
	}
	n.serving = true
	n.send(daemon.SdNotifyReady)
}

// reloading is called before a reload is applied. MONOTONIC_USEC lets systemd ≥ 253
// (Type=notify-reload) tell this reload from an older one; older versions ignore the field.
func (n *sdNotifier) reloading() {
	n.mu.Lock()
	defer n.mu.Unlock()
	if !n.serving || n.stopping {
		return
	}
	n.send(daemon.SdNotifyReloading + "\n" + daemon.SdNotifyMonotonicUsec())
}

// reloaded is called after a reload was applied or rejected: either way the process serves
// (a rejected config keeps the running one), and systemd waits for READY=1 to end the reload.
func (n *sdNotifier) reloaded() {
	n.mu.Lock()
	defer n.mu.Unlock()
	if !n.serving || n.stopping {
		return
	}
	n.send(daemon.SdNotifyReady)
}

// drain is called when the drain starts.
func (n *sdNotifier) drain() {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.stopping {
		return
	}
	n.stopping = true
	n.send(daemon.SdNotifyStopping)
}
