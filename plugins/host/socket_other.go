//go:build !unix

package host

import (
	"errors"
	"os"
)

// socketpair: no unix sockets to pass at exec here; plugins are called over gRPC.
func socketpair() (host, child *os.File, err error) {
	return nil, nil, errors.New("no socketpair on this platform")
}
