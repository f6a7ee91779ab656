package conf

import (
	"testing"

	"go.uber.org/goleak"
)

// Watcher.Run promises to leave no goroutines behind (including fsnotify's reader).
func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}
