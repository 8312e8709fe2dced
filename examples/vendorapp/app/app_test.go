package app

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/soukhq/souk/clock"
	"github.com/soukhq/souk/db"
	"github.com/soukhq/souk/db/dbtest"
	"github.com/soukhq/souk/kg"
	"github.com/soukhq/souk/merchant"
	"github.com/soukhq/souk/merchant/handoff"
)

const (
	key    = "TestAccessKey123"
	secret = "whsec_vendor"
	admin  = "admin-token"
	ak, sk = "AK1", "SK1"
)

// queryOrder is a minimal Query Order endpoint checking the APIG signature.
func queryOrder(t *testing.T) *httptest.Server {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if _, err := kg.VerifyAPIG(r, nil, func(a string) (string, bool) { return sk, a == ak }, time.Now(), kg.DefaultAPIGWindow); err != nil {
			w.WriteHeader(http.StatusUnauthorized)
			_, _ = io.WriteString(w, `{"resultCode":"MKT.0154","resultMsg":"auth"}`)
			return
		}
		id, line := r.URL.Query().Get("orderId"), r.URL.Query().Get("orderLineId")
		fmt.Fprintf(w, `{"resultCode":"MKT.0000","resultMsg":"Success","orderInfo":{"orderId":%q,"orderType":"NEW","orderLine":[{"orderLineId":%q,"chargingMode":"PERIOD","productInfo":[{"productId":"p1","skuCode":"basic"}]}]}}`, id, line)
	}))
	t.Cleanup(srv.Close)
	return srv
}

type kgAnswer struct {
	ResultCode string            `json:"resultCode"`
	ResultMsg  string            `json:"resultMsg"`
	InstanceID string            `json:"instanceId"`
	Info       []kg.InstanceInfo `json:"info"`
}

