package sqltext

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
		if got := Rebind(tc.in); got != tc.want {
			t.Errorf("Rebind(%q) = %q, want %q", tc.in, got, tc.want)
		}
	}
}

func FuzzRebind(f *testing.F) {
	for _, s := range []string{"SELECT $1", "'$1' $2", `"a$1" $3 -- $4`, "/* $1 */ $2", "a$1", "$", "''''$1"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		out := Rebind(s)
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

func TestRebindPositional(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{"SELECT 1", "SELECT 1"},
		{"INSERT INTO t VALUES ($1, $2), ($3, $4)", "INSERT INTO t VALUES (?, ?), (?, ?)"},
		{"SELECT '$2', $1 -- $3\n, $2", "SELECT '$2', ? -- $3\n, ?"},
		{"VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)", "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"},
		// Out of order, repeated or with a gap: numbered, as Rebind does.
		{"VALUES ($2, $1)", "VALUES (?2, ?1)"},
		{"SET a = $1 WHERE b = $1", "SET a = ?1 WHERE b = ?1"},
		{"VALUES ($1, $3)", "VALUES (?1, ?3)"},
		{"VALUES ($01)", "VALUES (?01)"},
	} {
		if got := RebindPositional(tc.in); got != tc.want {
			t.Errorf("RebindPositional(%q) = %q, want %q", tc.in, got, tc.want)
		}
	}
}

func FuzzRebindPositional(f *testing.F) {
	for _, s := range []string{"SELECT $1, $2", "$2 $1", "'$1' $1 $2", "$1 $1", "/* $1 */ $1"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		out, numbered := RebindPositional(s), Rebind(s)
		if out == numbered {
			return
		}
		// Positional: the same placeholders without their numbers.
		if strings.Count(out, "?") != strings.Count(numbered, "?") || len(out) >= len(numbered) || strings.Contains(out, "$") != strings.Contains(numbered, "$") && !strings.Contains(numbered, "$") {
			t.Fatalf("%q → %q (numbered %q)", s, out, numbered)
		}
	})
}
