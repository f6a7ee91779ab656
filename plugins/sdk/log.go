package sdk

import (
	"errors"
	"io"
	"syscall"

	"github.com/hashicorp/go-hclog"
)

// NewLogger returns the logger a plugin logs with. It writes hclog's JSON lines to the
// process's real stderr, which the host reads, parses and re-logs under the plugin's name at
// each line's level (the host's level decides what is kept, so this one logs everything).
//
// It writes to file descriptor 2 itself rather than to os.Stderr because Serve points
// os.Stderr at go-plugin's raw stdio stream, which the host does not parse: a logger created
// after Serve started (in Configure, say) would otherwise lose its names and levels.
func NewLogger() hclog.Logger {
	return hclog.New(&hclog.LoggerOptions{
		Level:      hclog.Trace,
		Output:     fd2{},
		JSONFormat: true,
	})
}

// fd2 writes straight to file descriptor 2. It is not an *os.File because an os.File's
// cleanup closes its descriptor once the File is unreachable, and closing the process's
// stderr would silence every later log line.
type fd2 struct{}

func (fd2) Write(p []byte) (int, error) {
	n := 0
	for n < len(p) {
		m, err := syscall.Write(syscall.Stderr, p[n:])
		if m > 0 {
			n += m
		}
		switch {
		case errors.Is(err, syscall.EINTR):
			continue
		case err != nil:
			return n, err
		case m == 0:
			return n, io.ErrShortWrite
		}
	}
	return n, nil
}
