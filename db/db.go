// Package db opens souk's database — an SQLite file or a PostgreSQL server — and
// smooths over the few differences between the two.
//
// Queries are written once, PostgreSQL style, with $1..$n placeholders; on SQLite
// they are rebound to ?1..?n. Write transactions on SQLite begin IMMEDIATE so that
// two writers never deadlock on a lock upgrade, and Tx retries on the transient
// errors of both backends (PostgreSQL serialization failures and deadlocks,
// SQLITE_BUSY/LOCKED). Migrate applies embedded, versioned SQL files once each.
// See docs/storage.md.
package db

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"io/fs"
	"math/rand/v2"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
	_ "github.com/jackc/pgx/v5/stdlib" // database/sql driver "pgx"
	"github.com/soukhq/souk/db/internal/sqltext"
	"github.com/soukhq/souk/internal/redact"
	"modernc.org/sqlite" // also registers the database/sql driver "sqlite"
)

// Dialect names the SQL backend behind a DB.
type Dialect int

// The supported backends.
const (
	SQLite Dialect = iota + 1
	Postgres
)

// String returns "sqlite" or "postgres".
func (d Dialect) String() string {
	switch d {
	case SQLite:
		return "sqlite"
	case Postgres:
		return "postgres"
	}
	return fmt.Sprintf("Dialect(%d)", int(d))
}

// DB is an open database. The embedded *sql.DB is available for anything not
// covered here; its *Context methods do NOT rebind placeholders.
type DB struct {
	*sql.DB
	Dialect Dialect
	stmts   *stmtCache // SQLite only (nil on PostgreSQL, whose driver caches per connection)
}

// SQLite connection defaults. busy_timeout makes a writer wait (rather than fail)
// while another holds the write lock; Tx still retries if it runs out.
const (
	sqliteBusyTimeoutMS = 10000
	sqliteMaxOpenConns  = 8
	pgMaxOpenConns      = 16
)

// Open opens the database named by dsn.
//
// "postgres://…" or "postgresql://…" (or a libpq keyword/value string starting with
// "host=", "dbname=" or "user=") opens PostgreSQL through pgx's database/sql driver,
// with a pool of 16 connections, all kept when idle (URL parameters
// pool_max_conns and pool_max_idle_conns change it).
// Anything else is an SQLite file path, optionally prefixed "sqlite:" or "file:"
// and optionally followed by "?" and extra modernc.org/sqlite DSN parameters;
// its directory is created if missing.
// SQLite is opened with WAL, synchronous=FULL, foreign_keys=on, a busy timeout and
// immediate write transactions. Open pings the database before returning.
func Open(ctx context.Context, dsn string) (*DB, error) {
	return open(ctx, dsn, true)
}

// ErrNoDatabase is returned by OpenExisting when the SQLite file it is given
// does not exist.
var ErrNoDatabase = errors.New("no such database")

// OpenExisting is Open for tools that read or repair a database made before:
// a SQLite file that does not exist is an error wrapping ErrNoDatabase (Open
// would create it, and its directory, empty). PostgreSQL is opened as by Open.
func OpenExisting(ctx context.Context, dsn string) (*DB, error) {
	return open(ctx, dsn, false)
}

func open(ctx context.Context, dsn string, create bool) (*DB, error) {
	if dsn == "" {
		return nil, errors.New("db: empty DSN")
	}
	var (
		d   *DB
		err error
	)
	if isPostgresDSN(dsn) {
		d, err = openPostgres(dsn)
	} else {
		d, err = openSQLite(dsn, create)
	}
	if err != nil {
		return nil, err
	}
	if err := d.PingContext(ctx); err != nil {
		_ = d.Close()
		return nil, fmt.Errorf("db: connect to %s: %w", Redact(dsn), err)
	}
	return d, nil
}

// DialectOf tells which backend Open would open dsn with, without opening it.
func DialectOf(dsn string) Dialect {
	if isPostgresDSN(dsn) {
		return Postgres
	}
	return SQLite
}

