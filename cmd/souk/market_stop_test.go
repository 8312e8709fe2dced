package main

import (
	"context"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/soukhq/souk/clock"
	"github.com/soukhq/souk/db"
	"github.com/soukhq/souk/db/dbtest"
	"github.com/soukhq/souk/internal/lockedbuf"
	"github.com/soukhq/souk/market"
)

// Stopping `souk market serve` while a production-interface call is under
// way keeps its answer: serve waits for the job runner before it closes the
// database, so the attempt is recorded and the call is not made again later.
func TestMarketServeStopKeepsTheCallInFlight(t *testing.T) {
	for _, backend := range dbtest.Backends() {
		t.Run(backend, func(t *testing.T) {
			ctx := t.Context()
			started := make(chan struct{}, 1)
			merchant := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				raw, _ := io.ReadAll(r.Body)
				var body struct{ Activity string }
				_ = json.Unmarshal(raw, &body)
				if body.Activity != "newInstance" {
					_, _ = io.WriteString(w, `{"resultCode":"000003","resultMsg":"no such instance"}`)
					return
				}
				select {
				case started <- struct{}{}:
				default:
				}
				time.Sleep(time.Second)
				_, _ = io.WriteString(w, `{"resultCode":"000000","resultMsg":"success","instanceId":"inst-1"}`)
			}))
			defer merchant.Close()
			dsn := dbtest.DSN(t, backend)
			start := time.Date(2026, 3, 2, 0, 0, 0, 0, time.UTC)
			open := func() (*db.DB, *market.Market) {
				d, err := db.Open(ctx, dsn)
				if err != nil {
					t.Fatal(err)
				}
				m, err := market.New(market.Config{DB: d, Clock: clock.NewVirtual(start)})
				if err != nil {
					t.Fatal(err)
				}
				if err := m.Migrate(ctx); err != nil {
					t.Fatal(err)
				}
				return d, m
			}
			d, m := open()
			must := func(_ any, err error) {
				t.Helper()
				if err != nil {
					t.Fatal(err)
				}
			}
			must(m.CreateSeller(ctx, "seller-1", "ISV One"))
			must(m.SetAccessKey(ctx, "seller-1", market.KeyBasic, "TestAccessKey123"))
			a, err := m.AddAddress(ctx, "seller-1", merchant.URL+"/saasproduce")
			must(a, err)
			must(m.VerifyAddress(ctx, a.ID))
			must(m.CreateProduct(ctx, market.ProductInput{ID: "prod-1", SellerID: "seller-1", Name: "Demo", AddressID: a.ID,
				Plans: []market.Plan{{ProductCode: "P-MONTH", SKUCode: "basic", ChargingMode: market.ModePeriod, PeriodType: "month", PriceCents: 100}}}))
			must(m.CreateCustomer(ctx, market.Customer{ID: "cust-1", Name: "Buyer"}))
			o, err := m.Buy(ctx, market.BuyInput{CustomerID: "cust-1", ProductCode: "P-MONTH", PeriodNumber: 1})
			must(o, err)
			d.Close()

			ln, err := net.Listen("tcp", "127.0.0.1:0")
			if err != nil {
				t.Fatal(err)
			}
			addr := ln.Addr().String()
			ln.Close()
			env := map[string]string{"SOUK_MARKET_ADMIN_TOKEN": "serve-token", "SOUK_MARKET_DB": dsn, "SOUK_MARKET_ADDR": addr,
				"SOUK_VIRTUAL_CLOCK": start.Format(time.RFC3339)}
			var out, errOut lockedbuf.Buffer
			sctx, cancel := context.WithCancel(ctx)
			defer cancel()
			done := make(chan int, 1)
			go func() {
				done <- runMarket(sctx, &App{Stdout: &out, Stderr: &errOut, Getenv: func(k string) string { return env[k] }}, []string{"serve", "--log-level", "error"})
			}()
			select {
			case <-started:
			case code := <-done:
				t.Fatalf("serve exited %d:\n%s", code, errOut.String())
			case <-time.After(20 * time.Second):
				t.Fatalf("the merchant never got newInstance:\n%s", errOut.String())
			}
			cancel()
			select {
			case code := <-done:
				if code != 0 {
					t.Fatalf("serve exited %d:\n%s", code, errOut.String())
				}
			case <-time.After(20 * time.Second):
				t.Fatal("serve did not stop")
			}
			d, m = open()
			defer d.Close()
			msgs, err := m.ListMessages(ctx, market.MessageFilter{OrderID: o.OrderID, Activity: "newInstance"})
			if err != nil {
				t.Fatal(err)
			}
			if len(msgs) != 1 || msgs[0].State != "succeeded" || msgs[0].Attempts != 1 {
				t.Fatalf("message after the stop = %+v\n%s", msgs, errOut.String())
			}
			var leased int
			if err := d.QueryRow(ctx, `SELECT COUNT(*) FROM jobs WHERE locked_by IS NOT NULL`).Scan(&leased); err != nil {
				t.Fatal(err)
			}
			if leased != 0 {
				t.Fatalf("%d jobs left leased by the stopped serve", leased)
			}
		})
	}
}

// `souk market serve` without --virtual-clock on a database that ran on a
// virtual clock exits 2 naming the flag, instead of switching to real time.
func TestMarketServeRefusesRealClockOnVirtualDatabase(t *testing.T) {
	ctx := t.Context()
	dsn := dbtest.DSN(t, "sqlite")
	d, err := db.Open(ctx, dsn)
	if err != nil {
		t.Fatal(err)
	}
	m := newVirtualMarket(t, d)
	if err := m.LoadClock(ctx); err != nil {
		t.Fatal(err)
	}
	d.Close()
	env := map[string]string{"SOUK_MARKET_ADMIN_TOKEN": "serve-token", "SOUK_MARKET_DB": dsn, "SOUK_MARKET_ADDR": "127.0.0.1:0"}
	var out, errOut lockedbuf.Buffer
	sctx, cancel := context.WithTimeout(ctx, 10*time.Second) // a serve that starts anyway stops here
	defer cancel()
	code := runMarket(sctx, &App{Stdout: &out, Stderr: &errOut, Getenv: func(k string) string { return env[k] }}, []string{"serve", "--log-level", "error"})
	if code != 2 || !strings.Contains(errOut.String(), "--virtual-clock") || !strings.Contains(errOut.String(), "2026-03-02T00:00:00Z") {
		t.Fatalf("serve exited %d:\n%s", code, errOut.String())
	}
}
