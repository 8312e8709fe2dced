//go:build race

package jobs_test

// The race detector slows modernc.org/sqlite (transpiled C) some 40×.
const raceEnabled = true
