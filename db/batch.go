package db

import (
	"context"
	"fmt"
	"math/bits"
	"strconv"
	"strings"
	"sync"
)

// Batcher runs the work items of concurrent callers in batches: while a
// batch runs, the items submitted meanwhile queue up, and the next batch
// takes them all (up to a maximum). Its run function typically writes a
// whole batch with a few multi-row statements in one transaction, so that
// concurrent requests share statements and the durable commit, not only the
// commit as a Group does.
//
// Items carry their own results: run sets them before it returns, and Do
// returns once the run that holds its item has returned. A panic in run
// fails every item of that batch with an error.
type Batcher[T any] struct {
	run  func(items []T)
	max  int
	reqs chan *batchReq[T]
	stop chan struct{}
	wg   sync.WaitGroup
	mu   sync.RWMutex
	done bool
}

type batchReq[T any] struct {
	item T
	done chan error
}

// NewBatcher starts a Batcher with the given number of workers (batches
// running at once: 1 for SQLite's single writer, a few for PostgreSQL) and
// batch size limit (default 128 when ≤ 0). Close stops it.
func NewBatcher[T any](workers, maxBatch int, run func(items []T)) *Batcher[T] {
	if workers <= 0 {
		workers = 1
	}
	if maxBatch <= 0 {
		maxBatch = 128
	}
	b := &Batcher[T]{run: run, max: maxBatch, reqs: make(chan *batchReq[T], 4*maxBatch), stop: make(chan struct{})}
	for i := 0; i < workers; i++ {
		b.wg.Add(1)
		go b.loop()
	}
	return b
}

// Do submits item and waits for the run of its batch. It fails only when
// the Batcher is closed, when ctx ends before the item was queued, or when
// run panicked; otherwise the outcome is in the item.
func (b *Batcher[T]) Do(ctx context.Context, item T) error {
	r := &batchReq[T]{item: item, done: make(chan error, 1)}
	b.mu.RLock()
	if b.done {
		b.mu.RUnlock()
		return ErrGroupClosed
	}
	select {
	case b.reqs <- r:
		b.mu.RUnlock()
	case <-ctx.Done():
		b.mu.RUnlock()
		return ctx.Err()
	}
	// Once queued, an item is always run: wait for it, whatever ctx does.
	return <-r.done
}

// Close stops the workers after the queued items have run.
func (b *Batcher[T]) Close() {
	b.mu.Lock()
	if !b.done {
		b.done = true
		close(b.stop)
	}
	b.mu.Unlock()
	b.wg.Wait()
}

func (b *Batcher[T]) loop() {
	defer b.wg.Done()
	for {
		var first *batchReq[T]
		select {
		case first = <-b.reqs:
		case <-b.stop:
			for {
				select {
				case r := <-b.reqs:
					b.runBatch([]*batchReq[T]{r})
				default:
					return
				}
			}
		}
		batch := []*batchReq[T]{first}
	fill:
		for len(batch) < b.max {
			select {
			case r := <-b.reqs:
				batch = append(batch, r)
			default:
				break fill
			}
		}
		b.runBatch(batch)
	}
}

func (b *Batcher[T]) runBatch(batch []*batchReq[T]) {
	items := make([]T, len(batch))
	for i, r := range batch {
		items[i] = r.item
	}
	err := func() (err error) {
		defer func() {
			if p := recover(); p != nil {
				err = fmt.Errorf("db: batch: panic: %v", p)
			}
		}()
		b.run(items)
		return nil
	}()
	for _, r := range batch {
		r.done <- err
	}
}

// SizeClass rounds n up to the next size class — 1, 2, 3, 4, 6, 8, 12, 16, 24,
// … (powers of two and one and a half times them) — so that multi-row
// statements come in few distinct texts (each is prepared and cached once)
// while padding at most a third of the rows: a batch of n rows is written as
// SizeClass(n) rows, the last one repeated, by statements for which a
// repeated row changes nothing (INSERT … ON CONFLICT DO NOTHING, IN lists).
func SizeClass(n int) int {
	c := 1
	for c < n {
		if c >= 2 && c&(c-1) == 0 && c+c/2 >= n { // c a power of two, 1.5c enough
			return c + c/2
		}
		c = 1 << bits.Len(uint(c))
	}
	return c
}

// PowerBelow returns the largest power of two ≤ n (n ≥ 1): the chunk sizes of
// a batch written without padding (37 = 32 + 4 + 1).
func PowerBelow(n int) int {
	return 1 << (bits.Len(uint(n)) - 1)
}

// Values returns the VALUES rows of a multi-row statement: rows groups of
// cols placeholders, numbered from $first: "($1, $2), ($3, $4)".
func Values(rows, cols, first int) string {
	var sb strings.Builder
	sb.Grow(rows * cols * 5)
	n := first
	for r := 0; r < rows; r++ {
		if r > 0 {
			sb.WriteString(", ")
		}
		sb.WriteByte('(')
		for c := 0; c < cols; c++ {
			if c > 0 {
				sb.WriteString(", ")
			}
			sb.WriteByte('$')
			sb.WriteString(strconv.Itoa(n))
			n++
		}
		sb.WriteByte(')')
	}
	return sb.String()
}
