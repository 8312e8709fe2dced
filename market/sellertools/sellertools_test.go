package sellertools_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/soukhq/souk/clock"
	"github.com/soukhq/souk/db"
	"github.com/soukhq/souk/db/dbtest"
	"github.com/soukhq/souk/jobs"
	"github.com/soukhq/souk/kg"
	"github.com/soukhq/souk/market"
	"github.com/soukhq/souk/market/sellertools"
)

// t0 is a Monday 08:00 UTC = 16:00 in Beijing: after that day's slots.
var t0 = time.Date(2026, 3, 2, 8, 0, 0, 0, time.UTC)

const (
	basicKey   = "BasicAccessKey-0001"
	generalKey = "GeneralAccessKey-0002"
	token      = "admin-token-for-tests"
)

// call is one request the fake merchant accepted.
type call struct {
	Activity string
	Body     map[string]any
	KeyIndex int // 0 basic, 1 general
}

// fakeMerchant verifies KooGallery's V2 signature (kg.VerifyV2) with the
// seller's basic and general keys, answers with Body-Sign, keeps debugging
// instances forever (so that replays keep passing) and can be told to fail.
type fakeMerchant struct {
	mu        sync.Mutex
	calls     []call
	fail      map[string]string // activity or "*" → "code:000005" | "http500" | "hang" | "badsign"
	instances map[string]bool
	rejected  int
}

