package db

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
)

// ErrNotSQLite is Snapshot's answer on PostgreSQL, whose own tools (pg_dump,
// base backups) copy a live database.
var ErrNotSQLite = errors.New("db: snapshots are for SQLite; back PostgreSQL up with pg_dump or a base backup")

// Snapshot writes a consistent copy of a SQLite database to path while it
// stays in use: VACUUM INTO reads one snapshot of the database (writers go on
// meanwhile, in WAL mode) into a new, compacted file. path must not exist; it
// is created with mode 0600, written, synced, and its directory synced, so
// that a snapshot reported written survives a crash. The copy is then opened
// and checked (PRAGMA integrity_check); a copy that fails is removed.
func (d *DB) Snapshot(ctx context.Context, path string) error {
	if d.Dialect != SQLite {
		return ErrNotSQLite
	}
	f, err := os.OpenFile(path, os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o600)
	if err != nil {
		return fmt.Errorf("db: snapshot: %w", err)
	}
	_ = f.Close()
	ok := false
	defer func() {
		if !ok {
			_ = os.Remove(path)
		}
	}()
	// VACUUM INTO accepts an existing empty file; the statement is not cached
	// (one run, a path of its own).
	if _, err := d.DB.ExecContext(ctx, "VACUUM INTO ?", path); err != nil {
		return fmt.Errorf("db: snapshot: %w", err)
	}
	if err := syncPath(path); err != nil {
		return fmt.Errorf("db: snapshot: %w", err)
	}
	if err := syncPath(filepath.Dir(path)); err != nil {
		return fmt.Errorf("db: snapshot: %w", err)
	}
	if err := checkSQLite(ctx, path); err != nil {
		return fmt.Errorf("db: snapshot %s: %w", path, err)
	}
	ok = true
	return nil
}

func syncPath(path string) error {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	return f.Sync()
}

// checkSQLite opens a database file read-only and runs integrity_check.
func checkSQLite(ctx context.Context, path string) error {
	// An absolute path: a relative one would make "file://dir/…", whose
	// first directory SQLite reads as the URI's authority.
	abs, err := filepath.Abs(path)
	if err != nil {
		return err
	}
	c, err := sql.Open("sqlite", (&url.URL{Scheme: "file", Path: abs, RawQuery: "mode=ro"}).String())
	if err != nil {
		return err
	}
	defer c.Close()
	var res string
	if err := c.QueryRowContext(ctx, "PRAGMA integrity_check").Scan(&res); err != nil {
		return fmt.Errorf("integrity check: %w", err)
	}
	if res != "ok" {
		return fmt.Errorf("integrity check: %s", res)
	}
	return nil
}
