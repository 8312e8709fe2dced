package db_test

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"

	"github.com/soukhq/souk/db"
	"github.com/soukhq/souk/db/dbtest"
)

func TestGroupCommitsTogetherAndIsolatesFailures(t *testing.T) {
	for _, backend := range dbtest.Backends() {
		t.Run(backend, func(t *testing.T) {
			ctx := context.Background()
			d := dbtest.Open(t, backend)
			if _, err := d.Exec(ctx, `CREATE TABLE g (k TEXT PRIMARY KEY, v INTEGER NOT NULL)`); err != nil {
				t.Fatal(err)
			}
			g := d.NewGroup(0, 64)
			defer g.Close()

			const n = 300
			errBoom := errors.New("boom")
			var wg sync.WaitGroup
			errs := make([]error, n)
			for i := 0; i < n; i++ {
				wg.Add(1)
				go func(i int) {
					defer wg.Done()
					errs[i] = g.Do(ctx, func(tx *db.Tx) error {
						// every key is inserted twice by two callers: one wins,
						// the other sees a unique violation in its own savepoint
						k := fmt.Sprintf("k%d", i/2)
						if _, err := tx.Exec(ctx, `INSERT INTO g (k, v) VALUES ($1, $2)`, k, i); err != nil {
							return err
						}
						if i%10 == 9 {
							return errBoom // rolled back alone
						}
						return nil
					})
				}(i)
			}
			wg.Wait()
			won := map[string]int{}
			for i, err := range errs {
				k := fmt.Sprintf("k%d", i/2)
				switch {
				case err == nil:
					won[k]++
				case errors.Is(err, errBoom), db.IsUniqueViolation(err):
				default:
					t.Fatalf("caller %d: unexpected error %v", i, err)
				}
			}
			rows, err := d.Query(ctx, `SELECT k, v FROM g`)
			if err != nil {
				t.Fatal(err)
			}
			defer rows.Close()
			stored := map[string]int{}
			for rows.Next() {
				var k string
				var v int
				if err := rows.Scan(&k, &v); err != nil {
					t.Fatal(err)
				}
				stored[k] = v
				if v%10 == 9 {
					t.Errorf("row %s=%d was written by a failed caller", k, v)
				}
			}
			for k, c := range won {
				if c != 1 {
					t.Errorf("key %s: %d callers succeeded", k, c)
				}
				if _, ok := stored[k]; !ok {
					t.Errorf("key %s: a caller succeeded but the row is missing", k)
				}
			}
			if len(stored) != len(won) {
				t.Errorf("stored %d rows, %d successes", len(stored), len(won))
			}
		})
	}
}

func TestGroupPanicAndClose(t *testing.T) {
	ctx := context.Background()
	d := dbtest.Open(t, "sqlite")
	if _, err := d.Exec(ctx, `CREATE TABLE g (k TEXT PRIMARY KEY)`); err != nil {
		t.Fatal(err)
	}
	g := d.NewGroup(1, 8)
	var wg sync.WaitGroup
	var okErr, panicErr error
	wg.Add(2)
	go func() {
		defer wg.Done()
		okErr = g.Do(ctx, func(tx *db.Tx) error { _, err := tx.Exec(ctx, `INSERT INTO g VALUES ('a')`); return err })
	}()
	go func() {
		defer wg.Done()
		panicErr = g.Do(ctx, func(tx *db.Tx) error { panic("bad caller") })
	}()
	wg.Wait()
	if okErr != nil {
		t.Fatalf("good caller: %v", okErr)
	}
	if panicErr == nil {
		t.Fatal("panicking caller got no error")
	}
	g.Close()
	if err := g.Do(ctx, func(tx *db.Tx) error { return nil }); !errors.Is(err, db.ErrGroupClosed) {
		t.Fatalf("Do after Close: %v", err)
	}
}
