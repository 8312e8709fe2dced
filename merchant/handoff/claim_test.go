package handoff_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/soukhq/souk/db"
	"github.com/soukhq/souk/db/dbtest"
	"github.com/soukhq/souk/jobs"
	"github.com/soukhq/souk/merchant/handoff"
)

// An event claimed in its emitting transaction is attempted by the claimer
// alone (the job finds it leased), counts one attempt, and its job is
// completed with the delivery, so no runner claims it afterwards.
func TestClaimedAttempt(t *testing.T) {
	for _, b := range dbtest.Backends() {
		t.Run(b, func(t *testing.T) {
			ctx := context.Background()
			d, clk := setup(t, b)
			tg := &target{answer: []byte(`ok`)}
			g := d.NewGroup(0, 0)
			t.Cleanup(g.Close)
			dl := &handoff.Deliverer{DB: d, Group: g, Clock: clk, Target: tg.pick}
			var id string
			now := clk.Now()
			if err := d.Tx(ctx, func(tx *db.Tx) error {
				var err error
				if id, err = handoff.EmitAt(ctx, tx, now, handoff.Event{Type: "instance.created", Subject: "i-1"}, now.Add(5*time.Second)); err != nil {
					return err
				}
				return handoff.Claim(ctx, tx, id, now.Add(time.Minute))
			}); err != nil {
				t.Fatal(err)
			}
			if _, err := dl.Attempt(ctx, id); !errors.Is(err, handoff.ErrLeased) {
				t.Fatalf("Attempt of a claimed event: %v, want ErrLeased", err)
			}
			if ok, err := dl.AttemptClaimed(ctx, id); err != nil || !ok {
				t.Fatalf("AttemptClaimed: %v %v", ok, err)
			}
			ev, err := handoff.Get(ctx, d, id)
			if err != nil {
				t.Fatal(err)
			}
			if ev.State != handoff.StateDelivered || ev.Attempts != 1 || tg.calls.Load() != 1 {
				t.Fatalf("after the claimed attempt: state %s, %d attempts, %d calls", ev.State, ev.Attempts, tg.calls.Load())
			}
			clk.Advance(time.Hour)
			r := &jobs.Runner{DB: d, Clock: clk, Handlers: map[string]jobs.Handler{handoff.JobKind: dl.Handle}}
			if n, err := r.RunDue(ctx); err != nil || n != 0 {
				t.Fatalf("RunDue after the inline delivery ran %d jobs (%v), want 0: the job should be completed", n, err)
			}
			if tg.calls.Load() != 1 {
				t.Fatalf("%d deliveries, want 1", tg.calls.Load())
			}
		})
	}
}

// EmitClaimedAt stores the event already claimed (one attempt, leased); the
// claimer attempts the returned event with AttemptStored, without reading it
// back, and the job is completed with the delivery.
func TestEmitClaimedAt(t *testing.T) {
	for _, b := range dbtest.Backends() {
		t.Run(b, func(t *testing.T) {
			ctx := context.Background()
			d, clk := setup(t, b)
			tg := &target{answer: []byte(`ok`)}
			dl := &handoff.Deliverer{DB: d, Clock: clk, Target: tg.pick}
			var st *handoff.Stored
			now := clk.Now()
			if err := d.Tx(ctx, func(tx *db.Tx) error {
				var err error
				st, err = handoff.EmitClaimedAt(ctx, tx, now, handoff.Event{Type: "instance.created", Subject: "i-2", Data: map[string]string{"k": "v"}},
					now.Add(5*time.Second), now.Add(time.Minute))
				return err
			}); err != nil {
				t.Fatal(err)
			}
			stored, err := handoff.Get(ctx, d, st.ID)
			if err != nil {
				t.Fatal(err)
			}
			if stored.Attempts != 1 || st.Attempts != 1 || string(stored.Data) != string(st.Data) || !stored.CreatedAt.Equal(st.CreatedAt) || stored.State != st.State {
				t.Fatalf("stored %+v, returned %+v", stored, st)
			}
			if _, err := dl.Attempt(ctx, st.ID); !errors.Is(err, handoff.ErrLeased) {
				t.Fatalf("Attempt of a claimed event: %v, want ErrLeased", err)
			}
			if ok, err := dl.AttemptStored(ctx, st); err != nil || !ok {
				t.Fatalf("AttemptStored: %v %v", ok, err)
			}
			if ok, err := dl.AttemptStored(ctx, st); err != nil || !ok {
				t.Fatalf("second AttemptStored: %v %v", ok, err)
			}
			clk.Advance(time.Hour)
			r := &jobs.Runner{DB: d, Clock: clk, Handlers: map[string]jobs.Handler{handoff.JobKind: dl.Handle}}
			if n, err := r.RunDue(ctx); err != nil || n != 0 {
				t.Fatalf("RunDue after the inline delivery ran %d jobs (%v), want 0", n, err)
			}
			if ev, _ := handoff.Get(ctx, d, st.ID); ev.State != handoff.StateDelivered {
				t.Fatalf("state %s, want delivered", ev.State)
			}
		})
	}
}