func isPostgresDSN(dsn string) bool {
	l := strings.ToLower(dsn)
	if strings.HasPrefix(l, "postgres://") || strings.HasPrefix(l, "postgresql://") {
		return true
	}
	for _, p := range []string{"host=", "dbname=", "user="} {
		if strings.HasPrefix(l, p) {
			return true
		}
	}
	return false
}

// pgPoolParams strips souk's pool parameters (pool_max_conns, pool_max_idle_conns)
// from a URL DSN — PostgreSQL would reject them as unknown settings — and
// returns the pool sizes to use.
func pgPoolParams(dsn string) (string, int, int, error) {
	// Idle connections are kept up to the pool size (closed after 5 min of
	// idleness): a smaller idle pool makes a busy server open and close a
	// PostgreSQL connection — a backend process — for many requests.
	maxOpen, maxIdle := pgMaxOpenConns, 0
	if !strings.Contains(dsn, "://") || !strings.Contains(dsn, "pool_") {
		return dsn, maxOpen, maxOpen, nil
	}
	u, err := url.Parse(dsn)
	if err != nil {
		// Not %w: url.Parse's error quotes the DSN, password included.
		return "", 0, 0, errors.New("db: the postgres DSN is not a valid URL (write a % in it, e.g. in the password, as %25)")
	}
	q := u.Query()
	for key, dst := range map[string]*int{"pool_max_conns": &maxOpen, "pool_max_idle_conns": &maxIdle} {
		if v := q.Get(key); v != "" {
			n, err := strconv.Atoi(v)
			if err != nil || n < 1 {
				return "", 0, 0, fmt.Errorf("db: postgres DSN: %s=%q: want a positive integer", key, v)
			}
			*dst = n
			q.Del(key)
		}
	}
	u.RawQuery = q.Encode()
	if maxIdle == 0 {
		maxIdle = maxOpen
	}
	return u.String(), maxOpen, min(maxIdle, maxOpen), nil
}

func openPostgres(dsn string) (*DB, error) {
	dsn, maxOpen, maxIdle, err := pgPoolParams(dsn)
	if err != nil {
		return nil, err
	}
	sdb, err := sql.Open("pgx", dsn)
	if err != nil {
		return nil, fmt.Errorf("db: open postgres %s: %w", Redact(dsn), err)
	}
	sdb.SetMaxOpenConns(maxOpen)
	sdb.SetMaxIdleConns(maxIdle)
	sdb.SetConnMaxIdleTime(5 * time.Minute)
	sdb.SetConnMaxLifetime(30 * time.Minute)
	return &DB{DB: sdb, Dialect: Postgres}, nil
}

// sqliteDSN turns a path (with optional prefix and parameters) into the DSN given
// to modernc.org/sqlite, adding souk's defaults for keys the caller did not set.
func sqliteDSN(dsn string) (string, error) {
	p := dsn
	for _, pre := range []string{"sqlite://", "sqlite:", "file:"} {
		if strings.HasPrefix(p, pre) {
			p = p[len(pre):]
			break
		}
	}
	path, rawQuery, _ := strings.Cut(p, "?")
	if path == "" {
		return "", fmt.Errorf("db: SQLite DSN %q has no file path", dsn)
	}
	if path == ":memory:" || strings.Contains(rawQuery, "mode=memory") {
		return "", errors.New("db: in-memory SQLite is not supported (each pooled connection would see its own database); use a file")
	}
	q, err := url.ParseQuery(rawQuery)
	if err != nil {
		return "", fmt.Errorf("db: SQLite DSN parameters: %w", err)
	}
	pragmas := map[string]bool{}
	for _, v := range q["_pragma"] {
		name, _, _ := strings.Cut(strings.ToLower(strings.TrimSpace(v)), "(")
		name, _, _ = strings.Cut(name, "=")
		pragmas[strings.TrimSpace(name)] = true
	}
	add := func(pragma, value string) {
		if !pragmas[pragma] {
			q.Add("_pragma", pragma+"("+value+")")
		}
	}
	add("busy_timeout", fmt.Sprint(sqliteBusyTimeoutMS))
	add("journal_mode", "WAL")
	add("synchronous", "FULL")
	add("foreign_keys", "1")
	// Statement journals (the savepoints of a group commit) and temporary
	// b-trees in memory rather than in temporary files: they only serve to
	// roll back inside a transaction, never for durability.
	add("temp_store", "MEMORY")
	if q.Get("_txlock") == "" {
		q.Set("_txlock", "immediate")
	}
	return path + "?" + q.Encode(), nil
}

