package db_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"testing/fstest"

	"github.com/soukhq/souk/db"
	"github.com/soukhq/souk/db/dbtest"
)

func migrations() fstest.MapFS {
	return fstest.MapFS{
		"migrations/0001_init.sql": {Data: []byte(`
CREATE TABLE items (id {{AUTOID}}, name TEXT NOT NULL UNIQUE);
CREATE INDEX items_name ON items (name);`)},
		"migrations/0002_flag.sqlite.sql":   {Data: []byte(`ALTER TABLE items ADD COLUMN flag INTEGER NOT NULL DEFAULT 0;`)},
		"migrations/0002_flag.postgres.sql": {Data: []byte(`ALTER TABLE items ADD COLUMN flag BOOLEAN NOT NULL DEFAULT false;`)},
		"migrations/0003_seed.sql":          {Data: []byte(`INSERT INTO items (name) VALUES ('seed');`)},
		"migrations/README.md":              {Data: []byte("not a migration")},
	}
}

func TestMigrate(t *testing.T) {
	for _, b := range dbtest.Backends() {
		t.Run(b, func(t *testing.T) {
			ctx := context.Background()
			d := dbtest.Open(t, b)
			for range 2 { // the second run is a no-op
				if err := d.Migrate(ctx, "demo", migrations()); err != nil {
					t.Fatal(err)
				}
			}
			var n int
			if err := d.QueryRow(ctx, `SELECT COUNT(*) FROM items WHERE name = 'seed'`).Scan(&n); err != nil {
				t.Fatal(err)
			}
			if n != 1 {
				t.Fatalf("seed rows = %d, want 1", n)
			}
			// {{AUTOID}} gave an auto id
			var id int64
			if err := d.QueryRow(ctx, `INSERT INTO items (name) VALUES ($1) RETURNING id`, "x").Scan(&id); err != nil || id != 2 {
				t.Fatalf("auto id = %d, %v; want 2", id, err)
			}
			applied, err := d.Applied(ctx, "demo")
			if err != nil {
				t.Fatal(err)
			}
			var got []string
			for _, a := range applied {
				got = append(got, fmt.Sprintf("%d:%s", a.Version, a.Name))
				if a.AppliedAt.IsZero() {
					t.Errorf("applied_at not set for %d", a.Version)
				}
			}
			if strings.Join(got, ",") != "1:init,2:flag,3:seed" {
				t.Fatalf("applied = %v", got)
			}
			// a new file is picked up later; another component has its own versions
			fsys := migrations()
			fsys["migrations/0004_more.sql"] = &fstest.MapFile{Data: []byte(`INSERT INTO items (name) VALUES ('more');`)}
			if err := d.Migrate(ctx, "demo", fsys); err != nil {
				t.Fatal(err)
			}
			if err := d.Migrate(ctx, "other", fstest.MapFS{"0001_x.sql": {Data: []byte(`CREATE TABLE other_x (a TEXT);`)}}); err != nil {
				t.Fatal(err)
			}
			all, err := d.Applied(ctx, "")
			if err != nil {
				t.Fatal(err)
			}
			if len(all) != 5 {
				t.Fatalf("all applied = %+v", all)
			}
		})
	}
}

