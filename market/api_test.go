package market

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/soukhq/souk/clock"
	"github.com/soukhq/souk/db/dbtest"
)

func (e *env) apiCall(method, path, token string, in any) (int, map[string]any, []any) {
	e.t.Helper()
	var body io.Reader
	if s, ok := in.(string); ok {
		body = strings.NewReader(s)
	} else if in != nil {
		b, _ := json.Marshal(in)
		body = bytes.NewReader(b)
	}
	req, _ := http.NewRequest(method, e.api.URL+path, body)
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		e.t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	var obj map[string]any
	var arr []any
	if json.Unmarshal(b, &obj) != nil {
		_ = json.Unmarshal(b, &arr)
	}
	return resp.StatusCode, obj, arr
}

func TestAdminAPI(t *testing.T) {
	forBackends(t, func(t *testing.T, b string) {
		e := newEnv(t, b)
		if st, _, _ := e.apiCall("GET", "/api/v1/sellers", "", nil); st != 401 {
			t.Fatalf("no token: %d", st)
		}
		if st, _, _ := e.apiCall("GET", "/api/v1/sellers", "wrong", nil); st != 401 {
			t.Fatalf("wrong token: %d", st)
		}
		st, obj, _ := e.apiCall("POST", "/api/v1/customers", testToken, map[string]any{"name": "HTTP Buyer", "email": "h@example.com"})
		if st != 201 || obj["id"] == "" {
			t.Fatalf("create customer: %d %v", st, obj)
		}
		cust := obj["id"].(string)
		// Errors name the field.
		for _, c := range []struct {
			path  string
			in    any
			field string
		}{
			{"/api/v1/customers", map[string]any{"name": 5}, "name"},
			{"/api/v1/customers", map[string]any{"name": "x", "colour": "red"}, "colour"},
			{"/api/v1/orders", map[string]any{"customerId": cust, "productId": "nope"}, "productId"},
			{"/api/v1/orders", map[string]any{"customerId": cust, "productId": "P-BASIC-MONTH", "periodNumber": 0}, "periodNumber"},
			{"/api/v1/orders", map[string]any{"customerId": "ghost", "productId": "P-BASIC-MONTH", "periodNumber": 1}, "customerId"},
			{"/api/v1/clock/advance", map[string]any{"duration": "soon"}, "duration"},
		} {
			st, obj, _ := e.apiCall("POST", c.path, testToken, c.in)
			if st != 400 || obj["field"] != c.field {
				t.Errorf("POST %s %v: %d %v, want 400 naming %s", c.path, c.in, st, obj, c.field)
			}
		}
		// Buy, look, advance the clock, all through HTTP.
		st, obj, _ = e.apiCall("POST", "/api/v1/orders", testToken, map[string]any{"customerId": cust, "productId": "P-BASIC-MONTH",
			"periodNumber": 1, "idempotencyKey": "k-1"})
		if st != 201 || obj["orderType"] != "NEW" {
			t.Fatalf("buy: %d %v", st, obj)
		}
		orderID := obj["orderId"].(string)
		_, again, _ := e.apiCall("POST", "/api/v1/orders", testToken, map[string]any{"customerId": cust, "productId": "P-BASIC-MONTH",
			"periodNumber": 1, "idempotencyKey": "k-1"})
		if again["orderId"] != orderID {
			t.Fatalf("idempotent buy gave %v, want %s", again["orderId"], orderID)
		}
		e.settle()
		sub := obj["subscriptionId"].(string)
		st, res, _ := e.apiCall("GET", "/api/v1/subscriptions/"+sub+"/resource", testToken, nil)
		inst, _ := res["instance"].(map[string]any)
		if st != 200 || inst == nil {
			t.Fatalf("resource: %d %v", st, res)
		}
		st, adv, _ := e.apiCall("POST", "/api/v1/clock/advance", testToken, map[string]any{"duration": "32d"})
		if st != 200 || adv["runs"].(float64) < 1 {
			t.Fatalf("advance: %d %v", st, adv)
		}
		_, s, _ := e.apiCall("GET", "/api/v1/subscriptions/"+sub, testToken, nil)
		if s["status"] != SubFrozen {
			t.Fatalf("after 32 days: %v", s)
		}
		st, _, msgs := e.apiCall("GET", "/api/v1/messages?subscriptionId="+sub, testToken, nil)
		if st != 200 || len(msgs) < 2 {
			t.Fatalf("messages: %d %v", st, msgs)
		}
		id := int(msgs[0].(map[string]any)["id"].(float64))
		st, one, _ := e.apiCall("GET", fmt.Sprintf("/api/v1/messages/%d", id), testToken, nil)
		if st != 200 || len(one["attemptLog"].([]any)) != 1 {
			t.Fatalf("message: %d %v", st, one)
		}
		if st, obj, _ := e.apiCall("POST", fmt.Sprintf("/api/v1/messages/%d/restart", id), testToken, nil); st != 409 {
			t.Fatalf("restart of a delivered message: %d %v", st, obj)
		}
		// Any activity/body can be sent through the dispatcher.
		st, call, _ := e.apiCall("POST", "/api/v1/messages", testToken, map[string]any{"sellerId": e.seller, "url": e.fmURL, "sync": true,
			"body": json.RawMessage(`{"activity":"queryInstance","instanceId":"x","testFlag":"1"}`)})
		if st != 201 || call["resultCode"] != "000003" {
			t.Fatalf("sync send: %d %v", st, call)
		}
		_, clk, _ := e.apiCall("GET", "/api/v1/clock", testToken, nil)
		if clk["virtual"] != true {
			t.Fatalf("clock: %v", clk)
		}
		// Extra handlers mount on the router, admin-wrapped or not.
		rt := e.m.Handler(testToken)
		rt.Handle("GET /api/v1/extra", rt.Admin(func(w http.ResponseWriter, r *http.Request) { _, _ = w.Write([]byte(`{"ok":true}`)) }))
		req, _ := http.NewRequest("GET", "/api/v1/extra", nil)
		rec := &recorder{header: http.Header{}}
		rt.ServeHTTP(rec, req)
		if rec.status != 401 {
			t.Fatalf("mounted admin handler without token: %d", rec.status)
		}
	})
}

