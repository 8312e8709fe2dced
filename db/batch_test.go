package db_test

import (
	"context"
	"errors"
	"sync"
	"testing"

	"github.com/soukhq/souk/db"
)

func TestValuesAndSizeClass(t *testing.T) {
	for _, c := range []struct {
		rows, cols, first int
		want              string
	}{
		{1, 1, 1, "($1)"},
		{2, 2, 1, "($1, $2), ($3, $4)"},
		{2, 3, 5, "($5, $6, $7), ($8, $9, $10)"},
	} {
		if got := db.Values(c.rows, c.cols, c.first); got != c.want {
			t.Errorf("Values(%d, %d, %d) = %q, want %q", c.rows, c.cols, c.first, got, c.want)
		}
	}
	for n, want := range map[int]int{0: 1, 1: 1, 2: 2, 3: 3, 4: 4, 5: 6, 6: 6, 7: 8, 9: 12, 13: 16, 17: 24, 25: 32, 64: 64, 65: 96, 97: 128} {
		if got := db.SizeClass(n); got != want {
			t.Errorf("SizeClass(%d) = %d, want %d", n, got, want)
		}
	}
	for n, want := range map[int]int{1: 1, 2: 2, 3: 2, 37: 32, 64: 64, 127: 64} {
		if got := db.PowerBelow(n); got != want {
			t.Errorf("PowerBelow(%d) = %d, want %d", n, got, want)
		}
	}
}

type item struct {
	v, out int
}

func TestBatcherRunsEveryItemOnceInBatches(t *testing.T) {
	var mu sync.Mutex
	runs, seen := 0, map[int]int{}
	b := db.NewBatcher(2, 16, func(items []*item) {
		mu.Lock()
		runs++
		mu.Unlock()
		if len(items) > 16 {
			panic("batch larger than the limit")
		}
		for _, it := range items {
			mu.Lock()
			seen[it.v]++
			mu.Unlock()
			it.out = it.v * 2
		}
	})
	const n = 500
	var wg sync.WaitGroup
	items := make([]*item, n)
	for i := range items {
		items[i] = &item{v: i}
		wg.Add(1)
		go func(it *item) {
			defer wg.Done()
			if err := b.Do(context.Background(), it); err != nil {
				t.Error(err)
			}
		}(items[i])
	}
	wg.Wait()
	b.Close()
	for i, it := range items {
		if it.out != 2*i || seen[i] != 1 {
			t.Fatalf("item %d: out %d, run %d times", i, it.out, seen[i])
		}
	}
	if runs >= n {
		t.Logf("no batching happened (%d runs for %d items)", runs, n)
	}
	if err := b.Do(context.Background(), &item{}); !errors.Is(err, db.ErrGroupClosed) {
		t.Fatalf("Do after Close: %v", err)
	}
}

func TestBatcherPanicFailsTheBatch(t *testing.T) {
	b := db.NewBatcher(1, 4, func(items []*item) {
		for _, it := range items {
			if it.v < 0 {
				panic("negative")
			}
		}
	})
	defer b.Close()
	if err := b.Do(context.Background(), &item{v: -1}); err == nil {
		t.Fatal("a panicking run reported no error")
	}
	if err := b.Do(context.Background(), &item{v: 1}); err != nil {
		t.Fatalf("the batcher did not survive a panic: %v", err)
	}
}
