package clock

import (
	"testing"
	"time"
)

func TestVirtual(t *testing.T) {
	start := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	v := NewVirtual(start)
	var seen []time.Time
	v.OnChange(func(t time.Time) { seen = append(seen, t) })
	if !v.Now().Equal(start) {
		t.Fatalf("Now = %v", v.Now())
	}
	got := v.Advance(time.Hour)
	if !got.Equal(start.Add(time.Hour)) || !v.Now().Equal(got) {
		t.Fatalf("Advance = %v, Now = %v", got, v.Now())
	}
	v.Set(start)
	if len(seen) != 2 || !seen[1].Equal(start) {
		t.Fatalf("listeners saw %v", seen)
	}
	var c Clock = Real{}
	if time.Since(c.Now()) > time.Second {
		t.Fatal("real clock is off")
	}
	if !Func(func() time.Time { return start }).Now().Equal(start) {
		t.Fatal("Func")
	}
}
