package check_test

import (
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"testing"
	"time"

	"github.com/soukhq/souk/check"
	"github.com/soukhq/souk/clock"
	"github.com/soukhq/souk/kg"
)

func queryOrder(t *testing.T, base, ak, sk, orderID, lineID string, at time.Time) (int, kg.QueryOrderResponse) {
	t.Helper()
	v := url.Values{"orderId": {orderID}}
	if lineID != "" {
		v.Set("orderLineId", lineID)
	}
	req, err := http.NewRequest(http.MethodGet, base+check.QueryOrderPath+"?"+v.Encode(), nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := kg.SignAPIG(req, nil, ak, sk, at); err != nil {
		t.Fatal(err)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	var out kg.QueryOrderResponse
	if err := json.Unmarshal(b, &out); err != nil {
		t.Fatalf("answer %s: %v", b, err)
	}
	return resp.StatusCode, out
}

func TestMarketStub(t *testing.T) {
	now := time.Date(2026, 11, 22, 10, 0, 0, 0, time.UTC)
	c := clock.Func(func() time.Time { return now })
	stub := check.NewMarketStub("ak1", "sk1", c, nil)
	srv := httptest.NewServer(stub)
	defer srv.Close()
	o := check.Order{OrderID: "CS2611221000ABCDE", OrderType: kg.OrderTypeNew, CreateTime: "20261122100000",
		OrderLine: []kg.OrderLine{{OrderLineID: "CS2611221000ABCDE-000001", ChargingMode: kg.ChargingPeriod}, {OrderLineID: "CS2611221000ABCDE-000002", ChargingMode: kg.ChargingPeriod}}}
	if err := stub.PublishOrder(o); err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		name       string
		ak, sk, id string
		line       string
		at         time.Time
		status     int
		code       string
		lines      int
	}{
		{"whole order", "ak1", "sk1", o.OrderID, "", now, 200, kg.MKTSuccess, 2},
		{"one line", "ak1", "sk1", o.OrderID, "CS2611221000ABCDE-000002", now, 200, kg.MKTSuccess, 1},
		{"unknown line", "ak1", "sk1", o.OrderID, "nope", now, 500, kg.MKTBadInput, 0},
		{"unknown order", "ak1", "sk1", "CS0000000000XXXXX", "", now, 500, kg.MKTBadInput, 0},
		{"wrong SK", "ak1", "sk2", o.OrderID, "", now, 401, kg.MKTIllegalToken, 0},
		{"unknown AK", "ak9", "sk1", o.OrderID, "", now, 401, kg.MKTIllegalToken, 0},
		{"stale date", "ak1", "sk1", o.OrderID, "", now.Add(-time.Hour), 401, kg.MKTIllegalToken, 0},
	}
	for _, tc := range cases {
		status, out := queryOrder(t, srv.URL, tc.ak, tc.sk, tc.id, tc.line, tc.at)
		if status != tc.status || out.ResultCode != tc.code {
			t.Errorf("%s: HTTP %d %s, want %d %s (%s)", tc.name, status, out.ResultCode, tc.status, tc.code, out.ResultMsg)
			continue
		}
		if tc.lines > 0 && (out.OrderInfo == nil || len(out.OrderInfo.OrderLine) != tc.lines) {
			t.Errorf("%s: orderInfo %+v, want %d lines", tc.name, out.OrderInfo, tc.lines)
		}
	}
	if n := stub.Queried(o.OrderID); n != 3 {
		t.Errorf("Queried = %d, want 3 (authenticated calls only)", n)
	}
}

func TestMarketStubForwardsUnknownOrders(t *testing.T) {
	upstream := check.NewMarketStub("up-ak", "up-sk", nil, nil)
	_ = upstream.PublishOrder(check.Order{OrderID: "MOCKPERIODYEARNEW", OrderType: kg.OrderTypeNew,
		OrderLine: []kg.OrderLine{{OrderLineID: "MOCKPERIODYEARNEW-000001", ChargingMode: kg.ChargingPeriod}}})
	up := httptest.NewServer(upstream)
	defer up.Close()
	stub := check.NewMarketStub("ak1", "sk1", nil, nil)
	stub.Upstream, stub.UpstreamAK, stub.UpstreamSK = up.URL, "up-ak", "up-sk"
	srv := httptest.NewServer(stub)
	defer srv.Close()
	status, out := queryOrder(t, srv.URL, "ak1", "sk1", "MOCKPERIODYEARNEW", "", time.Now())
	if status != 200 || out.ResultCode != kg.MKTSuccess || out.OrderInfo == nil || out.OrderInfo.OrderID != "MOCKPERIODYEARNEW" {
		t.Fatalf("forwarded: HTTP %d %+v", status, out)
	}
	if upstream.Queried("MOCKPERIODYEARNEW") != 1 {
		t.Error("the upstream was not asked (with its own credentials)")
	}
}