func openSQLite(dsn string, create bool) (*DB, error) {
	full, err := sqliteDSN(dsn)
	if err != nil {
		return nil, err
	}
	path, _, _ := strings.Cut(full, "?")
	if !create {
		st, err := os.Stat(path)
		if errors.Is(err, fs.ErrNotExist) {
			return nil, fmt.Errorf("db: %s: %w", path, ErrNoDatabase)
		}
		if err != nil {
			return nil, fmt.Errorf("db: %w", err)
		}
		if st.IsDir() {
			return nil, fmt.Errorf("db: %s is a directory, not a SQLite database file", path)
		}
	}
	if dir := filepath.Dir(path); dir != "." {
		if err := os.MkdirAll(dir, 0o700); err != nil {
			return nil, fmt.Errorf("db: create directory for %s: %w", path, err)
		}
	}
	// The database holds credentials (appInfo, client secrets, sessions): a
	// new file is readable by its owner only, and SQLite gives its -wal and
	// -shm files the database file's mode. An existing file keeps its mode.
	if f, err := os.OpenFile(path, os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o600); err == nil {
		_ = f.Close()
	} else if !errors.Is(err, fs.ErrExist) {
		return nil, fmt.Errorf("db: create %s: %w", path, err)
	}
	sdb, err := sql.Open("sqlite", full)
	if err != nil {
		return nil, fmt.Errorf("db: open sqlite %s: %w", dsn, err)
	}
	// WAL lets readers run beside the single writer; several connections keep a
	// long read from blocking writes, and busy_timeout queues the writers.
	sdb.SetMaxOpenConns(sqliteMaxOpenConns)
	sdb.SetMaxIdleConns(sqliteMaxOpenConns)
	sdb.SetConnMaxIdleTime(0)
	sdb.SetConnMaxLifetime(0)
	return &DB{DB: sdb, Dialect: SQLite, stmts: newStmtCache(sdb)}, nil
}

// Rebind rewrites $n placeholders for the dialect (no-op on PostgreSQL).
func (d *DB) Rebind(query string) string { return rebind(d.Dialect, query) }

// Exec runs a statement written with $1..$n placeholders.
func (d *DB) Exec(ctx context.Context, query string, args ...any) (sql.Result, error) {
	q := rebind(d.Dialect, query)
	if st := d.stmts.get(q); st != nil {
		return st.ExecContext(ctx, args...)
	}
	return d.ExecContext(ctx, q, args...)
}

// Query runs a query written with $1..$n placeholders.
func (d *DB) Query(ctx context.Context, query string, args ...any) (*sql.Rows, error) {
	q := rebind(d.Dialect, query)
	if st := d.stmts.get(q); st != nil {
		return st.QueryContext(ctx, args...)
	}
	return d.QueryContext(ctx, q, args...)
}

// QueryRow runs a query expected to return at most one row.
func (d *DB) QueryRow(ctx context.Context, query string, args ...any) *sql.Row {
	q := rebind(d.Dialect, query)
	if st := d.stmts.get(q); st != nil {
		return st.QueryRowContext(ctx, args...)
	}
	return d.QueryRowContext(ctx, q, args...)
}

// Close closes the cached prepared statements, then the database.
func (d *DB) Close() error {
	d.stmts.close()
	return d.DB.Close()
}

