package db_test

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"sync"
	"testing"

	"github.com/soukhq/souk/db"
	"github.com/soukhq/souk/db/dbtest"
)

// A snapshot taken while a writer commits pairs of rows holds whole
// transactions only, is its owner's only, and never overwrites a file.
func TestSnapshotWhileWriting(t *testing.T) {
	ctx := context.Background()
	d := dbtest.Open(t, "sqlite")
	if _, err := d.Exec(ctx, "CREATE TABLE pairs (n INTEGER NOT NULL, half INTEGER NOT NULL, PRIMARY KEY (n, half))"); err != nil {
		t.Fatal(err)
	}
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	written := 0
	go func() {
		defer wg.Done()
		for n := 0; ; n++ {
			select {
			case <-stop:
				return
			default:
			}
			err := d.Tx(ctx, func(tx *db.Tx) error {
				for half := 0; half < 2; half++ {
					if _, err := tx.Exec(ctx, "INSERT INTO pairs (n, half) VALUES ($1, $2)", n, half); err != nil {
						return err
					}
				}
				return nil
			})
			if err != nil {
				t.Error(err)
				return
			}
			written = n + 1
		}
	}()
	dir := t.TempDir()
	var paths []string
	for i := 0; i < 5; i++ {
		p := filepath.Join(dir, "snap-"+string(rune('a'+i))+".db")
		if err := d.Snapshot(ctx, p); err != nil {
			t.Fatalf("snapshot %d: %v", i, err)
		}
		paths = append(paths, p)
	}
	close(stop)
	wg.Wait()
	last := 0
	for _, p := range paths {
		st, err := os.Stat(p)
		if err != nil {
			t.Fatal(err)
		}
		if st.Mode().Perm() != 0o600 {
			t.Errorf("%s: mode %04o, want 0600", p, st.Mode().Perm())
		}
		s, err := db.Open(ctx, p)
		if err != nil {
			t.Fatal(err)
		}
		var rows, pairs, maxN int
		if err := s.QueryRow(ctx, "SELECT COUNT(*), COUNT(DISTINCT n), COALESCE(MAX(n), -1) FROM pairs").Scan(&rows, &pairs, &maxN); err != nil {
			t.Fatal(err)
		}
		s.Close()
		if rows != 2*pairs || pairs != maxN+1 {
			t.Errorf("%s: %d rows of %d pairs up to %d: not whole transactions", filepath.Base(p), rows, pairs, maxN)
		}
		if pairs < last {
			t.Errorf("%s: %d pairs, fewer than the snapshot before (%d)", filepath.Base(p), pairs, last)
		}
		last = pairs
	}
	if last == 0 || written == 0 {
		t.Fatalf("nothing written before the last snapshot (%d written)", written)
	}
	// An existing file is never overwritten.
	if err := os.WriteFile(filepath.Join(dir, "keep.db"), []byte("keep"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := d.Snapshot(ctx, filepath.Join(dir, "keep.db")); err == nil {
		t.Error("snapshot over an existing file succeeded")
	}
	if b, _ := os.ReadFile(filepath.Join(dir, "keep.db")); string(b) != "keep" {
		t.Errorf("existing file changed: %q", b)
	}
	// A snapshot that cannot be written leaves nothing behind.
	if err := d.Snapshot(ctx, filepath.Join(dir, "no-such-dir", "x.db")); err == nil {
		t.Error("snapshot into a missing directory succeeded")
	}
}

func TestSnapshotPostgresRefused(t *testing.T) {
	for _, b := range dbtest.Backends() {
		if b != "postgres" {
			continue
		}
		d := dbtest.Open(t, b)
		if err := d.Snapshot(context.Background(), filepath.Join(t.TempDir(), "x.db")); !errors.Is(err, db.ErrNotSQLite) {
			t.Fatalf("postgres snapshot: %v", err)
		}
	}
}

// A relative path is a path like any other (it was once read as a URI's
// authority by the integrity check).
func TestSnapshotRelativePath(t *testing.T) {
	ctx := context.Background()
	d := dbtest.Open(t, "sqlite")
	if _, err := d.Exec(ctx, "CREATE TABLE x (a TEXT)"); err != nil {
		t.Fatal(err)
	}
	t.Chdir(t.TempDir())
	if err := os.Mkdir("bk", 0o700); err != nil {
		t.Fatal(err)
	}
	if err := d.Snapshot(ctx, filepath.Join("bk", "copy.db")); err != nil {
		t.Fatal(err)
	}
	if err := d.Snapshot(ctx, "./top.db"); err != nil {
		t.Fatal(err)
	}
	for _, p := range []string{"bk/copy.db", "top.db"} {
		c, err := db.OpenExisting(ctx, p)
		if err != nil {
			t.Fatal(err)
		}
		var n int
		err = c.QueryRow(ctx, "SELECT COUNT(*) FROM x").Scan(&n)
		c.Close()
		if err != nil {
			t.Fatalf("%s: %v", p, err)
		}
	}
}
