package market

import (
	"context"
	"crypto/rand"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/soukhq/souk/clock"
	"github.com/soukhq/souk/db"
	"github.com/soukhq/souk/db/dbtest"
	"github.com/soukhq/souk/kg"
)

// t0 is the virtual start of every test: a Monday, after 1 January in Beijing.
var t0 = time.Date(2026, 3, 2, 8, 0, 0, 0, time.UTC)

const (
	testKey   = "TestAccessKey123"
	testAK    = "HPUATESTAK0000000001"
	testSK    = "test/secret+key=="
	testToken = "admin-token-for-tests"
)

// call is one request the fake merchant received.
type call struct {
	At       time.Time
	Activity string
	Body     map[string]string
	Raw      string
}

// fakeMerchant is a protocol-faithful merchant server under the tests'
// control: it verifies KooGallery's signature, answers every basic interface
// with Body-Sign, fetches orders through Query Order (APIG-signed) and can be
// told to fail, hang, answer 000004 or refuse a change.
type fakeMerchant struct {
	t      testing.TB
	clk    clock.Clock
	key    string
	market string // market base URL for Query Order

	mu         sync.Mutex
	calls      []call
	fail       map[string]string // activity → "code:000005" | "http500" | "hang" | "badsign" | "lost" (done, answer lost) | "slow" (answers after 0.5 s)
	async      int               // answer newInstance 000004, then queryInstance needs this many polls
	polls      map[string]int
	instances  map[string]string // orderId/orderLineId → instanceId
	orders     map[string]kg.OrderInfo
	encrypt    string // "" plaintext, "1", "2"
	refuse     bool   // changeInstanceCheck refuses
	orderErrs  []string
	noBodySign bool
}

func newFakeMerchant(t testing.TB, clk clock.Clock) (*fakeMerchant, *httptest.Server) {
	f := &fakeMerchant{t: t, clk: clk, key: testKey, fail: map[string]string{}, polls: map[string]int{},
		instances: map[string]string{}, orders: map[string]kg.OrderInfo{}}
	srv := httptest.NewServer(http.HandlerFunc(f.serve))
	t.Cleanup(srv.Close)
	return f, srv
}

func (f *fakeMerchant) setFail(activity, mode string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if mode == "" {
		delete(f.fail, activity)
	} else {
		f.fail[activity] = mode
	}
}

// receivedFor returns the calls of one activity for one instance.
func (f *fakeMerchant) receivedFor(activity, instanceID string) []call {
	var out []call
	for _, c := range f.received(activity) {
		if c.Body["instanceId"] == instanceID {
			out = append(out, c)
		}
	}
	return out
}

// received returns the calls of one activity ("" = all).
func (f *fakeMerchant) received(activity string) []call {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []call
	for _, c := range f.calls {
		if activity == "" || c.Activity == activity {
			out = append(out, c)
		}
	}
	return out
}

func (f *fakeMerchant) answer(w http.ResponseWriter, v any) {
	b, _ := json.Marshal(v)
	f.mu.Lock()
	nosign := f.noBodySign
	f.mu.Unlock()
	if !nosign {
		w.Header().Set("Body-Sign", kg.BodySignHeader(f.key, b))
	}
	w.Header().Set("Content-Type", "application/json")
	_, _ = w.Write(b)
}