// Tx is a transaction; Exec, Query and QueryRow rebind $n placeholders.
type Tx struct {
	*sql.Tx
	Dialect Dialect
	stmts   *stmtCache
	// fixed, when set, replaces the context of every statement: a group
	// commit runs its functions with one that cannot be cancelled, so that a
	// caller giving up never interrupts the shared transaction (and the
	// driver need not watch a context per statement).
	fixed context.Context
}

func (t *Tx) stmt(ctx context.Context, q string) (context.Context, *sql.Stmt) {
	if t.fixed != nil {
		ctx = t.fixed
	}
	if st := t.stmts.get(q); st != nil {
		return ctx, t.StmtContext(ctx, st)
	}
	return ctx, nil
}

// Exec runs a statement written with $1..$n placeholders in the transaction.
func (t *Tx) Exec(ctx context.Context, query string, args ...any) (sql.Result, error) {
	q := rebind(t.Dialect, query)
	ctx, st := t.stmt(ctx, q)
	if st != nil {
		return st.ExecContext(ctx, args...)
	}
	return t.ExecContext(ctx, q, args...)
}

// Query runs a query written with $1..$n placeholders in the transaction.
func (t *Tx) Query(ctx context.Context, query string, args ...any) (*sql.Rows, error) {
	q := rebind(t.Dialect, query)
	ctx, st := t.stmt(ctx, q)
	if st != nil {
		return st.QueryContext(ctx, args...)
	}
	return t.QueryContext(ctx, q, args...)
}

// QueryRow runs a query expected to return at most one row in the transaction.
func (t *Tx) QueryRow(ctx context.Context, query string, args ...any) *sql.Row {
	q := rebind(t.Dialect, query)
	ctx, st := t.stmt(ctx, q)
	if st != nil {
		return st.QueryRowContext(ctx, args...)
	}
	return t.QueryRowContext(ctx, q, args...)
}

// Retry policy of Tx.
const (
	txMaxAttempts = 10
	txBaseBackoff = 2 * time.Millisecond
	txMaxBackoff  = 250 * time.Millisecond
)

// Tx runs fn in a transaction: it commits when fn returns nil and rolls back
// otherwise, returning fn's error. When fn or the commit fails with a transient
// error (PostgreSQL serialization failure 40001 or deadlock 40P01, SQLITE_BUSY or
// SQLITE_LOCKED) the whole transaction is retried, a bounded number of times with
// short jittered backoff, so fn must be safe to run again (no side effects outside
// the transaction). On SQLite the transaction begins IMMEDIATE: it takes the write
// lock up front, which is what makes concurrent writers safe.
func (d *DB) Tx(ctx context.Context, fn func(tx *Tx) error) error {
	return d.TxOptions(ctx, nil, fn)
}

// TxOptions is Tx with explicit options (for example sql.LevelSerializable on
// PostgreSQL, or ReadOnly, which on SQLite begins a deferred read transaction).
func (d *DB) TxOptions(ctx context.Context, opts *sql.TxOptions, fn func(tx *Tx) error) error {
	var err error
	for attempt := 1; ; attempt++ {
		err = d.txOnce(ctx, opts, fn)
		if err == nil || !IsRetryable(err) || attempt >= txMaxAttempts {
			return err
		}
		if werr := sleepCtx(ctx, txBackoff(attempt)); werr != nil {
			return fmt.Errorf("%w (gave up retrying: %w)", err, werr)
		}
	}
}

func txBackoff(attempt int) time.Duration {
	b := txBaseBackoff << min(attempt-1, 16)
	b = min(b, txMaxBackoff)
	// full jitter in [b/2, b]
	return b/2 + rand.N(b/2+1)
}

func sleepCtx(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}