type recorder struct {
	header http.Header
	status int
	body   bytes.Buffer
}

func (r *recorder) Header() http.Header { return r.header }
func (r *recorder) Write(b []byte) (int, error) {
	if r.status == 0 {
		r.status = 200
	}
	return r.body.Write(b)
}
func (r *recorder) WriteHeader(s int) { r.status = s }

func TestCatalogRules(t *testing.T) {
	forBackends(t, func(t *testing.T, b string) {
		e := newEnv(t, b)
		ctx := e.ctx
		// One key per type; a key value cannot serve two types.
		if _, err := e.m.SetAccessKey(ctx, e.seller, KeyKit, testKey); !isCode(err, "conflict") {
			t.Fatalf("reusing the basic key for kit: %v", err)
		}
		k1, err := e.m.SetAccessKey(ctx, e.seller, KeyKit, "")
		e.must(err)
		k2, err := e.m.SetAccessKey(ctx, e.seller, KeyKit, "")
		e.must(err)
		keys, err := e.m.ListAccessKeys(ctx, e.seller)
		e.must(err)
		var kit int
		for _, k := range keys {
			if k.Type == KeyKit {
				kit++
				if k.KeyID != k2.KeyID || k.Secret != "" {
					t.Fatalf("kit key = %+v (replaced %s)", k, k1.KeyID)
				}
			}
		}
		if kit != 1 {
			t.Fatalf("%d kit keys", kit)
		}
		if _, err := e.m.SetAccessKey(ctx, e.seller, "premium", ""); !isField(err, "type") {
			t.Fatalf("bad key type: %v", err)
		}
		// An unverified address cannot carry a product; a dead one fails verification.
		a, err := e.m.AddAddress(ctx, e.seller, "http://127.0.0.1:1/saas")
		e.must(err)
		a, err = e.m.VerifyAddress(ctx, a.ID)
		e.must(err)
		if a.Verified || a.VerifyNote == "" {
			t.Fatalf("dead address verified: %+v", a)
		}
		in := ProductInput{SellerID: e.seller, Name: "X", AddressID: a.ID, Plans: []Plan{{SKUCode: "s", ChargingMode: ModePeriod, PeriodType: "month"}}}
		if _, err := e.m.CreateProduct(ctx, in); !isField(err, "addressId") {
			t.Fatalf("product on an unverified address: %v", err)
		}
		good := e.product.AddressID
		for _, c := range []struct {
			mut   func(*ProductInput)
			field string
		}{
			{func(p *ProductInput) { p.Plans[0].ChargingMode = "WEEKLY" }, "plans[0].chargingMode"},
			{func(p *ProductInput) { p.Plans[0].PeriodType = "week" }, "plans[0].periodType"},
			{func(p *ProductInput) { p.Plans[0].ChargingMode, p.Plans[0].PeriodType = ModeOneTime, "month" }, "plans[0].periodType"},
			{func(p *ProductInput) { p.Plans[0].ProductCode = "P-BASIC-MONTH" }, "plans[0]"},
			{func(p *ProductInput) { p.EncryptType = "3" }, "encryptType"},
			{func(p *ProductInput) { p.Plans = nil }, "plans"},
			{func(p *ProductInput) { p.Plans[0].Linear = &Linear{Name: "u", Min: 5, Max: 1} }, "plans[0].linear"},
			{func(p *ProductInput) {
				p.TrialDays = 7
				p.Plans[0].ChargingMode, p.Plans[0].PeriodType, p.Plans[0].UnitPriceMicros = ModeOnDemand, "", 1
			}, "trialDays"},
			{func(p *ProductInput) { p.Plans[0].ChargingMode, p.Plans[0].PeriodType = ModeOnDemand, "" }, "plans[0].unitPriceMicros"},
		} {
			p := in
			p.AddressID = good
			p.Plans = []Plan{{SKUCode: "s", ChargingMode: ModePeriod, PeriodType: "month"}}
			c.mut(&p)
			if _, err := e.m.CreateProduct(ctx, p); !isField(err, c.field) {
				t.Errorf("want an error on %s, got %v", c.field, err)
			}
		}
		if _, err := e.m.CreateSeller(ctx, "seller-1", "dup"); !isCode(err, "conflict") {
			t.Fatalf("duplicate seller: %v", err)
		}
	})
}

