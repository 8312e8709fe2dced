// Package e2e holds souk's multi-process tests: they build the real binary
// (go build ./cmd/souk into a temporary directory), run `souk merchant`
// processes against a fake market (APIG-verified Query Order) and a counting
// vendor app (signed webhooks), and check idempotency and crash safety from the
// outside, on SQLite and PostgreSQL.
package e2e

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/soukhq/souk/db/dbtest"
)

func backendDSN(t *testing.T, backend string) string {
	if backend == "postgres" {
		return dbtest.DSN(t, backend)
	}
	return "" // newEnv puts the SQLite file in the --data directory
}

// storm sends n concurrent newInstance deliveries of one order, each with
// its own businessId, spread over the merchants at bases, released together.
func storm(t *testing.T, bases []string, order string, n int) []answer {
	t.Helper()
	answers := make([]answer, n)
	errs := make([]error, n)
	var wg sync.WaitGroup
	start := make(chan struct{})
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			answers[i], errs[i] = newInstance(context.Background(), bases[i%len(bases)], order, fmt.Sprintf("biz-%s-%03d", order, i))
		}()
	}
	close(start)
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Fatalf("delivery %d: %v", i, err)
		}
	}
	return answers
}

// checkOneInstance asserts that every answer accepted the order with one
// instanceId, that the store holds one instance for it, and that the vendor
// app gets exactly one instance.created event for it.
func checkOneInstance(t *testing.T, e *env, order string, answers []answer) {
	t.Helper()
	ids := map[string]int{}
	for i, a := range answers {
		if !accepted(a.ResultCode) || a.InstanceID == "" {
			t.Fatalf("delivery %d answered %+v", i, a)
		}
		ids[a.InstanceID]++
	}
	if len(ids) != 1 {
		t.Fatalf("answers name %d instances, want 1: %v", len(ids), ids)
	}
	if got := instancesPerOrder(t, e.openStore(), order); len(got) != 1 || got[order] != 1 {
		t.Fatalf("store holds %v instances for %s, want exactly 1", got, order)
	}
	waitFor(t, 30*time.Second, "instance.created reaches the vendor app", func() (bool, string) {
		c := e.app.createdByOrder()[order]
		return len(c) >= 1, fmt.Sprint(c)
	})
	time.Sleep(500 * time.Millisecond) // a second event would have arrived by now
	if c := e.app.createdByOrder()[order]; len(c) != 1 {
		t.Fatalf("vendor app got %d different instance.created events for %s, want 1: %v", len(c), order, c)
	}
}

// 200 concurrent newInstance deliveries of one order with different
// businessIds → one instance, one created event.
func TestStormOneProcess(t *testing.T) {
	for _, b := range dbtest.Backends() {
		t.Run(b, func(t *testing.T) {
			t.Parallel()
			e := newEnv(t, b, backendDSN(t, b))
			p := e.start()
			order := orderPrefix("storm") + "1"
			checkOneInstance(t, e, order, storm(t, []string{p.base}, order, 200))
		})
	}
}

// The same with two merchant processes on one PostgreSQL database, the
// deliveries spread across both.
func TestStormTwoProcessesPostgres(t *testing.T) {
	t.Parallel()
	e := newEnv(t, "postgres", backendDSN(t, "postgres"))
	p1, p2 := e.start(), e.start()
	for round := range 3 {
		order := fmt.Sprintf("%s%d", orderPrefix("storm2p"), round)
		checkOneInstance(t, e, order, storm(t, []string{p1.base, p2.base}, order, 200))
	}
}

