package db_test

import (
	"testing"
	"time"

	"github.com/soukhq/souk/db"
)

func TestColumnValues(t *testing.T) {
	if db.Bool(true) != 1 || db.Bool(false) != 0 {
		t.Fatal("Bool")
	}
	if db.Millis(time.Time{}) != 0 || !db.FromMillis(0).IsZero() {
		t.Fatal("the zero time is not 0")
	}
	at := time.Date(2026, 3, 1, 8, 0, 0, 123_456_789, time.FixedZone("CST", 8*3600))
	v := db.Millis(at)
	if v != at.UnixMilli() {
		t.Fatalf("Millis = %d, want %d", v, at.UnixMilli())
	}
	back := db.FromMillis(v)
	if !back.Equal(at.Truncate(time.Millisecond)) || back.Location() != time.UTC {
		t.Fatalf("FromMillis = %v, want %v in UTC", back, at.Truncate(time.Millisecond))
	}
}
