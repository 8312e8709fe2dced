package merchant

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/soukhq/souk/clock"
	"github.com/soukhq/souk/db"
	"github.com/soukhq/souk/db/dbtest"
	"github.com/soukhq/souk/kg"
	"github.com/soukhq/souk/merchant/handoff"
)

const (
	testKey      = "TestAccessKey123"
	testKey2     = "RotatedAccessKey456"
	testMarketAK = "MARKETAK0001"
	testMarketSK = "market-secret-key-0001"
	testSecret   = "whsec_test_secret"
	testAdmin    = "admin-token-xyz"
)

// fakeMarket stands in for KooGallery's open APIs: Query Order (verifying
// the APIG signature) and usage push (verifying the usage signature).
type fakeMarket struct {
	t        testing.TB
	srv      *httptest.Server
	clock    clock.Clock
	down     atomic.Bool
	calls    atomic.Int64
	mu       sync.Mutex
	orders   map[string]json.RawMessage // orderId → orderInfo
	pushes   [][]map[string]any         // usage_records of each push
	badSig   atomic.Int64
	failPush atomic.Bool
	refuse   map[string]string // metering_sn → per-record error code (under mu)
	// pushHook, if set, is called as a usage push arrives, before it is
	// answered (a test holds a push there).
	pushHook atomic.Pointer[func()]
}

func newFakeMarket(t testing.TB, c clock.Clock) *fakeMarket {
	f := &fakeMarket{t: t, clock: c, orders: map[string]json.RawMessage{}}
	f.srv = httptest.NewServer(http.HandlerFunc(f.serve))
	t.Cleanup(f.srv.Close)
	return f
}

func (f *fakeMarket) addOrder(orderID, lineID, mode, productID, sku string, moreLines ...string) {
	var lines []map[string]any
	for _, l := range append([]string{lineID}, moreLines...) {
		lines = append(lines, map[string]any{"orderLineId": l, "chargingMode": mode, "periodType": "month", "periodNumber": 1,
			"productInfo": []map[string]any{{"productId": productID, "skuCode": sku, "linearValue": 10}}})
	}
	info, _ := json.Marshal(map[string]any{
		"orderId": orderID, "orderType": "NEW", "createTime": "20260101000000",
		"orderLine": lines,
		"buyerInfo": map[string]any{"customerId": "cust-1", "customerName": "测试客户"},
	})
	f.mu.Lock()
	f.orders[orderID] = info
	f.mu.Unlock()
}

func (f *fakeMarket) serve(w http.ResponseWriter, r *http.Request) {
	f.calls.Add(1)
	if f.down.Load() {
		http.Error(w, "unavailable", http.StatusServiceUnavailable)
		return
	}
	body, _ := io.ReadAll(r.Body)
	w.Header().Set("Content-Type", "application/json")
	switch r.URL.Path {
	case QueryOrderPath:
		_, err := kg.VerifyAPIG(r, body, func(ak string) (string, bool) { return testMarketSK, ak == testMarketAK }, f.clock.Now(), kg.DefaultAPIGWindow)
		if err != nil {
			f.badSig.Add(1)
			w.WriteHeader(http.StatusUnauthorized)
			_, _ = fmt.Fprintf(w, `{"resultCode":"MKT.0154","resultMsg":%q}`, err.Error())
			return
		}
		f.mu.Lock()
		info, ok := f.orders[r.URL.Query().Get("orderId")]
		f.mu.Unlock()
		if !ok {
			_, _ = io.WriteString(w, `{"resultCode":"MKT.0100","resultMsg":"order not found"}`)
			return
		}
		_, _ = fmt.Fprintf(w, `{"resultCode":"MKT.0000","resultMsg":"Success","orderInfo":%s}`, info)
	case UsagePushPath:
		if h := f.pushHook.Load(); h != nil {
			(*h)()
		}
		if _, err := kg.VerifyUsageSignature(testKey, r.Header.Get("signature"), r.Header.Get("ts"), r.Header.Get("nonce"), body); err != nil {
			f.badSig.Add(1)
			w.WriteHeader(http.StatusBadRequest)
			_, _ = io.WriteString(w, `{"resultCode":"MKT.0102","resultMsg":"bad signature"}`)
			return
		}
		if f.failPush.Load() {
			w.WriteHeader(http.StatusInternalServerError)
			_, _ = io.WriteString(w, `{"resultCode":"MKT.0999","resultMsg":"internal"}`)
			return
		}
		var req struct {
			Records []map[string]any `json:"usage_records"`
		}
		if err := json.Unmarshal(body, &req); err != nil || len(req.Records) == 0 || len(req.Records) > 1000 {
			w.WriteHeader(http.StatusBadRequest)
			_, _ = io.WriteString(w, `{"resultCode":"MKT.0101","resultMsg":"bad body"}`)
			return
		}
		f.mu.Lock()
		var failed []map[string]any
		var accepted []map[string]any
		for i, r := range req.Records {
			if code, ok := f.refuse[fmt.Sprint(r["metering_sn"])]; ok {
				failed = append(failed, map[string]any{"index": i, "error_code": code, "error_msg": "refused by the test"})
				continue
			}
			accepted = append(accepted, r)
		}
		f.pushes = append(f.pushes, accepted)
		f.mu.Unlock()
		if len(failed) > 0 {
			w.WriteHeader(http.StatusInternalServerError)
			_ = json.NewEncoder(w).Encode(map[string]any{"resultCode": "MKT.9002", "error_code": "MKT.9002", "resultMsg": "invalid usage entities",
				"extra_info": map[string]any{"accepted": len(accepted), "failed": failed}})
			return
		}
		_, _ = io.WriteString(w, `{"resultCode":"MKT.0000","resultMsg":"Success"}`)
	default:
		http.NotFound(w, r)
	}
}