// kill -9 during a load of signed creates (distinct orders), restart, replay
// every request with new businessIds and nonces: every order has exactly one
// instance, answered consistently, and exactly one instance.created event
// per order reaches the vendor app (redeliveries of the same event id are
// allowed: at least once).
func TestCrashReplay(t *testing.T) {
	for _, b := range dbtest.Backends() {
		t.Run(b, func(t *testing.T) {
			t.Parallel()
			const (
				orders  = 400
				workers = 16
			)
			e := newEnv(t, b, backendDSN(t, b))
			prefix := orderPrefix("crash")
			orderOf := func(i int) string { return fmt.Sprintf("%s%04d", prefix, i) }

			p := e.start()
			var (
				mu       sync.Mutex
				before   = map[string]string{} // order → instanceId answered before the crash
				answered atomic.Int64
				next     atomic.Int64
				failed   atomic.Int64
				wg       sync.WaitGroup
			)
			for range workers {
				wg.Add(1)
				go func() {
					defer wg.Done()
					for {
						i := int(next.Add(1) - 1)
						if i >= orders {
							return
						}
						a, err := newInstance(context.Background(), p.base, orderOf(i), "before-"+randHex(6))
						if err != nil {
							failed.Add(1)
							return // the process is gone
						}
						if !accepted(a.ResultCode) || a.InstanceID == "" {
							t.Errorf("before the crash, %s answered %+v", orderOf(i), a)
							return
						}
						mu.Lock()
						before[orderOf(i)] = a.InstanceID
						mu.Unlock()
						answered.Add(1)
					}
				}()
			}
			// Kill in the middle of the load.
			waitFor(t, 60*time.Second, "a quarter of the orders answered", func() (bool, string) {
				return answered.Load() >= orders/4, fmt.Sprint(answered.Load())
			})
			p.kill()
			wg.Wait()
			if t.Failed() {
				return
			}
			t.Logf("%s: %d orders answered before kill -9, %d requests cut by it", b, len(before), failed.Load())
			if len(before) >= orders {
				t.Fatal("the load finished before the kill; the test proves nothing")
			}

			// Restart on the same store and replay every order.
			p = e.start()
			var replayWG sync.WaitGroup
			idx := make(chan int)
			for range workers {
				replayWG.Add(1)
				go func() {
					defer replayWG.Done()
					for i := range idx {
						o := orderOf(i)
						a, err := newInstance(context.Background(), p.base, o, "replay-"+randHex(6))
						if err != nil {
							t.Errorf("replay of %s: %v", o, err)
							continue
						}
						if !accepted(a.ResultCode) || a.InstanceID == "" {
							t.Errorf("replay of %s answered %+v", o, a)
							continue
						}
						mu.Lock()
						prev, ok := before[o]
						mu.Unlock()
						if ok && prev != a.InstanceID {
							t.Errorf("%s: instance %s before the crash, %s after", o, prev, a.InstanceID)
						}
					}
				}()
			}
			for i := range orders {
				idx <- i
			}
			close(idx)
			replayWG.Wait()
			if t.Failed() {
				return
			}

			got := instancesPerOrder(t, e.openStore(), prefix)
			if len(got) != orders {
				t.Fatalf("store holds instances for %d orders, want %d", len(got), orders)
			}
			for o, n := range got {
				if n != 1 {
					t.Fatalf("order %s has %d instances", o, n)
				}
			}

			// Every order's created event reaches the app (events whose
			// delivery the kill interrupted wait for their lease: up to
			// 75 s), and no order gets two different ones.
			waitFor(t, 150*time.Second, "an instance.created event for every order", func() (bool, string) {
				c := e.app.createdByOrder()
				n := 0
				for i := range orders {
					if len(c[orderOf(i)]) > 0 {
						n++
					}
				}
				return n == orders, fmt.Sprintf("%d of %d orders", n, orders)
			})
			time.Sleep(time.Second)
			redelivered := 0
			for o, evs := range e.app.createdByOrder() {
				if len(evs) != 1 {
					t.Errorf("order %s got %d different instance.created events: %v", o, len(evs), evs)
				}
				for _, n := range evs {
					redelivered += n - 1
				}
			}
			t.Logf("%s: %d orders, %d created events, %d redeliveries of an already delivered event id", b, orders,
				len(e.app.createdByOrder()), redelivered)
		})
	}
}
