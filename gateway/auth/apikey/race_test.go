//go:build race

package apikey

const raceEnabled = true