// fakeApp is a vendor application receiving webhooks.
type fakeApp struct {
	t      testing.TB
	srv    *httptest.Server
	clock  clock.Clock
	mu     sync.Mutex
	events []handoff.Envelope
	ids    []string     // Souk-Event-Id of every delivery
	sigs   []string     // Souk-Signature of every delivery
	status atomic.Int64 // HTTP status to answer (0 → 200)
	delay  atomic.Int64 // ns
	refuse atomic.Bool  // refuse change checks
	noApp  atomic.Bool  // answer without appInfo
	badSig atomic.Int64
	// created: skuCode → the raw answer to instance.created events of that
	// SKU (e.g. a refusal), instead of appInfo.
	created sync.Map
	// answers overrides the answer to an event type (raw JSON body).
	answers sync.Map
}

func newFakeApp(t testing.TB, c clock.Clock) *fakeApp {
	a := &fakeApp{t: t, clock: c}
	a.srv = httptest.NewServer(http.HandlerFunc(a.serve))
	t.Cleanup(a.srv.Close)
	return a
}

func (a *fakeApp) serve(w http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(r.Body)
	if err := handoff.Verify([]string{testSecret}, r.Header.Get(handoff.HeaderSignature), body, a.clock.Now(), 0); err != nil {
		a.badSig.Add(1)
		http.Error(w, "bad signature", http.StatusUnauthorized)
		return
	}
	var env handoff.Envelope
	if err := json.Unmarshal(body, &env); err != nil {
		http.Error(w, "bad body", http.StatusBadRequest)
		return
	}
	a.mu.Lock()
	a.events = append(a.events, env)
	a.ids = append(a.ids, r.Header.Get(handoff.HeaderEventID))
	a.sigs = append(a.sigs, r.Header.Get(handoff.HeaderSignature))
	a.mu.Unlock()
	if d := a.delay.Load(); d > 0 {
		time.Sleep(time.Duration(d))
	}
	if s := a.status.Load(); s != 0 && s != 200 {
		http.Error(w, "app failure", int(s))
		return
	}
	w.Header().Set("Content-Type", "application/json")
	if v, ok := a.answers.Load(env.Type); ok {
		_, _ = io.WriteString(w, v.(string))
		return
	}
	switch env.Type {
	case EventCreated, EventUpgraded:
		var d struct {
			SkuCode string `json:"skuCode"`
		}
		_ = json.Unmarshal(env.Data, &d)
		if v, ok := a.created.Load(d.SkuCode); ok && env.Type == EventCreated {
			_, _ = io.WriteString(w, v.(string))
			return
		}
		if a.noApp.Load() {
			_, _ = io.WriteString(w, `{}`)
			return
		}
		_ = json.NewEncoder(w).Encode(Answer{AppInfo: &AppInfo{FrontEndURL: "https://app.example.com/" + env.Subject,
			AdminURL: "https://app.example.com/admin", UserName: "admin@example.com", Password: "P@ssw0rd!", Memo: "说明 memo"}})
	case EventChangeCheck:
		ok := !a.refuse.Load()
		ans := Answer{Allowed: &ok}
		if !ok {
			ans.ResultCode, ans.ResultMsg = "000100", "the target spec is too small for current usage"
		}
		_ = json.NewEncoder(w).Encode(ans)
	default:
		_, _ = io.WriteString(w, `{"ok":true}`)
	}
}

