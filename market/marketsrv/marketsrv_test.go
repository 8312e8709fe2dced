package marketsrv_test

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/soukhq/souk/clock"
	"github.com/soukhq/souk/db/dbtest"
	"github.com/soukhq/souk/market"
	"github.com/soukhq/souk/market/idp"
	"github.com/soukhq/souk/market/marketsrv"
)

const token = "admin-token"

type env struct {
	t   *testing.T
	ctx context.Context
	clk *clock.Virtual
	m   *market.Market
	s   *marketsrv.Server
	srv *httptest.Server
}

func newEnv(t *testing.T, backend string) *env {
	t.Helper()
	ctx := t.Context()
	d := dbtest.Open(t, backend)
	clk := clock.NewVirtual(time.Date(2026, 3, 2, 8, 0, 0, 0, time.UTC))
	m, err := market.New(market.Config{DB: d, Clock: clk, WireClock: clk, CallTimeout: 3 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	if err := m.Migrate(ctx); err != nil {
		t.Fatal(err)
	}
	s, err := marketsrv.Install(ctx, m, marketsrv.Options{AdminToken: token, PublicURL: "https://market.example.test/",
		Password: idp.PasswordParams{Memory: 64, Time: 1, Threads: 1, SaltLen: 16, KeyLen: 32}})
	if err != nil {
		t.Fatal(err)
	}
	s.Start(ctx)
	srv := httptest.NewServer(s.Handler())
	t.Cleanup(srv.Close)
	return &env{t: t, ctx: ctx, clk: clk, m: m, s: s, srv: srv}
}

func (e *env) do(method, path, auth, body string) (int, string) {
	e.t.Helper()
	req, _ := http.NewRequest(method, e.srv.URL+path, strings.NewReader(body))
	if auth != "" {
		req.Header.Set("Authorization", "Bearer "+auth)
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := (&http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}).Do(req)
	if err != nil {
		e.t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

func TestInstallMounts(t *testing.T) {
	for _, backend := range dbtest.Backends() {
		t.Run(backend, func(t *testing.T) {
			e := newEnv(t, backend)
			for _, tc := range []struct {
				method, path, auth, body string
				want                     int
			}{
				{"POST", "/api/v1/buyer/enterprises", "", `{"name":"x"}`, http.StatusUnauthorized},
				{"POST", "/api/v1/buyer/enterprises", token, `{"name":"Acme"}`, http.StatusCreated},
				{"GET", "/api/v1/buyer/enterprises", token, "", http.StatusOK},
				{"GET", "/api/v1/joint/sellers/s1/kit-messages", token, "", http.StatusOK},
				{"GET", "/api/v1/joint/sellers/s1/kit-messages", "", "", http.StatusUnauthorized},
				{"GET", "/api/v1/sellertools/dialtests/schedule", token, "", http.StatusOK},
				{"GET", "/api/v1/sellertools/dialtests/schedule", "", "", http.StatusUnauthorized},
				{"GET", "/api/v1/catalog", token, "", http.StatusOK},
				{"GET", "/api/v1/oauth2/userinfo", "", "", http.StatusUnauthorized},
				{"POST", "/api/v1/oauth2/token", "", "grant_type=authorization_code", http.StatusUnauthorized},
				{"GET", "/unified-login/", "", "", http.StatusOK},
				{"GET", "/api/v1/logout", "", "", http.StatusFound},
				{"GET", "/healthz", "", "", http.StatusOK},
			} {
				if got, body := e.do(tc.method, tc.path, tc.auth, tc.body); got != tc.want {
					t.Errorf("%s %s: %d, want %d\n%s", tc.method, tc.path, got, tc.want, body)
				}
			}
		})
	}
}

func TestCheckPublicURL(t *testing.T) {
	for in, want := range map[string]string{
		"http://127.0.0.1:8090":         "http://127.0.0.1:8090",
		"https://market.example.test/":  "https://market.example.test",
		"ftp://x":                       "",
		"market.example.test":           "",
		"https://market.example.test/a": "",
		"https://u:p@market.example":    "",
	} {
		got, err := marketsrv.CheckPublicURL(in)
		if (err != nil) != (want == "") || got != want {
			t.Errorf("%q: %q %v, want %q", in, got, err, want)
		}
	}
}