func TestMigrateFailureRollsBack(t *testing.T) {
	for _, b := range dbtest.Backends() {
		t.Run(b, func(t *testing.T) {
			ctx := context.Background()
			d := dbtest.Open(t, b)
			bad := fstest.MapFS{
				"0001_ok.sql":  {Data: []byte(`CREATE TABLE ok1 (a TEXT);`)},
				"0002_bad.sql": {Data: []byte(`CREATE TABLE half (a TEXT); THIS IS NOT SQL;`)},
			}
			err := d.Migrate(ctx, "c", bad)
			if err == nil || !strings.Contains(err.Error(), "0002_bad.sql") {
				t.Fatalf("err = %v, want failure naming 0002_bad.sql", err)
			}
			applied, err := d.Applied(ctx, "c")
			if err != nil {
				t.Fatal(err)
			}
			if len(applied) != 1 || applied[0].Version != 1 {
				t.Fatalf("applied = %+v, want only version 1", applied)
			}
			if _, err := d.Exec(ctx, `SELECT * FROM half`); err == nil {
				t.Fatal("table from failed migration exists: migration was not transactional")
			}
			// fixing the file lets it apply
			bad["0002_bad.sql"] = &fstest.MapFile{Data: []byte(`CREATE TABLE half (a TEXT);`)}
			if err := d.Migrate(ctx, "c", bad); err != nil {
				t.Fatal(err)
			}
		})
	}
}

func TestMigrationsParsing(t *testing.T) {
	for _, tc := range []struct {
		name    string
		fsys    fstest.MapFS
		dialect db.Dialect
		want    string
		wantErr string
	}{
		{"order and dialect", fstest.MapFS{
			"0010_c.sql": {}, "0002_b.postgres.sql": {}, "0002_b.sqlite.sql": {}, "0001_a.sql": {},
		}, db.SQLite, "1:a:,2:b:sqlite,10:c:", ""},
		{"postgres only version", fstest.MapFS{"0001_a.sql": {}, "0002_b.postgres.sql": {}}, db.SQLite, "1:a:", ""},
		{"bad name", fstest.MapFS{"init.sql": {}}, db.SQLite, "", "name must be"},
		{"bad dialect", fstest.MapFS{"0001_a.mysql.sql": {}}, db.SQLite, "", "name must be"},
		{"duplicate version", fstest.MapFS{"0001_a.sql": {}, "0001_b.sql": {}}, db.Postgres, "", "both have version 1"},
		{"generic and dialect clash", fstest.MapFS{"0001_a.sql": {}, "0001_a.postgres.sql": {}}, db.Postgres, "", "both have version 1"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ms, err := db.Migrations(tc.fsys, tc.dialect)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("err = %v, want %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			var got []string
			for _, m := range ms {
				got = append(got, fmt.Sprintf("%d:%s:%s", m.Version, m.Name, m.Dialect))
			}
			if strings.Join(got, ",") != tc.want {
				t.Fatalf("got %v, want %s", got, tc.want)
			}
		})
	}
}

// Several processes starting at once migrate the same database concurrently:
// every migration must apply exactly once and none may fail.
func TestMigrateConcurrent(t *testing.T) {
	for _, b := range dbtest.Backends() {
		t.Run(b, func(t *testing.T) {
			ctx := context.Background()
			dsn := dbtest.DSN(t, b)
			fsys := fstest.MapFS{}
			for i := 1; i <= 8; i++ {
				// not idempotent on purpose: applying twice would fail or double-insert
				fsys[fmt.Sprintf("%04d_step%d.sql", i, i)] = &fstest.MapFile{Data: []byte(fmt.Sprintf(
					"CREATE TABLE t%d (id {{AUTOID}}, v TEXT);\nINSERT INTO t%d (v) VALUES ('x');", i, i))}
			}
			const migrators = 4
			handles := make([]*db.DB, migrators)
			for i := range handles {
				d, err := db.Open(ctx, dsn)
				if err != nil {
					t.Fatal(err)
				}
				t.Cleanup(func() { d.Close() })
				handles[i] = d
			}
			var wg sync.WaitGroup
			errs := make([]error, migrators)
			start := make(chan struct{})
			for i, d := range handles {
				wg.Add(2)
				go func() { // two components per handle, to interleave
					defer wg.Done()
					<-start
					errs[i] = d.Migrate(ctx, "comp", fsys)
				}()
				go func() {
					defer wg.Done()
					<-start
					if err := d.Migrate(ctx, fmt.Sprintf("solo%d", i), fstest.MapFS{
						"0001_x.sql": {Data: []byte(fmt.Sprintf("CREATE TABLE solo%d (a TEXT);", i))},
					}); err != nil {
						t.Errorf("solo%d: %v", i, err)
					}
				}()
			}
			close(start)
			wg.Wait()
			for i, err := range errs {
				if err != nil {
					t.Errorf("migrator %d: %v", i, err)
				}
			}
			d := handles[0]
			for i := 1; i <= 8; i++ {
				var n int
				if err := d.QueryRow(ctx, fmt.Sprintf("SELECT COUNT(*) FROM t%d", i)).Scan(&n); err != nil {
					t.Fatal(err)
				}
				if n != 1 {
					t.Fatalf("t%d has %d rows, want 1", i, n)
				}
			}
			applied, err := d.Applied(ctx, "comp")
			if err != nil {
				t.Fatal(err)
			}
			if len(applied) != 8 {
				t.Fatalf("applied %d versions, want 8", len(applied))
			}
		})
	}
}

