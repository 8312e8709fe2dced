package db_test

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/jackc/pgx/v5/pgconn"

	"github.com/soukhq/souk/db"
	"github.com/soukhq/souk/db/dbtest"
)

func TestOpenQueryRebinding(t *testing.T) {
	for _, b := range dbtest.Backends() {
		t.Run(b, func(t *testing.T) {
			ctx := context.Background()
			d := dbtest.Open(t, b)
			if got := d.Dialect.String(); got != b {
				t.Fatalf("dialect = %s, want %s", got, b)
			}
			if _, err := d.Exec(ctx, `CREATE TABLE kv (k TEXT PRIMARY KEY, v TEXT NOT NULL, n BIGINT NOT NULL)`); err != nil {
				t.Fatal(err)
			}
			// $2 used before $1, a literal '$1' and a reused placeholder
			if _, err := d.Exec(ctx, `INSERT INTO kv (k, v, n) VALUES ($2, '$1 is literal', $1)`, 7, "a"); err != nil {
				t.Fatal(err)
			}
			if _, err := d.Exec(ctx, `INSERT INTO kv (k, v, n) VALUES ($1, $1, $2)`, "b", 8); err != nil {
				t.Fatal(err)
			}
			var v string
			var n int64
			if err := d.QueryRow(ctx, `SELECT v, n FROM kv WHERE k = $1`, "a").Scan(&v, &n); err != nil {
				t.Fatal(err)
			}
			if v != "$1 is literal" || n != 7 {
				t.Fatalf("got %q %d", v, n)
			}
			rows, err := d.Query(ctx, `SELECT k FROM kv WHERE n >= $1 ORDER BY k`, 7)
			if err != nil {
				t.Fatal(err)
			}
			defer rows.Close()
			var ks []string
			for rows.Next() {
				var k string
				if err := rows.Scan(&k); err != nil {
					t.Fatal(err)
				}
				ks = append(ks, k)
			}
			if err := rows.Err(); err != nil {
				t.Fatal(err)
			}
			if fmt.Sprint(ks) != "[a b]" {
				t.Fatalf("keys = %v", ks)
			}
		})
	}
}

func TestSQLitePragmas(t *testing.T) {
	ctx := context.Background()
	d := dbtest.Open(t, "sqlite")
	for _, tc := range []struct{ pragma, want string }{
		{"journal_mode", "wal"},
		{"synchronous", "2"},
		{"foreign_keys", "1"},
		{"busy_timeout", "10000"},
	} {
		var got string
		if err := d.QueryRow(ctx, "PRAGMA "+tc.pragma).Scan(&got); err != nil {
			t.Fatalf("%s: %v", tc.pragma, err)
		}
		if got != tc.want {
			t.Errorf("PRAGMA %s = %q, want %q", tc.pragma, got, tc.want)
		}
	}
}

// A new SQLite database, its -wal and -shm files and the directory made for
// it are its owner's only; an existing file keeps its mode.
func TestSQLiteFileModes(t *testing.T) {
	ctx := context.Background()
	dir := filepath.Join(t.TempDir(), "data")
	path := filepath.Join(dir, "souk.db")
	d, err := db.Open(ctx, path)
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	if _, err := d.Exec(ctx, "CREATE TABLE t (x INTEGER)"); err != nil {
		t.Fatal(err)
	}
	for name, want := range map[string]os.FileMode{dir: 0o700, path: 0o600, path + "-wal": 0o600, path + "-shm": 0o600} {
		st, err := os.Stat(name)
		if err != nil {
			t.Fatal(err)
		}
		if got := st.Mode().Perm(); got != want {
			t.Errorf("%s: mode %04o, want %04o", filepath.Base(name), got, want)
		}
	}
	old := filepath.Join(t.TempDir(), "old.db")
	if err := os.WriteFile(old, nil, 0o640); err != nil {
		t.Fatal(err)
	}
	d2, err := db.Open(ctx, old)
	if err != nil {
		t.Fatal(err)
	}
	d2.Close()
	if st, _ := os.Stat(old); st.Mode().Perm() != 0o640 {
		t.Errorf("existing file: mode %04o, want 0640 kept", st.Mode().Perm())
	}
}

