package market

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"reflect"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/soukhq/souk/internal/apigsdk"
	"github.com/soukhq/souk/kg"
)

// sdkQueryOrder builds a Query Order request signed by Huawei Cloud's
// official Go SDK signer.
func sdkQueryOrder(t *testing.T, endpoint, ak, sk string, query map[string]string, date time.Time) *http.Request {
	t.Helper()
	q := make(map[string]any, len(query))
	for k, v := range query {
		q[k] = v
	}
	return apigsdk.Sign(t, apigsdk.Call{Method: "GET", Endpoint: endpoint, Path: kg.QueryOrderPath, Query: q,
		Headers: map[string]string{"Content-Type": "application/json"}}, ak, sk, date)
}

func doJSON(t *testing.T, req *http.Request) (int, map[string]any) {
	t.Helper()
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	var out map[string]any
	if err := json.Unmarshal(b, &out); err != nil {
		t.Fatalf("answer %q: %v", b, err)
	}
	return resp.StatusCode, out
}

func TestQueryOrderOpenAPI(t *testing.T) {
	forBackends(t, func(t *testing.T, b string) {
		e := newEnv(t, b)
		o, _ := e.buy(BuyInput{ProductCode: "P-BASIC-YEAR", PeriodNumber: 2,
			ExtendParams: []ExtendParam{{Name: "region", Value: "cn-north-4"}}})
		q := map[string]string{"orderId": o.OrderID, "orderLineId": o.OrderID + "-000001"}

		// Signed by the official SDK: accepted, the order as KooGallery returns it.
		status, ans := doJSON(t, sdkQueryOrder(t, e.api.URL, testAK, testSK, q, e.clk.Now()))
		if status != 200 || ans["resultCode"] != kg.MKTSuccess {
			t.Fatalf("SDK-signed Query Order: %d %v", status, ans)
		}
		raw, _ := json.Marshal(ans)
		got, err := kg.DecodeQueryOrderResponse(raw)
		e.must(err)
		l := got.OrderInfo.OrderLine[0]
		if amount, _ := l.OrderAmount.Float64(); got.OrderInfo.OrderID != o.OrderID || l.PeriodType != "year" || l.PeriodNumber != "2" || amount != 2000 ||
			l.ExpireTime != "20280302155959" || got.OrderInfo.ExtendParams[0].Value != "cn-north-4" || l.BusinessID == "" {
			t.Fatalf("order = %+v line %+v", got.OrderInfo, l)
		}

		// Tampered requests are refused with MKT.0154.
		tamper := []struct {
			name string
			req  func() *http.Request
		}{
			{"other orderId after signing", func() *http.Request {
				r := sdkQueryOrder(t, e.api.URL, testAK, testSK, q, e.clk.Now())
				r.URL.RawQuery = strings.Replace(r.URL.RawQuery, o.OrderID, "MOCKMONTYRENEW", 1)
				return r
			}},
			{"wrong secret", func() *http.Request { return sdkQueryOrder(t, e.api.URL, testAK, "not-the-secret", q, e.clk.Now()) }},
			{"unknown AK", func() *http.Request { return sdkQueryOrder(t, e.api.URL, "UNKNOWNAK", testSK, q, e.clk.Now()) }},
			{"stale date", func() *http.Request {
				return sdkQueryOrder(t, e.api.URL, testAK, testSK, q, e.clk.Now().Add(-APIGWindow-time.Minute))
			}},
			{"no Authorization", func() *http.Request {
				r := sdkQueryOrder(t, e.api.URL, testAK, testSK, q, e.clk.Now())
				r.Header.Del("Authorization")
				return r
			}},
		}
		for _, c := range tamper {
			status, ans := doJSON(t, c.req())
			if status != 401 || ans["resultCode"] != kg.MKTIllegalToken {
				t.Errorf("%s: %d %v", c.name, status, ans)
			}
		}

		// Mock orders answer any seller; another seller's order is refused.
		for _, id := range kg.MockOrderIDs {
			status, ans := doJSON(t, sdkQueryOrder(t, e.api.URL, testAK, testSK, map[string]string{"orderId": id}, e.clk.Now()))
			info, _ := ans["orderInfo"].(map[string]any)
			if status != 200 || info["orderId"] != id {
				t.Errorf("mock %s: %d %v", id, status, ans)
			}
		}
		info, _, _ := e.m.QueryOrder(e.ctx, e.seller, "MOCKPERIODDAYTRIAL", "")
		if info.OrderType != "TRIAL" || info.OrderLine[0].TrialFlag != "1" {
			t.Errorf("MOCKPERIODDAYTRIAL = %+v", info)
		}
		other, err := e.m.CreateSeller(e.ctx, "seller-2", "Other ISV")
		e.must(err)
		_, err = e.m.CreateCredential(e.ctx, other.ID, "OTHERAK", "other-secret-key")
		e.must(err)
		status, ans = doJSON(t, sdkQueryOrder(t, e.api.URL, "OTHERAK", "other-secret-key", q, e.clk.Now()))
		if status != 401 || ans["resultCode"] != kg.MKTIllegalOperation {
			t.Errorf("other seller's order: %d %v", status, ans)
		}
		for name, q := range map[string]map[string]string{
			"unknown order": {"orderId": "CS0000000000NOPE"},
			"wrong line":    {"orderId": o.OrderID, "orderLineId": "x"},
		} {
			status, ans := doJSON(t, sdkQueryOrder(t, e.api.URL, testAK, testSK, q, e.clk.Now()))
			if status != 500 || ans["resultCode"] != kg.MKTBadInput {
				t.Errorf("%s: %d %v", name, status, ans)
			}
		}
		status, ans = doJSON(t, sdkQueryOrder(t, e.api.URL, testAK, testSK, map[string]string{"orderLineId": "x"}, e.clk.Now()))
		if status != 400 || ans["resultCode"] != kg.MKTInvalidParam || !strings.Contains(fmt.Sprint(ans["resultMsg"]), "orderId") {
			t.Errorf("missing orderId: %d %v", status, ans)
		}
		// A value over its documented length is MKT.0100 (out of range), not
		// MKT.0101 (an undefined or missing parameter).
		for name, q := range map[string]map[string]string{
			"orderId of 65":     {"orderId": strings.Repeat("C", 65)},
			"orderLineId of 65": {"orderId": o.OrderID, "orderLineId": strings.Repeat("L", 65)},
		} {
			status, ans := doJSON(t, sdkQueryOrder(t, e.api.URL, testAK, testSK, q, e.clk.Now()))
			if status != 500 || ans["resultCode"] != kg.MKTBadInput {
				t.Errorf("%s: %d %v", name, status, ans)
			}
		}
	})
}