func call(t *testing.T, base string, body string) kgAnswer {
	t.Helper()
	u, err := kg.SignedURL(base+"/koogallery", key, []byte(body), time.Now(), fmt.Sprint(time.Now().UnixNano()))
	if err != nil {
		t.Fatal(err)
	}
	resp, err := http.Post(u, "application/json", strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var a kgAnswer
	if err := json.NewDecoder(resp.Body).Decode(&a); err != nil {
		t.Fatal(err)
	}
	return a
}

// end to end: souk merchant ↔ this vendor app, sync and async, both backends.
func TestVendorAppEndToEnd(t *testing.T) {
	for _, backend := range dbtest.Backends() {
		for _, async := range []bool{false, true} {
			t.Run(fmt.Sprintf("%s/async=%v", backend, async), func(t *testing.T) {
				ctx := context.Background()
				app, m, d, soukURL := startPair(t, backend, Config{Async: async})
				rctx, cancel := context.WithCancel(ctx)
				done := make(chan error, 1)
				go func() { done <- m.Run(rctx) }()
				t.Cleanup(func() { cancel(); <-done; _ = m.Close() })

				r := call(t, soukURL, `{"activity":"newInstance","orderId":"E2E1","orderLineId":"E2E1-000001","businessId":"biz-e2e"}`)
				want := kg.CodeSuccess
				if async {
					want = kg.CodeInProgress
				}
				if r.ResultCode != want || r.InstanceID != "biz-e2e" {
					t.Fatalf("newInstance: %+v, want %s", r, want)
				}
				var q kgAnswer
				deadline := time.Now().Add(10 * time.Second)
				for time.Now().Before(deadline) {
					q = call(t, soukURL, `{"activity":"queryInstance","instanceId":"biz-e2e"}`)
					if q.ResultCode == kg.CodeSuccess {
						break
					}
					time.Sleep(50 * time.Millisecond)
				}
				app.Wait()
				if q.ResultCode != kg.CodeSuccess || !strings.HasSuffix(q.Info[0].AppInfo.FrontEndURL, "/t/biz-e2e") || q.Info[0].AppInfo.Password == "" {
					t.Fatalf("queryInstance: %+v", q)
				}
				// Lifecycle events reach the app (delivered by the running job runner).
				if r := call(t, soukURL, `{"activity":"updateInstanceStatus","instanceId":"biz-e2e","status":"FREEZE"}`); r.ResultCode != kg.CodeSuccess {
					t.Fatalf("freeze: %+v", r)
				}
				deadline = time.Now().Add(10 * time.Second)
				for app.Tenant("biz-e2e") != "frozen" && time.Now().Before(deadline) {
					time.Sleep(20 * time.Millisecond)
				}
				if app.Tenant("biz-e2e") != "frozen" {
					t.Fatal("the app never saw instance.frozen")
				}
				// Change checks are answered synchronously by the app.
				if r := call(t, soukURL, `{"activity":"changeInstanceCheck","instanceId":"biz-e2e","productInfo":{"productId":"p1","skuCode":"tiny"}}`); r.ResultCode != "000100" {
					t.Fatalf("refused change: %+v", r)
				}
				if r := call(t, soukURL, `{"activity":"changeInstanceCheck","instanceId":"biz-e2e","productInfo":{"productId":"p1","skuCode":"large"}}`); r.ResultCode != kg.CodeSuccess {
					t.Fatalf("allowed change: %+v", r)
				}
				evs, err := handoff.List(ctx, d, handoff.Filter{})
				if err != nil {
					t.Fatal(err)
				}
				for _, ev := range evs {
					if ev.State == handoff.StateDead {
						t.Fatalf("dead event %+v", ev)
					}
				}
			})
		}
	}
}

func TestVerifyRejectsForgeries(t *testing.T) {
	app := NewApp(Config{Secret: secret}, slog.New(slog.DiscardHandler))
	srv := httptest.NewServer(app)
	defer srv.Close()
	body := []byte(`{"id":"evt_1","type":"instance.created","subject":"i1","data":{}}`)
	post := func(sig string) int {
		req, _ := http.NewRequest(http.MethodPost, srv.URL+"/webhook", bytes.NewReader(body))
		req.Header.Set("Souk-Signature", sig)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	now := time.Now()
	cases := map[string]struct {
		sig  string
		want int
	}{
		"valid":        {handoff.Sign(secret, now, body), 200},
		"wrong secret": {handoff.Sign("other", now, body), 401},
		"stale":        {handoff.Sign(secret, now.Add(-time.Hour), body), 401},
		"missing":      {"", 401},
		// souk rotating its secret signs with both, in either order.
		"ours first of two":  {handoff.SignAll([]string{secret, "next"}, now, body), 200},
		"ours second of two": {handoff.SignAll([]string{"next", secret}, now, body), 200},
		"neither of two":     {handoff.SignAll([]string{"next", "other"}, now, body), 401},
	}
	for name, c := range cases {
		if got := post(c.sig); got != c.want {
			t.Errorf("%s: HTTP %d, want %d", name, got, c.want)
		}
	}
}

// With Refuse the app refuses the creates of a SKU: in its answer, or with
// Async through souk's failure API; souk answers the code to newInstance
// (Query Order above gives SKU "basic").
func TestVendorAppRefusesASKU(t *testing.T) {
	for _, backend := range dbtest.Backends() {
		for _, async := range []bool{false, true} {
			t.Run(fmt.Sprintf("%s/async=%v", backend, async), func(t *testing.T) {
				app, m, _, soukURL := startPair(t, backend, Config{Async: async, Refuse: map[string]string{"basic": kg.CodeSoldOut}})
				t.Cleanup(func() { _ = m.Close() })

				body := `{"activity":"newInstance","orderId":"REF1","orderLineId":"REF1-000001","businessId":"biz-ref"}`
				r := call(t, soukURL, body)
				if async && r.ResultCode == kg.CodeInProgress {
					app.Wait() // the refusal went through the API meanwhile; the marketplace retries
					r = call(t, soukURL, strings.Replace(body, "biz-ref", "biz-ref-2", 1))
				}
				if r.ResultCode != kg.CodeSoldOut || r.InstanceID != "biz-ref" {
					t.Fatalf("newInstance of a refused SKU: %+v", r)
				}
				if q := call(t, soukURL, `{"activity":"queryInstance","instanceId":"biz-ref"}`); q.ResultCode != kg.CodeSoldOut {
					t.Fatalf("queryInstance of a refused create: %+v", q)
				}
				if app.Tenant("biz-ref") != "refused" {
					t.Fatalf("tenant %q", app.Tenant("biz-ref"))
				}
			})
		}
	}
}

// startPair starts this vendor app (cfg, with the test's secret and admin
// token) and a souk merchant handing off to it, on a fresh database of
// backend; it returns the app, the merchant (not running its jobs), its
// database and its URL.
func startPair(t *testing.T, backend string, cfg Config) (*App, *merchant.Merchant, *db.DB, string) {
	t.Helper()
	d := dbtest.Open(t, backend)
	if err := merchant.Migrate(context.Background(), d); err != nil {
		t.Fatal(err)
	}
	log := slog.New(slog.DiscardHandler)
	cfg.Secret, cfg.AdminToken, cfg.AsyncDelay = secret, admin, 50*time.Millisecond
	app := NewApp(cfg, log)
	vendor := httptest.NewServer(app)
	t.Cleanup(vendor.Close)
	m, err := merchant.New(merchant.Config{
		AccessKeys: []string{key}, MarketURL: queryOrder(t).URL, MarketAK: ak, MarketSK: sk,
		WebhookURL: vendor.URL + "/webhook", WebhookSecret: secret, AdminToken: admin, Budget: time.Second,
	}, merchant.Deps{DB: d, Clock: clock.Real{}, Logger: log})
	if err != nil {
		t.Fatal(err)
	}
	souk := httptest.NewServer(m.Handler())
	t.Cleanup(souk.Close)
	app.SetSoukURL(souk.URL)
	return app, m, d, souk.URL
}