func TestOpenRejects(t *testing.T) {
	ctx := context.Background()
	for _, dsn := range []string{"", ":memory:", "sqlite:", "file::memory:?mode=memory"} {
		if d, err := db.Open(ctx, dsn); err == nil {
			d.Close()
			t.Errorf("Open(%q) succeeded, want error", dsn)
		}
	}
}

func TestUniqueViolation(t *testing.T) {
	for _, b := range dbtest.Backends() {
		t.Run(b, func(t *testing.T) {
			ctx := context.Background()
			d := dbtest.Open(t, b)
			if _, err := d.Exec(ctx, `CREATE TABLE u (id BIGINT PRIMARY KEY, email TEXT NOT NULL UNIQUE, ref BIGINT NULL REFERENCES u(id))`); err != nil {
				t.Fatal(err)
			}
			if _, err := d.Exec(ctx, `INSERT INTO u (id, email) VALUES ($1, $2)`, 1, "a@x"); err != nil {
				t.Fatal(err)
			}
			for _, tc := range []struct {
				name   string
				query  string
				args   []any
				unique bool
			}{
				{"unique column", `INSERT INTO u (id, email) VALUES ($1, $2)`, []any{2, "a@x"}, true},
				{"primary key", `INSERT INTO u (id, email) VALUES ($1, $2)`, []any{1, "b@x"}, true},
				{"foreign key is not unique", `INSERT INTO u (id, email, ref) VALUES ($1, $2, $3)`, []any{3, "c@x", 99}, false},
				{"not null is not unique", `INSERT INTO u (id, email) VALUES ($1, NULL)`, []any{4}, false},
			} {
				_, err := d.Exec(ctx, tc.query, tc.args...)
				if err == nil {
					t.Fatalf("%s: no error", tc.name)
				}
				wrapped := fmt.Errorf("store: %w", err)
				if got := db.IsUniqueViolation(wrapped); got != tc.unique {
					t.Errorf("%s: IsUniqueViolation(%v) = %v, want %v", tc.name, err, got, tc.unique)
				}
			}
			// ON CONFLICT DO NOTHING RETURNING works on both
			var id int64
			err := d.QueryRow(ctx, `INSERT INTO u (id, email) VALUES ($1, $2) ON CONFLICT (email) DO NOTHING RETURNING id`, 5, "a@x").Scan(&id)
			if !errors.Is(err, sql.ErrNoRows) {
				t.Fatalf("ON CONFLICT DO NOTHING RETURNING: err = %v, want ErrNoRows", err)
			}
		})
	}
	if db.IsUniqueViolation(nil) || db.IsUniqueViolation(errors.New("UNIQUE constraint failed")) {
		t.Fatal("IsUniqueViolation true for non-database error")
	}
}

func TestTxCommitRollback(t *testing.T) {
	for _, b := range dbtest.Backends() {
		t.Run(b, func(t *testing.T) {
			ctx := context.Background()
			d := dbtest.Open(t, b)
			if _, err := d.Exec(ctx, `CREATE TABLE t (id BIGINT PRIMARY KEY)`); err != nil {
				t.Fatal(err)
			}
			if err := d.Tx(ctx, func(tx *db.Tx) error {
				_, err := tx.Exec(ctx, `INSERT INTO t (id) VALUES ($1)`, 1)
				return err
			}); err != nil {
				t.Fatal(err)
			}
			boom := errors.New("boom")
			err := d.Tx(ctx, func(tx *db.Tx) error {
				if _, err := tx.Exec(ctx, `INSERT INTO t (id) VALUES ($1)`, 2); err != nil {
					return err
				}
				return boom
			})
			if !errors.Is(err, boom) {
				t.Fatalf("err = %v, want boom", err)
			}
			func() {
				defer func() {
					if recover() == nil {
						t.Fatal("panic not propagated")
					}
				}()
				_ = d.Tx(ctx, func(tx *db.Tx) error {
					if _, err := tx.Exec(ctx, `INSERT INTO t (id) VALUES ($1)`, 3); err != nil {
						return err
					}
					panic("inside tx")
				})
			}()
			var n int
			if err := d.QueryRow(ctx, `SELECT COUNT(*) FROM t`).Scan(&n); err != nil {
				t.Fatal(err)
			}
			if n != 1 {
				t.Fatalf("rows = %d, want 1 (rollback and panic must not commit)", n)
			}
		})
	}
}

