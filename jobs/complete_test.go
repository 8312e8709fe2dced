package jobs_test

import (
	"context"
	"testing"
	"time"

	"github.com/soukhq/souk/clock"
	"github.com/soukhq/souk/db"
	"github.com/soukhq/souk/db/dbtest"
	"github.com/soukhq/souk/jobs"
)

func TestComplete(t *testing.T) {
	for _, b := range dbtest.Backends() {
		t.Run(b, func(t *testing.T) {
			ctx := context.Background()
			d := setup(t, b)
			id := enqueue(t, d, t0, jobs.New{Kind: "k", Key: "key-1", DueAt: t0.Add(time.Minute)})
			other := enqueue(t, d, t0, jobs.New{Kind: "k", Key: "key-2", DueAt: t0})
			complete := func(key string) bool {
				t.Helper()
				var ok bool
				if err := d.Tx(ctx, func(tx *db.Tx) error {
					var err error
					ok, err = jobs.Complete(ctx, tx, t0, key)
					return err
				}); err != nil {
					t.Fatal(err)
				}
				return ok
			}
			if !complete("key-1") {
				t.Fatal("Complete found no pending job")
			}
			if j := get(t, d, id); j.State != "done" {
				t.Fatalf("state %q, want done", j.State)
			}
			if complete("key-1") || complete("no-such-key") {
				t.Fatal("Complete of a done or unknown job reported true")
			}
			// The completed job never runs; the other one does.
			ran := map[string]int{}
			r := &jobs.Runner{DB: d, Clock: clock.Func(func() time.Time { return t0.Add(time.Hour) }),
				Handlers: map[string]jobs.Handler{"k": func(_ context.Context, j *jobs.Job) error { ran[j.Key]++; return nil }}}
			runDue(t, r)
			if ran["key-1"] != 0 || ran["key-2"] != 1 {
				t.Fatalf("runs %v, want key-2 once only", ran)
			}
			if j := get(t, d, other); j.State != "done" {
				t.Fatalf("other job %q, want done", j.State)
			}
		})
	}
}