func (f *fakeMerchant) serve(w http.ResponseWriter, r *http.Request) {
	raw, _ := io.ReadAll(r.Body)
	q := r.URL.Query()
	if _, _, err := kg.VerifyV2([]string{f.key}, q.Get("signature"), q.Get("nonce"), q.Get("timestamp"), raw, f.clk.Now(), 60*time.Second); err != nil {
		f.answer(w, map[string]string{"resultCode": kg.CodeAuthFailed, "resultMsg": err.Error()})
		return
	}
	if n := q.Get("nonce"); len(n) != 64 || strings.ToUpper(n) != n {
		f.answer(w, map[string]string{"resultCode": kg.CodeBadParam, "resultMsg": "nonce is not 64 upper-case hex"})
		return
	}
	var top map[string]json.RawMessage
	if err := json.Unmarshal(raw, &top); err != nil {
		f.answer(w, map[string]string{"resultCode": kg.CodeBadParam, "resultMsg": "body"})
		return
	}
	body := map[string]string{}
	for k, v := range top {
		var s string
		if json.Unmarshal(v, &s) == nil {
			body[k] = s
		} else {
			body[k] = string(v)
		}
	}
	act := body["activity"]
	f.mu.Lock()
	f.calls = append(f.calls, call{At: f.clk.Now(), Activity: act, Body: body, Raw: string(raw)})
	mode := f.fail[act]
	f.mu.Unlock()
	if mode == "slow" {
		time.Sleep(500 * time.Millisecond) // then answers normally, whatever the caller does meanwhile
	}
	if mode == "lost" {
		// The merchant does the work, but its answer is lost on the way.
		orig := w
		w = httptest.NewRecorder()
		defer http.Error(orig, "bad gateway", http.StatusBadGateway)
	}
	switch {
	case mode == "http500":
		http.Error(w, "boom", http.StatusInternalServerError)
		return
	case mode == "hang":
		select {
		case <-r.Context().Done():
		case <-time.After(4 * time.Second):
		}
		return
	case mode == "badsign":
		w.Header().Set("Body-Sign", kg.BodySignHeader("wrong-key", []byte("x")))
		_, _ = w.Write([]byte(`{"resultCode":"000000","resultMsg":"success","instanceId":"x"}`))
		return
	case mode == "badsignrefuse":
		w.Header().Set("Body-Sign", kg.BodySignHeader("wrong-key", []byte("x")))
		_, _ = w.Write([]byte(`{"resultCode":"000001","resultMsg":"signature does not match"}`))
		return
	case mode == "gbk500":
		// an error page in another encoding, with a NUL: not UTF-8 text
		w.WriteHeader(http.StatusInternalServerError)
		_, _ = w.Write([]byte("\xb7\xfe\xce\xf1\xc6\xf7\xb4\xed\xce\xf3\x00"))
		return
	case mode == "nulid":
		f.answer(w, map[string]string{"resultCode": kg.CodeSuccess, "resultMsg": "success\x00", "instanceId": "inst\x00"})
		return
	case mode == "longid":
		f.answer(w, map[string]string{"resultCode": kg.CodeSuccess, "resultMsg": "success", "instanceId": strings.Repeat("x", 300)})
		return
	case strings.HasPrefix(mode, "code:"):
		f.answer(w, map[string]string{"resultCode": strings.TrimPrefix(mode, "code:"), "resultMsg": "told to fail"})
		return
	}
	ok := func(extra map[string]any) {
		out := map[string]any{"resultCode": kg.CodeSuccess, "resultMsg": "success"}
		for k, v := range extra {
			out[k] = v
		}
		f.answer(w, out)
	}
	switch act {
	case "newInstance":
		if err := f.fetchOrder(r.Context(), body["orderId"], body["orderLineId"]); err != nil {
			f.answer(w, map[string]string{"resultCode": kg.CodeInternal, "resultMsg": err.Error()})
			return
		}
		f.mu.Lock()
		k := body["orderId"] + "/" + body["orderLineId"]
		id, seen := f.instances[k]
		if !seen {
			id = body["businessId"]
			f.instances[k] = id
		}
		async := f.async > 0
		f.mu.Unlock()
		if async {
			f.answer(w, map[string]string{"resultCode": kg.CodeInProgress, "resultMsg": "provisioning", "instanceId": id})
			return
		}
		ok(map[string]any{"instanceId": id})
	case "queryInstance":
		f.mu.Lock()
		var known bool
		for _, v := range f.instances {
			if v == body["instanceId"] {
				known = true
			}
		}
		f.polls[body["instanceId"]]++
		notReady := f.async > 0 && f.polls[body["instanceId"]] <= f.async
		enc := f.encrypt
		f.mu.Unlock()
		if !known {
			f.answer(w, map[string]string{"resultCode": kg.CodeNoInstance, "resultMsg": "no such instance"})
			return
		}
		if notReady {
			f.answer(w, map[string]string{"resultCode": kg.CodeInProgress, "resultMsg": "still provisioning"})
			return
		}
		user, pass := "admin@"+body["instanceId"], "P@ssw0rd!"
		extra := map[string]any{}
		if enc != "" {
			user, _ = kg.EncryptCredential(f.key, enc, user, rand.Reader)
			pass, _ = kg.EncryptCredential(f.key, enc, pass, rand.Reader)
			extra["encryptType"] = enc
		}
		extra["info"] = []map[string]any{{"instanceId": body["instanceId"], "appInfo": map[string]string{
			"frontEndUrl": "https://app.example.com/" + body["instanceId"], "userName": user, "password": pass}}}
		ok(extra)
	case "changeInstanceCheck":
		f.mu.Lock()
		refuse := f.refuse
		f.mu.Unlock()
		if refuse {
			f.answer(w, map[string]string{"resultCode": kg.CodeNoResource, "resultMsg": "usage exceeds the smaller quota"})
			return
		}
		ok(nil)
	case "upgradeInstance", "refreshInstance":
		if err := f.fetchOrder(r.Context(), body["orderId"], body["orderLineId"]); err != nil {
			f.answer(w, map[string]string{"resultCode": kg.CodeInternal, "resultMsg": err.Error()})
			return
		}
		ok(nil)
	default:
		ok(nil)
	}
}

