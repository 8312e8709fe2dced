package main

import (
	"bytes"
	"context"
	"encoding/json"
	"log/slog"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/soukhq/souk/clock"
	"github.com/soukhq/souk/db"
	"github.com/soukhq/souk/market"
)

func TestDemoWalksThroughTheLifecycle(t *testing.T) {
	var out bytes.Buffer
	if err := demo(t.Context(), &out, slog.New(slog.DiscardHandler), false); err != nil {
		t.Fatalf("demo: %v\n%s", err, out.String())
	}
	for _, want := range []string{"newInstance", "000000 succeeded", "FREEZE", "scene\":\"RENEWAL", "UNFREEZE", "releaseInstance", "subscription is RELEASED", "vendor app's tenant is released"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("demo output lacks %q:\n%s", want, out.String())
		}
	}
}

// newVirtualMarket is a market on d, migrated, on a virtual clock at
// 2026-03-02 00:00 UTC.
func newVirtualMarket(t *testing.T, d *db.DB) *market.Market {
	t.Helper()
	m, err := market.New(market.Config{DB: d, Clock: clock.NewVirtual(time.Date(2026, 3, 2, 0, 0, 0, 0, time.UTC))})
	if err != nil {
		t.Fatal(err)
	}
	if err := m.Migrate(t.Context()); err != nil {
		t.Fatal(err)
	}
	return m
}

func TestMarketCLI(t *testing.T) {
	ctx := t.Context()
	d, err := db.Open(ctx, filepath.Join(t.TempDir(), "m.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	m := newVirtualMarket(t, d)
	srv := httptest.NewServer(m.Handler("tok"))
	defer srv.Close()
	env := map[string]string{"SOUK_MARKET_URL": srv.URL, "SOUK_MARKET_ADMIN_TOKEN": "tok"}
	cli := func(args ...string) (int, string, string) {
		var o, e bytes.Buffer
		code := runMarket(context.Background(), &App{Stdout: &o, Stderr: &e, Getenv: func(k string) string { return env[k] }}, args)
		return code, o.String(), e.String()
	}
	if code, out, _ := cli("seller-create", "--name", "CLI ISV", "--id", "cli-isv"); code != 0 || !strings.Contains(out, `"id": "cli-isv"`) {
		t.Fatalf("seller-create: %d %s", code, out)
	}
	if code, out, _ := cli("key-set", "--seller", "cli-isv", "--type", "basic"); code != 0 || !strings.Contains(out, `"secret"`) {
		t.Fatalf("key-set: %d %s", code, out)
	}
	if code, out, _ := cli("customer-create", "--name", "CLI Buyer", "--id", "cli-buyer"); code != 0 {
		t.Fatalf("customer-create: %d %s", code, out)
	}
	code, out, _ := cli("customers")
	var cs []map[string]any
	if code != 0 || json.Unmarshal([]byte(out), &cs) != nil || len(cs) != 1 {
		t.Fatalf("customers: %d %s", code, out)
	}
	if code, _, errOut := cli("buy", "--customer", "cli-buyer", "--product", "nope", "--periods", "1"); code != 1 || !strings.Contains(errOut, `"field": "productId"`) {
		t.Fatalf("bad buy: %d %s", code, errOut)
	}
	if code, out, _ := cli("clock", "advance", "30d"); code != 0 || !strings.Contains(out, "2026-04-01") {
		t.Fatalf("clock advance: %d %s", code, out)
	}
	if code, _, _ := cli("nonsense"); code != 2 {
		t.Fatalf("unknown command: %d", code)
	}
	env["SOUK_MARKET_ADMIN_TOKEN"] = "wrong"
	if code, _, errOut := cli("sellers"); code != 1 || !strings.Contains(errOut, "401") {
		t.Fatalf("wrong token: %d %s", code, errOut)
	}
}
