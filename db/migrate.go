package db

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"io/fs"
	"path"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"time"
)

// AutoID is the migration-file token for an auto-incrementing BIGINT primary key.
const AutoID = "{{AUTOID}}"

// migrationLockKey is the PostgreSQL advisory lock taken by every migration
// transaction ("soukmig" in ASCII), so concurrent migrators run one at a time.
const migrationLockKey int64 = 0x736f756b6d6967

var migrationFile = regexp.MustCompile(`^(\d+)_([A-Za-z0-9_\-]+)(?:\.(sqlite|postgres))?\.sql$`)

// Migration is one parsed migration file.
type Migration struct {
	Version int64
	Name    string // the part after "NNNN_", without dialect suffix and ".sql"
	File    string // path inside the fs
	Dialect string // "", "sqlite" or "postgres"
}

// Migrations lists the migrations of fsys that apply to dialect, in version
// order. Every *.sql file anywhere in fsys is considered, so both
// `//go:embed *.sql` and `//go:embed migrations` work. A .sql file whose name does
// not match NNNN_name[.sqlite|.postgres].sql is an error, as are two files with
// the same version for one dialect.
func Migrations(fsys fs.FS, dialect Dialect) ([]Migration, error) {
	var out []Migration
	seen := map[int64]string{}
	err := fs.WalkDir(fsys, ".", func(p string, de fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if de.IsDir() || !strings.HasSuffix(de.Name(), ".sql") {
			return nil
		}
		m := migrationFile.FindStringSubmatch(path.Base(p))
		if m == nil {
			return fmt.Errorf("migration file %q: name must be NNNN_name.sql, NNNN_name.sqlite.sql or NNNN_name.postgres.sql", p)
		}
		if m[3] != "" && m[3] != dialect.String() {
			return nil
		}
		v, err := strconv.ParseInt(m[1], 10, 64)
		if err != nil {
			return fmt.Errorf("migration file %q: version: %w", p, err)
		}
		if prev, dup := seen[v]; dup {
			return fmt.Errorf("migration files %q and %q both have version %d for %s", prev, p, v, dialect)
		}
		seen[v] = p
		out = append(out, Migration{Version: v, Name: m[2], File: p, Dialect: m[3]})
		return nil
	})
	if err != nil {
		return nil, err
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Version < out[j].Version })
	return out, nil
}

// ErrNewerSchema is Migrate's refusal of a database migrated by a newer
// release than the running program.
var ErrNewerSchema = errors.New("the database was migrated by a newer release")

// ExpandSQL replaces the dialect tokens of a migration file ({{AUTOID}}).
func ExpandSQL(dialect Dialect, text string) string {
	switch dialect {
	case SQLite:
		return strings.ReplaceAll(text, AutoID, "INTEGER PRIMARY KEY AUTOINCREMENT")
	case Postgres:
		return strings.ReplaceAll(text, AutoID, "BIGSERIAL PRIMARY KEY")
	}
	return text
}

// Migrate applies fsys's migrations for component that are not yet recorded in
// schema_migrations(component, version, name, applied_at), in version order, each
// in its own transaction together with its record. Concurrent migrators (several
// processes starting at once) are safe: on PostgreSQL every migration transaction
// holds a transaction-scoped advisory lock and re-checks the record under it; on
// SQLite the transaction is IMMEDIATE, which serializes writers the same way.
// A database that records a version of component newer than fsys's newest
// (migrated by a newer release) is refused with ErrNewerSchema: this code
// does not know that schema.
func (d *DB) Migrate(ctx context.Context, component string, fsys fs.FS) error {
	if component == "" {
		return errors.New("db: migrate: empty component name")
	}
	ms, err := Migrations(fsys, d.Dialect)
	if err != nil {
		return fmt.Errorf("db: migrate %s: %w", component, err)
	}
	if err := d.ensureMigrationsTable(ctx); err != nil {
		return err
	}
	applied, err := d.appliedVersions(ctx, component)
	if err != nil {
		return err
	}
	var newest int64
	if len(ms) > 0 {
		newest = ms[len(ms)-1].Version
	}
	for v := range applied {
		if v > newest {
			return fmt.Errorf("db: migrate %s: %w: it records migration %d, this program knows up to %d; run the release that migrated it (or a newer one)", component, ErrNewerSchema, v, newest)
		}
	}
	for _, m := range ms {
		if applied[m.Version] {
			continue
		}
		body, err := fs.ReadFile(fsys, m.File)
		if err != nil {
			return fmt.Errorf("db: migrate %s: read %s: %w", component, m.File, err)
		}
		text := ExpandSQL(d.Dialect, string(body))
		err = d.Tx(ctx, func(tx *Tx) error {
			if err := tx.lockMigrations(ctx); err != nil {
				return err
			}
			var one int
			err := tx.QueryRow(ctx, `SELECT 1 FROM schema_migrations WHERE component = $1 AND version = $2`, component, m.Version).Scan(&one)
			switch {
			case err == nil:
				return nil // another migrator got here first
			case !errors.Is(err, sql.ErrNoRows):
				return fmt.Errorf("check: %w", err)
			}
			if strings.TrimSpace(text) != "" {
				if _, err := tx.ExecContext(ctx, text); err != nil {
					return err
				}
			}
			_, err = tx.Exec(ctx, `INSERT INTO schema_migrations (component, version, name, applied_at) VALUES ($1, $2, $3, $4)`,
				component, m.Version, m.Name, time.Now().UnixMilli())
			return err
		})
		if err != nil {
			return fmt.Errorf("db: migrate %s: %s: %w", component, m.File, err)
		}
	}
	return nil
}