type usageRec struct {
	sn, instance string
	begin        time.Time
	value        string
}

func (e *env) pushUsage(recs []usageRec, mutate func(r *http.Request, body []byte) []byte) (int, map[string]any) {
	e.t.Helper()
	var req kg.UsagePushRequest
	for _, r := range recs {
		req.UsageRecords = append(req.UsageRecords, kg.UsageRecord{
			BeginTime: kg.FormatUsageTime(r.begin), EndTime: kg.FormatUsageTime(r.begin.Add(time.Hour)), InstanceID: r.instance,
			MeteringSN: r.sn, RecordTime: kg.FormatUsageTime(r.begin.Add(time.Hour + time.Minute)), UsageValue: r.value,
		})
	}
	body, err := json.Marshal(req)
	e.must(err)
	ts := strconv.FormatInt(e.clk.Now().UnixMilli(), 10)
	nonce, err := e.m.newUUID()
	e.must(err)
	r, _ := http.NewRequest(http.MethodPost, e.api.URL+kg.UsagePushPath, nil)
	r.Header.Set("Content-Type", "application/json;charset=UTF-8")
	r.Header.Set("ts", ts)
	r.Header.Set("nonce", nonce)
	r.Header.Set("signature", kg.UsageSignature(testKey, ts, nonce, body))
	if mutate != nil {
		body = mutate(r, body)
	}
	r.Body = io.NopCloser(strings.NewReader(string(body)))
	r.ContentLength = int64(len(body))
	return doJSON(e.t, r)
}

