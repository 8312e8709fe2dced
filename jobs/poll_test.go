package jobs_test

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/soukhq/souk/clock"
	"github.com/soukhq/souk/db"
	"github.com/soukhq/souk/db/dbtest"
	"github.com/soukhq/souk/jobs"
)

// seedFuture bulk-inserts n pending jobs due far in the future and n/4 done
// jobs, as a long-lived queue accumulates, then refreshes planner statistics.
func seedFuture(tb testing.TB, d *db.DB, n int, now time.Time) {
	tb.Helper()
	ctx := context.Background()
	future := now.Add(365 * 24 * time.Hour).UnixMilli()
	var q string
	switch d.Dialect {
	case db.Postgres:
		q = `INSERT INTO jobs (kind, payload, state, due_at, created_at, updated_at, completed_at)
SELECT 'k', NULL, CASE WHEN i % 5 = 0 THEN 'done' ELSE 'pending' END, $1::bigint + i, $2::bigint, $2::bigint,
	CASE WHEN i % 5 = 0 THEN $2::bigint ELSE NULL END
FROM generate_series(1, $3::int) AS i`
	default:
		q = `WITH RECURSIVE s(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM s WHERE i < $3)
INSERT INTO jobs (kind, payload, state, due_at, created_at, updated_at, completed_at)
SELECT 'k', NULL, CASE WHEN i % 5 = 0 THEN 'done' ELSE 'pending' END, $1 + i, $2, $2,
	CASE WHEN i % 5 = 0 THEN $2 ELSE NULL END
FROM s`
	}
	if _, err := d.Exec(ctx, q, future, now.UnixMilli(), n); err != nil {
		tb.Fatalf("seed: %v", err)
	}
	// A long-lived queue is vacuumed and analyzed; flush the bulk load's dirty
	// pages too, so that the measurement does not compete with writing them.
	stmts := []string{`ANALYZE`}
	if d.Dialect == db.Postgres {
		stmts = []string{`VACUUM (ANALYZE) jobs`, `CHECKPOINT`}
	}
	for _, st := range stmts {
		if _, err := d.Exec(ctx, st); err != nil {
			tb.Fatalf("%s: %v", st, err)
		}
	}
}

func median(ds []time.Duration) time.Duration {
	ds = slices.Clone(ds)
	slices.Sort(ds)
	return ds[len(ds)/2]
}

// The claim must walk the (state, due_at, id) index: its cost depends on the due
// jobs, not on the jobs waiting in the future or already done.
func TestClaimUsesIndex(t *testing.T) {
	for _, b := range dbtest.Backends() {
		t.Run(b, func(t *testing.T) {
			ctx := context.Background()
			d := setup(t, b)
			seedFuture(t, d, 5000, t0)
			q := d.Rebind(jobs.ClaimSQL(d.Dialect, 2))
			args := []any{"me", int64(2), int64(3), t0.UnixMilli(), int64(5), 4, "k", "x"}
			var plan []string
			err := d.Tx(ctx, func(tx *db.Tx) error { // EXPLAIN of an UPDATE, rolled back
				prefix := "EXPLAIN "
				if d.Dialect == db.SQLite {
					prefix = "EXPLAIN QUERY PLAN "
				}
				rows, err := tx.QueryContext(ctx, prefix+q, args...)
				if err != nil {
					return err
				}
				defer rows.Close()
				cols, _ := rows.Columns()
				for rows.Next() {
					vals := make([]any, len(cols))
					ptrs := make([]any, len(cols))
					for i := range vals {
						ptrs[i] = &vals[i]
					}
					if err := rows.Scan(ptrs...); err != nil {
						return err
					}
					plan = append(plan, fmt.Sprint(vals...))
				}
				if err := rows.Err(); err != nil {
					return err
				}
				return fmt.Errorf("rollback")
			})
			if err != nil && err.Error() != "rollback" {
				t.Fatal(err)
			}
			text := strings.Join(plan, "\n")
			t.Logf("plan:\n%s", text)
			if !strings.Contains(text, "jobs_state_due") {
				t.Fatalf("claim does not use jobs_state_due:\n%s", text)
			}
			if strings.Contains(text, "Seq Scan on jobs") || strings.Contains(text, "SCAN jobs\n") || strings.HasSuffix(text, "SCAN jobs") {
				t.Fatalf("claim scans the jobs table:\n%s", text)
			}
		})
	}
}

