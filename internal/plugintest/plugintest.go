// Package plugintest builds the example plugins (plugins/examples) for tests that run them as
// real processes: the SDK's, the host's and the gateway's. One `go build` links all three
// binaries; doing it per test would relink gRPC every time on a 2-core machine.
package plugintest

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
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
		return "", fmt.Errorf("building the example plugins: %v\n%s", err, out)
	}
	return dir, nil
}
