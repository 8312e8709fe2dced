package handoff_test

import (
	"context"
	"errors"
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
			dl := &handoff.Deliverer{DB: d, Group: g, Clock: clk, Target: func(*handoff.Stored) handoff.Target { return tg }}
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
			dl := &handoff.Deliverer{DB: d, Clock: clk, Target: func(*handoff.Stored) handoff.Target { return tg }}
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
