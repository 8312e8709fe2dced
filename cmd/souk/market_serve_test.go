package main

import (
	"context"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/soukhq/souk/db/dbtest"
	"github.com/soukhq/souk/internal/lockedbuf"
)

// TestMarketServe runs `souk market serve` on both backends and checks that
// the whole wiring answers: core API, buyer center, seller tools, IdP, audit.
func TestMarketServe(t *testing.T) {
	for _, backend := range dbtest.Backends() {
		t.Run(backend, func(t *testing.T) {
			ln, err := net.Listen("tcp", "127.0.0.1:0")
			if err != nil {
				t.Fatal(err)
			}
			addr := ln.Addr().String()
			ln.Close()
			env := map[string]string{"SOUK_MARKET_ADMIN_TOKEN": "serve-token", "SOUK_MARKET_DB": dbtest.DSN(t, backend),
				"SOUK_MARKET_ADDR": addr, "SOUK_VIRTUAL_CLOCK": "2026-03-02T00:00:00Z", "SOUK_PUBLIC_URL": "https://market.example.test"}
			var out, errOut lockedbuf.Buffer
			ctx, cancel := context.WithCancel(t.Context())
			done := make(chan int, 1)
			go func() {
				done <- runMarket(ctx, &App{Stdout: &out, Stderr: &errOut, Getenv: func(k string) string { return env[k] }}, []string{"serve", "--log-level", "error"})
			}()
			base := "http://" + addr
			get := func(path, token string) int {
				req, _ := http.NewRequest("GET", base+path, nil)
				if token != "" {
					req.Header.Set("Authorization", "Bearer "+token)
				}
				resp, err := (&http.Client{Timeout: 5 * time.Second}).Do(req)
				if err != nil {
					return 0
				}
				resp.Body.Close()
				return resp.StatusCode
			}
			for deadline := time.Now().Add(20 * time.Second); get("/healthz", "") != 200; {
				if time.Now().After(deadline) {
					cancel()
					t.Fatalf("the market never answered:\n%s", errOut.String())
				}
				select {
				case code := <-done:
					t.Fatalf("serve exited %d:\n%s", code, errOut.String())
				case <-time.After(50 * time.Millisecond):
				}
			}
			for path, want := range map[string]int{
				"/api/v1/sellers": 200, "/api/v1/buyer/enterprises": 200, "/api/v1/sellertools/dialtests/schedule": 200,
				"/api/v1/catalog": 200, "/unified-login/": 200, "/api/v1/audit": 200,
			} {
				if got := get(path, "serve-token"); got != want {
					t.Errorf("GET %s: %d, want %d", path, got, want)
				}
			}
			if got := get("/api/v1/buyer/enterprises", ""); got != 401 {
				t.Errorf("buyer center without token: %d", got)
			}
			cancel()
			select {
			case code := <-done:
				if code != 0 {
					t.Errorf("serve exited %d:\n%s", code, errOut.String())
				}
			case <-time.After(20 * time.Second):
				t.Fatal("serve did not stop")
			}
			if s := errOut.String(); !strings.Contains(s, "public-url") || !strings.Contains(s, "https://market.example.test") || strings.Contains(s, "serve-token") {
				t.Errorf("configuration print:\n%s", s)
			}
		})
	}
}

// souk market serve prints its --market-db with the password masked (it
// printed the DSN whole).
func TestMarketServePrintsRedactedDSN(t *testing.T) {
	a, _, errb := testApp(map[string]string{"SOUK_MARKET_ADMIN_TOKEN": "t", "SOUK_MARKET_DB": "postgres://u:pw5678@127.0.0.1:1/x?connect_timeout=1"})
	if code := runMarket(t.Context(), a, []string{"serve"}); code == 0 {
		t.Fatal("serve on an unreachable database exited 0")
	}
	if s := errb.String(); strings.Contains(s, "pw5678") || !strings.Contains(s, "postgres://u:xxxxx@127.0.0.1:1/x") {
		t.Fatalf("output:\n%s", s)
	}
}
