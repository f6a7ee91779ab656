package testport

import (
	"fmt"
	"math/rand/v2"
	"net"
	"os"
	"strconv"
	"strings"
	"testing"
)

// Restartable returns a loopback TCP port below the kernel's ephemeral range
// (net.ipv4.ip_local_port_range) that was free when it was chosen. Outgoing connections never
// get such a port, so a server can give it up and listen on it again.
func Restartable(t testing.TB) int {
	t.Helper()
	low := 32768 // Linux's default when the range cannot be read
	if b, err := os.ReadFile("/proc/sys/net/ipv4/ip_local_port_range"); err == nil {
		if f := strings.Fields(string(b)); len(f) == 2 {
			if n, err := strconv.Atoi(f[0]); err == nil {
				low = n
			}
		}
	}
	const from = 10000
	if low <= from+100 {
		t.Fatalf("testport: the ephemeral range starts at %d; no room below it", low)
	}
	for range 200 {
		p := from + rand.IntN(low-from)
		l, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", p))
		if err != nil {
			continue
		}
		_ = l.Close()
		return p
	}
	t.Fatal("testport: no free port below the ephemeral range after 200 tries")
	return 0
}