// Events of EmitClaimedMany have no job until they need one: a delivered
// event never gets one; a failed attempt enqueues it (due at due); an
// attempt cut off with no outcome (the process stopped) leaves a lease that
// Sweep turns into a job once it has run out, once.
func TestEmitClaimedManyJobs(t *testing.T) {
	for _, b := range dbtest.Backends() {
		t.Run(b, func(t *testing.T) {
			ctx := context.Background()
			d, clk := setup(t, b)
			tg := &target{answer: []byte(`ok`)}
			dl := &handoff.Deliverer{DB: d, Clock: clk, Target: tg.pick}
			r := &jobs.Runner{DB: d, Clock: clk, Handlers: map[string]jobs.Handler{handoff.JobKind: dl.Handle}}
			now := clk.Now()
			due, until := now.Add(6*time.Second), now.Add(75*time.Second)
			var evs []*handoff.Stored
			if err := d.Tx(ctx, func(tx *db.Tx) error {
				var err error
				evs, err = handoff.EmitClaimedMany(ctx, tx, now, []handoff.Event{
					{Type: "instance.created", Subject: "i-delivered"},
					{Type: "instance.created", Subject: "i-failed"},
					{Type: "instance.created", Subject: "i-cut-off"},
				}, due, until)
				return err
			}); err != nil {
				t.Fatal(err)
			}
			if n := count(t, d, `SELECT COUNT(*) FROM jobs`); n != 0 {
				t.Fatalf("%d jobs after EmitClaimedMany, want 0", n)
			}
			// Delivered in a batch: no job to complete, none created.
			if err := d.Tx(ctx, func(tx *db.Tx) error {
				_, err := handoff.MarkDeliveredMany(ctx, tx, clk.Now(), evs[:1], []string{"test"})
				return err
			}); err != nil {
				t.Fatal(err)
			}
			// A failed attempt: the job is enqueued, due at due.
			tg.fail.Store(true)
			if ok, err := dl.AttemptStored(ctx, evs[1]); ok || err == nil {
				t.Fatalf("failing attempt: %v %v", ok, err)
			}
			if n := count(t, d, `SELECT COUNT(*) FROM jobs WHERE unique_key = $1 AND due_at = $2`, "handoff:"+evs[1].ID, due.UnixMilli()); n != 1 {
				t.Fatalf("%d jobs for the failed event due at %v, want 1", n, due)
			}
			// Nothing to sweep while the third event's lease runs.
			clk.Advance(time.Minute)
			if n, err := handoff.Sweep(ctx, d, clk.Now()); err != nil || n != 0 {
				t.Fatalf("Sweep before the lease ran out: %d %v", n, err)
			}
			tg.fail.Store(false)
			if n, err := r.RunDue(ctx); err != nil || n != 1 {
				t.Fatalf("RunDue ran %d jobs (%v), want the failed event's", n, err)
			}
			clk.Advance(20 * time.Second) // past until
			if n, err := handoff.Sweep(ctx, d, clk.Now()); err != nil || n != 1 {
				t.Fatalf("Sweep after the lease ran out: %d %v, want 1", n, err)
			}
			if n, err := handoff.Sweep(ctx, d, clk.Now()); err != nil || n != 0 {
				t.Fatalf("second Sweep: %d %v, want 0", n, err)
			}
			if n, err := r.RunDue(ctx); err != nil || n != 1 {
				t.Fatalf("RunDue ran %d jobs (%v), want the cut-off event's", n, err)
			}
			for _, ev := range evs {
				if got, _ := handoff.Get(ctx, d, ev.ID); got.State != handoff.StateDelivered {
					t.Errorf("%s: state %s, want delivered", ev.Subject, got.State)
				}
			}
			if n := count(t, d, `SELECT COUNT(*) FROM jobs`); n != 2 {
				t.Errorf("%d jobs in all, want 2 (the failed and the cut-off event's)", n)
			}
			if c := tg.calls.Load(); c != 3 {
				t.Errorf("%d deliveries, want 3 (one failed attempt, two by jobs)", c)
			}
		})
	}
}

