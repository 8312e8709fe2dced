package marketcat_test

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/soukhq/souk/clock"
	"github.com/soukhq/souk/db/dbtest"
	"github.com/soukhq/souk/market"
	"github.com/soukhq/souk/market/buyer"
	"github.com/soukhq/souk/market/buyer/buyertest"
	"github.com/soukhq/souk/market/buyer/marketcat"
	"github.com/soukhq/souk/market/idp"
)

func TestCatalogResolvesPurchasedApps(t *testing.T) {
	for _, backend := range dbtest.Backends() {
		t.Run(backend, func(t *testing.T) {
			ctx := context.Background()
			d := dbtest.Open(t, backend)
			clk := clock.NewVirtual(time.Date(2026, 3, 2, 8, 0, 0, 0, time.UTC))
			m, err := market.New(market.Config{DB: d, Clock: clk, WireClock: clk, CallTimeout: 2 * time.Second})
			if err != nil {
				t.Fatal(err)
			}
			if err := m.Migrate(ctx); err != nil {
				t.Fatal(err)
			}
			if err := buyer.Migrate(ctx, d); err != nil {
				t.Fatal(err)
			}
			mer := buyertest.NewMerchant(t, clk, "kit-key-seller-1")
			must := func(err error) {
				t.Helper()
				if err != nil {
					t.Fatal(err)
				}
			}
			_, err = m.CreateSeller(ctx, "seller-1", "ISV One")
			must(err)
			_, err = m.SetAccessKey(ctx, "seller-1", market.KeyBasic, "basic-key-seller-1")
			must(err)
			addr, err := m.AddAddress(ctx, "seller-1", mer.URL+"/saas")
			must(err)
			addr, err = m.VerifyAddress(ctx, addr.ID)
			must(err)
			if !addr.Verified {
				t.Fatalf("address: %s", addr.VerifyNote)
			}
			_, err = m.CreateProduct(ctx, market.ProductInput{ID: "prod-joint", SellerID: "seller-1", Name: "Joint app", AddressID: addr.ID,
				Plans: []market.Plan{{ProductCode: "J-MONTH", SKUCode: "std", ChargingMode: market.ModePeriod, PeriodType: "month", PriceCents: 1000}}})
			must(err)
			_, err = m.CreateCustomer(ctx, market.Customer{ID: "cust-1", Name: "Buyer One"})
			must(err)
			o, err := m.Buy(ctx, market.BuyInput{CustomerID: "cust-1", ProductCode: "J-MONTH", PeriodNumber: 1})
			must(err)
			if _, err := m.RunDue(ctx); err != nil {
				t.Fatal(err)
			}
			sub, err := m.GetSubscription(ctx, o.SubscriptionID)
			must(err)
			if sub.Status != "ACTIVE" || sub.InstanceID == "" {
				t.Fatalf("subscription %+v", sub)
			}

			cat := marketcat.Catalog{Market: m}
			center, err := buyer.New(buyer.Config{DB: d, Clock: clk, WireClock: clk, Catalog: cat, DomainName: "https://market.example.test",
				Password: idp.PasswordParams{Memory: 64, Time: 1, Threads: 1, SaltLen: 16, KeyLen: 32}})
			must(err)
			for name, id := range map[string]string{"unknown instance": "nope", "empty": ""} {
				if _, err := cat.App(ctx, id); !errors.Is(err, buyer.ErrNoApp) {
					t.Errorf("%s: %v, want ErrNoApp", name, err)
				}
			}
			if _, err := cat.App(ctx, sub.InstanceID); !errors.Is(err, buyer.ErrNoApp) {
				t.Errorf("a product without app credential: %v, want ErrNoApp", err)
			}
			cred, err := center.SetAppCredential(ctx, buyer.AppCredential{ProductID: "prod-joint", SellerID: "seller-1", PublicKey: mer.PublicKey(t),
				LoginURLs: []string{"https://app.example.test/sso/callback"}})
			must(err)
			if _, err := cat.App(ctx, sub.InstanceID); err == nil || !strings.Contains(err.Error(), "kit key") {
				t.Errorf("a seller without kit key: %v", err)
			}
			_, err = m.SetAccessKey(ctx, "seller-1", market.KeyKit, "kit-key-seller-1")
			must(err)
			app, err := cat.App(ctx, sub.InstanceID)
			must(err)
			want := buyer.App{InstanceID: sub.InstanceID, OrderID: o.OrderID, SellerID: "seller-1", CustomerID: "cust-1", AppID: cred.AppID,
				Endpoint: mer.URL + "/saas", KitKey: "kit-key-seller-1", PublicKey: cred.PublicKey, RedirectURIs: cred.LoginURLs}
			if app.InstanceID != want.InstanceID || app.OrderID != want.OrderID || app.SellerID != want.SellerID || app.CustomerID != want.CustomerID ||
				app.AppID != want.AppID || app.Endpoint != want.Endpoint || app.KitKey != want.KitKey || app.PublicKey != want.PublicKey ||
				len(app.RedirectURIs) != 1 || app.TestFlag {
				t.Fatalf("app\n got %+v\nwant %+v", app, want)
			}

			// Binding through the market: the kit calls reach the production address, signed with the kit key.
			ent, err := center.CreateEnterprise(ctx, buyer.EnterpriseInput{Name: "Buyer One Ltd", CustomerID: "cust-1"})
			must(err)
			_, msgs, err := center.BindApp(ctx, ent.ID, sub.InstanceID)
			must(err)
			for _, msg := range msgs {
				if msg.State != buyer.StateSucceeded {
					t.Errorf("%s: %s %s", msg.Interface, msg.State, msg.LastError)
				}
			}
			var kitCalls int
			for _, c := range mer.Calls() {
				if c.SignErr != nil {
					t.Errorf("%s: %v", c.Interface, c.SignErr)
				}
				kitCalls++
			}
			if kitCalls != 3 {
				t.Errorf("kit calls %d, want 3", kitCalls)
			}
			// The seller's debugging calls resolve the product the same way.
			papp, err := cat.Product(ctx, "prod-joint")
			must(err)
			if papp.InstanceID != "" || papp.Endpoint != want.Endpoint || papp.KitKey != want.KitKey || papp.AppID != want.AppID || !papp.TestFlag {
				t.Errorf("product app %+v", papp)
			}
			if _, err := cat.Product(ctx, "no-such-product"); !errors.Is(err, buyer.ErrNoApp) {
				t.Errorf("unknown product: %v", err)
			}
			_, dmsgs, err := center.DebugAppCredential(ctx, "seller-1", "prod-joint", buyer.DebugInput{TestAccount: true})
			must(err)
			for _, msg := range dmsgs {
				if msg.State != buyer.StateSucceeded {
					t.Errorf("debug %s: %s %s", msg.Interface, msg.State, msg.LastError)
				}
			}
			if kitCalls = len(mer.Calls()); kitCalls != 7 {
				t.Errorf("kit calls %d, want 7", kitCalls)
			}
			// Another customer's enterprise cannot bind it.
			other, err := center.CreateEnterprise(ctx, buyer.EnterpriseInput{Name: "Other", CustomerID: "cust-2"})
			must(err)
			if _, _, err := center.BindApp(ctx, other.ID, sub.InstanceID); err == nil {
				t.Error("another customer bound the instance")
			}
		})
	}
}

