package bogus

import (
	"encoding/json"
	"testing"
)

func TestBody(t *testing.T) {
	for _, n := range []int{9, 10, 11, 1000, 1 << 20} {
		b := Body(n)
		if want := n - (1 - n%2); len(b) != want {
			t.Errorf("Body(%d): %d bytes, want %d", n, len(b), want)
		}
		var v struct{ A []int }
		if err := json.Unmarshal(b, &v); err != nil || len(v.A) == 0 {
			t.Errorf("Body(%d) = %.40q…: %v", n, b, err)
		}
	}
}

func TestAllocated(t *testing.T) {
	var sink []byte
	if n := Allocated(func() { sink = make([]byte, 1<<20) }); n < 1<<20 {
		t.Errorf("Allocated: %d bytes for a 1 MiB slice", n)
	}
	_ = sink
}