func TestUsagePush(t *testing.T) {
	forBackends(t, func(t *testing.T, b string) {
		e := newEnv(t, b)
		_, s := e.buy(BuyInput{ProductCode: "P-METERED"})
		_, period := e.buy(BuyInput{ProductCode: "P-BASIC-MONTH", PeriodNumber: 1})
		e.advance(3 * time.Hour)
		begin := t0.Add(time.Hour)
		status, ans := e.pushUsage([]usageRec{{"sn-1", s.InstanceID, begin, "99"}, {"sn-2", s.InstanceID, begin, "0.5"}}, nil)
		if status != 200 || ans["resultCode"] != kg.MKTSuccess {
			t.Fatalf("push: %d %v", status, ans)
		}
		bill, err := e.m.GetBill(e.ctx, e.customer.ID)
		e.must(err)
		var usage int64
		for _, x := range bill.Entries {
			if x.Kind == "usage" {
				usage += x.AmountMicros
			}
		}
		if usage != 99_5*20000/10 { // 99.5 units at 0.02 each = 1.99
			t.Fatalf("usage billed %d micros, want 1990000", usage)
		}
		// Sending the same records again bills nothing more (metering_sn).
		status, ans = e.pushUsage([]usageRec{{"sn-1", s.InstanceID, begin, "99"}}, nil)
		if status != 200 || ans["resultCode"] != kg.MKTSuccess || ans["error_code"] != kg.MKTSuccess {
			t.Fatalf("repeat push: %d %v", status, ans)
		}
		if _, ok := ans["extra_info"]; ok {
			// KooGallery's open APIs carry extra_info only in failure answers.
			t.Fatalf("a successful push is answered with extra_info: %v", ans)
		}
		if n := usageRows(t, e, s.ID); n != 2 {
			t.Fatalf("%d usage records stored after the repeat, want 2", n)
		}
		// Per-record errors; the good record of the push is kept.
		status, ans = e.pushUsage([]usageRec{
			{"sn-1", s.InstanceID, begin, "7"},                 // 005 metering_sn reused for other content
			{"sn-3", "no-such-instance", begin, "1"},           // 001
			{"sn-4", period.InstanceID, begin, "1"},            // 012 not pay-per-use
			{"sn-5", s.InstanceID, begin, "1.23456"},           // 003 too many decimals
			{"sn-6", s.InstanceID, t0.AddDate(0, 0, -30), "1"}, // 007 older than 21 days
			{"sn-7", s.InstanceID, begin, "2"},                 // ok
		}, nil)
		if status != 500 || ans["resultCode"] != kg.MKTInvalidUsage {
			t.Fatalf("mixed push: %d %v", status, ans)
		}
		extra := ans["extra_info"].(map[string]any)
		var codes []string
		for _, f := range extra["failed"].([]any) {
			codes = append(codes, f.(map[string]any)["error_code"].(string))
		}
		if want := []string{"005", "001", "012", "003", "007"}; !reflect.DeepEqual(codes, want) || extra["accepted"] != float64(1) {
			t.Fatalf("per-record codes %v accepted %v, want %v and 1", codes, extra["accepted"], want)
		}
		// Signature, replay and size checks.
		cases := map[string]struct {
			mutate func(r *http.Request, body []byte) []byte
			code   string
		}{
			"tampered body": {func(r *http.Request, body []byte) []byte {
				return []byte(strings.Replace(string(body), `"5"`, `"500"`, 1))
			}, kg.MKTInvalidBodySign},
			"wrong key": {func(r *http.Request, body []byte) []byte {
				r.Header.Set("signature", kg.UsageSignature("other-key", r.Header.Get("ts"), r.Header.Get("nonce"), body))
				return body
			}, kg.MKTInvalidBodySign},
			"stale ts": {func(r *http.Request, body []byte) []byte {
				ts := strconv.FormatInt(e.clk.Now().Add(-time.Hour).UnixMilli(), 10)
				r.Header.Set("ts", ts)
				r.Header.Set("signature", kg.UsageSignature(testKey, ts, r.Header.Get("nonce"), body))
				return body
			}, kg.MKTIllegalToken},
			"no nonce": {func(r *http.Request, body []byte) []byte { r.Header.Del("nonce"); return body }, kg.MKTInvalidParam},
		}
		for name, c := range cases {
			status, ans := e.pushUsage([]usageRec{{"sn-x-" + name, s.InstanceID, begin, "5"}}, c.mutate)
			if ans["resultCode"] != c.code || status != kg.MKTStatus(c.code) {
				t.Errorf("%s: %d %v", name, status, ans)
			}
		}
		var replayNonce string
		e.pushUsage([]usageRec{{"sn-r1", s.InstanceID, begin, "1"}}, func(r *http.Request, body []byte) []byte {
			replayNonce = r.Header.Get("nonce")
			return body
		})
		status, ans = e.pushUsage([]usageRec{{"sn-r2", s.InstanceID, begin, "1"}}, func(r *http.Request, body []byte) []byte {
			r.Header.Set("nonce", replayNonce)
			r.Header.Set("signature", kg.UsageSignature(testKey, r.Header.Get("ts"), replayNonce, body))
			return body
		})
		if ans["resultCode"] != kg.MKTIllegalToken {
			t.Errorf("replayed nonce: %d %v", status, ans)
		}
		var many []usageRec
		for i := range kg.UsagePushMaxRecords + 1 {
			many = append(many, usageRec{fmt.Sprintf("sn-m%d", i), s.InstanceID, begin, "1"})
		}
		if status, ans := e.pushUsage(many, nil); ans["resultCode"] != kg.MKTTooManyRecords && ans["resultCode"] != kg.MKTBadInput {
			t.Errorf("1001 records: %d %v", status, ans)
		}
		before := usageRows(t, e, s.ID)
		if status, ans := e.pushUsage(many[:kg.UsagePushMaxRecords], nil); status != 200 || ans["resultCode"] != kg.MKTSuccess {
			t.Errorf("1000 records: %d %v", status, ans)
		}
		if n := usageRows(t, e, s.ID); n != before+kg.UsagePushMaxRecords {
			t.Errorf("1000 records: %d stored, want %d", n-before, kg.UsagePushMaxRecords)
		}
	})
}