func (a *fakeApp) eventsOf(typ string) []handoff.Envelope {
	a.mu.Lock()
	defer a.mu.Unlock()
	var out []handoff.Envelope
	for _, e := range a.events {
		if e.Type == typ {
			out = append(out, e)
		}
	}
	return out
}

// env is one merchant under test, served over real HTTP.
type env struct {
	t      testing.TB
	ctx    context.Context
	db     *db.DB
	dsn    string
	clock  *clock.Virtual
	m      *Merchant
	srv    *httptest.Server
	market *fakeMarket
	app    *fakeApp
	cfg    Config
}

type envOpt func(*Config, *Deps)

func newEnv(t testing.TB, backend string, opts ...envOpt) *env {
	t.Helper()
	ctx := context.Background()
	dsn := dbtest.DSN(t, backend)
	d, err := db.Open(ctx, dsn)
	if err != nil {
		t.Fatalf("open db: %v", err)
	}
	t.Cleanup(func() { _ = d.Close() })
	if err := Migrate(ctx, d); err != nil {
		t.Fatalf("migrate: %v", err)
	}
	c := clock.NewVirtual(time.Now().UTC().Truncate(time.Millisecond))
	e := &env{t: t, ctx: ctx, db: d, dsn: dsn, clock: c}
	e.market = newFakeMarket(t, c)
	e.app = newFakeApp(t, c)
	cfg := Config{
		AccessKeys: []string{testKey, testKey2},
		MarketURL:  e.market.srv.URL, MarketAK: testMarketAK, MarketSK: testMarketSK,
		WebhookURL: e.app.srv.URL, WebhookSecret: testSecret,
		AdminToken: testAdmin,
		Budget:     2 * time.Second,
	}
	deps := Deps{DB: d, Clock: c, Logger: slog.New(slog.NewTextHandler(testWriter{t}, &slog.HandlerOptions{Level: slog.LevelWarn}))}
	for _, o := range opts {
		o(&cfg, &deps)
	}
	e.cfg = cfg
	e.m = e.newMerchant(d, cfg, deps)
	e.srv = httptest.NewServer(e.m.Handler())
	t.Cleanup(e.srv.Close)
	return e
}

func (e *env) newMerchant(d *db.DB, cfg Config, deps Deps) *Merchant {
	deps.DB = d
	m, err := New(cfg, deps)
	if err != nil {
		e.t.Fatalf("merchant.New: %v", err)
	}
	e.t.Cleanup(func() { _ = m.Close() })
	return m
}

// kgResp is a decoded basic-interface answer.
type kgResp struct {
	ResultCode  string            `json:"resultCode"`
	ResultMsg   string            `json:"resultMsg"`
	InstanceID  string            `json:"instanceId"`
	EncryptType string            `json:"encryptType"`
	Info        []kg.InstanceInfo `json:"info"`
	raw         []byte
	bodySign    string
}

type callOpt struct {
	header    http.Header
	key       string
	timestamp string
	nonce     string
	badSig    bool
	method    string
	url       string
	path      string // default /koogallery
	lowerSig  bool   // the hex signature in lower case (SignV2 writes upper)
}

