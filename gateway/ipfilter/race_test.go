//go:build race

package ipfilter

const raceEnabled = true
