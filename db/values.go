package db

import "time"

// Column values in the portable encodings of docs/dev-contracts.md: booleans
// are INTEGER 0/1, timestamps BIGINT Unix milliseconds.

// Bool is b as a boolean column value: 1 or 0.
func Bool(b bool) int {
	if b {
		return 1
	}
	return 0
}

// Millis is t as a timestamp column value (Unix milliseconds); the zero time
// is 0.
func Millis(t time.Time) int64 {
	if t.IsZero() {
		return 0
	}
	return t.UnixMilli()
}

// FromMillis reads a timestamp column value written by Millis: UTC, and 0 is
// the zero time.
func FromMillis(v int64) time.Time {
	if v == 0 {
		return time.Time{}
	}
	return time.UnixMilli(v).UTC()
}
