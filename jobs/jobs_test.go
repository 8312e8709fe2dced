package jobs_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/soukhq/souk/clock"
	"github.com/soukhq/souk/db"
	"github.com/soukhq/souk/db/dbtest"
	"github.com/soukhq/souk/jobs"
)

var t0 = time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)

func setup(t testing.TB, backend string) *db.DB {
	t.Helper()
	return dbtest.OpenMigrated(t, backend, jobs.Migrate)
}

func enqueue(t *testing.T, d *db.DB, now time.Time, n jobs.New) int64 {
	t.Helper()
	var id int64
	err := d.Tx(context.Background(), func(tx *db.Tx) error {
		var err error
		id, _, err = jobs.Enqueue(context.Background(), tx, now, n)
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	return id
}

func get(t *testing.T, d *db.DB, id int64) jobs.Job {
	t.Helper()
	all, err := jobs.List(context.Background(), d, jobs.Filter{Limit: 100000})
	if err != nil {
		t.Fatal(err)
	}
	for _, j := range all {
		if j.ID == id {
			return j
		}
	}
	t.Fatalf("job %d not found", id)
	return jobs.Job{}
}

func runDue(t *testing.T, r *jobs.Runner) int {
	t.Helper()
	n, err := r.RunDue(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	return n
}

func TestEnqueueAndRunDueVirtualClock(t *testing.T) {
	for _, b := range dbtest.Backends() {
		t.Run(b, func(t *testing.T) {
			ctx := context.Background()
			d := setup(t, b)
			v := clock.NewVirtual(t0)
			var ran []string
			r := &jobs.Runner{DB: d, Clock: v, Handlers: map[string]jobs.Handler{
				"say": func(ctx context.Context, j *jobs.Job) error {
					ran = append(ran, string(j.Payload))
					if j.Attempt != 1 {
						t.Errorf("attempt = %d, want 1", j.Attempt)
					}
					return nil
				},
				"parent": func(ctx context.Context, j *jobs.Job) error {
					ran = append(ran, "parent")
					// a handler enqueuing work due now: RunDue runs it in the same call
					return d.Tx(ctx, func(tx *db.Tx) error {
						_, _, err := jobs.Enqueue(ctx, tx, v.Now(), jobs.New{Kind: "say", Payload: []byte("child")})
						return err
					})
				},
			}}
			enqueue(t, d, v.Now(), jobs.New{Kind: "say", Payload: []byte("later"), DueAt: t0.Add(time.Hour)})
			enqueue(t, d, v.Now(), jobs.New{Kind: "say", Payload: []byte("b"), DueAt: t0.Add(-time.Minute)})
			enqueue(t, d, v.Now(), jobs.New{Kind: "say", Payload: []byte("a"), DueAt: t0.Add(-2 * time.Minute)})
			enqueue(t, d, v.Now(), jobs.New{Kind: "parent"})
			enqueue(t, d, v.Now(), jobs.New{Kind: "unhandled"})

			if n := runDue(t, r); n != 4 {
				t.Fatalf("RunDue ran %d, want 4", n)
			}
			if got := strings.Join(ran, ","); got != "a,b,parent,child" {
				t.Fatalf("order = %s", got)
			}
			if n := runDue(t, r); n != 0 {
				t.Fatalf("second RunDue ran %d, want 0", n)
			}
			next, ok, err := jobs.NextDue(ctx, d)
			if err != nil || !ok || !next.Equal(t0) { // the unhandled job is still pending, due t0
				t.Fatalf("NextDue = %v %v %v", next, ok, err)
			}
			v.Advance(59 * time.Minute)
			if n := runDue(t, r); n != 0 {
				t.Fatalf("ran %d before due", n)
			}
			v.Advance(time.Minute)
			if n := runDue(t, r); n != 1 || ran[len(ran)-1] != "later" {
				t.Fatalf("ran %d %v", n, ran)
			}
			c, err := jobs.Counts(ctx, d)
			if err != nil {
				t.Fatal(err)
			}
			if c[jobs.StateDone] != 5 || c[jobs.StatePending] != 1 || c[jobs.StateDead] != 0 {
				t.Fatalf("counts = %v", c)
			}
			done, err := jobs.List(ctx, d, jobs.Filter{Kind: "say", State: jobs.StateDone})
			if err != nil {
				t.Fatal(err)
			}
			if len(done) != 4 || done[0].CompletedAt.IsZero() || done[0].ID < done[1].ID {
				t.Fatalf("done list = %+v", done)
			}
		})
	}
}

func TestRetryBackoffDeadAndRetry(t *testing.T) {
	for _, b := range dbtest.Backends() {
		t.Run(b, func(t *testing.T) {
			ctx := context.Background()
			d := setup(t, b)
			v := clock.NewVirtual(t0)
			fail := true
			var attempts []int
			var lastErrs []string
			r := &jobs.Runner{DB: d, Clock: v, MaxAttempts: 3,
				Backoff: func(kind string, attempt int) time.Duration { return time.Duration(attempt) * 10 * time.Minute },
				Handlers: map[string]jobs.Handler{"flaky": func(ctx context.Context, j *jobs.Job) error {
					attempts = append(attempts, j.Attempt)
					lastErrs = append(lastErrs, j.LastError)
					if fail {
						return fmt.Errorf("boom %d", j.Attempt)
					}
					return nil
				}}}
			id := enqueue(t, d, v.Now(), jobs.New{Kind: "flaky"})
			if n := runDue(t, r); n != 1 {
				t.Fatalf("ran %d", n)
			}
			j := get(t, d, id)
			if j.State != jobs.StatePending || !j.DueAt.Equal(t0.Add(10*time.Minute)) || j.LastError != "boom 1" || j.Attempt != 1 {
				t.Fatalf("after 1st failure: %+v", j)
			}
			v.Advance(10*time.Minute - time.Millisecond)
			if n := runDue(t, r); n != 0 {
				t.Fatal("ran before backoff elapsed")
			}
			v.Advance(time.Millisecond)
			runDue(t, r)
			if j := get(t, d, id); !j.DueAt.Equal(t0.Add(30 * time.Minute)) {
				t.Fatalf("2nd backoff due %v", j.DueAt)
			}
			v.Advance(20 * time.Minute)
			runDue(t, r)
			j = get(t, d, id)
			if j.State != jobs.StateDead || j.LastError != "boom 3" || j.CompletedAt.IsZero() {
				t.Fatalf("after MaxAttempts: %+v", j)
			}
			if fmt.Sprint(attempts) != "[1 2 3]" || fmt.Sprint(lastErrs) != "[ boom 1 boom 2]" {
				t.Fatalf("attempts %v lastErrs %q", attempts, lastErrs)
			}
			v.Advance(24 * time.Hour)
			if n := runDue(t, r); n != 0 {
				t.Fatal("dead job ran")
			}
			// Retry brings it back with fresh attempts.
			fail = false
			if err := jobs.Retry(ctx, d, v.Now(), id); err != nil {
				t.Fatal(err)
			}
			if n := runDue(t, r); n != 1 {
				t.Fatalf("after Retry ran %d", n)
			}
			if j := get(t, d, id); j.State != jobs.StateDone || j.Attempt != 1 {
				t.Fatalf("after Retry: %+v", j)
			}
			if err := jobs.Retry(ctx, d, v.Now(), id); !errors.Is(err, jobs.ErrNotRetryable) {
				t.Fatalf("Retry(done) = %v", err)
			}
			if err := jobs.Retry(ctx, d, v.Now(), 999999); !errors.Is(err, jobs.ErrNotFound) {
				t.Fatalf("Retry(unknown) = %v", err)
			}
		})
	}
}

func TestHandlerOutcomes(t *testing.T) {
	sentinel := errors.New("sentinel")
	cases := []struct {
		name      string
		handler   jobs.Handler
		wantState string
		wantDue   time.Duration // relative to t0, for pending
		wantErr   string
	}{
		{"nil is done", func(context.Context, *jobs.Job) error { return nil }, jobs.StateDone, 0, ""},
		{"permanent is dead", func(context.Context, *jobs.Job) error { return jobs.Permanent(sentinel) }, jobs.StateDead, 0, "sentinel"},
		{"permanent nil", func(context.Context, *jobs.Job) error { return jobs.Permanent(nil) }, jobs.StateDead, 0, "permanent failure"},
		{"retry at", func(context.Context, *jobs.Job) error { return jobs.RetryAt(t0.Add(42*time.Minute), sentinel) }, jobs.StatePending, 42 * time.Minute, "sentinel"},
		{"retry at nil error", func(context.Context, *jobs.Job) error { return jobs.RetryAt(t0.Add(time.Hour), nil) }, jobs.StatePending, time.Hour, ""},
		{"retry at past goes to next ms", func(context.Context, *jobs.Job) error { return jobs.RetryAt(t0.Add(-time.Hour), nil) }, jobs.StatePending, time.Millisecond, ""},
		{"wrapped permanent", func(context.Context, *jobs.Job) error { return fmt.Errorf("ctx: %w", jobs.Permanent(sentinel)) }, jobs.StateDead, 0, "ctx: sentinel"},
		{"panic is an error", func(context.Context, *jobs.Job) error { panic("kaboom") }, jobs.StatePending, 5 * time.Second, "handler panicked: kaboom"},
		{"plain error backs off", func(context.Context, *jobs.Job) error { return sentinel }, jobs.StatePending, 5 * time.Second, "sentinel"},
	}
	// One database per backend, one kind per case: RunDue runs all of them.
	for _, b := range dbtest.Backends() {
		t.Run(b, func(t *testing.T) {
			d := setup(t, b)
			v := clock.NewVirtual(t0)
			r := &jobs.Runner{DB: d, Clock: v, Handlers: map[string]jobs.Handler{},
				Backoff: func(string, int) time.Duration { return 5 * time.Second }}
			ids := map[string]int64{}
			for _, tc := range cases {
				r.Handlers[tc.name] = tc.handler
				ids[tc.name] = enqueue(t, d, v.Now(), jobs.New{Kind: tc.name})
			}
			if n := runDue(t, r); n != len(cases) {
				t.Fatalf("ran %d, want %d", n, len(cases))
			}
			for _, tc := range cases {
				j := get(t, d, ids[tc.name])
				if j.State != tc.wantState || !strings.HasPrefix(j.LastError, tc.wantErr) {
					t.Errorf("%s: state %s err %q; want %s %q", tc.name, j.State, j.LastError, tc.wantState, tc.wantErr)
				}
				if tc.wantState == jobs.StatePending && !j.DueAt.Equal(t0.Add(tc.wantDue)) {
					t.Errorf("%s: due %v, want %v", tc.name, j.DueAt, t0.Add(tc.wantDue))
				}
			}
		})
	}
}

func TestDefaultBackoff(t *testing.T) {
	for _, tc := range []struct {
		attempt int
		want    time.Duration
	}{{0, time.Second}, {1, time.Second}, {2, 2 * time.Second}, {3, 4 * time.Second}, {12, 2048 * time.Second}, {13, time.Hour}, {100, time.Hour}} {
		if got := jobs.ExponentialBackoff(tc.attempt); got != tc.want {
			t.Errorf("ExponentialBackoff(%d) = %v, want %v", tc.attempt, got, tc.want)
		}
	}
	// The default (jittered) backoff lands within ±25% and is reproducible.
	d := setup(t, "sqlite")
	v := clock.NewVirtual(t0)
	r := &jobs.Runner{DB: d, Clock: v, Handlers: map[string]jobs.Handler{"k": func(context.Context, *jobs.Job) error { return errors.New("x") }}}
	var dues []time.Duration
	for range 20 {
		enqueue(t, d, v.Now(), jobs.New{Kind: "k"})
	}
	runDue(t, r)
	all, _ := jobs.List(context.Background(), d, jobs.Filter{})
	distinct := map[time.Duration]bool{}
	for _, j := range all {
		dd := j.DueAt.Sub(t0)
		dues = append(dues, dd)
		distinct[dd] = true
		if dd < 750*time.Millisecond || dd > 1250*time.Millisecond {
			t.Fatalf("first backoff %v outside 1s±25%%", dd)
		}
	}
	if len(distinct) < 5 {
		t.Fatalf("no jitter: %v", dues)
	}
}

func TestUniqueKeyDedupe(t *testing.T) {
	for _, b := range dbtest.Backends() {
		t.Run(b, func(t *testing.T) {
			ctx := context.Background()
			d := setup(t, b)
			var first int64
			for i := range 3 {
				err := d.Tx(ctx, func(tx *db.Tx) error {
					id, inserted, err := jobs.Enqueue(ctx, tx, t0, jobs.New{Kind: "k", Key: "order-1:expire", Payload: []byte(fmt.Sprint(i))})
					if err != nil {
						return err
					}
					if i == 0 {
						first = id
						if !inserted {
							t.Error("first enqueue not inserted")
						}
					} else if inserted || id != first {
						t.Errorf("enqueue %d: id %d inserted %v; want %d false", i, id, inserted, first)
					}
					return nil
				})
				if err != nil {
					t.Fatal(err)
				}
			}
			// Jobs without a key never collide.
			a := enqueue(t, d, t0, jobs.New{Kind: "k"})
			bb := enqueue(t, d, t0, jobs.New{Kind: "k"})
			if a == bb {
				t.Fatal("keyless jobs deduplicated")
			}
			// Concurrent enqueues of one key from many goroutines: exactly one insert.
			var inserts atomic.Int64
			var wg sync.WaitGroup
			for range 8 {
				wg.Add(1)
				go func() {
					defer wg.Done()
					err := d.Tx(ctx, func(tx *db.Tx) error {
						_, ins, err := jobs.Enqueue(ctx, tx, t0, jobs.New{Kind: "k", Key: "race"})
						if ins {
							inserts.Add(1)
						}
						return err
					})
					if err != nil {
						t.Error(err)
					}
				}()
			}
			wg.Wait()
			if inserts.Load() != 1 {
				t.Fatalf("inserted %d times", inserts.Load())
			}
			// A rolled-back enqueue leaves nothing behind.
			_ = d.Tx(ctx, func(tx *db.Tx) error {
				_, _, _ = jobs.Enqueue(ctx, tx, t0, jobs.New{Kind: "k", Key: "rolled-back"})
				return errors.New("abort")
			})
			id := enqueue(t, d, t0, jobs.New{Kind: "k", Key: "rolled-back"})
			if j := get(t, d, id); j.Key != "rolled-back" {
				t.Fatalf("key = %q", j.Key)
			}
			if _, _, err := jobs.Enqueue(ctx, nil, t0, jobs.New{}); err == nil {
				t.Fatal("empty kind accepted")
			}
		})
	}
}

// Two Runners (replicas) on one database share 500 jobs: each runs exactly once.
func TestRunnersShareQueueExactlyOnce(t *testing.T) {
	for _, b := range dbtest.Backends() {
		t.Run(b, func(t *testing.T) {
			ctx := context.Background()
			dsn := dbtest.DSN(t, b)
			open := func() *db.DB {
				d, err := db.Open(ctx, dsn)
				if err != nil {
					t.Fatal(err)
				}
				t.Cleanup(func() { d.Close() })
				return d
			}
			d1, d2 := open(), open()
			if err := jobs.Migrate(ctx, d1); err != nil {
				t.Fatal(err)
			}
			total := 500
			if b == "sqlite" && raceEnabled {
				total = 200 // every claim and result is an fsynced commit; -race makes SQLite slow
			}
			err := d1.Tx(ctx, func(tx *db.Tx) error {
				for i := range total {
					if _, _, err := jobs.Enqueue(ctx, tx, time.Now(), jobs.New{Kind: "count", Payload: []byte(fmt.Sprint(i))}); err != nil {
						return err
					}
				}
				return nil
			})
			if err != nil {
				t.Fatal(err)
			}
			var mu sync.Mutex
			runs := map[int64]int{}
			by := map[string]int{}
			handler := func(name string) jobs.Handler {
				return func(ctx context.Context, j *jobs.Job) error {
					mu.Lock()
					runs[j.ID]++
					by[name]++
					mu.Unlock()
					return nil
				}
			}
			rctx, cancel := context.WithCancel(ctx)
			defer cancel()
			var wg sync.WaitGroup
			for i, d := range []*db.DB{d1, d2} {
				name := fmt.Sprintf("replica%d", i)
				r := &jobs.Runner{DB: d, Clock: clock.Real{}, ID: name, Workers: 4, Poll: 10 * time.Millisecond,
					Handlers: map[string]jobs.Handler{"count": handler(name)}}
				wg.Add(1)
				go func() {
					defer wg.Done()
					if err := r.Run(rctx); err != nil {
						t.Error(err)
					}
				}()
			}
			deadline := time.Now().Add(60 * time.Second)
			for {
				c, err := jobs.Counts(ctx, d1)
				if err != nil {
					t.Fatal(err)
				}
				if c[jobs.StateDone] == total {
					break
				}
				if time.Now().After(deadline) {
					t.Fatalf("timeout: counts %v", c)
				}
				time.Sleep(20 * time.Millisecond)
			}
			cancel()
			wg.Wait()
			mu.Lock()
			defer mu.Unlock()
			if len(runs) != total {
				t.Fatalf("%d distinct jobs ran, want %d", len(runs), total)
			}
			for id, n := range runs {
				if n != 1 {
					t.Fatalf("job %d ran %d times", id, n)
				}
			}
			t.Logf("split between replicas: %v", by)
			if b == "postgres" && (by["replica0"] == 0 || by["replica1"] == 0) {
				t.Errorf("one replica did all the work: %v", by)
			}
		})
	}
}

// A worker that "crashed" (its handler never finishes and its lease lapses) does
// not hold its job forever: another runner takes it after the lease, and the
// stale worker's late result cannot overwrite the new one.
func TestLeaseExpiryRecoversCrashedWorker(t *testing.T) {
	for _, b := range dbtest.Backends() {
		t.Run(b, func(t *testing.T) {
			ctx := context.Background()
			d := setup(t, b)
			v := clock.NewVirtual(t0)
			id := enqueue(t, d, v.Now(), jobs.New{Kind: "k"})

			started := make(chan struct{})
			release := make(chan struct{})
			crashed := &jobs.Runner{DB: d, Clock: v, ID: "crashed", Lease: time.Hour, Handlers: map[string]jobs.Handler{
				"k": func(ctx context.Context, j *jobs.Job) error {
					close(started)
					<-release
					return errors.New("stale failure")
				}}}
			done := make(chan int)
			go func() {
				n, _ := crashed.RunDue(ctx)
				done <- n
			}()
			<-started

			real := time.Now()
			var realNow atomic.Int64
			realNow.Store(real.UnixNano())
			rescuer := &jobs.Runner{DB: d, Clock: v, ID: "rescuer", Lease: time.Hour,
				RealClock: clock.Func(func() time.Time { return time.Unix(0, realNow.Load()) }),
				Handlers: map[string]jobs.Handler{"k": func(ctx context.Context, j *jobs.Job) error {
					if j.Attempt != 2 {
						t.Errorf("rescued attempt = %d, want 2", j.Attempt)
					}
					return nil
				}}}
			if n := runDue(t, rescuer); n != 0 {
				t.Fatalf("rescuer ran %d jobs while the lease holds", n)
			}
			realNow.Store(real.Add(time.Hour + time.Minute).UnixNano())
			if n := runDue(t, rescuer); n != 1 {
				t.Fatalf("rescuer ran %d jobs after lease expiry, want 1", n)
			}
			close(release)
			if n := <-done; n != 1 {
				t.Fatalf("crashed runner reported %d", n)
			}
			j := get(t, d, id)
			if j.State != jobs.StateDone || j.LastError != "" {
				t.Fatalf("stale worker overwrote the result: %+v", j)
			}
		})
	}
}

// A long handler keeps its lease by renewing it, so nobody else takes the job.
func TestLeaseRenewedWhileRunning(t *testing.T) {
	for _, b := range dbtest.Backends() {
		t.Run(b, func(t *testing.T) {
			ctx := context.Background()
			d := setup(t, b)
			v := clock.NewVirtual(t0)
			id := enqueue(t, d, v.Now(), jobs.New{Kind: "slow"})
			var runs atomic.Int64
			mk := func(name string) *jobs.Runner {
				return &jobs.Runner{DB: d, Clock: v, ID: name, Lease: 300 * time.Millisecond, Handlers: map[string]jobs.Handler{
					"slow": func(ctx context.Context, j *jobs.Job) error {
						runs.Add(1)
						select {
						case <-time.After(time.Second):
						case <-ctx.Done():
							return ctx.Err()
						}
						return nil
					}}}
			}
			a, other := mk("a"), mk("b")
			go func() { _, _ = a.RunDue(ctx) }()
			deadline := time.Now().Add(1500 * time.Millisecond)
			for time.Now().Before(deadline) {
				if _, err := other.RunDue(ctx); err != nil {
					t.Fatal(err)
				}
				if get(t, d, id).State == jobs.StateDone {
					break
				}
				time.Sleep(50 * time.Millisecond)
			}
			waitFor(t, func() bool { return get(t, d, id).State == jobs.StateDone })
			if runs.Load() != 1 {
				t.Fatalf("handler ran %d times, want 1 (lease not renewed)", runs.Load())
			}
		})
	}
}

func waitFor(t *testing.T, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatal("timed out waiting")
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func TestWakeAndVirtualClockWakeRun(t *testing.T) {
	for _, b := range dbtest.Backends() {
		t.Run(b, func(t *testing.T) {
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			d := setup(t, b)
			v := clock.NewVirtual(t0)
			ran := make(chan string, 10)
			r := &jobs.Runner{DB: d, Clock: v, Poll: time.Hour, Handlers: map[string]jobs.Handler{
				"k": func(ctx context.Context, j *jobs.Job) error { ran <- string(j.Payload); return nil }}}
			errc := make(chan error, 1)
			go func() { errc <- r.Run(ctx) }()
			time.Sleep(50 * time.Millisecond) // let the first poll pass
			enqueue(t, d, v.Now(), jobs.New{Kind: "k", Payload: []byte("woken")})
			r.Wake()
			select {
			case p := <-ran:
				if p != "woken" {
					t.Fatal(p)
				}
			case <-time.After(5 * time.Second):
				t.Fatal("Wake did not trigger a poll (Poll is 1h)")
			}
			// Moving the virtual clock wakes Run too.
			enqueue(t, d, v.Now(), jobs.New{Kind: "k", Payload: []byte("tick"), DueAt: t0.Add(time.Hour)})
			v.Advance(time.Hour)
			select {
			case p := <-ran:
				if p != "tick" {
					t.Fatal(p)
				}
			case <-time.After(5 * time.Second):
				t.Fatal("virtual clock change did not wake Run")
			}
			cancel()
			if err := <-errc; err != nil {
				t.Fatal(err)
			}
		})
	}
}

// On shutdown an interrupted handler gives its job back without using an attempt.
func TestShutdownReleasesJob(t *testing.T) {
	for _, b := range dbtest.Backends() {
		t.Run(b, func(t *testing.T) {
			d := setup(t, b)
			v := clock.NewVirtual(t0)
			started := make(chan struct{})
			r := &jobs.Runner{DB: d, Clock: v, Poll: 10 * time.Millisecond, Handlers: map[string]jobs.Handler{
				"k": func(ctx context.Context, j *jobs.Job) error {
					close(started)
					<-ctx.Done()
					return ctx.Err()
				}}}
			id := enqueue(t, d, v.Now(), jobs.New{Kind: "k"})
			ctx, cancel := context.WithCancel(context.Background())
			errc := make(chan error, 1)
			go func() { errc <- r.Run(ctx) }()
			<-started
			cancel()
			if err := <-errc; err != nil {
				t.Fatal(err)
			}
			j := get(t, d, id)
			if j.State != jobs.StatePending || j.Attempt != 0 || !j.DueAt.Equal(t0) {
				t.Fatalf("after shutdown: %+v", j)
			}
			// and it is immediately claimable again
			r2 := &jobs.Runner{DB: d, Clock: v, Handlers: map[string]jobs.Handler{"k": func(context.Context, *jobs.Job) error { return nil }}}
			if n := runDue(t, r2); n != 1 {
				t.Fatalf("released job not claimable: ran %d", n)
			}
		})
	}
}

func TestPrune(t *testing.T) {
	for _, b := range dbtest.Backends() {
		t.Run(b, func(t *testing.T) {
			ctx := context.Background()
			d := setup(t, b)
			v := clock.NewVirtual(t0)
			r := &jobs.Runner{DB: d, Clock: v, Handlers: map[string]jobs.Handler{
				"ok":  func(context.Context, *jobs.Job) error { return nil },
				"bad": func(context.Context, *jobs.Job) error { return jobs.Permanent(errors.New("x")) },
			}}
			old := enqueue(t, d, v.Now(), jobs.New{Kind: "ok", Key: "k-old"})
			enqueue(t, d, v.Now(), jobs.New{Kind: "bad"})
			runDue(t, r)
			v.Advance(48 * time.Hour)
			recent := enqueue(t, d, v.Now(), jobs.New{Kind: "ok"})
			runDue(t, r)
			n, err := jobs.Prune(ctx, d, v.Now().Add(-24*time.Hour))
			if err != nil || n != 1 {
				t.Fatalf("Prune = %d, %v; want 1", n, err)
			}
			c, _ := jobs.Counts(ctx, d)
			if c[jobs.StateDone] != 1 || c[jobs.StateDead] != 1 {
				t.Fatalf("counts %v", c)
			}
			_ = get(t, d, recent)
			// the pruned job's key can be used again
			id := enqueue(t, d, v.Now(), jobs.New{Kind: "ok", Key: "k-old"})
			if id == old {
				t.Fatal("key still taken after prune")
			}
		})
	}
}

func TestRunnerConfigErrors(t *testing.T) {
	d := setup(t, "sqlite")
	for _, r := range []*jobs.Runner{
		{Clock: clock.Real{}, Handlers: map[string]jobs.Handler{"k": nil}},
		{DB: d, Handlers: map[string]jobs.Handler{"k": nil}},
		{DB: d, Clock: clock.Real{}},
	} {
		if _, err := r.RunDue(context.Background()); err == nil {
			t.Errorf("%+v: no error", r)
		}
	}
}

func TestHandlerTimeout(t *testing.T) {
	d := setup(t, "sqlite")
	v := clock.NewVirtual(t0)
	r := &jobs.Runner{DB: d, Clock: v, Timeout: 50 * time.Millisecond,
		Backoff: func(string, int) time.Duration { return time.Minute },
		Handlers: map[string]jobs.Handler{"k": func(ctx context.Context, j *jobs.Job) error {
			<-ctx.Done()
			return ctx.Err()
		}}}
	id := enqueue(t, d, v.Now(), jobs.New{Kind: "k"})
	if n := runDue(t, r); n != 1 {
		t.Fatalf("ran %d", n)
	}
	j := get(t, d, id)
	if j.State != jobs.StatePending || j.Attempt != 1 || !strings.Contains(j.LastError, "deadline") || !j.DueAt.Equal(t0.Add(time.Minute)) {
		t.Fatalf("after timeout: %+v", j)
	}
}

func TestRunnerNextDue(t *testing.T) {
	for _, b := range dbtest.Backends() {
		t.Run(b, func(t *testing.T) {
			ctx := context.Background()
			d := setup(t, b)
			v := clock.NewVirtual(t0)
			r := &jobs.Runner{DB: d, Clock: v, Handlers: map[string]jobs.Handler{
				"a": func(context.Context, *jobs.Job) error { return nil },
				"b": func(context.Context, *jobs.Job) error { return nil },
			}}
			if _, ok, err := r.NextDue(ctx); ok || err != nil {
				t.Fatalf("empty: ok=%v err=%v", ok, err)
			}
			enqueue(t, d, v.Now(), jobs.New{Kind: "other", DueAt: t0.Add(time.Minute)})
			enqueue(t, d, v.Now(), jobs.New{Kind: "b", DueAt: t0.Add(3 * time.Hour)})
			enqueue(t, d, v.Now(), jobs.New{Kind: "a", DueAt: t0.Add(2 * time.Hour)})
			next, ok, err := r.NextDue(ctx)
			if err != nil || !ok || !next.Equal(t0.Add(2*time.Hour)) {
				t.Fatalf("Runner.NextDue = %v %v %v, want t0+2h", next, ok, err)
			}
			all, ok, err := jobs.NextDue(ctx, d)
			if err != nil || !ok || !all.Equal(t0.Add(time.Minute)) {
				t.Fatalf("jobs.NextDue = %v %v %v, want t0+1m", all, ok, err)
			}
		})
	}
}

func TestRunPrunesWithRetention(t *testing.T) {
	for _, b := range dbtest.Backends() {
		t.Run(b, func(t *testing.T) {
			d := setup(t, b)
			v := clock.NewVirtual(t0)
			ok := func(context.Context, *jobs.Job) error { return nil }
			pre := &jobs.Runner{DB: d, Clock: v, Handlers: map[string]jobs.Handler{"k": ok}}
			enqueue(t, d, v.Now(), jobs.New{Kind: "k"})
			runDue(t, pre)
			v.Advance(10 * 24 * time.Hour)
			recent := enqueue(t, d, v.Now(), jobs.New{Kind: "k"})
			runDue(t, pre)

			ctx, cancel := context.WithCancel(context.Background())
			r := &jobs.Runner{DB: d, Clock: v, Retention: 7 * 24 * time.Hour, PruneEvery: 20 * time.Millisecond,
				Poll: 10 * time.Millisecond, Handlers: map[string]jobs.Handler{"k": ok}}
			errc := make(chan error, 1)
			go func() { errc <- r.Run(ctx) }()
			waitFor(t, func() bool {
				all, err := jobs.List(context.Background(), d, jobs.Filter{})
				if err != nil {
					t.Fatal(err)
				}
				return len(all) == 1 && all[0].ID == recent
			})
			cancel()
			if err := <-errc; err != nil {
				t.Fatal(err)
			}
		})
	}
}

// When another runner takes a job over (its lease had lapsed), the heartbeat of
// the old holder notices, cancels its handler, and its result is discarded.
func TestLostLeaseCancelsHandler(t *testing.T) {
	for _, b := range dbtest.Backends() {
		t.Run(b, func(t *testing.T) {
			ctx := context.Background()
			d := setup(t, b)
			v := clock.NewVirtual(t0)
			id := enqueue(t, d, v.Now(), jobs.New{Kind: "slow"})
			started := make(chan struct{})
			cancelled := make(chan struct{})
			outcomes := make(chan string, 1)
			r := &jobs.Runner{DB: d, Clock: v, ID: "old", Lease: 150 * time.Millisecond,
				Observe: func(j *jobs.Job, outcome string, _ time.Duration, _ error) { outcomes <- outcome },
				Handlers: map[string]jobs.Handler{"slow": func(ctx context.Context, j *jobs.Job) error {
					close(started)
					select {
					case <-ctx.Done():
						close(cancelled)
						return ctx.Err()
					case <-time.After(20 * time.Second):
						return nil
					}
				}}}
			go func() { _, _ = r.RunDue(ctx) }()
			<-started
			// Another runner's claim, as after an expired lease.
			if _, err := d.Exec(ctx, `UPDATE jobs SET locked_by = 'thief', attempt = attempt + 1 WHERE id = $1`, id); err != nil {
				t.Fatal(err)
			}
			select {
			case <-cancelled:
			case <-time.After(10 * time.Second):
				t.Fatal("handler not cancelled after its lease was lost")
			}
			if o := <-outcomes; o != jobs.OutcomeLeaseLost {
				t.Fatalf("outcome %q, want %q", o, jobs.OutcomeLeaseLost)
			}
			j := get(t, d, id)
			if j.State != jobs.StatePending || j.Attempt != 2 || j.LastError != "" {
				t.Fatalf("the old holder touched the job: %+v", j)
			}
		})
	}
}

// Two runners, flaky handlers, retries: every job ends done after exactly one
// successful run, and its recorded attempt count matches the runs it got.
func TestConcurrentRetriesConverge(t *testing.T) {
	for _, b := range dbtest.Backends() {
		t.Run(b, func(t *testing.T) {
			ctx := context.Background()
			dsn := dbtest.DSN(t, b)
			var handles []*db.DB
			for range 2 {
				d, err := db.Open(ctx, dsn)
				if err != nil {
					t.Fatal(err)
				}
				t.Cleanup(func() { d.Close() })
				handles = append(handles, d)
			}
			if err := jobs.Migrate(ctx, handles[0]); err != nil {
				t.Fatal(err)
			}
			const total = 120
			err := handles[0].Tx(ctx, func(tx *db.Tx) error {
				for i := range total {
					if _, _, err := jobs.Enqueue(ctx, tx, time.Now(), jobs.New{Kind: "flaky", Key: fmt.Sprint("j", i)}); err != nil {
						return err
					}
				}
				return nil
			})
			if err != nil {
				t.Fatal(err)
			}
			var mu sync.Mutex
			runs, successes := map[int64]int{}, map[int64]int{}
			handler := func(ctx context.Context, j *jobs.Job) error {
				mu.Lock()
				defer mu.Unlock()
				runs[j.ID]++
				if runs[j.ID] != j.Attempt {
					t.Errorf("job %d: attempt %d on run %d", j.ID, j.Attempt, runs[j.ID])
				}
				if (j.ID+int64(j.Attempt))%3 != 0 { // fails about two times in three
					return fmt.Errorf("flaky %d", j.Attempt)
				}
				successes[j.ID]++
				return nil
			}
			rctx, cancel := context.WithCancel(ctx)
			defer cancel()
			var wg sync.WaitGroup
			for i, d := range handles {
				r := &jobs.Runner{DB: d, Clock: clock.Real{}, ID: fmt.Sprint("r", i), Workers: 3, Poll: 5 * time.Millisecond,
					Backoff:  func(string, int) time.Duration { return time.Millisecond },
					Handlers: map[string]jobs.Handler{"flaky": handler}}
				wg.Add(1)
				go func() { defer wg.Done(); _ = r.Run(rctx) }()
			}
			waitFor(t, func() bool {
				c, err := jobs.Counts(ctx, handles[0])
				if err != nil {
					t.Fatal(err)
				}
				return c[jobs.StateDone] == total
			})
			cancel()
			wg.Wait()
			all, err := jobs.List(ctx, handles[0], jobs.Filter{Limit: total})
			if err != nil {
				t.Fatal(err)
			}
			mu.Lock()
			defer mu.Unlock()
			for _, j := range all {
				if successes[j.ID] != 1 || runs[j.ID] != j.Attempt || j.State != jobs.StateDone {
					t.Fatalf("job %d: %d successes, %d runs, stored attempt %d, state %s", j.ID, successes[j.ID], runs[j.ID], j.Attempt, j.State)
				}
			}
		})
	}
}

func TestListPaging(t *testing.T) {
	for _, b := range dbtest.Backends() {
		t.Run(b, func(t *testing.T) {
			ctx := context.Background()
			d := setup(t, b)
			var ids []int64
			for i := range 7 {
				kind := "a"
				if i%2 == 1 {
					kind = "b"
				}
				ids = append(ids, enqueue(t, d, t0, jobs.New{Kind: kind, Payload: []byte{byte(i)}}))
			}
			var got []int64
			var before int64
			for {
				page, err := jobs.List(ctx, d, jobs.Filter{Kind: "a", Limit: 2, BeforeID: before})
				if err != nil {
					t.Fatal(err)
				}
				if len(page) == 0 {
					break
				}
				for _, j := range page {
					got = append(got, j.ID)
					if j.Kind != "a" || j.State != jobs.StatePending {
						t.Fatalf("unexpected %+v", j)
					}
				}
				before = page[len(page)-1].ID
			}
			want := []int64{ids[6], ids[4], ids[2], ids[0]}
			if fmt.Sprint(got) != fmt.Sprint(want) {
				t.Fatalf("pages %v, want %v", got, want)
			}
		})
	}
}