func TestMigrateFS(t *testing.T) {
	for _, b := range dbtest.Backends() {
		t.Run(b, func(t *testing.T) {
			ctx := context.Background()
			d := dbtest.Open(t, b)
			fsys := fstest.MapFS{
				"migrations/0001_a.sql": {Data: []byte(`CREATE TABLE fs_a (a TEXT);`)},
				"other/0001_b.sql":      {Data: []byte(`CREATE TABLE fs_b (b TEXT);`)},
				"bad/0001_bad.sql":      {Data: []byte(`NOT SQL;`)},
			}
			if err := db.MigrateFS(ctx, d, "fs", fsys, "migrations"); err != nil {
				t.Fatal(err)
			}
			if _, err := d.Exec(ctx, `SELECT * FROM fs_a`); err != nil {
				t.Fatalf("fs_a: %v", err)
			}
			if _, err := d.Exec(ctx, `SELECT * FROM fs_b`); err == nil {
				t.Fatal("fs_b exists: a file outside dir was applied")
			}
			err := db.MigrateFS(ctx, d, "fsbad", fsys, "bad")
			if err == nil || !strings.HasPrefix(err.Error(), "fsbad: migrate: ") {
				t.Fatalf("err = %v, want it prefixed %q", err, "fsbad: migrate: ")
			}
			err = db.MigrateFS(ctx, d, "fsbad", fsys, "../x")
			if err == nil || !strings.HasPrefix(err.Error(), "fsbad: migrations: ") {
				t.Fatalf("err = %v, want it prefixed %q", err, "fsbad: migrations: ")
			}
		})
	}
}

// A database migrated by a newer release (a version this program does not
// know) is refused, not used with a schema the code was not written for.
func TestMigrateRefusesANewerSchema(t *testing.T) {
	for _, b := range dbtest.Backends() {
		t.Run(b, func(t *testing.T) {
			ctx := context.Background()
			d := dbtest.Open(t, b)
			newer := migrations()
			newer["migrations/0004_more.sql"] = &fstest.MapFile{Data: []byte(`INSERT INTO items (name) VALUES ('more');`)}
			if err := d.Migrate(ctx, "demo", newer); err != nil {
				t.Fatal(err)
			}
			err := d.Migrate(ctx, "demo", migrations())
			if !errors.Is(err, db.ErrNewerSchema) || !strings.Contains(err.Error(), "migration 4") || !strings.Contains(err.Error(), "up to 3") {
				t.Fatalf("err = %v, want ErrNewerSchema naming 4 and 3", err)
			}
			// the same release, and another component, still migrate
			if err := d.Migrate(ctx, "demo", newer); err != nil {
				t.Fatal(err)
			}
			if err := d.Migrate(ctx, "other", fstest.MapFS{"0001_x.sql": {Data: []byte(`CREATE TABLE other_x (a TEXT);`)}}); err != nil {
				t.Fatal(err)
			}
		})
	}
}
