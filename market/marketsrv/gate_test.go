package marketsrv_test

import (
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/soukhq/souk/db/dbtest"
	"github.com/soukhq/souk/market"
)

// fakeMerchant answers every production-interface call with success (no
// Body-Sign; the market verifies it only when present).
func fakeMerchant(t *testing.T) *httptest.Server {
	var n atomic.Int64
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		var req struct {
			Activity string `json:"activity"`
		}
		_ = json.Unmarshal(b, &req)
		out := map[string]any{"resultCode": "000000", "resultMsg": "ok"}
		if req.Activity == "newInstance" {
			out["instanceId"] = "inst-" + string(rune('a'+n.Add(1)))
		}
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(out)
	}))
	t.Cleanup(srv.Close)
	return srv
}

// setupProducts creates a seller with a verified address, three monthly
// products and a customer.
func (e *env) setupProducts() {
	e.t.Helper()
	must := func(err error) {
		e.t.Helper()
		if err != nil {
			e.t.Fatal(err)
		}
	}
	mer := fakeMerchant(e.t)
	_, err := e.m.CreateSeller(e.ctx, "seller-1", "ISV One")
	must(err)
	_, err = e.m.SetAccessKey(e.ctx, "seller-1", market.KeyBasic, "basic-key-seller-1")
	must(err)
	addr, err := e.m.AddAddress(e.ctx, "seller-1", mer.URL+"/saas")
	must(err)
	if addr, err = e.m.VerifyAddress(e.ctx, addr.ID); err != nil || !addr.Verified {
		e.t.Fatalf("verify: %v %+v", err, addr)
	}
	for _, id := range []string{"open", "frozen", "offsale"} {
		_, err = e.m.CreateProduct(e.ctx, market.ProductInput{ID: "prod-" + id, SellerID: "seller-1", Name: id, AddressID: addr.ID,
			Plans: []market.Plan{{ProductCode: "P-" + strings.ToUpper(id), SKUCode: "std-" + id, ChargingMode: market.ModePeriod, PeriodType: "month", PriceCents: 1000}}})
		must(err)
	}
	_, err = e.m.CreateCustomer(e.ctx, market.Customer{ID: "cust-1", Name: "Buyer One"})
	must(err)
}

func (e *env) setListing(productID, status string) {
	e.t.Helper()
	if _, err := e.m.DB().Exec(e.ctx, `INSERT INTO sellertools_listings (product_id, seller_id, status, updated_at) VALUES ($1, 'seller-1', $2, 1)
		ON CONFLICT (product_id) DO UPDATE SET status = excluded.status`, productID, status); err != nil {
		e.t.Fatal(err)
	}
}

func TestProductGate(t *testing.T) {
	for _, backend := range dbtest.Backends() {
		t.Run(backend, func(t *testing.T) {
			e := newEnv(t, backend)
			e.setupProducts()
			// A subscription bought while the product was on sale.
			o, err := e.m.Buy(e.ctx, market.BuyInput{CustomerID: "cust-1", ProductCode: "P-FROZEN", PeriodNumber: 1})
			if err != nil {
				t.Fatal(err)
			}
			if _, err := e.m.RunDue(e.ctx); err != nil {
				t.Fatal(err)
			}
			e.setListing("prod-frozen", "frozen")
			e.setListing("prod-offsale", "off_sale")

			for code, want := range map[string]string{"P-FROZEN": "prod-frozen is frozen", "P-OFFSALE": "prod-offsale is off sale"} {
				_, err := e.m.Buy(e.ctx, market.BuyInput{CustomerID: "cust-1", ProductCode: code, PeriodNumber: 1})
				var me *market.Error
				if err == nil || !strings.Contains(err.Error(), want) || !errorsAs(err, &me) || me.Status != http.StatusUnprocessableEntity || me.Field != "productId" {
					t.Errorf("buy %s: %v, want a 422 naming the product (%q)", code, err, want)
				}
				if _, err := e.m.Buy(e.ctx, market.BuyInput{CustomerID: "cust-1", ProductCode: code, Trial: true}); err == nil {
					t.Errorf("trial of %s accepted", code)
				}
			}
			// Over the API too.
			status, body := e.do("POST", "/api/v1/orders", token, `{"customerId":"cust-1","productId":"P-FROZEN","periodNumber":1}`)
			if status != http.StatusUnprocessableEntity || !strings.Contains(body, "prod-frozen") {
				t.Errorf("API buy of a frozen product: %d %s", status, body)
			}
			if _, err := e.m.Buy(e.ctx, market.BuyInput{CustomerID: "cust-1", ProductCode: "P-OPEN", PeriodNumber: 1}); err != nil {
				t.Errorf("buy of a product on sale: %v", err)
			}
			// The buyer catalog hides them; the seller's list does not.
			cat, err := e.m.Catalog(e.ctx)
			if err != nil {
				t.Fatal(err)
			}
			if len(cat) != 1 || cat[0].ID != "prod-open" {
				t.Errorf("catalog %+v, want only prod-open", cat)
			}
			if _, body := e.do("GET", "/api/v1/catalog", token, ""); strings.Contains(body, "prod-frozen") || !strings.Contains(body, "prod-open") {
				t.Errorf("API catalog %s", body)
			}
			all, _ := e.m.ListProducts(e.ctx, "")
			if len(all) != 3 {
				t.Errorf("products %d, want 3", len(all))
			}
			// Existing subscriptions of a frozen product may still be renewed.
			if _, err := e.m.Renew(e.ctx, market.RenewInput{SubscriptionID: o.SubscriptionID, PeriodNumber: 1}); err != nil {
				t.Errorf("renewal of a frozen product's subscription: %v", err)
			}
			// Back on sale: purchasable again.
			e.setListing("prod-frozen", "on_sale")
			if _, err := e.m.Buy(e.ctx, market.BuyInput{CustomerID: "cust-1", ProductCode: "P-FROZEN", PeriodNumber: 1}); err != nil {
				t.Errorf("buy after unfreeze: %v", err)
			}
		})
	}
}

func errorsAs(err error, target **market.Error) bool { return errors.As(err, target) }
