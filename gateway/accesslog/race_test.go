//go:build race

package accesslog

// sync.Pool deliberately drops items under the race detector, so allocation counts are only
// meaningful without it.
const raceEnabled = true