// With 200k jobs waiting in the future (and 50k done), an idle poll and a poll
// that runs 10 due jobs cost about what they cost on an empty table.
func TestPollCostIndependentOfTableSize(t *testing.T) {
	for _, b := range dbtest.Backends() {
		t.Run(b, func(t *testing.T) {
			rows := 200000
			if testing.Short() || (raceEnabled && b == "sqlite") {
				// Seeding 200k rows into SQLite takes minutes under -race; run
				// without -race for the full measurement (docs/storage.md).
				rows = 10000
			}
			v := clock.NewVirtual(t0)
			handlers := map[string]jobs.Handler{"k": func(context.Context, *jobs.Job) error { return nil }}
			empty, big := setup(t, b), setup(t, b)
			seedStart := time.Now()
			seedFuture(t, big, rows, t0)
			t.Logf("seeded %d rows in %v", rows, time.Since(seedStart))
			// Interleave the two databases so that load on the machine hits both alike.
			rEmpty := &jobs.Runner{DB: empty, Clock: v, Handlers: handlers}
			rBig := &jobs.Runner{DB: big, Clock: v, Handlers: handlers}
			var idle0s, idleNs, ten0s, tenNs []time.Duration
			timeRun := func(r *jobs.Runner, due int) time.Duration {
				if due > 0 {
					err := r.DB.Tx(context.Background(), func(tx *db.Tx) error {
						for range due {
							if _, _, err := jobs.Enqueue(context.Background(), tx, v.Now(), jobs.New{Kind: "k"}); err != nil {
								return err
							}
						}
						return nil
					})
					if err != nil {
						t.Fatal(err)
					}
				}
				start := time.Now()
				n, err := r.RunDue(context.Background())
				if err != nil || n != due {
					t.Fatalf("RunDue = %d, %v; want %d", n, err, due)
				}
				return time.Since(start)
			}
			for range 15 {
				idle0s = append(idle0s, timeRun(rEmpty, 0))
				idleNs = append(idleNs, timeRun(rBig, 0))
			}
			for range 9 {
				ten0s = append(ten0s, timeRun(rEmpty, 10))
				tenNs = append(tenNs, timeRun(rBig, 10))
			}
			idle0, idleN, ten0, tenN := median(idle0s), median(idleNs), median(ten0s), median(tenNs)
			t.Logf("%s: idle poll %v (empty) vs %v (%d rows); 10 due jobs %v (empty) vs %v (%d rows)",
				b, idle0, idleN, rows, ten0, tenN, rows)
			// Generous bounds (the race detector and a loaded CI box add noise);
			// a table scan of 200k rows would exceed them by far.
			if idleN > 5*idle0+20*time.Millisecond {
				t.Errorf("idle poll slowed from %v to %v with %d future jobs", idle0, idleN, rows)
			}
			if tenN > 5*ten0+100*time.Millisecond { // dominated by commit fsyncs, noisy
				t.Errorf("poll of 10 due jobs slowed from %v to %v with %d future jobs", ten0, tenN, rows)
			}
		})
	}
}

// go test -run '^$' -bench RunDue -benchtime 200x ./jobs
func BenchmarkRunDue(b *testing.B) {
	for _, backend := range dbtest.Backends() {
		for _, rows := range []int{0, 200000} {
			b.Run(fmt.Sprintf("%s/future=%d/idle", backend, rows), func(b *testing.B) {
				d := openBench(b, backend, rows)
				r := &jobs.Runner{DB: d, Clock: clock.NewVirtual(t0), Handlers: map[string]jobs.Handler{"k": func(context.Context, *jobs.Job) error { return nil }}}
				b.ResetTimer()
				for b.Loop() {
					if _, err := r.RunDue(context.Background()); err != nil {
						b.Fatal(err)
					}
				}
			})
			b.Run(fmt.Sprintf("%s/future=%d/10due", backend, rows), func(b *testing.B) {
				d := openBench(b, backend, rows)
				v := clock.NewVirtual(t0)
				r := &jobs.Runner{DB: d, Clock: v, Handlers: map[string]jobs.Handler{"k": func(context.Context, *jobs.Job) error { return nil }}}
				b.ResetTimer()
				for range b.N {
					b.StopTimer()
					err := d.Tx(context.Background(), func(tx *db.Tx) error {
						for range 10 {
							if _, _, err := jobs.Enqueue(context.Background(), tx, v.Now(), jobs.New{Kind: "k"}); err != nil {
								return err
							}
						}
						return nil
					})
					if err != nil {
						b.Fatal(err)
					}
					b.StartTimer()
					if n, err := r.RunDue(context.Background()); err != nil || n != 10 {
						b.Fatalf("RunDue = %d, %v", n, err)
					}
				}
			})
		}
	}
}

func openBench(b *testing.B, backend string, rows int) *db.DB {
	b.Helper()
	d := setup(b, backend)
	if rows > 0 {
		seedFuture(b, d, rows, t0)
	}
	return d
}

// An idle poll on SQLite only reads: it must not queue for the write lock that
// another connection (a request's transaction) holds.
func TestSQLiteIdlePollTakesNoWriteLock(t *testing.T) {
	ctx := context.Background()
	dsn := dbtest.DSN(t, "sqlite")
	d, err := db.Open(ctx, dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	if err := jobs.Migrate(ctx, d); err != nil {
		t.Fatal(err)
	}
	enqueue(t, d, t0, jobs.New{Kind: "k", DueAt: t0.Add(time.Hour)})
	other, err := db.Open(ctx, dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer other.Close()
	tx, err := other.BeginTx(ctx, nil) // BEGIN IMMEDIATE: holds the write lock
	if err != nil {
		t.Fatal(err)
	}
	defer tx.Rollback()
	r := &jobs.Runner{DB: d, Clock: clock.NewVirtual(t0), Handlers: map[string]jobs.Handler{"k": func(context.Context, *jobs.Job) error { return nil }}}
	pctx, cancel := context.WithTimeout(ctx, 3*time.Second)
	defer cancel()
	start := time.Now()
	n, err := r.RunDue(pctx)
	if err != nil || n != 0 {
		t.Fatalf("idle RunDue while another connection writes: %d, %v (after %v)", n, err, time.Since(start))
	}
}
