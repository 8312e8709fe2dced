package db

import (
	"context"
	"database/sql"
	"fmt"
	"path/filepath"
	"sync"
	"testing"
	"time"
)

func openTestSQLite(t *testing.T) *DB {
	t.Helper()
	d, err := Open(context.Background(), filepath.Join(t.TempDir(), "cache.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = d.Close() })
	return d
}

func (c *stmtCache) cached(q string) bool {
	c.mu.RLock()
	defer c.mu.RUnlock()
	_, ok := c.m[q]
	return ok
}

// waitCached waits for the background preparation of q.
func waitCached(t *testing.T, d *DB, q string) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !d.stmts.cached(rebind(d.Dialect, q)) {
		if time.Now().After(deadline) {
			t.Fatalf("%q was never cached", q)
		}
		time.Sleep(time.Millisecond)
	}
}

func TestStmtCacheReusesAndSurvivesSchemaChanges(t *testing.T) {
	ctx := context.Background()
	d := openTestSQLite(t)
	if _, err := d.Exec(ctx, `CREATE TABLE c (k INTEGER PRIMARY KEY, v TEXT NOT NULL)`); err != nil {
		t.Fatal(err)
	}
	ins := `INSERT INTO c (k, v) VALUES ($1, $2)`
	if _, err := d.Exec(ctx, ins, 0, "zero"); err != nil { // a miss: runs from its text
		t.Fatal(err)
	}
	waitCached(t, d, ins)
	for i := 1; i < 50; i++ {
		if err := d.Tx(ctx, func(tx *Tx) error {
			_, err := tx.Exec(ctx, ins, i, fmt.Sprint(i))
			return err
		}); err != nil {
			t.Fatal(err)
		}
	}
	sel := `SELECT v FROM c WHERE k = $1`
	var v string
	for i := 0; i < 3; i++ {
		if err := d.QueryRow(ctx, sel, 42).Scan(&v); err != nil || v != "42" {
			t.Fatalf("cached select: %q, %v", v, err)
		}
		waitCached(t, d, sel)
	}
	// A schema change under a cached statement: SQLite recompiles it.
	if _, err := d.Exec(ctx, `ALTER TABLE c ADD COLUMN w TEXT NOT NULL DEFAULT 'x'`); err != nil {
		t.Fatal(err)
	}
	if err := d.QueryRow(ctx, sel, 7).Scan(&v); err != nil || v != "7" {
		t.Fatalf("cached select after ALTER: %q, %v", v, err)
	}
	// A constraint error through a cached statement is the driver's error.
	if _, err := d.Exec(ctx, ins, 1, "dup"); !IsUniqueViolation(err) {
		t.Fatalf("duplicate through the cache: %v, want a unique violation", err)
	}
	var n int
	if err := d.QueryRow(ctx, `SELECT COUNT(*) FROM c`).Scan(&n); err != nil || n != 50 {
		t.Fatalf("rows: %d, %v", n, err)
	}
	// Scripts are never cached.
	if d.stmts.get("SELECT 1; SELECT 2") != nil {
		t.Fatal("a script was cached")
	}
}

// Every pooled connection inside a transaction, each meeting a query it has
// not seen: the cache must not wait for a free connection to prepare it.
func TestStmtCacheMissWithFullPoolDoesNotDeadlock(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	d := openTestSQLite(t)
	if _, err := d.Exec(ctx, `CREATE TABLE p (k INTEGER PRIMARY KEY)`); err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	errs := make(chan error, sqliteMaxOpenConns)
	start := make(chan struct{})
	for i := 0; i < sqliteMaxOpenConns; i++ {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			errs <- d.TxOptions(ctx, &sql.TxOptions{ReadOnly: true}, func(tx *Tx) error {
				<-start // every connection is taken before anyone queries
				var n int
				return tx.QueryRow(ctx, fmt.Sprintf(`SELECT COUNT(*) + %d FROM p`, i)).Scan(&n)
			})
		}(i)
	}
	time.Sleep(100 * time.Millisecond)
	close(start)
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
}

// TestStmtCacheCloseWithPreparationsInFlight: a query's first run starts a
// background preparation holding a pooled connection. Close must wait for it,
// or that connection outlives Close and SQLite's -wal and -shm files stay open
// (CI once failed removing a test's directory because one was recreated under
// it); a closed cache prepares nothing more.
func TestStmtCacheCloseWithPreparationsInFlight(t *testing.T) {
	ctx := context.Background()
	for i := range 40 {
		dir := t.TempDir()
		d, err := Open(ctx, filepath.Join(dir, "close.db"))
		if err != nil {
			t.Fatal(err)
		}
		for j := range 8 {
			if _, err := d.Exec(ctx, fmt.Sprintf(`SELECT %d`, j)); err != nil {
				t.Fatal(err)
			}
		}
		if err := d.Close(); err != nil {
			t.Fatal(err)
		}
		if s := d.Stats(); s.OpenConnections != 0 {
			t.Fatalf("round %d: %d connections open after Close", i, s.OpenConnections)
		}
		if left, _ := filepath.Glob(filepath.Join(dir, "close.db-*")); len(left) > 0 {
			t.Fatalf("round %d: %v left after Close: a connection outlived it", i, left)
		}
		if d.stmts.get(`SELECT 1000`) != nil {
			t.Fatal("closed cache returned a statement")
		}
	}
}
