package db

import (
	"strings"
	"testing"
)

func TestRebind(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{"SELECT 1", "SELECT 1"},
		{"SELECT * FROM t WHERE a = $1 AND b = $2", "SELECT * FROM t WHERE a = ?1 AND b = ?2"},
		{"VALUES ($10, $2, $1)", "VALUES (?10, ?2, ?1)"},
		{"SELECT '$1', $1", "SELECT '$1', ?1"},
		{"SELECT 'it''s $1', $1", "SELECT 'it''s $1', ?1"},
		{`SELECT "col$1", $1`, `SELECT "col$1", ?1`},
		{"SELECT $1 -- comment $2\n, $3", "SELECT ?1 -- comment $2\n, ?3"},
		{"SELECT $1 /* $2 */ , $3", "SELECT ?1 /* $2 */ , ?3"},
		{"SELECT a$1 FROM t", "SELECT a$1 FROM t"},
		{"SELECT $ FROM t", "SELECT $ FROM t"},
		{"SELECT '$1", "SELECT '$1"},
		{"SELECT $1", "SELECT ?1"},
	} {
		if got := rebind(SQLite, tc.in); got != tc.want {
			t.Errorf("rebind(%q) = %q, want %q", tc.in, got, tc.want)
		}
		if got := rebind(Postgres, tc.in); got != tc.in {
			t.Errorf("postgres rebind changed %q to %q", tc.in, got)
		}
	}
}

func FuzzRebind(f *testing.F) {
	for _, s := range []string{"SELECT $1", "'$1' $2", `"a$1" $3 -- $4`, "/* $1 */ $2", "a$1", "$", "''''$1"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		out := rebind(SQLite, s)
		// Only "$<digits>" → "?<digits>" rewrites: lengths equal, and undoing them gives the input back.
		if len(out) != len(s) {
			t.Fatalf("length changed: %q → %q", s, out)
		}
		for i := range len(s) {
			if s[i] != out[i] && !(s[i] == '$' && out[i] == '?') {
				t.Fatalf("byte %d changed: %q → %q", i, s, out)
			}
		}
		if !strings.Contains(s, "$") && out != s {
			t.Fatalf("no $ but changed: %q → %q", s, out)
		}
	})
}

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