// fetchOrder calls the market's Query Order, APIG-signed.
func (f *fakeMerchant) fetchOrder(ctx context.Context, orderID, lineID string) error {
	if f.market == "" {
		return nil
	}
	u := f.market + kg.QueryOrderPath + "?orderId=" + url.QueryEscape(orderID) + "&orderLineId=" + url.QueryEscape(lineID)
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err := kg.SignAPIG(req, nil, testAK, testSK, f.clk.Now()); err != nil {
		return err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	ans, err := kg.DecodeQueryOrderResponse(b)
	if err != nil {
		return fmt.Errorf("query order answer %s: %w", b, err)
	}
	if ans.ResultCode != kg.MKTSuccess {
		f.mu.Lock()
		f.orderErrs = append(f.orderErrs, ans.ResultCode+" "+ans.ResultMsg)
		f.mu.Unlock()
		return fmt.Errorf("query order: %s %s", ans.ResultCode, ans.ResultMsg)
	}
	f.mu.Lock()
	f.orders[orderID] = *ans.OrderInfo
	f.mu.Unlock()
	return nil
}

func (f *fakeMerchant) order(id string) (kg.OrderInfo, bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	o, ok := f.orders[id]
	return o, ok
}

// env is a market on a virtual clock, its HTTP API, a fake merchant and a
// catalog with one product.
type env struct {
	t        *testing.T
	ctx      context.Context
	db       *db.DB
	clk      *clock.Virtual
	m        *Market
	api      *httptest.Server
	fm       *fakeMerchant
	fmURL    string
	seller   string
	product  Product
	customer Customer
}

type envOpt func(*ProductInput)

func newEnv(t *testing.T, backend string, opts ...envOpt) *env {
	t.Helper()
	ctx := t.Context()
	d := dbtest.Open(t, backend)
	clk := clock.NewVirtual(t0)
	m, err := New(Config{DB: d, Clock: clk, WireClock: clk, CallTimeout: 3 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	if err := m.Migrate(ctx); err != nil {
		t.Fatal(err)
	}
	api := httptest.NewServer(m.Handler(testToken))
	t.Cleanup(api.Close)
	fm, fmSrv := newFakeMerchant(t, clk)
	fm.market = api.URL
	e := &env{t: t, ctx: ctx, db: d, clk: clk, m: m, api: api, fm: fm, fmURL: fmSrv.URL + "/saasproduce"}
	s, err := m.CreateSeller(ctx, "seller-1", "ISV One")
	e.must(err)
	e.seller = s.ID
	_, err = m.SetAccessKey(ctx, s.ID, KeyBasic, testKey)
	e.must(err)
	_, err = m.SetAccessKey(ctx, s.ID, KeyGeneral, testKey+"-general")
	e.must(err)
	_, err = m.CreateCredential(ctx, s.ID, testAK, testSK)
	e.must(err)
	a, err := m.AddAddress(ctx, s.ID, e.fmURL)
	e.must(err)
	a, err = m.VerifyAddress(ctx, a.ID)
	e.must(err)
	if !a.Verified {
		t.Fatalf("address not verified: %s", a.VerifyNote)
	}
	in := ProductInput{ID: "prod-1", SellerID: s.ID, Name: "Demo SaaS", AddressID: a.ID, UpgradeAllowed: true, RenewalChangeAllowed: true,
		TrialDays: 7, Plans: []Plan{
			{ProductCode: "P-BASIC-MONTH", SKUCode: "basic", ChargingMode: ModePeriod, PeriodType: "month", PriceCents: 10000},
			{ProductCode: "P-BASIC-YEAR", SKUCode: "basic", ChargingMode: ModePeriod, PeriodType: "year", PriceCents: 100000},
			{ProductCode: "P-PRO-MONTH", SKUCode: "pro", ChargingMode: ModePeriod, PeriodType: "month", PriceCents: 30000},
			{ProductCode: "P-SEATS-MONTH", SKUCode: "seats", ChargingMode: ModePeriod, PeriodType: "month", PriceCents: 1000,
				Linear: &Linear{Name: "users", Unit: "user", Min: 1, Max: 500}},
			{ProductCode: "P-ONCE", SKUCode: "once", ChargingMode: ModeOneTime, PriceCents: 50000},
			{ProductCode: "P-METERED", SKUCode: "metered", ChargingMode: ModeOnDemand, UnitPriceMicros: 20000},
			{ProductCode: "P-PKG-MONTH", SKUCode: "pkg", ChargingMode: ModeOnDemandPkg, PeriodType: "month", PriceCents: 9900, PackageQuota: "1000"},
		}}
	for _, o := range opts {
		o(&in)
	}
	e.product, err = m.CreateProduct(ctx, in)
	e.must(err)
	e.customer, err = m.CreateCustomer(ctx, Customer{ID: "cust-1", Name: "Buyer One", Email: "buyer@example.com", MobilePhone: "13800000001"})
	e.must(err)
	return e
}

func (e *env) must(err error) {
	e.t.Helper()
	if err != nil {
		e.t.Fatal(err)
	}
}

// settle runs everything due now.
func (e *env) settle() {
	e.t.Helper()
	if _, err := e.m.RunDue(e.ctx); err != nil {
		e.t.Fatal(err)
	}
}

func (e *env) advance(d time.Duration) AdvanceResult {
	e.t.Helper()
	r, err := e.m.Advance(e.ctx, d)
	if err != nil {
		e.t.Fatal(err)
	}
	return r
}

// advanceTo moves the clock to t exactly.
func (e *env) advanceTo(t time.Time) {
	e.t.Helper()
	if d := t.Sub(e.clk.Now()); d > 0 {
		e.advance(d)
	}
}

func (e *env) buy(in BuyInput) (Order, Subscription) {
	e.t.Helper()
	if in.CustomerID == "" {
		in.CustomerID = e.customer.ID
	}
	o, err := e.m.Buy(e.ctx, in)
	e.must(err)
	e.settle()
	s, err := e.m.GetSubscription(e.ctx, o.SubscriptionID)
	e.must(err)
	return o, s
}

func (e *env) sub(id string) Subscription {
	e.t.Helper()
	s, err := e.m.GetSubscription(e.ctx, id)
	e.must(err)
	return s
}

func (e *env) order(id string) Order {
	e.t.Helper()
	o, err := e.m.GetOrder(e.ctx, id)
	e.must(err)
	return o
}

// forBackends runs f on SQLite and PostgreSQL.
func forBackends(t *testing.T, f func(t *testing.T, backend string)) {
	for _, b := range dbtest.Backends() {
		t.Run(b, func(t *testing.T) { f(t, b) })
	}
}

// attemptTimes returns the virtual times at which the merchant received an activity.
func attemptTimes(cs []call) []time.Duration {
	var out []time.Duration
	if len(cs) == 0 {
		return out
	}
	for _, c := range cs {
		out = append(out, c.At.Sub(cs[0].At))
	}
	return out
}
