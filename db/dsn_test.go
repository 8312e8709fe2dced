package db

import (
	"errors"
	"os"
	"strings"
	"testing"
)

func TestSQLiteDSN(t *testing.T) {
	for _, tc := range []struct {
		in       string
		wantPath string
		contains []string
		absent   []string
	}{
		{"/tmp/x.db", "/tmp/x.db", []string{"_txlock=immediate", "journal_mode%28WAL%29", "synchronous%28FULL%29", "foreign_keys%281%29", "busy_timeout%2810000%29"}, nil},
		{"sqlite:/tmp/x.db", "/tmp/x.db", []string{"_txlock=immediate"}, nil},
		{"file:rel.db?_pragma=busy_timeout(50)", "rel.db", []string{"busy_timeout%2850%29"}, []string{"busy_timeout%2810000%29"}},
		{"x.db?_txlock=exclusive", "x.db", []string{"_txlock=exclusive"}, []string{"immediate"}},
	} {
		got, err := sqliteDSN(tc.in)
		if err != nil {
			t.Fatalf("sqliteDSN(%q): %v", tc.in, err)
		}
		path, _, _ := strings.Cut(got, "?")
		if path != tc.wantPath {
			t.Errorf("sqliteDSN(%q) path = %q, want %q", tc.in, path, tc.wantPath)
		}
		for _, c := range tc.contains {
			if !strings.Contains(got, c) {
				t.Errorf("sqliteDSN(%q) = %q, missing %q", tc.in, got, c)
			}
		}
		for _, c := range tc.absent {
			if strings.Contains(got, c) {
				t.Errorf("sqliteDSN(%q) = %q, must not contain %q", tc.in, got, c)
			}
		}
	}
}

func TestOpenCreatesDirectory(t *testing.T) {
	p := t.TempDir() + "/a/b/souk.db"
	d, err := Open(t.Context(), p)
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	if _, err := d.Exec(t.Context(), `CREATE TABLE x (a TEXT)`); err != nil {
		t.Fatal(err)
	}
}

func TestPgPoolParams(t *testing.T) {
	for _, tc := range []struct {
		in, want        string
		maxOpen, maxIdl int
		wantErr         bool
	}{
		{"postgres://h/db?sslmode=disable", "postgres://h/db?sslmode=disable", pgMaxOpenConns, pgMaxOpenConns, false},
		{"postgres://h/db?pool_max_conns=40&sslmode=disable", "postgres://h/db?sslmode=disable", 40, 40, false},
		{"postgres://h/db?pool_max_conns=2&pool_max_idle_conns=9", "postgres://h/db", 2, 2, false},
		{"postgres://h/db?pool_max_conns=x", "", 0, 0, true},
		{"postgres://h/db?pool_max_conns=0", "", 0, 0, true},
		{"host=h dbname=d", "host=h dbname=d", pgMaxOpenConns, pgMaxOpenConns, false},
	} {
		got, o, i, err := pgPoolParams(tc.in)
		if tc.wantErr {
			if err == nil {
				t.Errorf("pgPoolParams(%q): no error", tc.in)
			}
			continue
		}
		if err != nil || got != tc.want || o != tc.maxOpen || i != tc.maxIdl {
			t.Errorf("pgPoolParams(%q) = %q %d %d %v; want %q %d %d", tc.in, got, o, i, err, tc.want, tc.maxOpen, tc.maxIdl)
		}
	}
}

func TestOpenExisting(t *testing.T) {
	dir := t.TempDir()
	for _, dsn := range []string{dir + "/missing.db", "sqlite:" + dir + "/missing.db", dir + "/no/such/dir/x.db?_pragma=busy_timeout(5)"} {
		if d, err := OpenExisting(t.Context(), dsn); !errors.Is(err, ErrNoDatabase) {
			if d != nil {
				d.Close()
			}
			t.Errorf("OpenExisting(%q): %v, want ErrNoDatabase", dsn, err)
		}
	}
	if ents, _ := os.ReadDir(dir); len(ents) != 0 {
		t.Fatalf("OpenExisting created %v", ents)
	}
	if _, err := OpenExisting(t.Context(), dir); err == nil || !strings.Contains(err.Error(), "is a directory") {
		t.Errorf("OpenExisting(a directory): %v", err)
	}
	d, err := Open(t.Context(), dir+"/made.db")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := d.Exec(t.Context(), `CREATE TABLE x (a TEXT)`); err != nil {
		t.Fatal(err)
	}
	d.Close()
	d, err = OpenExisting(t.Context(), dir+"/made.db")
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	var n int
	if err := d.QueryRow(t.Context(), `SELECT COUNT(*) FROM x`).Scan(&n); err != nil {
		t.Fatalf("the existing database is not the one opened: %v", err)
	}
}

// An unparseable DSN's error does not quote it: the password would be in it.
func TestOpenErrorHidesPassword(t *testing.T) {
	for _, dsn := range []string{
		"postgres://souk:S3cr%et@127.0.0.1:1/souk?pool_max_conns=4",
		"postgres://souk:S3cr%et@127.0.0.1:1/souk",
	} {
		d, err := Open(t.Context(), dsn)
		if err == nil {
			d.Close()
			t.Fatalf("Open(%q) succeeded", dsn)
		}
		if strings.Contains(err.Error(), "S3cr") {
			t.Errorf("Open error leaks the password: %v", err)
		}
	}
}