func (d *DB) txOnce(ctx context.Context, opts *sql.TxOptions, fn func(tx *Tx) error) (err error) {
	stx, err := d.BeginTx(ctx, opts)
	if err != nil {
		return fmt.Errorf("db: begin: %w", err)
	}
	tx := &Tx{Tx: stx, Dialect: d.Dialect, stmts: d.stmts}
	defer func() {
		if p := recover(); p != nil {
			_ = stx.Rollback()
			panic(p)
		}
	}()
	if err := fn(tx); err != nil {
		if rerr := stx.Rollback(); rerr != nil && !errors.Is(rerr, sql.ErrTxDone) {
			return errors.Join(err, fmt.Errorf("db: rollback: %w", rerr))
		}
		return err
	}
	if err := stx.Commit(); err != nil {
		return fmt.Errorf("db: commit: %w", err)
	}
	return nil
}

// SQLite primary and extended result codes used below.
const (
	sqliteBusy                 = 5
	sqliteLocked               = 6
	sqliteConstraint           = 19
	sqliteConstraintPrimaryKey = 1555
	sqliteConstraintUnique     = 2067
)

// IsRetryable reports whether err is a transient conflict that a retry of the
// whole transaction may resolve.
func IsRetryable(err error) bool {
	if err == nil {
		return false
	}
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) {
		return pgErr.Code == "40001" || pgErr.Code == "40P01"
	}
	var sqErr *sqlite.Error
	if errors.As(err, &sqErr) {
		c := sqErr.Code() & 0xff
		return c == sqliteBusy || c == sqliteLocked
	}
	return false
}

// IsUniqueViolation reports whether err is a unique (or primary key) constraint
// violation on either backend.
func IsUniqueViolation(err error) bool {
	if err == nil {
		return false
	}
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) {
		return pgErr.Code == "23505"
	}
	var sqErr *sqlite.Error
	if errors.As(err, &sqErr) {
		switch sqErr.Code() {
		case sqliteConstraintUnique, sqliteConstraintPrimaryKey:
			return true
		case sqliteConstraint:
			return strings.Contains(sqErr.Error(), "UNIQUE constraint failed")
		}
	}
	return false
}

// Redact returns dsn with any password masked, for logs and the printed
// configuration.
func Redact(dsn string) string {
	if strings.Contains(dsn, "://") {
		return redact.URL(dsn) // the one URL redactor: user info and secret-named parameters
	}
	if strings.Contains(dsn, "=") {
		// A libpq keyword/value string, whatever keyword comes first
		// ("port=… password=…" is one, though isPostgresDSN does not take it
		// for PostgreSQL), or a file path, which only a secret-named
		// "…password=" in it would change.
		return redactKeyValue(dsn)
	}
	return dsn
}

// redactKeyValue masks password=… in a libpq keyword/value string, honouring
// single-quoted values.
func redactKeyValue(s string) string {
	var b strings.Builder
	i := 0
	for i < len(s) {
		// copy whitespace
		for i < len(s) && (s[i] == ' ' || s[i] == '\t' || s[i] == '\n') {
			b.WriteByte(s[i])
			i++
		}
		if i >= len(s) {
			break
		}
		eq := strings.IndexByte(s[i:], '=')
		if eq < 0 {
			b.WriteString(s[i:])
			break
		}
		key := strings.TrimSpace(s[i : i+eq])
		b.WriteString(s[i : i+eq+1])
		i += eq + 1
		for i < len(s) && s[i] == ' ' {
			b.WriteByte(' ')
			i++
		}
		start := i
		if i < len(s) && s[i] == '\'' {
			i++
			for i < len(s) {
				if s[i] == '\\' && i+1 < len(s) {
					i += 2
					continue
				}
				if s[i] == '\'' {
					i++
					break
				}
				i++
			}
		} else {
			for i < len(s) && s[i] != ' ' && s[i] != '\t' && s[i] != '\n' {
				i++
			}
		}
		if redact.SecretName(key) {
			b.WriteString("xxxxx")
		} else {
			b.WriteString(s[start:i])
		}
	}
	return b.String()
}

// rebind rewrites $n placeholders for the dialect (no-op on PostgreSQL).
func rebind(d Dialect, query string) string {
	if d != SQLite {
		return query
	}
	return sqltext.RebindPositional(query)
}