func newFakeMerchant(t *testing.T) (*fakeMerchant, string) {
	f := &fakeMerchant{fail: map[string]string{}, instances: map[string]bool{}}
	srv := httptest.NewServer(http.HandlerFunc(f.serve))
	t.Cleanup(srv.Close)
	return f, srv.URL + "/saasproduce"
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

func (f *fakeMerchant) serve(w http.ResponseWriter, r *http.Request) {
	raw, _ := io.ReadAll(r.Body)
	q := r.URL.Query()
	keys := []string{basicKey, generalKey}
	idx, _, err := kg.VerifyV2(keys, q.Get("signature"), q.Get("nonce"), q.Get("timestamp"), raw, time.Now(), 60*time.Second)
	answer := func(key string, v any) {
		b, _ := json.Marshal(v)
		w.Header().Set("Body-Sign", kg.BodySignHeader(key, b))
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write(b)
	}
	if err != nil {
		f.mu.Lock()
		f.rejected++
		f.mu.Unlock()
		answer(basicKey, map[string]string{"resultCode": kg.CodeAuthFailed, "resultMsg": err.Error()})
		return
	}
	key := keys[idx]
	var body map[string]any
	if err := json.Unmarshal(raw, &body); err != nil {
		answer(key, map[string]string{"resultCode": kg.CodeBadParam, "resultMsg": "body"})
		return
	}
	act, _ := body["activity"].(string)
	str := func(k string) string { s, _ := body[k].(string); return s }
	f.mu.Lock()
	f.calls = append(f.calls, call{Activity: act, Body: body, KeyIndex: idx})
	mode := f.fail[act]
	if mode == "" {
		mode = f.fail["*"]
	}
	f.mu.Unlock()
	switch {
	case mode == "http500":
		http.Error(w, "boom", http.StatusInternalServerError)
		return
	case mode == "hang":
		select {
		case <-r.Context().Done():
		case <-time.After(3 * time.Second):
		}
		return
	case mode == "badsign":
		w.Header().Set("Body-Sign", kg.BodySignHeader("wrong-key", []byte("x")))
		_, _ = w.Write([]byte(`{"resultCode":"000000","resultMsg":"success"}`))
		return
	case strings.HasPrefix(mode, "code:"):
		answer(key, map[string]string{"resultCode": strings.TrimPrefix(mode, "code:"), "resultMsg": "told to fail"})
		return
	}
	ok := map[string]any{"resultCode": kg.CodeSuccess, "resultMsg": "success"}
	switch act {
	case "newInstance":
		id := "inst-" + str("orderId") + "-" + str("orderLineId")
		f.mu.Lock()
		f.instances[id] = true
		f.mu.Unlock()
		ok["instanceId"] = id
	case "queryInstance":
		f.mu.Lock()
		known := f.instances[str("instanceId")]
		f.mu.Unlock()
		if !known {
			answer(key, map[string]string{"resultCode": kg.CodeNoInstance, "resultMsg": "no such instance"})
			return
		}
		ok["info"] = []map[string]any{{"instanceId": str("instanceId"), "appInfo": map[string]string{"frontEndUrl": "https://app.example.com"}}}
	}
	answer(key, ok)
}

type env struct {
	t      *testing.T
	ctx    context.Context
	db     *db.DB
	clk    *clock.Virtual
	m      *market.Market
	tools  *sellertools.Tools
	api    *httptest.Server
	fm     *fakeMerchant
	seller string
	addr   string
}

// newEnv starts a market on a virtual clock with the seller tools mounted, a
// fake merchant and a seller whose address is verified. The market's call
// timeout is short (the tests make the merchant hang) unless one is given.
func newEnv(t *testing.T, backend string, callTimeout ...time.Duration) *env {
	t.Helper()
	timeout := 500 * time.Millisecond
	if len(callTimeout) > 0 {
		timeout = callTimeout[0]
	}
	ctx := t.Context()
	d := dbtest.Open(t, backend)
	clk := clock.NewVirtual(t0)
	// The wire clock stays real: the merchant checks its 60 s window on real time.
	m, err := market.New(market.Config{DB: d, Clock: clk, CallTimeout: timeout})
	if err != nil {
		t.Fatal(err)
	}
	if err := m.Migrate(ctx); err != nil {
		t.Fatal(err)
	}
	rt := m.Handler(token)
	tools, err := sellertools.Install(ctx, m, rt, nil, sellertools.Options{})
	if err != nil {
		t.Fatal(err)
	}
	api := httptest.NewServer(rt)
	t.Cleanup(api.Close)
	fm, fmURL := newFakeMerchant(t)
	e := &env{t: t, ctx: ctx, db: d, clk: clk, m: m, tools: tools, api: api, fm: fm}
	s, err := m.CreateSeller(ctx, "seller-1", "ISV One")
	e.must(err)
	e.seller = s.ID
	_, err = m.SetAccessKey(ctx, s.ID, market.KeyBasic, basicKey)
	e.must(err)
	_, err = m.SetAccessKey(ctx, s.ID, market.KeyGeneral, generalKey)
	e.must(err)
	a, err := m.AddAddress(ctx, s.ID, fmURL)
	e.must(err)
	a, err = m.VerifyAddress(ctx, a.ID)
	e.must(err)
	if !a.Verified {
		t.Fatalf("address not verified: %s", a.VerifyNote)
	}
	e.addr = a.ID
	return e
}

func (e *env) must(err error) {
	e.t.Helper()
	if err != nil {
		e.t.Fatal(err)
	}
}

func (e *env) product(id string, plans []market.Plan, opts ...func(*market.ProductInput)) market.Product {
	e.t.Helper()
	in := market.ProductInput{ID: id, SellerID: e.seller, Name: "Product " + id, AddressID: e.addr, Plans: slices.Clone(plans)}
	for i := range in.Plans { // plan codes are unique market-wide
		in.Plans[i].ProductCode += "-" + id
		in.Plans[i].SKUCode += "-" + id
	}
	for _, o := range opts {
		o(&in)
	}
	p, err := e.m.CreateProduct(e.ctx, in)
	e.must(err)
	return p
}

// do calls the JSON API and decodes the answer into out; it returns the status.
func (e *env) do(method, path string, in, out any) int {
	e.t.Helper()
	var body io.Reader
	if in != nil {
		b, err := json.Marshal(in)
		e.must(err)
		body = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(e.ctx, method, e.api.URL+path, body)
	e.must(err)
	req.Header.Set("Authorization", "Bearer "+token)
	resp, err := http.DefaultClient.Do(req)
	e.must(err)
	defer resp.Body.Close()
	raw, err := io.ReadAll(resp.Body)
	e.must(err)
	if out != nil {
		if err := json.Unmarshal(raw, out); err != nil {
			e.t.Fatalf("%s %s: %d %s: %v", method, path, resp.StatusCode, raw, err)
		}
	}
	return resp.StatusCode
}

// save runs "debug and save case" through the API and wants it to pass.
func (e *env) save(productID, activity string, params map[string]string) sellertools.Result {
	e.t.Helper()
	var r sellertools.Result
	if st := e.do("POST", sellertools.APIPrefix+"/debug/save", sellertools.DebugInput{ProductID: productID, Activity: activity, Params: params}, &r); st != 200 {
		e.t.Fatalf("save %s: status %d", activity, st)
	}
	if !r.Passed || r.Saved == nil {
		e.t.Fatalf("save %s: passed=%v saved=%v error=%q", activity, r.Passed, r.Saved != nil, r.Error)
	}
	return r
}

func (e *env) saveAll(productID string, activities ...string) {
	e.t.Helper()
	for _, a := range activities {
		e.save(productID, a, nil)
	}
}

func (e *env) listing(productID string) sellertools.Listing {
	e.t.Helper()
	var l sellertools.Listing
	if st := e.do("GET", sellertools.APIPrefix+"/products/"+productID, nil, &l); st != 200 {
		e.t.Fatalf("listing: %d", st)
	}
	return l
}

func (e *env) runs(productID string) []sellertools.Run {
	e.t.Helper()
	var rs []sellertools.Run
	if st := e.do("GET", sellertools.APIPrefix+"/dialtests?productId="+productID, nil, &rs); st != 200 {
		e.t.Fatalf("runs: %d", st)
	}
	return rs
}

// advanceTo moves the virtual clock to at, running every job due on the way.
func (e *env) advanceTo(at time.Time) {
	e.t.Helper()
	if d := at.Sub(e.clk.Now()); d > 0 {
		if _, err := e.m.Advance(e.ctx, d); err != nil {
			e.t.Fatal(err)
		}
	}
}

func forBackends(t *testing.T, f func(t *testing.T, backend string)) {
	for _, b := range dbtest.Backends() {
		t.Run(b, func(t *testing.T) { f(t, b) })
	}
}

var (
	periodPlans  = []market.Plan{{ProductCode: "P-MONTH", SKUCode: "basic", ChargingMode: market.ModePeriod, PeriodType: "month", PriceCents: 100}}
	oneTimePlans = []market.Plan{{ProductCode: "P-ONCE", SKUCode: "once", ChargingMode: market.ModeOneTime, PriceCents: 100}}
)

// The debugging tool's default renewal expiry is a year from the (virtual)
// clock's now as the market bills it: the end (23:59:59 Beijing time) of the
// day a year later, clamped as the market renews: Feb 29 + 1 year = Feb 28,
// not Mar 1 as Go's AddDate would make it.
func TestDebugDefaultExpireTimeClampsLeapDay(t *testing.T) {
	forBackends(t, func(t *testing.T, backend string) {
		e := newEnv(t, backend)
		p := e.product("prod-1", periodPlans)
		e.clk.Set(time.Date(2028, 2, 29, 12, 30, 0, 0, time.UTC))
		var def map[string]string
		e.do("GET", sellertools.APIPrefix+"/products/"+p.ID+"/defaults/refreshInstance", nil, &def)
		if def["expireTime"] != "20290228155959" {
			t.Fatalf("refreshInstance expireTime default = %q, want 20290228155959", def["expireTime"])
		}
	})
}

func TestDebugToolGenerateSendSave(t *testing.T) {
	forBackends(t, func(t *testing.T, backend string) {
		e := newEnv(t, backend)
		p := e.product("prod-1", periodPlans, func(in *market.ProductInput) { in.OrderNotify = true })
		base := sellertools.APIPrefix

		var tabs []sellertools.Interface
		e.do("GET", base+"/interfaces", nil, &tabs)
		var names []string
		for _, tb := range tabs {
			names = append(names, tb.Activity)
		}
		want := []string{"newInstance", "queryInstance", "refreshInstance", "upgradeInstance", "changeInstanceCheck", "updateInstanceStatus", "orderNotify", "releaseInstance"}
		if !slices.Equal(names, want) {
			t.Fatalf("tabs = %v, want %v", names, want)
		}

		var def map[string]string
		e.do("GET", base+"/products/"+p.ID+"/defaults/newInstance", nil, &def)
		if def["orderId"] != "MOCKPERIODYEARNEW" || def["orderLineId"] != "MOCKPERIODYEARNEW-000001" || def["testFlag"] != "1" || len(def["businessId"]) != 36 {
			t.Fatalf("newInstance defaults = %v", def)
		}

		// Generate: the exact signed request, nothing sent.
		var cmd sellertools.Command
		if st := e.do("POST", base+"/debug/generate", sellertools.DebugInput{ProductID: p.ID, Activity: "newInstance"}, &cmd); st != 200 {
			t.Fatalf("generate: %d", st)
		}
		if len(e.fm.received("")) != 1 { // the address verification only
			t.Fatalf("generate sent a request: %v", e.fm.received(""))
		}
		if !strings.Contains(cmd.URL, "/saasproduce?signature="+cmd.Signature+"&timestamp="+cmd.Timestamp+"&nonce="+cmd.Nonce) || cmd.Method != "POST" {
			t.Fatalf("command URL = %s", cmd.URL)
		}
		if _, _, err := kg.VerifyV2([]string{basicKey}, cmd.Signature, cmd.Nonce, cmd.Timestamp, []byte(cmd.BodyText), time.Now(), time.Minute); err != nil {
			t.Fatalf("generated signature does not verify: %v", err)
		}
		var body map[string]string
		e.must(json.Unmarshal(cmd.Body, &body))
		if body["activity"] != "newInstance" || body["orderId"] != "MOCKPERIODYEARNEW" || body["testFlag"] != "1" || body["businessId"] == "" {
			t.Fatalf("generated body = %s", cmd.Body)
		}
		if !strings.HasPrefix(cmd.BodyText, `{"activity":"newInstance","orderId"`) {
			t.Fatalf("body field order: %s", cmd.Body)
		}
		if !strings.Contains(cmd.Curl, "curl -sS -X POST '"+cmd.URL+"'") || !strings.Contains(cmd.Curl, "'Content-Type: application/json;charset=utf8'") ||
			!strings.Contains(cmd.Curl, "--data-raw '"+cmd.BodyText+"'") {
			t.Fatalf("curl = %s", cmd.Curl)
		}
		// The generated command works as is.
		req, _ := http.NewRequest("POST", cmd.URL, strings.NewReader(cmd.BodyText))
		for _, h := range cmd.Headers {
			req.Header.Set(h.Name, h.Value)
		}
		resp, err := http.DefaultClient.Do(req)
		e.must(err)
		raw, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if !strings.Contains(string(raw), `"resultCode":"000000"`) {
			t.Fatalf("replaying the generated command: %s", raw)
		}

		// Send without saving.
		var sent sellertools.Result
		e.do("POST", base+"/debug/send", sellertools.DebugInput{ProductID: p.ID, Activity: "newInstance"}, &sent)
		if !sent.Passed || sent.Saved != nil || sent.BodySign != "ok" || sent.MessageID == 0 || sent.InstanceID != "inst-MOCKPERIODYEARNEW-MOCKPERIODYEARNEW-000001" {
			t.Fatalf("send = %+v", sent)
		}
		var cases []sellertools.Case
		e.do("GET", base+"/cases?productId="+p.ID, nil, &cases)
		if len(cases) != 0 {
			t.Fatalf("send saved a case: %+v", cases)
		}
		// The call is in the market's message log.
		msg, err := e.m.GetMessage(e.ctx, sent.MessageID, true)
		e.must(err)
		if msg.Activity != "newInstance" || msg.State != "succeeded" || len(msg.AttemptLog) != 1 {
			t.Fatalf("message = %+v", msg)
		}

		// Debug and save case.
		saved := e.save(p.ID, "newInstance", nil)
		if saved.Saved.InstanceID != sent.InstanceID || saved.Saved.Name != "newInstance" || saved.Saved.ResultCode != "000000" {
			t.Fatalf("saved case = %+v", saved.Saved)
		}
		last := e.fm.received("newInstance")
		if got := last[len(last)-1].Body; got["testFlag"] != "1" || got["orderId"] != "MOCKPERIODYEARNEW" {
			t.Fatalf("merchant got %v", got)
		}

		// The instance of the saved newInstance case is the default of the others.
		e.do("GET", base+"/products/"+p.ID+"/defaults/queryInstance", nil, &def)
		if def["instanceId"] != sent.InstanceID {
			t.Fatalf("queryInstance defaults = %v", def)
		}

		// A failing call is not saved, whatever the failure.
		for _, mode := range []string{"code:000005", "http500", "badsign", "hang"} {
			e.fm.setFail("queryInstance", mode)
			var r sellertools.Result
			if st := e.do("POST", base+"/debug/save", sellertools.DebugInput{ProductID: p.ID, Activity: "queryInstance"}, &r); st != 200 {
				t.Fatalf("%s: status %d", mode, st)
			}
			if r.Passed || r.Saved != nil || r.Verdict != market.VerdictFailure || r.Error == "" {
				t.Fatalf("%s: result = %+v", mode, r)
			}
			switch mode {
			case "badsign":
				if r.BodySign != "bad" {
					t.Fatalf("badsign: bodySign = %q", r.BodySign)
				}
			case "hang":
				if !strings.Contains(r.Error, "timeout") {
					t.Fatalf("hang: error = %q", r.Error)
				}
			case "code:000005":
				if r.ResultCode != "000005" {
					t.Fatalf("code: resultCode = %q", r.ResultCode)
				}
			}
		}
		e.do("GET", base+"/cases?productId="+p.ID, nil, &cases)
		if len(cases) != 1 || cases[0].Activity != "newInstance" {
			t.Fatalf("cases after failures = %+v", cases)
		}
		// An unknown instance is a failure too (000003).
		e.fm.setFail("queryInstance", "")
		var r sellertools.Result
		e.do("POST", base+"/debug/save", sellertools.DebugInput{ProductID: p.ID, Activity: "queryInstance", Params: map[string]string{"instanceId": "nope"}}, &r)
		if r.Passed || r.Saved != nil || r.ResultCode != kg.CodeNoInstance {
			t.Fatalf("unknown instance: %+v", r)
		}
		q := e.save(p.ID, "queryInstance", nil)
		if len(q.Warnings) != 0 {
			t.Fatalf("queryInstance warnings = %v", q.Warnings)
		}

		// orderNotify is signed with the general key.
		e.save(p.ID, "orderNotify", nil)
		if n := e.fm.received("orderNotify"); len(n) != 1 || n[0].KeyIndex != 1 {
			t.Fatalf("orderNotify calls = %+v", n)
		}

		// Validation names the field.
		var me market.Error
		if st := e.do("POST", base+"/debug/send", sellertools.DebugInput{ProductID: p.ID, Activity: "updateInstanceStatus", Params: map[string]string{"status": "BOGUS"}}, &me); st != 400 || me.Field != "params.status" {
			t.Fatalf("bad status: %d %+v", st, me)
		}
		if st := e.do("POST", base+"/debug/send", sellertools.DebugInput{ProductID: p.ID, Activity: "queryInstance", Params: map[string]string{"foo": "x"}}, &me); st != 400 || me.Field != "params.foo" {
			t.Fatalf("unknown param: %d %+v", st, me)
		}
		if st := e.do("POST", base+"/debug/send", sellertools.DebugInput{ProductID: p.ID, Activity: "expireInstance"}, &me); st != 400 || me.Field != "activity" {
			t.Fatalf("unknown activity: %d %+v", st, me)
		}
		if st := e.do("POST", base+"/debug/send", sellertools.DebugInput{ProductID: p.ID, Activity: "changeInstanceCheck", Params: map[string]string{"productInfo": "not json"}}, &me); st != 400 || me.Field != "params.productInfo" {
			t.Fatalf("bad productInfo: %d %+v", st, me)
		}
		if st := e.do("POST", base+"/debug/send", sellertools.DebugInput{ProductID: p.ID, Activity: "queryInstance", URL: "https://elsewhere.example.com/x"}, &me); st != 400 || me.Field != "url" {
			t.Fatalf("foreign url: %d %+v", st, me)
		}
		if st := e.do("POST", base+"/debug/send", sellertools.DebugInput{ProductID: "nope", Activity: "queryInstance"}, &me); st != 404 {
			t.Fatalf("unknown product: %d %+v", st, me)
		}

		// productInfo may be given as a JSON object; other values must be strings.
		var ci sellertools.Result
		if st := e.do("POST", base+"/debug/send", map[string]any{"productId": p.ID, "activity": "changeInstanceCheck",
			"params": map[string]any{"productInfo": map[string]any{"productId": "P-MONTH-prod-1", "skuCode": "basic-prod-1", "linearValue": 2}}}, &ci); st != 200 || !ci.Passed {
			t.Fatalf("changeInstanceCheck with an object: %d %+v", st, ci)
		}
		if !strings.Contains(ci.Request.BodyText, `"productInfo":{"linearValue":2,"productId":"P-MONTH-prod-1","skuCode":"basic-prod-1"}`) {
			t.Fatalf("changeInstanceCheck body = %s", ci.Request.BodyText)
		}
		if st := e.do("POST", base+"/debug/send", map[string]any{"productId": p.ID, "activity": "queryInstance", "params": map[string]any{"instanceId": 7}}, &me); st != 400 || me.Field != "params.instanceId" {
			t.Fatalf("numeric param: %d %+v", st, me)
		}
		if st := e.do("POST", base+"/debug/send", map[string]any{"productId": p.ID, "activity": "queryInstance", "bogus": 1}, &me); st != 400 || me.Field != "bogus" {
			t.Fatalf("unknown field: %d %+v", st, me)
		}
		fresh := e.product("prod-fresh", oneTimePlans)
		if st := e.do("POST", base+"/debug/send", sellertools.DebugInput{ProductID: fresh.ID, Activity: "releaseInstance"}, &me); st != 400 || me.Field != "params.instanceId" || !strings.Contains(me.Msg, "newInstance") {
			t.Fatalf("no instance yet: %d %+v", st, me)
		}

		// Case management: show, delete.
		var c sellertools.Case
		if st := e.do("GET", fmt.Sprintf("%s/cases/%d", base, q.Saved.ID), nil, &c); st != 200 || c.Activity != "queryInstance" || c.Params["instanceId"] != sent.InstanceID {
			t.Fatalf("get case: %d %+v", st, c)
		}
		if st := e.do("DELETE", fmt.Sprintf("%s/cases/%d", base, q.Saved.ID), nil, &c); st != 200 {
			t.Fatalf("delete case: %d", st)
		}
		if st := e.do("GET", fmt.Sprintf("%s/cases/%d", base, q.Saved.ID), nil, &me); st != 404 {
			t.Fatalf("deleted case: %d", st)
		}
		e.do("GET", base+"/cases?sellerId="+e.seller, nil, &cases)
		if len(cases) != 2 || cases[0].Activity != "newInstance" || cases[1].Activity != "orderNotify" {
			t.Fatalf("cases = %+v", cases)
		}

		// Saving again under the same name replaces the case.
		again := e.save(p.ID, "newInstance", nil)
		if again.Saved.ID != saved.Saved.ID {
			t.Fatalf("re-save made a new case %d (was %d)", again.Saved.ID, saved.Saved.ID)
		}

		// The API needs the admin token.
		req, _ = http.NewRequest("GET", e.api.URL+base+"/interfaces", nil)
		resp, err = http.DefaultClient.Do(req)
		e.must(err)
		resp.Body.Close()
		if resp.StatusCode != 401 {
			t.Fatalf("no token: %d", resp.StatusCode)
		}
		if e.fm.rejected != 0 {
			t.Fatalf("the merchant rejected %d signatures", e.fm.rejected)
		}
	})
}

func TestReadinessPerChargingMode(t *testing.T) {
	type tc struct {
		name  string
		plans []market.Plan
		opts  func(*market.ProductInput)
		want  []string
	}
	core := []string{"newInstance", "queryInstance", "refreshInstance", "updateInstanceStatus", "releaseInstance"}
	cases := []tc{
		{"one-time", oneTimePlans, nil, []string{"newInstance", "queryInstance", "releaseInstance"}},
		{"period", periodPlans, nil, core},
		{"on-demand", []market.Plan{{ProductCode: "P-OD", SKUCode: "od", ChargingMode: market.ModeOnDemand, UnitPriceMicros: 1}}, nil, core},
		{"on-demand package", []market.Plan{{ProductCode: "P-PKG", SKUCode: "pkg", ChargingMode: market.ModeOnDemandPkg, PeriodType: "month", PackageQuota: "10"}}, nil, core},
		{"period with upgrade, change check and order notify", periodPlans, func(in *market.ProductInput) {
			in.UpgradeAllowed, in.RenewalChangeAllowed, in.OrderNotify = true, true, true
		}, []string{"newInstance", "queryInstance", "refreshInstance", "upgradeInstance", "changeInstanceCheck", "updateInstanceStatus", "orderNotify", "releaseInstance"}},
	}
	forBackends(t, func(t *testing.T, backend string) {
		e := newEnv(t, backend)
		for i, c := range cases {
			t.Run(c.name, func(t *testing.T) {
				e.t = t
				var opts []func(*market.ProductInput)
				if c.opts != nil {
					opts = append(opts, c.opts)
				}
				p := e.product(fmt.Sprintf("prod-%d", i), c.plans, opts...)
				base := sellertools.APIPrefix + "/products/" + p.ID
				var r sellertools.Readiness
				e.do("GET", base+"/readiness", nil, &r)
				if r.Ready || !slices.Equal(r.Missing, c.want) {
					t.Fatalf("readiness before = %+v, want missing %v", r, c.want)
				}
				// All but the last: still not ready, cannot go on sale.
				e.saveAll(p.ID, c.want[:len(c.want)-1]...)
				e.do("GET", base+"/readiness", nil, &r)
				if r.Ready || !slices.Equal(r.Missing, c.want[len(c.want)-1:]) {
					t.Fatalf("readiness = %+v", r)
				}
				var me market.Error
				if st := e.do("POST", base+"/on-sale", nil, &me); st != 422 || !strings.Contains(me.Msg, c.want[len(c.want)-1]) {
					t.Fatalf("on-sale while not ready: %d %+v", st, me)
				}
				if l := e.listing(p.ID); l.Status != sellertools.StatusDraft {
					t.Fatalf("status = %s", l.Status)
				}
				e.save(p.ID, c.want[len(c.want)-1], nil)
				e.do("GET", base+"/readiness", nil, &r)
				if !r.Ready || len(r.Missing) != 0 || len(r.Items) != len(c.want) {
					t.Fatalf("readiness after = %+v", r)
				}
				var l sellertools.Listing
				if st := e.do("POST", base+"/on-sale", nil, &l); st != 200 || l.Status != sellertools.StatusOnSale || !l.ListedAt.Equal(t0) {
					t.Fatalf("on-sale: %d %+v", st, l)
				}
			})
		}
	})
}

// slot returns the dial-test slot of day d (0 = 2026-03-03) at hh:00 Beijing time.
func slot(d, hh int) time.Time {
	return time.Date(2026, 3, 3+d, hh, 0, 0, 0, sellertools.DefaultLocation).UTC()
}

// listed creates a one-time product with saved cases and puts it on sale.
func (e *env) listed(id string) market.Product {
	e.t.Helper()
	p := e.product(id, oneTimePlans)
	e.saveAll(p.ID, "newInstance", "queryInstance", "releaseInstance")
	var l sellertools.Listing
	if st := e.do("POST", sellertools.APIPrefix+"/products/"+p.ID+"/on-sale", nil, &l); st != 200 {
		e.t.Fatalf("on-sale: %d", st)
	}
	return p
}

func TestDialTestsAtSlotTimes(t *testing.T) {
	forBackends(t, func(t *testing.T, backend string) {
		e := newEnv(t, backend)
		p := e.listed("prod-live")
		draft := e.product("prod-draft", oneTimePlans)
		e.saveAll(draft.ID, "newInstance", "queryInstance", "releaseInstance")
		savedBiz := e.fm.received("newInstance")[0].Body["businessId"]
		// A case saved as real traffic is still replayed as a debugging request.
		if r := e.save(p.ID, "queryInstance", map[string]string{"testFlag": "0"}); r.Saved.Params["testFlag"] != "0" {
			t.Fatalf("saved params = %v", r.Saved.Params)
		}

		var s sellertools.Schedule
		e.do("GET", sellertools.APIPrefix+"/dialtests/schedule", nil, &s)
		if !slices.Equal(s.Times, []string{"09:00", "15:00"}) || len(s.PendingSlots) != 1 || !s.PendingSlots[0].Equal(slot(0, 9)) {
			t.Fatalf("schedule = %+v (want next slot %s)", s, slot(0, 9))
		}
		// A second replica scheduling the same slot is a no-op.
		if _, err := e.tools.EnsureSchedule(e.ctx); err != nil {
			t.Fatal(err)
		}
		if js, _ := jobs.List(e.ctx, e.db, jobs.Filter{Kind: sellertools.JobDialSlot}); len(js) != 1 {
			t.Fatalf("slot jobs = %d", len(js))
		}

		before := len(e.fm.received(""))
		e.advanceTo(slot(0, 9).Add(-time.Millisecond))
		if rs := e.runs(p.ID); len(rs) != 0 || len(e.fm.received("")) != before {
			t.Fatalf("runs before the slot: %+v", rs)
		}
		e.advanceTo(slot(0, 9))
		rs := e.runs(p.ID)
		if len(rs) != 1 || !rs[0].StartedAt.Equal(slot(0, 9)) || !rs[0].Passed || rs[0].Cases != 3 || rs[0].Kind != sellertools.RunScheduled || rs[0].Day != "2026-03-03" {
			t.Fatalf("runs at the first slot: %+v", rs)
		}
		calls := e.fm.received("")[before:]
		var acts []string
		for _, c := range calls {
			acts = append(acts, c.Activity)
			if c.Body["testFlag"] != "1" {
				t.Fatalf("replayed without testFlag 1: %v", c.Body)
			}
		}
		if !slices.Equal(acts, []string{"newInstance", "queryInstance", "releaseInstance"}) {
			t.Fatalf("replay order = %v", acts)
		}
		if calls[0].Body["businessId"] == savedBiz || calls[0].Body["orderId"] != "MOCKONETIMENEW" {
			t.Fatalf("replayed newInstance body = %v", calls[0].Body)
		}
		var run sellertools.Run
		e.do("GET", fmt.Sprintf("%s/dialtests/%d", sellertools.APIPrefix, rs[0].ID), nil, &run)
		if len(run.Results) != 3 || !run.Results[0].Passed || run.Results[0].Activity != "newInstance" || run.Results[0].MessageID == 0 {
			t.Fatalf("run = %+v", run)
		}
		// The draft product was not dial-tested.
		if rs := e.runs(draft.ID); len(rs) != 0 {
			t.Fatalf("draft runs = %+v", rs)
		}
		// Afternoon slot, then nothing until the next morning.
		e.advanceTo(slot(0, 15))
		if rs := e.runs(p.ID); len(rs) != 2 || !rs[0].StartedAt.Equal(slot(0, 15)) {
			t.Fatalf("runs after the afternoon slot: %+v", rs)
		}
		e.advanceTo(slot(1, 9).Add(-time.Minute))
		if rs := e.runs(p.ID); len(rs) != 2 {
			t.Fatalf("runs before day 2: %d", len(rs))
		}
		e.advanceTo(slot(2, 9))
		rs = e.runs(p.ID)
		if len(rs) != 5 {
			t.Fatalf("runs after 2 days: %d", len(rs))
		}
		for i, want := range []time.Time{slot(2, 9), slot(1, 15), slot(1, 9), slot(0, 15), slot(0, 9)} {
			if !rs[i].StartedAt.Equal(want) {
				t.Fatalf("run %d at %s, want %s", i, rs[i].StartedAt, want)
			}
		}
		if pending, _ := jobs.List(e.ctx, e.db, jobs.Filter{Kind: sellertools.JobDialSlot, State: jobs.StatePending}); len(pending) != 1 || !pending[0].DueAt.Equal(slot(2, 15)) {
			t.Fatalf("pending slots = %+v", pending)
		}
		// Off sale: no more dial tests.
		var l sellertools.Listing
		e.do("POST", sellertools.APIPrefix+"/products/"+p.ID+"/off-sale", map[string]string{"note": "retired"}, &l)
		if l.Status != sellertools.StatusOffSale {
			t.Fatalf("off-sale: %+v", l)
		}
		e.advanceTo(slot(3, 16))
		if rs := e.runs(p.ID); len(rs) != 5 {
			t.Fatalf("off-sale product was dial-tested: %d runs", len(rs))
		}
		if err := e.tools.CheckPurchasable(e.ctx, p.ID); err == nil {
			t.Fatal("an off-sale product is purchasable")
		}
	})
}

func TestFiveFailingDaysFreeze(t *testing.T) {
	forBackends(t, func(t *testing.T, backend string) {
		e := newEnv(t, backend)
		p := e.listed("prod-flaky")
		base := sellertools.APIPrefix + "/products/"
		e.fm.setFail("queryInstance", "http500")
		e.fm.setFail("releaseInstance", "code:000005")

		// Four failing days (03-03 … 03-06): not frozen.
		e.advanceTo(slot(4, 9).Add(-time.Millisecond))
		l := e.listing(p.ID)
		if l.Status != sellertools.StatusOnSale || l.FailStreak != 4 || l.StreakStartDay != "2026-03-03" || l.LastFailDay != "2026-03-06" {
			t.Fatalf("after 4 days: %+v", l)
		}
		if rs := e.runs(p.ID); len(rs) != 8 || rs[0].Passed || rs[0].Failures != 2 || rs[0].FailStreak != 4 {
			t.Fatalf("runs after 4 days: %d %+v", len(rs), rs[0])
		}
		var pur map[string]any
		e.do("GET", base+p.ID+"/purchasable", nil, &pur)
		if pur["purchasable"] != true {
			t.Fatalf("purchasable after 4 days = %v", pur)
		}
		// The fifth day's first failing dial test freezes it.
		e.advanceTo(slot(4, 9))
		l = e.listing(p.ID)
		if l.Status != sellertools.StatusFrozen || l.FailStreak != 5 || !l.FrozenAt.Equal(slot(4, 9)) {
			t.Fatalf("after 5 days: %+v", l)
		}
		if rs := e.runs(p.ID); !rs[0].Froze || rs[0].FailStreak != 5 {
			t.Fatalf("freezing run = %+v", rs[0])
		}
		var days []sellertools.Day
		e.do("GET", base+p.ID+"/history", nil, &days)
		if len(days) != 5 || days[0].Day != "2026-03-07" || days[0].Runs != 1 || days[0].Passed || !days[0].Froze || days[0].FailStreak != 5 ||
			days[4].Day != "2026-03-03" || days[4].Runs != 2 || days[4].Failed != 2 || days[4].FailStreak != 1 || days[4].Froze {
			t.Fatalf("history = %+v", days)
		}
		e.do("GET", base+p.ID+"/purchasable", nil, &pur)
		if pur["purchasable"] != false || !strings.Contains(fmt.Sprint(pur["reason"]), "frozen") {
			t.Fatalf("purchasable when frozen = %v", pur)
		}
		var me market.Error
		if st := e.do("POST", base+p.ID+"/on-sale", nil, &me); st != 409 {
			t.Fatalf("on-sale while frozen: %d", st)
		}
		// Frozen products keep being dial-tested (their history goes on).
		e.advanceTo(slot(4, 15))
		if rs := e.runs(p.ID); len(rs) != 10 || rs[0].Passed {
			t.Fatalf("runs while frozen: %d", len(rs))
		}
		// Unfreezing needs a passing dial test.
		var un struct {
			Run     sellertools.Run     `json:"run"`
			Listing sellertools.Listing `json:"listing"`
		}
		e.do("POST", base+p.ID+"/unfreeze", nil, &un)
		if un.Run.Passed || un.Listing.Status != sellertools.StatusFrozen || un.Run.Kind != sellertools.RunManual {
			t.Fatalf("unfreeze while failing: %+v", un)
		}
		e.fm.setFail("queryInstance", "")
		e.fm.setFail("releaseInstance", "")
		e.do("POST", base+p.ID+"/unfreeze", nil, &un)
		if !un.Run.Passed || un.Listing.Status != sellertools.StatusOnSale || un.Listing.FailStreak != 0 {
			t.Fatalf("unfreeze when fixed: %+v", un)
		}
		if err := e.tools.CheckPurchasable(e.ctx, p.ID); err != nil {
			t.Fatalf("purchasable after unfreeze: %v", err)
		}
		var none market.Error
		if st := e.do("POST", base+p.ID+"/unfreeze", nil, &none); st != 409 {
			t.Fatalf("unfreeze when on sale: %d", st)
		}
	})
}

func TestSuccessResetsTheStreak(t *testing.T) {
	forBackends(t, func(t *testing.T, backend string) {
		e := newEnv(t, backend)
		p := e.listed("prod-1")
		e.fm.setFail("*", "code:000005")
		// Four failing days, then fixed before the fifth day's morning slot.
		e.advanceTo(slot(3, 16))
		if l := e.listing(p.ID); l.FailStreak != 4 || l.Status != sellertools.StatusOnSale {
			t.Fatalf("after 4 days: %+v", l)
		}
		e.fm.setFail("*", "")
		e.advanceTo(slot(4, 9))
		if l := e.listing(p.ID); l.FailStreak != 0 || l.Status != sellertools.StatusOnSale {
			t.Fatalf("after a success: %+v", l)
		}
		// Broken again from that afternoon: 03-07, 03-08, 03-09, 03-10 fail.
		e.fm.setFail("*", "http500")
		e.advanceTo(slot(7, 16))
		if l := e.listing(p.ID); l.FailStreak != 4 || l.StreakStartDay != "2026-03-07" || l.Status != sellertools.StatusOnSale {
			t.Fatalf("4 more failing days: %+v", l)
		}
		// The fifth consecutive failing day freezes it.
		e.advanceTo(slot(8, 9))
		if l := e.listing(p.ID); l.FailStreak != 5 || l.Status != sellertools.StatusFrozen {
			t.Fatalf("5th day: %+v", l)
		}
	})
}

func TestSameDayRecoveryDoesNotFreeze(t *testing.T) {
	forBackends(t, func(t *testing.T, backend string) {
		e := newEnv(t, backend)
		p := e.listed("prod-1")
		// Every morning fails, every afternoon passes: never frozen.
		for d := 0; d < 7; d++ {
			e.fm.setFail("*", "code:000005")
			e.advanceTo(slot(d, 9))
			if l := e.listing(p.ID); l.FailStreak != 1 {
				t.Fatalf("day %d morning: %+v", d, l)
			}
			e.fm.setFail("*", "")
			e.advanceTo(slot(d, 15))
			if l := e.listing(p.ID); l.FailStreak != 0 || l.Status != sellertools.StatusOnSale {
				t.Fatalf("day %d afternoon: %+v", d, l)
			}
		}
	})
}

func TestNoCasesIsAFailingRun(t *testing.T) {
	forBackends(t, func(t *testing.T, backend string) {
		e := newEnv(t, backend)
		p := e.listed("prod-1")
		cs, err := e.tools.ListCases(e.ctx, sellertools.CaseFilter{ProductID: p.ID})
		e.must(err)
		for _, c := range cs {
			_, err := e.tools.DeleteCase(e.ctx, c.ID)
			e.must(err)
		}
		var run sellertools.Run
		if st := e.do("POST", sellertools.APIPrefix+"/products/"+p.ID+"/dialtests", nil, &run); st != 201 {
			t.Fatalf("run now: %d", st)
		}
		if run.Passed || run.Cases != 0 || run.Note == "" || run.FailStreak != 1 {
			t.Fatalf("run without cases = %+v", run)
		}
		r, err := e.tools.Readiness(e.ctx, p.ID)
		e.must(err)
		if r.Ready {
			t.Fatal("ready without cases")
		}
	})
}

// TestReplicasRunASlotOnce runs a slot on two market replicas sharing one
// database at once: the slot and each product's dial test run once.
func TestReplicasRunASlotOnce(t *testing.T) {
	forBackends(t, func(t *testing.T, backend string) {
		e := newEnv(t, backend)
		p := e.listed("prod-1")
		before := len(e.fm.received(""))

		// A second replica on the same database, with its own clock.
		clk2 := clock.NewVirtual(t0)
		m2, err := market.New(market.Config{DB: e.db, Clock: clk2, CallTimeout: 2 * time.Second})
		e.must(err)
		tools2, err := sellertools.New(m2, e.db, clk2, nil, sellertools.Options{})
		e.must(err)
		e.must(tools2.Migrate(e.ctx)) // schedules the same slot: a no-op
		if js, _ := jobs.List(e.ctx, e.db, jobs.Filter{Kind: sellertools.JobDialSlot}); len(js) != 1 {
			t.Fatalf("slot jobs = %d", len(js))
		}

		e.clk.Set(slot(0, 9))
		clk2.Set(slot(0, 9))
		var wg sync.WaitGroup
		errs := make(chan error, 2)
		for _, m := range []*market.Market{e.m, m2} {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for i := 0; i < 3; i++ { // again, in case the other held a lease
					if _, err := m.RunDue(e.ctx); err != nil {
						errs <- err
						return
					}
					time.Sleep(20 * time.Millisecond)
				}
			}()
		}
		wg.Wait()
		close(errs)
		for err := range errs {
			t.Fatal(err)
		}
		if rs := e.runs(p.ID); len(rs) != 1 || !rs[0].Passed {
			t.Fatalf("runs = %+v", rs)
		}
		if n := len(e.fm.received("")) - before; n != 3 {
			t.Fatalf("merchant got %d calls, want 3 (one replay)", n)
		}
		if pending, _ := jobs.List(e.ctx, e.db, jobs.Filter{Kind: sellertools.JobDialSlot, State: jobs.StatePending}); len(pending) != 1 || !pending[0].DueAt.Equal(slot(0, 15)) {
			t.Fatalf("pending slots = %+v", pending)
		}
	})
}

func TestCommand(t *testing.T) {
	forBackends(t, func(t *testing.T, backend string) {
		e := newEnv(t, backend)
		for _, mode := range []string{"in-process", "client"} {
			var api sellertools.API = e.tools
			if mode == "client" {
				api = sellertools.NewClient(e.api.URL, token, nil)
			}
			t.Run(mode, func(t *testing.T) { testCommand(t, e, api, "prod-cli-"+mode) })
		}
	})
}

func testCommand(t *testing.T, e *env, api sellertools.API, productID string) {
	e.t = t
	p := e.product(productID, oneTimePlans)
	run := func(group string, args ...string) (int, string, string) {
		var out, errb bytes.Buffer
		st := sellertools.RunCLI(e.ctx, api, &out, &errb, group, args)
		return st, out.String(), errb.String()
	}
	if st, out, _ := run("debug", "generate", "-product", p.ID, "-activity", "newInstance", "-param", "orderId=MOCKONETIMENEW", "-curl"); st != 0 ||
		!strings.HasPrefix(out, "curl -sS -X POST '") || !strings.Contains(out, `"orderId":"MOCKONETIMENEW"`) {
		t.Fatalf("generate -curl: %d %s", st, out)
	}
	if st, out, _ := run("debug", "save", "-product", p.ID, "-activity", "newInstance"); st != 0 || !strings.Contains(out, `"savedCase"`) {
		t.Fatalf("save: %d %s", st, out)
	}
	e.fm.setFail("queryInstance", "code:000005")
	if st, out, errs := run("debug", "save", "-product", p.ID, "-activity", "queryInstance"); st != 1 || strings.Contains(out, `"savedCase"`) || !strings.Contains(errs, "nothing saved") {
		t.Fatalf("failing save: %d %s %s", st, out, errs)
	}
	if st, _, errs := run("cases", "readiness", "-product", p.ID); st != 1 || !strings.Contains(errs, "queryInstance, releaseInstance") {
		t.Fatalf("readiness: %d %s", st, errs)
	}
	if st, _, _ := run("dialtests", "on-sale", "-product", p.ID); st != 1 {
		t.Fatalf("on-sale while not ready: %d", st)
	}
	e.fm.setFail("queryInstance", "")
	for _, a := range []string{"queryInstance", "releaseInstance"} {
		if st, _, errs := run("debug", "save", "-product", p.ID, "-activity", a); st != 0 {
			t.Fatalf("save %s: %d %s", a, st, errs)
		}
	}
	if st, _, _ := run("cases", "readiness", "-product", p.ID); st != 0 {
		t.Fatalf("readiness when ready: %d", st)
	}
	var cs []sellertools.Case
	st, out, _ := run("cases", "list", "-product", p.ID)
	e.must(json.Unmarshal([]byte(out), &cs))
	if st != 0 || len(cs) != 3 {
		t.Fatalf("cases list: %d %s", st, out)
	}
	if st, out, _ := run("cases", "show", fmt.Sprint(cs[0].ID)); st != 0 || !strings.Contains(out, `"activity": "newInstance"`) {
		t.Fatalf("cases show: %d %s", st, out)
	}
	if st, out, _ := run("dialtests", "on-sale", "-product", p.ID); st != 0 || !strings.Contains(out, `"status": "on_sale"`) {
		t.Fatalf("on-sale: %d %s", st, out)
	}
	if st, out, _ := run("dialtests", "run", "-product", p.ID); st != 0 || !strings.Contains(out, `"passed": true`) {
		t.Fatalf("dialtests run: %d %s", st, out)
	}
	if st, out, _ := run("dialtests", "list", "-seller", e.seller); st != 0 || !strings.Contains(out, `"kind": "manual"`) {
		t.Fatalf("dialtests list: %d %s", st, out)
	}
	if st, _, _ := run("cases", "show", "x"); st != 2 {
		t.Fatalf("bad id: %d", st)
	}
	if st, _, _ := run("dialtests", "bogus"); st != 2 {
		t.Fatalf("unknown verb: %d", st)
	}
	if st, _, errs := run("cases", "delete", "999999"); st != 1 || !strings.Contains(errs, "does not exist") {
		t.Fatalf("delete unknown: %d %s", st, errs)
	}
	if st, out, _ := run("dialtests", "history", "-product", p.ID); st != 0 || !strings.Contains(out, `"runs": 1`) {
		t.Fatalf("history: %d %s", st, out)
	}
	if st, out, _ := run("dialtests", "schedule"); st != 0 || !strings.Contains(out, `"09:00"`) {
		t.Fatalf("schedule: %d %s", st, out)
	}
}
