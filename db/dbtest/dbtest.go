// Package dbtest gives tests a fresh database on each backend.
//
//	for _, b := range dbtest.Backends() {
//		t.Run(b, func(t *testing.T) { d := dbtest.Open(t, b); … })
//	}
//
// PostgreSQL databases are created on the server named by SOUK_TEST_PG (a DSN to
// any database there; scripts/test starts a throwaway server and sets it) and
// dropped at cleanup. SOUK_TEST_PG=skip skips the postgres backend, for quick
// local runs only. SQLite databases are files in t.TempDir().
package dbtest

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/soukhq/souk/db"
)

// EnvPG names the environment variable holding the PostgreSQL test server DSN.
const EnvPG = "SOUK_TEST_PG"

// Backends lists the backends every storage test runs on.
func Backends() []string { return []string{"sqlite", "postgres"} }

// DSN returns the DSN of a fresh, empty database on backend, removed at cleanup.
func DSN(t testing.TB, backend string) string {
	t.Helper()
	switch backend {
	case "sqlite":
		return filepath.Join(t.TempDir(), "souk.db")
	case "postgres":
		return pgDSN(t)
	}
	t.Fatalf("dbtest: unknown backend %q (want one of %v)", backend, Backends())
	return ""
}

// Open opens a fresh database on backend, closed (and dropped) at cleanup.
func Open(t testing.TB, backend string) *db.DB {
	t.Helper()
	dsn := DSN(t, backend)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	d, err := db.Open(ctx, dsn)
	if err != nil {
		t.Fatalf("dbtest: open %s: %v", db.Redact(dsn), err)
	}
	t.Cleanup(func() { _ = d.Close() })
	return d
}

// OpenMigrated opens a fresh database on backend, as Open, and runs each
// migrate on it in order (jobs.Migrate, handoff.Migrate, …), failing t on an
// error.
func OpenMigrated(t testing.TB, backend string, migrate ...func(context.Context, *db.DB) error) *db.DB {
	t.Helper()
	d := Open(t, backend)
	for _, m := range migrate {
		if err := m(context.Background(), d); err != nil {
			t.Fatalf("dbtest: migrate: %v", err)
		}
	}
	return d
}

func pgDSN(t testing.TB) string {
	t.Helper()
	server := strings.TrimSpace(os.Getenv(EnvPG))
	switch server {
	case "":
		t.Fatalf("dbtest: %s is not set. PostgreSQL tests need a server: run scripts/test (it starts a throwaway PostgreSQL), "+
			"or set %s to a DSN such as postgres://postgres@127.0.0.1:5432/postgres?sslmode=disable "+
			"(%s=skip skips the postgres backend, for quick local runs only)", EnvPG, EnvPG, EnvPG)
	case "skip":
		t.Skipf("dbtest: %s=skip: postgres backend skipped", EnvPG)
	}
	name := "souk_test_" + randomHex(t, 8)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	admin, err := db.Open(ctx, server)
	if err != nil {
		t.Fatalf("dbtest: connect to %s=%s: %v", EnvPG, db.Redact(server), err)
	}
	defer admin.Close()
	// template0 is never connected to, so concurrent creations cannot fail with
	// "source database is being accessed by other users".
	if _, err := admin.ExecContext(ctx, "CREATE DATABASE "+name+" TEMPLATE template0"); err != nil {
		t.Fatalf("dbtest: create database %s: %v", name, err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
		defer cancel()
		admin, err := db.Open(ctx, server)
		if err != nil {
			t.Errorf("dbtest: drop database %s: connect: %v", name, err)
			return
		}
		defer admin.Close()
		if _, err := admin.ExecContext(ctx, "DROP DATABASE IF EXISTS "+name+" WITH (FORCE)"); err != nil {
			t.Errorf("dbtest: drop database %s: %v", name, err)
		}
	})
	dsn, err := withDatabase(server, name)
	if err != nil {
		t.Fatalf("dbtest: %s: %v", EnvPG, err)
	}
	return dsn
}

// withDatabase returns the server DSN pointing at database name instead.
func withDatabase(server, name string) (string, error) {
	if strings.Contains(server, "://") {
		u, err := url.Parse(server)
		if err != nil {
			return "", fmt.Errorf("parse DSN: %w", err)
		}
		u.Path = "/" + name
		u.RawPath = ""
		q := u.Query()
		q.Del("dbname")
		u.RawQuery = q.Encode()
		return u.String(), nil
	}
	// keyword/value form: a later dbname= overrides an earlier one
	return server + " dbname=" + name, nil
}

func randomHex(t testing.TB, n int) string {
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		t.Fatalf("dbtest: random: %v", err)
	}
	return hex.EncodeToString(b)
}
