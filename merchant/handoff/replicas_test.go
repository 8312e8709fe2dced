package handoff_test

import (
	"context"
	"errors"
	"sync"
	"testing"

	"github.com/soukhq/souk/db"
	"github.com/soukhq/souk/db/dbtest"
	"github.com/soukhq/souk/merchant/handoff"
)

// lined runs the calls at once. On PostgreSQL the event's row is locked
// first, until every call's transaction waits for it: each has read the event
// before either writes, as two replicas' deliverers do when they meet (on
// SQLite transactions run one after the other, whole).
func lined(t *testing.T, d *db.DB, id string, calls ...func()) {
	t.Helper()
	dbtest.Together(t, d, `SELECT 1 FROM handoff_events WHERE event_id = $1 FOR UPDATE`, []any{id}, calls...)
}

// Two deliverers (two replicas: the event's job and its replay's job, say)
// attempting one event at once: one of them delivers it, the other finds it
// leased.
func TestAttemptTwoDeliverersAtOnce(t *testing.T) {
	for _, b := range dbtest.Backends() {
		t.Run(b, func(t *testing.T) {
			ctx := context.Background()
			d, c := setup(t, b)
			tg := &target{answer: []byte(`ok`)}
			dl := &handoff.Deliverer{DB: d, Clock: c, Target: tg.pick}
			id := emit(t, d, c.Now(), handoff.Event{Type: "instance.frozen", Subject: "i-1"})
			var (
				mu     sync.Mutex
				leased int
			)
			attempt := func() {
				_, err := dl.Attempt(ctx, id)
				mu.Lock()
				defer mu.Unlock()
				switch {
				case errors.Is(err, handoff.ErrLeased):
					leased++
				case err != nil:
					t.Errorf("attempt: %v", err)
				}
			}
			lined(t, d, id, attempt, attempt)
			ev, err := handoff.Get(ctx, d, id)
			if err != nil {
				t.Fatal(err)
			}
			// On SQLite the second attempt may come after the first has
			// finished: it then finds the event delivered.
			if tg.calls.Load() != 1 || ev.Attempts != 1 || ev.State != handoff.StateDelivered {
				t.Fatalf("two attempts at once: %d deliveries, %d attempts counted, state %s (%d leased), want 1 delivery",
					tg.calls.Load(), ev.Attempts, ev.State, leased)
			}
		})
	}
}

// Two replays of one event at once (two operators, or the CLI and the
// management API) are two replays: each gets its delivery.
func TestReplayTwiceAtOnce(t *testing.T) {
	for _, b := range dbtest.Backends() {
		t.Run(b, func(t *testing.T) {
			ctx := context.Background()
			d, c := setup(t, b)
			tg := &target{answer: []byte(`ok`)}
			dl := &handoff.Deliverer{DB: d, Clock: c, Target: tg.pick}
			id := emit(t, d, c.Now(), handoff.Event{Type: "instance.frozen", Subject: "i-1"})
			if ok, err := dl.Attempt(ctx, id); !ok || err != nil {
				t.Fatalf("first delivery: %v %v", ok, err)
			}
			replay := func() {
				if err := handoff.Replay(ctx, d, c.Now(), id); err != nil {
					t.Errorf("replay: %v", err)
				}
			}
			lined(t, d, id, replay, replay)
			ev, err := handoff.Get(ctx, d, id)
			if err != nil {
				t.Fatal(err)
			}
			if n := count(t, d, `SELECT COUNT(*) FROM jobs WHERE unique_key LIKE $1`, "handoff:"+id+":replay:%"); ev.Replays != 2 || n != 2 {
				t.Fatalf("two replays at once: replays %d, %d replay jobs, want 2 and 2", ev.Replays, n)
			}
		})
	}
}

// The dead letter replayed from two places at once (`events replay --dead`
// on two hosts, or the command and the API): each dead event is replayed
// once, not once per caller.
func TestReplayDeadTwiceAtOnce(t *testing.T) {
	for _, b := range dbtest.Backends() {
		t.Run(b, func(t *testing.T) {
			ctx := context.Background()
			d, c := setup(t, b)
			id := emit(t, d, c.Now(), handoff.Event{Type: "instance.frozen", Subject: "i-1"})
			if _, err := d.Exec(ctx, `UPDATE handoff_events SET state = 'dead', attempts = 12 WHERE event_id = $1`, id); err != nil {
				t.Fatal(err)
			}
			var (
				mu       sync.Mutex
				replayed []string
			)
			replayDead := func() {
				ids, err := handoff.ReplayDead(ctx, d, c.Now())
				if err != nil {
					t.Errorf("replay dead: %v", err)
				}
				mu.Lock()
				replayed = append(replayed, ids...)
				mu.Unlock()
			}
			lined(t, d, id, replayDead, replayDead)
			ev, err := handoff.Get(ctx, d, id)
			if err != nil {
				t.Fatal(err)
			}
			if ev.Replays != 1 || len(replayed) != 1 || ev.State != handoff.StatePending {
				t.Fatalf("the dead letter replayed twice at once: %d replays, replayed %v, state %s; want one replay", ev.Replays, replayed, ev.State)
			}
		})
	}
}