func TestTxRetriesTransientErrors(t *testing.T) {
	for _, tc := range []struct {
		name    string
		err     error
		retried bool
	}{
		{"serialization failure", &pgconn.PgError{Code: "40001"}, true},
		{"deadlock", &pgconn.PgError{Code: "40P01"}, true},
		{"wrapped deadlock", fmt.Errorf("x: %w", &pgconn.PgError{Code: "40P01"}), true},
		{"unique violation", &pgconn.PgError{Code: "23505"}, false},
		{"plain error", errors.New("no"), false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ctx := context.Background()
			d := dbtest.Open(t, "sqlite")
			calls := 0
			err := d.Tx(ctx, func(tx *db.Tx) error {
				calls++
				if calls == 1 {
					return tc.err
				}
				return nil
			})
			if tc.retried {
				if err != nil || calls != 2 {
					t.Fatalf("err=%v calls=%d, want retried once then success", err, calls)
				}
			} else if !errors.Is(err, tc.err) || calls != 1 {
				t.Fatalf("err=%v calls=%d, want the error and no retry", err, calls)
			}
		})
	}
	// A persistent transient error is retried a bounded number of times.
	d := dbtest.Open(t, "sqlite")
	calls := 0
	err := d.Tx(context.Background(), func(tx *db.Tx) error {
		calls++
		return &pgconn.PgError{Code: "40001"}
	})
	if err == nil || calls < 2 || calls > 20 {
		t.Fatalf("persistent failure: err=%v calls=%d", err, calls)
	}
}

// Concurrent read-modify-write transactions must not lose updates: on SQLite the
// IMMEDIATE transaction serializes them, on PostgreSQL SERIALIZABLE isolation
// makes conflicts fail with 40001, which TxOptions retries.
func TestTxConcurrentIncrements(t *testing.T) {
	for _, b := range dbtest.Backends() {
		t.Run(b, func(t *testing.T) {
			ctx := context.Background()
			d := dbtest.Open(t, b)
			if _, err := d.Exec(ctx, `CREATE TABLE c (id INTEGER PRIMARY KEY, n BIGINT NOT NULL)`); err != nil {
				t.Fatal(err)
			}
			if _, err := d.Exec(ctx, `INSERT INTO c (id, n) VALUES (1, 0)`); err != nil {
				t.Fatal(err)
			}
			const workers, each = 4, 25
			var wg sync.WaitGroup
			var failed atomic.Int64
			var runs atomic.Int64
			for range workers {
				wg.Add(1)
				go func() {
					defer wg.Done()
					for range each {
						err := d.TxOptions(ctx, &sql.TxOptions{Isolation: sql.LevelSerializable}, func(tx *db.Tx) error {
							runs.Add(1)
							var n int64
							if err := tx.QueryRow(ctx, `SELECT n FROM c WHERE id = $1`, 1).Scan(&n); err != nil {
								return err
							}
							_, err := tx.Exec(ctx, `UPDATE c SET n = $1 WHERE id = $2`, n+1, 1)
							return err
						})
						if err != nil {
							failed.Add(1)
							t.Errorf("tx: %v", err)
						}
					}
				}()
			}
			wg.Wait()
			var n int64
			if err := d.QueryRow(ctx, `SELECT n FROM c WHERE id = 1`).Scan(&n); err != nil {
				t.Fatal(err)
			}
			if n != workers*each {
				t.Fatalf("n = %d, want %d (lost updates)", n, workers*each)
			}
			t.Logf("%d transaction runs for %d commits", runs.Load(), workers*each)
		})
	}
}

