package main

import (
	"bytes"
	"context"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/soukhq/souk/db"
	"github.com/soukhq/souk/merchant"
	"github.com/soukhq/souk/merchant/handoff"
)

func testApp(env map[string]string) (*App, *bytes.Buffer, *bytes.Buffer) {
	var out, errb bytes.Buffer
	return &App{Stdout: &out, Stderr: &errb, Getenv: func(k string) string { return env[k] }}, &out, &errb
}

func TestMerchantCommandConfigErrors(t *testing.T) {
	ctx := context.Background()
	cases := []struct {
		name string
		env  map[string]string
		args []string
		want string
	}{
		{"no access key", nil, []string{"--data", t.TempDir()}, "SOUK_ACCESS_KEY"},
		{"webhook without secret", map[string]string{"SOUK_ACCESS_KEY": "k"}, []string{"--webhook-url", "http://x.example.com"}, "SOUK_WEBHOOK_SECRET"},
		{"bad encrypt type", map[string]string{"SOUK_ACCESS_KEY": "k"}, []string{"--encrypt-type", "9"}, "encrypt type"},
		{"tls half", map[string]string{"SOUK_ACCESS_KEY": "k"}, []string{"--tls-cert", "c.pem"}, "--tls-key"},
		{"bad product encrypt", map[string]string{"SOUK_ACCESS_KEY": "k"}, []string{"--product-encrypt-types", "oops"}, "productId="},
		{"kit body cap too small", map[string]string{"SOUK_ACCESS_KEY": "k"}, []string{"--kit-max-body", "10"}, "--kit-max-body 10"},
		{"zero max body", map[string]string{"SOUK_ACCESS_KEY": "k"}, []string{"--max-body", "0"}, "--max-body 0"},
		{"negative budget", map[string]string{"SOUK_ACCESS_KEY": "k", "SOUK_BUDGET": "-1s"}, nil, "--budget -1s"},
		{"zero window", map[string]string{"SOUK_ACCESS_KEY": "k"}, []string{"--window", "0s"}, "--window 0s"},
		{"zero webhook attempts", map[string]string{"SOUK_ACCESS_KEY": "k"}, []string{"--webhook-max-attempts", "0"}, "--webhook-max-attempts 0"},
		{"negative audit retention", map[string]string{"SOUK_ACCESS_KEY": "k"}, []string{"--audit-retention", "-5h"}, "--audit-retention -5h0m0s"},
		{"negative rejected retention", map[string]string{"SOUK_ACCESS_KEY": "k"}, []string{"--audit-retention-rejected", "-1h"}, "--audit-retention-rejected -1h0m0s"},
		{"sso without identity key", map[string]string{"SOUK_ACCESS_KEY": "k"}, []string{"--data", t.TempDir(), "--sso-base-url", "https://app.example.com"}, "--identity-key (SOUK_IDENTITY_KEY), required with --sso-base-url: sso: no identity key given"},
		{"bad trusted proxy", map[string]string{"SOUK_ACCESS_KEY": "k"}, []string{"--trusted-proxies", "10.0.0.0/8,lb.internal"}, `"lb.internal" is neither an address nor a CIDR prefix`},
		{"admin listen on listen", map[string]string{"SOUK_ACCESS_KEY": "k"}, []string{"--listen", "127.0.0.1:18999", "--admin-listen", "127.0.0.1:18999"}, "--admin-listen 127.0.0.1:18999: the same address as --listen"},
		{"bad log format", map[string]string{"SOUK_ACCESS_KEY": "k"}, []string{"--data", t.TempDir(), "--log-format", "xml"}, `log format "xml"`},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			a, _, errb := testApp(c.env)
			if code := runMerchant(ctx, a, c.args); code != 2 || !strings.Contains(errb.String(), c.want) {
				t.Fatalf("exit %d, stderr %q; want 2 naming %q", code, errb.String(), c.want)
			}
		})
	}
}