// MigrateFS applies the migrations in folder dir of fsys (usually a package's
// `//go:embed migrations/*.sql` files with dir "migrations"; "." for the root)
// for component, as Migrate does. Errors are prefixed with the component:
// "component: migrations: …" when dir cannot be opened, "component: migrate: …"
// when a migration fails.
func MigrateFS(ctx context.Context, d *DB, component string, fsys fs.FS, dir string) error {
	sub, err := fs.Sub(fsys, dir)
	if err != nil {
		return fmt.Errorf("%s: migrations: %w", component, err)
	}
	if err := d.Migrate(ctx, component, sub); err != nil {
		return fmt.Errorf("%s: migrate: %w", component, err)
	}
	return nil
}

func (t *Tx) lockMigrations(ctx context.Context) error {
	if t.Dialect != Postgres {
		return nil // the IMMEDIATE transaction already holds SQLite's write lock
	}
	if _, err := t.Exec(ctx, `SELECT pg_advisory_xact_lock($1)`, migrationLockKey); err != nil {
		return fmt.Errorf("advisory lock: %w", err)
	}
	return nil
}

func (d *DB) ensureMigrationsTable(ctx context.Context) error {
	err := d.Tx(ctx, func(tx *Tx) error {
		if err := tx.lockMigrations(ctx); err != nil {
			return err
		}
		_, err := tx.Exec(ctx, `CREATE TABLE IF NOT EXISTS schema_migrations (
	component  TEXT   NOT NULL,
	version    BIGINT NOT NULL,
	name       TEXT   NOT NULL,
	applied_at BIGINT NOT NULL,
	PRIMARY KEY (component, version)
)`)
		return err
	})
	if err != nil {
		return fmt.Errorf("db: create schema_migrations: %w", err)
	}
	return nil
}

func (d *DB) appliedVersions(ctx context.Context, component string) (map[int64]bool, error) {
	rows, err := d.Query(ctx, `SELECT version FROM schema_migrations WHERE component = $1`, component)
	if err != nil {
		return nil, fmt.Errorf("db: read schema_migrations: %w", err)
	}
	defer rows.Close()
	out := map[int64]bool{}
	for rows.Next() {
		var v int64
		if err := rows.Scan(&v); err != nil {
			return nil, fmt.Errorf("db: read schema_migrations: %w", err)
		}
		out[v] = true
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("db: read schema_migrations: %w", err)
	}
	return out, nil
}

// AppliedMigration is a row of schema_migrations.
type AppliedMigration struct {
	Component string
	Version   int64
	Name      string
	AppliedAt time.Time
}

// Applied lists the recorded migrations of component (all components if empty).
func (d *DB) Applied(ctx context.Context, component string) ([]AppliedMigration, error) {
	rows, err := d.Query(ctx, `SELECT component, version, name, applied_at FROM schema_migrations
WHERE $1 = '' OR component = $1 ORDER BY component, version`, component)
	if err != nil {
		return nil, fmt.Errorf("db: list migrations: %w", err)
	}
	defer rows.Close()
	var out []AppliedMigration
	for rows.Next() {
		var a AppliedMigration
		var at int64
		if err := rows.Scan(&a.Component, &a.Version, &a.Name, &at); err != nil {
			return nil, fmt.Errorf("db: list migrations: %w", err)
		}
		a.AppliedAt = time.UnixMilli(at)
		out = append(out, a)
	}
	return out, rows.Err()
}