func TestRedact(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{"postgres://u:secret@h:5432/db?sslmode=disable", "postgres://u:xxxxx@h:5432/db?sslmode=disable"},
		{"postgres://u@h/db", "postgres://u@h/db"},
		{"postgresql://h/db?password=secret&sslmode=require", "postgresql://h/db?password=xxxxx&sslmode=require"},
		{"host=h user=u password=secret dbname=d", "host=h user=u password=xxxxx dbname=d"},
		{"host=h password='se cret' dbname=d", "host=h password=xxxxx dbname=d"},
		{"/var/lib/souk/souk.db", "/var/lib/souk/souk.db"},
		{"postgres://u:S3cr%et@h/db", "<invalid URL>"},
		{"host=h sslpassword=secret dbname=d", "host=h sslpassword=xxxxx dbname=d"},
		// keyword/value strings in any order: souk merchant prints --db
		// through Redact, and libpq takes the keywords in any order
		{"port=5432 host=h password=secret dbname=d", "port=5432 host=h password=xxxxx dbname=d"},
		{"password=secret host=h", "password=xxxxx host=h"},
		{"sslmode=disable  password='se cret'", "sslmode=disable  password=xxxxx"},
		{"/var/lib/souk/a=b.db", "/var/lib/souk/a=b.db"},
	} {
		if got := db.Redact(tc.in); got != tc.want {
			t.Errorf("Redact(%q) = %q, want %q", tc.in, got, tc.want)
		}
	}
}

// With no busy timeout, concurrent SQLite writers on separate handles get
// SQLITE_BUSY at once (TestIsRetryableSQLiteBusy); Tx must recognise it and
// retry until every write lands.
func TestTxRetriesSQLiteBusy(t *testing.T) {
	ctx := context.Background()
	path := dbtest.DSN(t, "sqlite")
	setup, err := db.Open(ctx, path)
	if err != nil {
		t.Fatal(err)
	}
	defer setup.Close()
	if _, err := setup.Exec(ctx, `CREATE TABLE c (id INTEGER PRIMARY KEY, n BIGINT NOT NULL)`); err != nil {
		t.Fatal(err)
	}
	if _, err := setup.Exec(ctx, `INSERT INTO c (id, n) VALUES (1, 0)`); err != nil {
		t.Fatal(err)
	}
	const writers, each = 3, 15
	var wg sync.WaitGroup
	for range writers {
		d, err := db.Open(ctx, path+"?_pragma=busy_timeout(0)")
		if err != nil {
			t.Fatal(err)
		}
		defer d.Close()
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range each {
				err := d.Tx(ctx, func(tx *db.Tx) error {
					_, err := tx.Exec(ctx, `UPDATE c SET n = n + 1 WHERE id = 1`)
					return err
				})
				if err != nil {
					t.Errorf("tx: %v", err)
				}
			}
		}()
	}
	wg.Wait()
	var n int
	if err := setup.QueryRow(ctx, `SELECT n FROM c WHERE id = 1`).Scan(&n); err != nil {
		t.Fatal(err)
	}
	if n != writers*each {
		t.Fatalf("n = %d, want %d", n, writers*each)
	}
}

func TestIsRetryableSQLiteBusy(t *testing.T) {
	ctx := context.Background()
	path := dbtest.DSN(t, "sqlite")
	a, err := db.Open(ctx, path+"?_pragma=busy_timeout(0)")
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	b, err := db.Open(ctx, path+"?_pragma=busy_timeout(0)")
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	if _, err := a.Exec(ctx, `CREATE TABLE x (v INTEGER)`); err != nil {
		t.Fatal(err)
	}
	tx, err := a.BeginTx(ctx, nil) // BEGIN IMMEDIATE: holds the write lock
	if err != nil {
		t.Fatal(err)
	}
	defer tx.Rollback()
	_, err = b.Exec(ctx, `INSERT INTO x (v) VALUES (1)`)
	if err == nil || !db.IsRetryable(err) || !db.IsRetryable(fmt.Errorf("wrapped: %w", err)) {
		t.Fatalf("write while locked: err = %v, IsRetryable = %v", err, db.IsRetryable(err))
	}
}