func TestMerchantServeAndEvents(t *testing.T) {
	dir := t.TempDir()
	a, _, errb := testApp(map[string]string{"SOUK_ACCESS_KEY": "secret-key-1,secret-key-2", "SOUK_ADMIN_TOKEN": "adm"})
	addr := freePort(t)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan int, 1)
	go func() {
		done <- runMerchant(ctx, a, []string{"--listen", addr, "--data", dir, "--log-format", "text", "--log-level", "warn"})
	}()
	for i := 0; i < 200; i++ {
		if resp, err := http.Get("http://" + addr + "/readyz"); err == nil {
			resp.Body.Close()
			break
		}
		time.Sleep(25 * time.Millisecond)
	}
	cancel()
	if code := <-done; code != 0 {
		t.Fatalf("serve exit %d: %s", code, errb.String())
	}
	// --log-level warn hides INFO records, but not where the server listens.
	if s := errb.String(); !strings.Contains(s, `msg="souk merchant listening" addr=`+addr) {
		t.Errorf("no listening line with --log-level warn:\n%s", s)
	}
	if s := errb.String(); strings.Contains(s, "secret-key-1") || strings.Contains(s, "adm ") || !strings.Contains(s, "access-key") {
		t.Fatalf("configuration print leaks or lacks secrets:\n%s", s)
	}
	// Put a dead event in the database the server created, then use the tools.
	d, err := db.Open(context.Background(), filepath.Join(dir, "merchant.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	if err := merchant.Migrate(context.Background(), d); err != nil {
		t.Fatal(err)
	}
	var id string
	err = d.Tx(context.Background(), func(tx *db.Tx) error {
		var err error
		id, err = handoff.Emit(context.Background(), tx, time.Now(), handoff.Event{Type: "instance.created", Subject: "i-1", Data: map[string]string{"x": "y"}})
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := d.Exec(context.Background(), `UPDATE handoff_events SET state = 'dead', last_error = 'HTTP 500' WHERE event_id = $1`, id); err != nil {
		t.Fatal(err)
	}
	a, out, errb := testApp(nil)
	if code := runMerchant(context.Background(), a, []string{"events", "list", "--data", dir, "--state", "dead"}); code != 0 || !strings.Contains(out.String(), id) {
		t.Fatalf("events list: %d %q %q", code, out.String(), errb.String())
	}
	a, out, _ = testApp(nil)
	if code := runMerchant(context.Background(), a, []string{"events", "replay", "--dead", "--data", dir}); code != 0 || !strings.Contains(out.String(), id) {
		t.Fatalf("events replay --dead: %d %q", code, out.String())
	}
	ev, err := handoff.Get(context.Background(), d, id)
	if err != nil || ev.State != handoff.StatePending || ev.Replays != 1 {
		t.Fatalf("after replay: %+v %v", ev, err)
	}
	a, out, _ = testApp(nil)
	if code := runMerchant(context.Background(), a, []string{"events", "replay", id, "--data", dir}); code != 0 {
		t.Fatalf("events replay ID: %d %q", code, out.String())
	}
	a, _, errb = testApp(nil)
	if code := runMerchant(context.Background(), a, []string{"events", "replay", "evt_unknown", "--data", dir}); code != 1 || !strings.Contains(errb.String(), "no such event") {
		t.Fatalf("replay unknown: %d %q", code, errb.String())
	}
	// Each command left its audit record, the failure with its error.
	for _, want := range []struct{ activity, result, message string }{
		{"events replay --dead", "ok", "1 event(s): " + id},
		{"events replay", "ok", "event " + id},
		{"events replay", "error", "event evt_unknown: %no such event%"},
	} {
		var n int
		if err := d.QueryRow(context.Background(), `SELECT COUNT(*) FROM audit_log WHERE source = 'cli' AND activity = $1 AND result_code = $2
			AND message LIKE $3 AND remote LIKE '%@%'`, want.activity, want.result, want.message).Scan(&n); err != nil || n != 1 {
			t.Errorf("audit records of %q %s %q: %d, %v", want.activity, want.result, want.message, n, err)
		}
	}
}

func TestMerchantEventsHelp(t *testing.T) {
	for _, arg := range []string{"help", "-h", "--help"} {
		a, out, errb := testApp(nil)
		if code := runMerchant(context.Background(), a, []string{"events", arg}); code != 0 || !strings.Contains(out.String(), "souk merchant events list") || errb.Len() != 0 {
			t.Fatalf("events %s: exit %d, stdout %q, stderr %q; want 0 and the usage on stdout", arg, code, out.String(), errb.String())
		}
	}
}

// The commands that work on a merchant's store refuse a store that is not
// there (a mistyped --data or --db) instead of creating an empty one and
// reporting on it.
func TestMerchantToolsRefuseAMissingStore(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	other := filepath.Join(dir, "other.db") // a SQLite database no merchant made
	od, err := db.Open(ctx, other)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := od.Exec(ctx, `CREATE TABLE notes (a TEXT)`); err != nil {
		t.Fatal(err)
	}
	od.Close()
	typoDir, typoDB := filepath.Join(dir, "typo"), filepath.Join(dir, "typo.db")
	cases := []struct {
		name string
		args []string
		want string
	}{
		{"events list --data", []string{"events", "list", "--data", typoDir}, "no merchant database in data directory " + typoDir},
		{"events list --db", []string{"events", "list", "--db", typoDB}, "no such database"},
		{"events replay --dead --data", []string{"events", "replay", "--dead", "--data", typoDir}, "no merchant database"},
		{"events replay id --db", []string{"events", "replay", "evt-1", "--db", typoDB}, "no such database"},
		{"backup --data", []string{"backup", "--data", typoDir, "--out", filepath.Join(dir, "out1")}, "no merchant database"},
		{"backup --db", []string{"backup", "--db", typoDB, "--out", filepath.Join(dir, "out2")}, "no such database"},
		{"public-key --adopt --data", []string{"public-key", "--adopt", "--data", typoDir}, "no merchant database"},
		{"events list, not a merchant's", []string{"events", "list", "--db", other}, "holds no souk merchant database"},
		{"backup, not a merchant's", []string{"backup", "--db", other, "--out", filepath.Join(dir, "out3")}, "holds no souk merchant database"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			a, stdout, errb := testApp(nil)
			if code := runMerchant(ctx, a, c.args); code != 1 || !strings.Contains(errb.String(), c.want) {
				t.Fatalf("exit %d, stderr %q, stdout %q; want 1 naming %q", code, errb.String(), stdout.String(), c.want)
			}
		})
	}
	ents, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range ents {
		if e.Name() != "other.db" {
			t.Errorf("a refused command left %s behind", e.Name())
		}
	}
	// A database no merchant made is left as it was: not migrated.
	od, err = db.Open(ctx, other)
	if err != nil {
		t.Fatal(err)
	}
	defer od.Close()
	var n int
	if err := od.QueryRow(ctx, `SELECT COUNT(*) FROM sqlite_master WHERE name <> 'notes'`).Scan(&n); err != nil || n != 0 {
		t.Errorf("the other database gained %d objects (%v)", n, err)
	}
}

// events list refuses a state or limit it cannot mean (an empty list, exit 0,
// would read as "nothing dead"), before it opens the store.
func TestMerchantEventsListRefusesBadFilters(t *testing.T) {
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"events", "list", "--state", "failed"}, `--state "failed": want pending, delivered or dead`},
		{[]string{"events", "list", "--limit", "0"}, "--limit 0: want 1 to 1000"},
		{[]string{"events", "list", "--limit", "5000"}, "--limit 5000: want 1 to 1000"},
	} {
		a, _, errb := testApp(nil)
		if code := runMerchant(context.Background(), a, append(c.args, "--data", t.TempDir())); code != 2 || !strings.Contains(errb.String(), c.want) {
			t.Fatalf("%v: exit %d, stderr %q; want 2 naming %q", c.args, code, errb.String(), c.want)
		}
	}
}