// Credentials the merchant encrypts are decrypted for the buyer's view.
func TestResourceDecryptsCredentials(t *testing.T) {
	forBackends(t, func(t *testing.T, b string) {
		for _, enc := range []string{"1", "2"} {
			e := newEnv(t, b, func(p *ProductInput) { p.EncryptType = enc })
			e.fm.encrypt = enc
			_, s := e.buy(BuyInput{ProductCode: "P-BASIC-MONTH", PeriodNumber: 1})
			rs, err := e.m.Resources(e.ctx, e.customer.ID)
			e.must(err)
			if len(rs) != 1 || !rs[0].Decrypted || rs[0].Instance.AppInfo.Password != "P@ssw0rd!" || rs[0].Instance.AppInfo.UserName != "admin@"+s.InstanceID {
				t.Fatalf("encryptType %s: %+v", enc, rs)
			}
			// Encrypted with another key: the buyer sees no credentials.
			e.fm.key = "some-other-key-123"
			e.fm.mu.Lock()
			e.fm.noBodySign = true
			e.fm.mu.Unlock()
			r, err := e.m.Resource(e.ctx, s.ID)
			e.must(err)
			if r.Error == "" || (r.Instance != nil && r.Instance.AppInfo != nil) {
				t.Fatalf("undecryptable credentials shown: %+v", r)
			}
		}
	})
}

// Two replicas on one PostgreSQL deliver every message exactly once.
func TestReplicasShareTheQueue(t *testing.T) {
	if dbtest.Backends()[1] != "postgres" {
		t.Skip()
	}
	e := newEnv(t, "postgres")
	dsnDB := e.db
	clk := clock.NewVirtual(t0)
	e.clk.Set(t0)
	var replicas []*Market
	for range 2 {
		m, err := New(Config{DB: dsnDB, Clock: clk, WireClock: clk, Workers: 4, Poll: 20 * time.Millisecond})
		e.must(err)
		replicas = append(replicas, m)
	}
	e.fm.clk = clk
	ctx, cancel := context.WithCancel(e.ctx)
	var wg sync.WaitGroup
	for _, m := range replicas {
		wg.Add(1)
		go func() { defer wg.Done(); _ = m.Run(ctx) }()
	}
	const n = 40
	var orders []string
	for i := range n {
		o, err := replicas[i%2].Buy(e.ctx, BuyInput{CustomerID: e.customer.ID, ProductCode: "P-BASIC-MONTH", PeriodNumber: 1})
		e.must(err)
		orders = append(orders, o.OrderID)
	}
	deadline := time.Now().Add(20 * time.Second)
	for time.Now().Before(deadline) {
		subs, err := replicas[0].ListSubscriptions(e.ctx, e.customer.ID)
		e.must(err)
		active := 0
		for _, s := range subs {
			if s.Status == SubActive {
				active++
			}
		}
		if active == n {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	cancel()
	wg.Wait()
	seen := map[string]int{}
	for _, c := range e.fm.received("newInstance") {
		seen[c.Body["orderId"]]++
	}
	var dup []string
	for _, o := range orders {
		if seen[o] != 1 {
			dup = append(dup, fmt.Sprintf("%s×%d", o, seen[o]))
		}
	}
	sort.Strings(dup)
	if len(dup) > 0 {
		t.Fatalf("orders not delivered exactly once: %v", dup)
	}
}