// usageRows counts the usage records stored for a subscription.
func usageRows(t *testing.T, e *env, subID string) int {
	t.Helper()
	var n int
	if err := e.db.QueryRow(e.ctx, `SELECT COUNT(*) FROM market_usage WHERE subscription_id = $1`, subID).Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n
}

// A validly signed push naming no instance of the signer is answered per
// record (001 unknown, 009 another seller's), not as a bad signature.
func TestUsagePushUnknownInstancesOnly(t *testing.T) {
	forBackends(t, func(t *testing.T, b string) {
		e := newEnv(t, b)
		_, s := e.buy(BuyInput{ProductCode: "P-METERED"})
		begin := t0.Add(-time.Hour)
		status, ans := e.pushUsage([]usageRec{{"sn-u1", "no-such-instance", begin, "1"}}, nil)
		if status != 500 || ans["resultCode"] != kg.MKTInvalidUsage {
			t.Fatalf("unknown instance only: %d %v", status, ans)
		}
		failed := ans["extra_info"].(map[string]any)["failed"].([]any)
		if len(failed) != 1 || failed[0].(map[string]any)["error_code"] != kg.UsageErrInstanceNotFound {
			t.Fatalf("failed = %v", failed)
		}
		// Another seller signing a record of seller-1's instance: 009.
		other, err := e.m.CreateSeller(e.ctx, "seller-2", "ISV Two")
		e.must(err)
		_, err = e.m.SetAccessKey(e.ctx, other.ID, KeyBasic, "OtherSellerKey456")
		e.must(err)
		status, ans = e.pushUsage([]usageRec{{"sn-u2", s.InstanceID, begin, "1"}}, func(r *http.Request, body []byte) []byte {
			r.Header.Set("signature", kg.UsageSignature("OtherSellerKey456", r.Header.Get("ts"), r.Header.Get("nonce"), body))
			return body
		})
		if status != 500 || ans["resultCode"] != kg.MKTInvalidUsage {
			t.Fatalf("another seller's instance: %d %v", status, ans)
		}
		failed = ans["extra_info"].(map[string]any)["failed"].([]any)
		if len(failed) != 1 || failed[0].(map[string]any)["error_code"] != kg.UsageErrNotSellers {
			t.Fatalf("failed = %v", failed)
		}
		// A key no seller has is still a bad signature.
		_, ans = e.pushUsage([]usageRec{{"sn-u3", "no-such-instance", begin, "1"}}, func(r *http.Request, body []byte) []byte {
			r.Header.Set("signature", kg.UsageSignature("nobody's key", r.Header.Get("ts"), r.Header.Get("nonce"), body))
			return body
		})
		if ans["resultCode"] != kg.MKTInvalidBodySign {
			t.Fatalf("unknown key: %v", ans)
		}
	})
}

// A usage push over 1 MiB (a thousand records at their longest are about
// 370 KB) is refused before it is parsed.
func TestUsagePushBodyCap(t *testing.T) {
	e := newEnv(t, "sqlite")
	body := `{"usage_records":[` + strings.Repeat("0,", 1<<19) + `0]}`
	req, _ := http.NewRequest(http.MethodPost, e.api.URL+kg.UsagePushPath, strings.NewReader(body))
	req.Header.Set("signature", strings.Repeat("A", 44))
	req.Header.Set("ts", strconv.FormatInt(time.Now().UnixMilli(), 10))
	req.Header.Set("nonce", "n")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if !strings.Contains(string(b), kg.MKTParamError) || !strings.Contains(string(b), "larger than 1 MiB") {
		t.Fatalf("%d-byte push: %s", len(body), b)
	}
}

// TestOrderIDBeijingTime: an order id carries the time it was placed in
// Beijing time, while Query Order's createTime is UTC, as in KooGallery's own
// example (order CS2207261447AUY4H, createTime 20220726064736).
func TestOrderIDBeijingTime(t *testing.T) {
	forBackends(t, func(t *testing.T, backend string) {
		e := newEnv(t, backend)
		o, _ := e.buy(BuyInput{ProductCode: "P-BASIC-MONTH", PeriodNumber: 1})
		// t0 is 2026-03-02 08:00 UTC = 16:00 in Beijing.
		if !strings.HasPrefix(o.OrderID, "CS2603021600") || len(o.OrderID) != len("CS2603021600")+5 {
			t.Fatalf("order id %s, want CS2603021600 + 5 characters", o.OrderID)
		}
		info, code, _ := e.m.QueryOrder(e.ctx, e.seller, o.OrderID, "")
		if code != kg.MKTSuccess || info.CreateTime != "20260302080000" {
			t.Fatalf("Query Order: %s, createTime %v", code, info)
		}
	})
}