// Event ids sort by the time they were made (and are unique within one
// millisecond).
func TestNewIDOrder(t *testing.T) {
	t0 := time.Date(2026, 11, 22, 15, 0, 0, 0, time.UTC)
	seen := map[string]bool{}
	prev := ""
	for i := 0; i < 1000; i++ {
		id := handoff.NewID(t0.Add(time.Duration(i/10) * time.Millisecond))
		if len(id) != 36 || id[:4] != "evt_" {
			t.Fatalf("id %q: want evt_ and 32 hex digits", id)
		}
		if seen[id] {
			t.Fatalf("id %q made twice", id)
		}
		seen[id] = true
		if i%10 == 0 && id <= prev {
			t.Fatalf("id %q made after %q sorts before it", id, prev)
		}
		if i%10 == 9 {
			prev = id
		}
	}
	if got, want := handoff.NewID(t0)[4:16], fmt.Sprintf("%012x", t0.UnixMilli()); got != want {
		t.Errorf("time prefix %s, want %s", got, want)
	}
}

// Sweep reads the partial index of leased events, not every pending event
// (those of an app that is down can be many): SQLite's plan, checked here,
// would otherwise pick the index on (state, created_at). PostgreSQL chooses
// by its statistics; the index is as selective there.
func TestSweepReadsOnlyLeasedEvents(t *testing.T) {
	ctx := context.Background()
	d, _ := setup(t, "sqlite")
	rows, err := d.Query(ctx, "EXPLAIN QUERY PLAN "+handoff.SweepQuery, 1, 1, 500)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	var plan []string
	for rows.Next() {
		var id, parent, unused int
		var detail string
		if err := rows.Scan(&id, &parent, &unused, &detail); err != nil {
			t.Fatal(err)
		}
		plan = append(plan, detail)
	}
	searches := 0
	for _, p := range plan {
		if strings.Contains(p, "handoff_events") {
			searches++
			if !strings.Contains(p, "USING INDEX handoff_events_leased") {
				t.Errorf("plan step %q does not use handoff_events_leased (plan %q)", p, plan)
			}
		}
	}
	if searches != 2 {
		t.Errorf("plan %q: want two searches of handoff_events", plan)
	}
}

// Sweeps running at once (replicas sharing a database) take each expired
// lease once: every event gets one job, and the counts add up.
func TestSweepConcurrent(t *testing.T) {
	for _, b := range dbtest.Backends() {
		t.Run(b, func(t *testing.T) {
			ctx := context.Background()
			d, clk := setup(t, b)
			now := clk.Now()
			const n = 1200 // more than two of Sweep's statements
			evs := make([]handoff.Event, n)
			for i := range evs {
				evs[i] = handoff.Event{Type: "instance.created", Subject: fmt.Sprintf("i-%d", i)}
			}
			for len(evs) > 0 {
				k := min(len(evs), 100)
				if err := d.Tx(ctx, func(tx *db.Tx) error {
					_, err := handoff.EmitClaimedMany(ctx, tx, now, evs[:k], now, now.Add(time.Minute))
					return err
				}); err != nil {
					t.Fatal(err)
				}
				evs = evs[k:]
			}
			clk.Advance(2 * time.Minute)
			var wg sync.WaitGroup
			var swept atomic.Int64
			for i := 0; i < 4; i++ {
				wg.Add(1)
				go func() {
					defer wg.Done()
					got, err := handoff.Sweep(ctx, d, clk.Now())
					if err != nil {
						t.Error(err)
					}
					swept.Add(int64(got))
				}()
			}
			wg.Wait()
			jobsN := count(t, d, `SELECT COUNT(*) FROM jobs WHERE kind = $1`, handoff.JobKind)
			if swept.Load() != n || jobsN != n {
				t.Fatalf("4 concurrent sweeps took %d leases and made %d jobs, want %d and %d", swept.Load(), jobsN, n, n)
			}
		})
	}
}
