package dbtest

import (
	"context"
	"net/url"
	"os"
	"strings"
	"testing"

	"github.com/soukhq/souk/db"
)

func TestWithDatabase(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{"postgres://postgres@127.0.0.1:5432/postgres?sslmode=disable", "postgres://postgres@127.0.0.1:5432/souk_x?sslmode=disable"},
		{"postgres://u:p@h/?dbname=other&sslmode=disable", "postgres://u:p@h/souk_x?sslmode=disable"},
		{"postgresql://h", "postgresql://h/souk_x"},
		{"host=h user=u dbname=postgres", "host=h user=u dbname=postgres dbname=souk_x"},
	} {
		got, err := withDatabase(tc.in, "souk_x")
		if err != nil || got != tc.want {
			t.Errorf("withDatabase(%q) = %q, %v; want %q", tc.in, got, err, tc.want)
		}
	}
}

// Each Open gives a separate, empty database; a postgres one is dropped at cleanup.
func TestOpenIsFreshAndDropped(t *testing.T) {
	for _, b := range Backends() {
		t.Run(b, func(t *testing.T) {
			ctx := context.Background()
			var dsn string
			t.Run("use", func(t *testing.T) {
				dsn = DSN(t, b)
				a, c := Open(t, b), Open(t, b)
				if _, err := a.Exec(ctx, `CREATE TABLE only_in_a (x INTEGER)`); err != nil {
					t.Fatal(err)
				}
				if _, err := c.Exec(ctx, `SELECT * FROM only_in_a`); err == nil {
					t.Fatal("two Opens share a database")
				}
				if b == "postgres" { // the DSN's database exists while the test runs
					d := Open(t, b)
					u, _ := url.Parse(dsn)
					var n int
					if err := d.QueryRow(ctx, `SELECT COUNT(*) FROM pg_database WHERE datname = $1`, strings.TrimPrefix(u.Path, "/")).Scan(&n); err != nil || n != 1 {
						t.Fatalf("database of %s: count %d, %v", dsn, n, err)
					}
				}
			})
			switch b {
			case "sqlite":
				if _, err := os.Stat(dsn); !os.IsNotExist(err) {
					t.Fatalf("sqlite file %s not removed: %v", dsn, err)
				}
			case "postgres":
				admin := Open(t, b) // any database on the server
				var n int
				u, err := url.Parse(dsn)
				if err != nil {
					t.Fatal(err)
				}
				name := strings.TrimPrefix(u.Path, "/")
				if !strings.HasPrefix(name, "souk_test_") {
					t.Fatalf("unexpected database name %q", name)
				}
				if err := admin.QueryRow(ctx, `SELECT COUNT(*) FROM pg_database WHERE datname = $1`, name).Scan(&n); err != nil {
					t.Fatal(err)
				}
				if n != 0 {
					t.Fatalf("database %s not dropped", name)
				}
			}
		})
	}
}

func TestOpenMigrated(t *testing.T) {
	for _, b := range Backends() {
		t.Run(b, func(t *testing.T) {
			var order []string
			step := func(name string) func(context.Context, *db.DB) error {
				return func(ctx context.Context, d *db.DB) error {
					order = append(order, name)
					_, err := d.Exec(ctx, `CREATE TABLE `+name+` (x INTEGER)`)
					return err
				}
			}
			d := OpenMigrated(t, b, step("first"), step("second"))
			if strings.Join(order, ",") != "first,second" {
				t.Fatalf("order = %v", order)
			}
			if _, err := d.Exec(context.Background(), `SELECT * FROM second`); err != nil {
				t.Fatal(err)
			}
		})
	}
}