// TestMountOnMarketRouter checks the wiring docs/joint-operation.md gives the
// market server: no pattern conflicts, the IdP public, the APIs behind the
// admin token.
func TestMountOnMarketRouter(t *testing.T) {
	for _, backend := range dbtest.Backends() {
		t.Run(backend, func(t *testing.T) { testMount(t, backend) })
	}
}

func testMount(t *testing.T, backend string) {
	ctx := context.Background()
	d := dbtest.Open(t, backend)
	clk := clock.NewVirtual(time.Date(2026, 3, 2, 8, 0, 0, 0, time.UTC))
	m, err := market.New(market.Config{DB: d, Clock: clk})
	if err != nil {
		t.Fatal(err)
	}
	if err := m.Migrate(ctx); err != nil {
		t.Fatal(err)
	}
	if err := buyer.Migrate(ctx, d); err != nil {
		t.Fatal(err)
	}
	if err := idp.Migrate(ctx, d); err != nil {
		t.Fatal(err)
	}
	center, err := buyer.New(buyer.Config{DB: d, Clock: m.Clock(), WireClock: m.WireClock(), Catalog: marketcat.Catalog{Market: m},
		DomainName: "https://market.example.test"})
	if err != nil {
		t.Fatal(err)
	}
	idpSrv, err := idp.New(idp.Config{DB: d, Clock: m.Clock(), Directory: center.Directory(), Password: idp.PasswordParams{Memory: 64, Time: 1, Threads: 1, SaltLen: 16, KeyLen: 32}})
	if err != nil {
		t.Fatal(err)
	}
	const token = "admin-token"
	rt := m.Handler(token)
	rt.Handle("/api/v1/buyer/", rt.Admin(http.StripPrefix("/api/v1/buyer", center.Handler()).ServeHTTP))
	rt.Handle("/api/v1/joint/", rt.Admin(http.StripPrefix("/api/v1/joint", center.SellerHandler()).ServeHTTP))
	h := idpSrv.Handler()
	rt.Handle("/api/v1/oauth2/", h)
	rt.Handle("/api/v1/logout", h)
	rt.Handle("/unified-login/", h)
	srv := httptest.NewServer(rt)
	defer srv.Close()

	do := func(method, path, auth, body string) int {
		req, _ := http.NewRequest(method, srv.URL+path, strings.NewReader(body))
		if auth != "" {
			req.Header.Set("Authorization", "Bearer "+auth)
		}
		req.Header.Set("Content-Type", "application/json")
		resp, err := (&http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}).Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	for _, tc := range []struct {
		method, path, auth, body string
		want                     int
	}{
		{"POST", "/api/v1/buyer/enterprises", "", `{"name":"x"}`, http.StatusUnauthorized},
		{"POST", "/api/v1/buyer/enterprises", token, `{"name":"Acme"}`, http.StatusCreated},
		{"GET", "/api/v1/joint/sellers/s1/kit-messages", token, "", http.StatusOK},
		{"GET", "/api/v1/oauth2/userinfo", "", "", http.StatusUnauthorized},
		{"POST", "/api/v1/oauth2/token", "", "grant_type=authorization_code", http.StatusUnauthorized},
		{"GET", "/unified-login/", "", "", http.StatusOK},
		{"GET", "/api/v1/logout", "", "", http.StatusFound},
		{"GET", "/healthz", "", "", http.StatusOK},
	} {
		if got := do(tc.method, tc.path, tc.auth, tc.body); got != tc.want {
			t.Errorf("%s %s: %d, want %d", tc.method, tc.path, got, tc.want)
		}
	}
}
