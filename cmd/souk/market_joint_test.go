package main

import (
	"bytes"
	"context"
	"encoding/json"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/soukhq/souk/db"
	"github.com/soukhq/souk/market"
	"github.com/soukhq/souk/market/idp"
	"github.com/soukhq/souk/market/marketsrv"
)

// TestMarketBuyerCLI drives the buyer-center commands against the server
// `souk market serve` wires (marketsrv.Install).
func TestMarketBuyerCLI(t *testing.T) {
	ctx := t.Context()
	d, err := db.Open(ctx, filepath.Join(t.TempDir(), "m.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	m := newVirtualMarket(t, d)
	s, err := marketsrv.Install(ctx, m, marketsrv.Options{AdminToken: "tok", PublicURL: "http://127.0.0.1:1",
		Password: idp.PasswordParams{Memory: 64, Time: 1, Threads: 1, SaltLen: 16, KeyLen: 32}})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(s.Handler())
	defer srv.Close()
	env := map[string]string{"SOUK_MARKET_URL": srv.URL, "SOUK_MARKET_ADMIN_TOKEN": "tok"}
	cli := func(args ...string) (int, string, string) {
		var o, e bytes.Buffer
		code := runMarket(context.Background(), &App{Stdout: &o, Stderr: &e, Getenv: func(k string) string { return env[k] }}, args)
		return code, o.String(), e.String()
	}
	code, out, errOut := cli("enterprise-create", "--name", "Acme", "--customer", "c1", "--code", "acme")
	if code != 0 {
		t.Fatalf("enterprise-create: %d %s %s", code, out, errOut)
	}
	var ent struct {
		ID string `json:"tenantId"`
	}
	if err := json.Unmarshal([]byte(out), &ent); err != nil || ent.ID == "" {
		t.Fatalf("enterprise-create: %s", out)
	}
	if code, out, _ := cli("enterprises", "--customer", "c1"); code != 0 || !strings.Contains(out, "Acme") {
		t.Fatalf("enterprises: %d %s", code, out)
	}
	if code, out, e := cli("department-create", ent.ID, "--name", "Sales", "--code", "sales"); code != 0 {
		t.Fatalf("department-create: %d %s %s", code, out, e)
	}
	pw := filepath.Join(t.TempDir(), "pw")
	if err := writeFile(pw, "Secret-Pass-1\n"); err != nil {
		t.Fatal(err)
	}
	if code, out, e := cli("member-create", ent.ID, "--user", "alice", "--name", "Alice", "--dept", "sales", "--password-file", pw); code != 0 || strings.Contains(out, "Secret-Pass") {
		t.Fatalf("member-create: %d %s %s", code, out, e)
	}
	if code, out, _ := cli("members", ent.ID); code != 0 || !strings.Contains(out, "alice") {
		t.Fatalf("members: %d %s", code, out)
	}
	if code, out, _ := cli("departments", ent.ID); code != 0 || !strings.Contains(out, "Sales") {
		t.Fatalf("departments: %d %s", code, out)
	}
	if code, out, _ := cli("apps", ent.ID); code != 0 {
		t.Fatalf("apps: %d %s", code, out)
	}
	if code, _, e := cli("app-bind", ent.ID, "--instance", "nope"); code != 1 {
		t.Fatalf("app-bind of an unknown instance: %d %s", code, e)
	}
	if code, out, _ := cli("kit-messages", ent.ID, "--limit", "5"); code != 0 {
		t.Fatalf("kit-messages: %d %s", code, out)
	}
	if code, _, _ := cli("authorize", ent.ID); code != 2 {
		t.Fatalf("authorize without binding: %d", code)
	}
	if code, out, _ := cli("catalog"); code != 0 || strings.TrimSpace(out) != "[]" {
		t.Fatalf("catalog: %d %s", code, out)
	}
	// The seller tools' commands go to the same API.
	if code, out, e := cli("dialtests", "schedule"); code != 0 || !strings.Contains(out, "09:00") {
		t.Fatalf("dialtests schedule: %d %s %s", code, out, e)
	}
	if code, out, e := cli("debug", "interfaces"); code != 0 || !strings.Contains(out, "newInstance") {
		t.Fatalf("debug interfaces: %d %s %s", code, out, e)
	}
	if code, out, e := cli("cases", "list"); code != 0 {
		t.Fatalf("cases list: %d %s %s", code, out, e)
	}
	if code, _, e := cli("dialtests", "status", "-product", "nope"); code != 1 {
		t.Fatalf("dialtests status of an unknown product: %d %s", code, e)
	}
	// Every call above is in the audit log.
	code, out, _ = cli("audit", "--limit", "2")
	var recs []market.AuditRecord
	if code != 0 || json.Unmarshal([]byte(out), &recs) != nil || len(recs) != 2 || recs[0].Route != "GET /api/v1/sellertools/products/{id}" ||
		recs[0].Actor != "admin:"+market.TokenID("tok") || recs[0].Status != 404 {
		t.Fatalf("audit: %d %s", code, out)
	}
}

func TestParseZone(t *testing.T) {
	for in, off := range map[string]int{"UTC+8": 8 * 3600, "UTC-5:30": -(5*3600 + 1800), "UTC": 0, "Asia/Shanghai": 8 * 3600} {
		loc, err := parseZone(in)
		if err != nil {
			t.Fatalf("%s: %v", in, err)
		}
		if _, got := time.Date(2026, 1, 1, 0, 0, 0, 0, loc).Zone(); got != off {
			t.Errorf("%s: offset %d, want %d", in, got, off)
		}
	}
	for _, bad := range []string{"UTC+", "UTC*3", "UTC+99", "Nowhere/City"} {
		if _, err := parseZone(bad); err == nil {
			t.Errorf("%s accepted", bad)
		}
	}
}

func writeFile(name, s string) error { return os.WriteFile(name, []byte(s), 0o600) }
