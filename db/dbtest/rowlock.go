package dbtest

import (
	"context"
	"database/sql"
	"sync"
	"testing"
	"time"

	"github.com/soukhq/souk/db"
)

// RowLock is an open PostgreSQL transaction holding row locks, so that a test
// can line concurrent transactions up behind it (as two replicas' transactions
// meet in production) and let them go at once: each has made its reads by
// then, and each write finds the other's commit. See LockRows.
type RowLock struct {
	t  testing.TB
	d  *db.DB
	tx *sql.Tx
}

// LockRows runs query (an UPDATE, or a SELECT … FOR UPDATE, with PostgreSQL
// $n placeholders) in a transaction of its own and keeps it open until
// Release (or the end of the test). PostgreSQL only: SQLite's single writer
// serializes transactions whole, so there is nothing to line up.
func LockRows(t testing.TB, d *db.DB, query string, args ...any) *RowLock {
	t.Helper()
	if d.Dialect != db.Postgres {
		t.Fatalf("dbtest: LockRows needs PostgreSQL, not %s", d.Dialect)
	}
	ctx := context.Background()
	tx, err := d.BeginTx(ctx, nil)
	if err != nil {
		t.Fatalf("dbtest: lock rows: %v", err)
	}
	if _, err := tx.ExecContext(ctx, query, args...); err != nil {
		_ = tx.Rollback()
		t.Fatalf("dbtest: lock rows: %s: %v", query, err)
	}
	l := &RowLock{t: t, d: d, tx: tx}
	t.Cleanup(func() { _ = tx.Rollback() })
	return l
}

// AwaitWaiters waits (up to 30 s) until at least n sessions of the database
// wait for a lock.
func (l *RowLock) AwaitWaiters(n int) {
	l.t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		var waiting int
		// Not in l.tx: a transaction sees one snapshot of pg_stat_activity.
		if err := l.d.QueryRow(context.Background(), `SELECT COUNT(*) FROM pg_stat_activity
			WHERE datname = current_database() AND wait_event_type = 'Lock'`).Scan(&waiting); err != nil {
			l.t.Fatalf("dbtest: count lock waiters: %v", err)
		}
		if waiting >= n {
			return
		}
		if time.Now().After(deadline) {
			l.t.Fatalf("dbtest: %d sessions wait for a lock after 30 s, want %d", waiting, n)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// Release commits the holding transaction: the waiters go on.
func (l *RowLock) Release() {
	l.t.Helper()
	if err := l.tx.Commit(); err != nil {
		l.t.Fatalf("dbtest: release row locks: %v", err)
	}
}

// Together runs calls at once, lined up behind the rows query locks (LockRows)
// on PostgreSQL: each call's transaction has made its reads, and waits for the
// lock, before any of them writes, as the transactions of replicas do when a
// repeated request reaches them together. On SQLite, whose single writer runs
// transactions one after the other whole, the calls simply run at once.
func Together(t testing.TB, d *db.DB, query string, args []any, calls ...func()) {
	t.Helper()
	var lock *RowLock
	if d.Dialect == db.Postgres {
		lock = LockRows(t, d, query, args...)
	}
	var wg sync.WaitGroup
	for _, c := range calls {
		wg.Add(1)
		go func() { defer wg.Done(); c() }()
	}
	if lock != nil {
		lock.AwaitWaiters(len(calls))
		lock.Release()
	}
	wg.Wait()
}
