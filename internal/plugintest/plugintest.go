// Package plugintest builds the example plugins (plugins/examples) for tests that run them as
// real processes: the SDK's, the host's and the gateway's. One `go build` links all three
// binaries; doing it per test would relink gRPC every time on a 2-core machine.
package plugintest

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"testing"

	"go.uber.org/goleak"
)

// BuildExamples builds every example plugin into a new temporary directory and returns it;
// the caller removes it. Binaries are named after their package (stamper, apikey, misbehave).
func BuildExamples() (string, error) {
	dir, err := os.MkdirTemp("", "meshgate-plugins-")
	if err != nil {
		return "", err
	}
	args := []string{"build", "-o", dir + string(filepath.Separator)}
	for _, name := range [...]string{"stamper", "apikey", "misbehave"} {
		args = append(args, "github.com/meshgate/meshgate/plugins/examples/"+name)
	}
	if out, err := exec.Command("go", args...).CombinedOutput(); err != nil {
		_ = os.RemoveAll(dir)
		return "", fmt.Errorf("building the example plugins: %w\n%s", err, out)
	}
	return dir, nil
}

// Main is a TestMain body for packages whose tests run the example plugins: it builds them,
// stores their directory in *dir, runs the tests and, when they pass, fails the run if any
// goroutine is left (every test must stop the plugins it started, and with them go-plugin's
// and gRPC's goroutines). Use it as os.Exit(plugintest.Main(m, &binDir)).
func Main(m *testing.M, dir *string) int {
	d, err := BuildExamples()
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer func() { _ = os.RemoveAll(d) }() // a temp dir: a leftover after a failed removal is harmless
	*dir = d
	code := m.Run()
	if code == 0 {
		if err := goleak.Find(); err != nil {
			fmt.Fprintf(os.Stderr, "goroutines leaked: %v\n", err)
			return 1
		}
	}
	return code
}