// The printed configuration shows a database DSN with its password masked
// (not only "(set)", nor the password), and --log-format takes any case.
func TestMerchantConfigPrintsRedactedDSN(t *testing.T) {
	a, _, errb := testApp(map[string]string{"SOUK_ACCESS_KEY": "k", "SOUK_DB": "postgres://souk:pa55word@127.0.0.1:1/souk?sslmode=disable&connect_timeout=1"})
	code := runMerchant(context.Background(), a, []string{"--listen", "127.0.0.1:0", "--log-format", "TEXT"})
	s := errb.String()
	if code == 0 || strings.Contains(s, "pa55word") || !strings.Contains(s, "127.0.0.1:1/souk") || strings.Contains(s, `log format "TEXT"`) {
		t.Fatalf("exit %d (want a failed connection, not a configuration error), output:\n%s", code, s)
	}
	printed := false
	for _, line := range strings.Split(s, "\n") {
		if f := strings.Fields(line); len(f) >= 3 && f[0] == "db" && f[1] == "=" {
			printed = strings.Contains(line, "postgres://souk:xxxxx@127.0.0.1:1/souk") && strings.Contains(line, "(env SOUK_DB)")
		}
	}
	if !printed {
		t.Errorf("the configuration does not print db as postgres://souk:xxxxx@127.0.0.1:1/souk… (env SOUK_DB):\n%s", s)
	}
}