func nonce() string {
	var b [32]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// call POSTs a signed basic-interface request.
func (e *env) call(body any, opts ...func(*callOpt)) kgResp {
	e.t.Helper()
	var raw []byte
	switch b := body.(type) {
	case string:
		raw = []byte(b)
	case []byte:
		raw = b
	default:
		var err error
		if raw, err = json.Marshal(b); err != nil {
			e.t.Fatal(err)
		}
	}
	o := callOpt{key: testKey, nonce: nonce(), timestamp: fmt.Sprint(e.clock.Now().UnixMilli()), method: http.MethodPost, url: e.srv.URL, path: "/koogallery"}
	for _, f := range opts {
		f(&o)
	}
	sig := kg.SignV2(o.key, o.nonce, o.timestamp, raw)
	if o.badSig {
		sig = kg.SignV2("wrong-key", o.nonce, o.timestamp, raw)
	}
	if o.lowerSig {
		sig = strings.ToLower(sig)
	}
	u := o.url + o.path + "?signature=" + sig + "&timestamp=" + o.timestamp + "&nonce=" + o.nonce
	req, err := http.NewRequestWithContext(e.ctx, o.method, u, bytes.NewReader(raw))
	if err != nil {
		e.t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json;charset=utf8")
	for k, vs := range o.header {
		req.Header[k] = vs
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		e.t.Fatalf("POST: %v", err)
	}
	defer resp.Body.Close()
	rb, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != 200 {
		e.t.Fatalf("HTTP %d: %s", resp.StatusCode, rb)
	}
	var r kgResp
	if err := json.Unmarshal(rb, &r); err != nil {
		e.t.Fatalf("answer is not JSON: %v: %s", err, rb)
	}
	r.raw, r.bodySign = rb, resp.Header.Get("Body-Sign")
	return r
}

// api calls the management API.
func (e *env) api(method, path string, body any, token string) (int, map[string]any) {
	e.t.Helper()
	var rd io.Reader
	if body != nil {
		b, _ := json.Marshal(body)
		rd = bytes.NewReader(b)
	}
	req, _ := http.NewRequestWithContext(e.ctx, method, e.srv.URL+path, rd)
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		e.t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	var out map[string]any
	_ = json.NewDecoder(resp.Body).Decode(&out)
	return resp.StatusCode, out
}

func newInstanceBody(orderID, lineID, businessID string, test bool) map[string]string {
	b := map[string]string{"activity": "newInstance", "orderId": orderID, "orderLineId": lineID, "businessId": businessID}
	if test {
		b["testFlag"] = "1"
	}
	return b
}

// runJobs advances the clock by d and runs every due job.
func (e *env) runJobs(d time.Duration) int {
	e.t.Helper()
	e.clock.Advance(d)
	n, err := e.m.RunDue(e.ctx)
	if err != nil {
		e.t.Fatalf("RunDue: %v", err)
	}
	return n
}

func (e *env) count(query string, args ...any) int {
	e.t.Helper()
	var n int
	if err := e.db.QueryRow(e.ctx, query, args...).Scan(&n); err != nil {
		e.t.Fatalf("%s: %v", query, err)
	}
	return n
}

func waitUntil(t testing.TB, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for time.Now().Before(deadline) {
		if cond() {
			return
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Fatalf("timed out waiting for %s", what)
}

func forBackends(t *testing.T, f func(t *testing.T, backend string)) {
	for _, b := range dbtest.Backends() {
		t.Run(b, func(t *testing.T) { f(t, b) })
	}
}

func httptestServer(m *Merchant) *httptest.Server { return httptest.NewServer(m.Handler()) }

// testWriter sends log lines to the test log.
type testWriter struct{ t testing.TB }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}

// reopen starts a second merchant (a restarted process) on e's database,
// with the same fakes and clock.
func reopen(t testing.TB, e *env) *env {
	t.Helper()
	d, err := db.Open(e.ctx, e.dsn)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = d.Close() })
	if err := Migrate(e.ctx, d); err != nil {
		t.Fatal(err)
	}
	e2 := &env{t: t, ctx: e.ctx, db: d, dsn: e.dsn, clock: e.clock, market: e.market, app: e.app, cfg: e.cfg}
	e2.m = e2.newMerchant(d, e.cfg, Deps{Clock: e.clock})
	e2.srv = httptest.NewServer(e2.m.Handler())
	t.Cleanup(e2.srv.Close)
	return e2
}
