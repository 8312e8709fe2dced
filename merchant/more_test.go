package merchant

import (
	"bytes"
	"context"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/soukhq/souk/db"
	"github.com/soukhq/souk/kg"
	"github.com/soukhq/souk/merchant/handoff"
)

func TestConfigValidate(t *testing.T) {
	cases := []struct {
		name string
		cfg  Config
		want string // substring of the error; "" = valid
	}{
		{"minimal", Config{AccessKeys: []string{"k"}}, ""},
		{"no key", Config{}, "SOUK_ACCESS_KEY"},
		{"empty key", Config{AccessKeys: []string{"k", " "}}, "access key #2"},
		{"bad market url", Config{AccessKeys: []string{"k"}, MarketURL: "ftp://x"}, "market URL"},
		{"webhook without secret", Config{AccessKeys: []string{"k"}, WebhookURL: "https://app.example.com"}, "SOUK_WEBHOOK_SECRET"},
		{"bad encrypt type", Config{AccessKeys: []string{"k"}, EncryptType: "3"}, "encrypt type"},
		{"bad product encrypt", Config{AccessKeys: []string{"k"}, ProductEncrypt: map[string]string{"p": "x"}}, "product p"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			err := c.cfg.Validate()
			if c.want == "" && err != nil || c.want != "" && (err == nil || !strings.Contains(err.Error(), c.want)) {
				t.Fatalf("Validate = %v, want %q", err, c.want)
			}
		})
	}
	m, err := ParseProductEncrypt(" a=1, b=0 ,")
	if err != nil || m["a"] != "1" || m["b"] != "0" || len(m) != 2 {
		t.Fatalf("ParseProductEncrypt: %v %v", m, err)
	}
	if _, err := ParseProductEncrypt("a"); err == nil {
		t.Fatal("ParseProductEncrypt accepted a pair without =")
	}
	if k := SplitKeys(" k1, ,k2 "); len(k) != 2 || k[0] != "k1" || k[1] != "k2" {
		t.Fatalf("SplitKeys: %q", k)
	}
	c := Config{EncryptType: "1", ProductEncrypt: map[string]string{"plain": "0", "aes128": "2"}}
	if c.encryptTypeFor("x") != "1" || c.encryptTypeFor("plain") != "" || c.encryptTypeFor("aes128") != "2" {
		t.Fatal("encryptTypeFor")
	}
}

func TestUsageValues(t *testing.T) {
	cases := []struct {
		in     string
		zeroOK bool
		want   string // formatted; "" = error
	}{
		{"1", false, "1"}, {"0.5", false, "0.5"}, {"12.3400", false, "12.34"}, {"0", true, "0"}, {"0", false, ""},
		{"-1", true, ""}, {"1e3", true, "1000"}, {"1.23456", true, ""}, {"", true, ""}, {".5", true, ""},
		{"99999999.9999", true, "99999999.9999"}, {"100000000", true, ""}, {"999999999999.9999", true, ""}, {"1000000000000", true, ""}, {"+1", true, ""},
	}
	for _, c := range cases {
		v, err := kg.ParseUsageValue(c.in, !c.zeroOK)
		got := ""
		if err == nil {
			got = kg.FormatUsageValue(v)
		}
		if got != c.want {
			t.Errorf("kg.ParseUsageValue(%q, %v) → %q (%v), want %q", c.in, !c.zeroOK, got, err, c.want)
		}
	}
}

func TestParseOrderAnswerShapes(t *testing.T) {
	cases := []struct {
		name, body, line   string
		mode, product, sku string
		wantErr            string
	}{
		{"line array, product array", `{"resultCode":"MKT.0000","orderInfo":{"orderId":"o","orderLine":[{"orderLineId":"a","chargingMode":"PERIOD"},{"orderLineId":"b","chargingMode":"on_demand","productInfo":[{"productId":"p","skuCode":"s"}]}]}}`, "b", ChargingOnDemand, "p", "s", ""},
		{"single objects, numbers", `{"resultCode":"MKT.0000","orderInfo":{"orderId":"o","orderLine":{"orderLineId":"a","chargingMode":"ONE_TIME","productInfo":{"productId":42,"skuCode":"s"}}}}`, "", ChargingOneTime, "42", "s", ""},
		{"order-level product", `{"resultCode":"MKT.0000","orderInfo":{"orderId":"o","chargingMode":"PERIOD","productInfo":[{"productId":"p"}]}}`, "x", ChargingPeriod, "p", "", ""},
		{"missing line", `{"resultCode":"MKT.0000","orderInfo":{"orderId":"o","orderLine":[{"orderLineId":"a"}]}}`, "b", "", "", "", "no line"},
		{"on demand without product", `{"resultCode":"MKT.0000","orderInfo":{"orderId":"o","orderLine":[{"orderLineId":"a","chargingMode":"ON_DEMAND"}]}}`, "a", "", "", "", "productId"},
		{"refused", `{"resultCode":"MKT.0100","resultMsg":"no such order"}`, "", "", "", "", "MKT.0100"},
		{"no orderInfo", `{"resultCode":"MKT.0000"}`, "", "", "", "", "orderInfo"},
		{"not json", `<html>`, "", "", "", "", "not JSON"},
		{"productId too long", `{"resultCode":"MKT.0000","orderInfo":{"orderId":"o","orderLine":[{"orderLineId":"a","chargingMode":"PERIOD","productInfo":[{"productId":"` + strings.Repeat("p", 65) + `","skuCode":"s"}]}]}}`, "a", "", "", "", "productId is 65 characters, more than 64"},
		{"skuCode too long", `{"resultCode":"MKT.0000","orderInfo":{"orderId":"o","orderLine":[{"orderLineId":"a","chargingMode":"PERIOD","productInfo":[{"productId":"p","skuCode":"` + strings.Repeat("s", 1000) + `"}]}]}}`, "a", "", "", "", "skuCode"},
		{"orderInfo too big", `{"resultCode":"MKT.0000","orderInfo":{"orderId":"o","note":"` + strings.Repeat("n", 70<<10) + `","chargingMode":"PERIOD","productInfo":[{"productId":"p"}]}}`, "", "", "", "", "more than 65536"},
		{"64 characters fit", `{"resultCode":"MKT.0000","orderInfo":{"orderId":"o","orderLine":[{"orderLineId":"a","chargingMode":"PERIOD","productInfo":[{"productId":"` + strings.Repeat("界", 64) + `","skuCode":"s"}]}]}}`, "a", ChargingPeriod, strings.Repeat("界", 64), "s", ""},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			o, err := ParseOrderAnswer([]byte(c.body), c.line)
			if c.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), c.wantErr) {
					t.Fatalf("err %v, want %q", err, c.wantErr)
				}
				return
			}
			if err != nil || o.ChargingMode != c.mode || o.ProductID != c.product || o.SkuCode != c.sku {
				t.Fatalf("%+v %v", o, err)
			}
		})
	}
}

func TestQueryMixedAndAPIEdges(t *testing.T) {
	forBackends(t, func(t *testing.T, backend string) {
		e := newEnv(t, backend, func(c *Config, _ *Deps) { c.Budget = 500 * time.Millisecond })
		ready := e.provisioned("MIX1")
		e.market.down.Store(true)
		pending := e.call(newInstanceBody("MIX2", "MIX2-000001", "biz-mix2", false)).InstanceID
		e.market.down.Store(false)
		q := e.call(map[string]string{"activity": "queryInstance", "instanceId": pending + "," + ready + ",unknown"})
		if q.ResultCode != kg.CodeSuccess || len(q.Info) != 1 || q.Info[0].InstanceID != ready {
			t.Fatalf("mixed query: %s", q.raw)
		}
		// Events API: get one, replay one, unknown → 404.
		evs, _ := handoff.List(e.ctx, e.db, handoff.Filter{Type: EventCreated})
		if len(evs) != 1 {
			t.Fatalf("events: %v", evs)
		}
		if code, body := e.api("GET", "/api/v1/events/"+evs[0].ID, nil, testAdmin); code != 200 || body["id"] != evs[0].ID {
			t.Fatalf("get event: %d %v", code, body)
		}
		if code, _ := e.api("POST", "/api/v1/events/"+evs[0].ID+"/replay", nil, testAdmin); code != 202 {
			t.Fatalf("replay event: %d", code)
		}
		if code, _ := e.api("GET", "/api/v1/events/evt_nope", nil, testAdmin); code != 404 {
			t.Fatalf("unknown event: %d", code)
		}
		if code, _ := e.api("GET", "/api/v1/events?limit=0", nil, testAdmin); code != 400 {
			t.Fatalf("bad limit: %d", code)
		}
		if code, body := e.api("GET", "/api/v1/events?state=failed", nil, testAdmin); code != 400 || body["field"] != "state" {
			t.Fatalf("bad state: %d %v", code, body)
		}
		// usageInfo alone replaces what queryInstance reports (pay-per-use).
		e.market.addOrder("MIX3", "MIX3-000001", ChargingOnDemand, "prod-od", "sku")
		od := e.call(newInstanceBody("MIX3", "MIX3-000001", "biz-mix3", false)).InstanceID
		body := map[string]any{"usageInfo": []map[string]any{{"usageValue": 3.25, "statisticalTime": "20260101000000000", "relatedInstanceId": "pkg-1"}}}
		if code, resp := e.api("POST", "/api/v1/instances/"+od+"/usage", body, testAdmin); code != 200 {
			t.Fatalf("usageInfo: %d %v", code, resp)
		}
		q = e.call(map[string]string{"activity": "queryInstance", "instanceId": od})
		if u := q.Info[0].UsageInfo; len(u) != 1 || u[0].UsageValue != "3.25" || u[0].RelatedInstanceID != "pkg-1" {
			t.Fatalf("usageInfo after API: %s", q.raw)
		}
		bad := map[string]any{"usageInfo": []map[string]any{{"usageValue": "1", "statisticalTime": "2026"}}}
		if code, resp := e.api("POST", "/api/v1/instances/"+od+"/usage", bad, testAdmin); code != 400 || resp["field"] != "usageInfo[0].statisticalTime" {
			t.Fatalf("bad usageInfo: %d %v", code, resp)
		}
	})
}

func TestManagementAPIDisabledWithoutToken(t *testing.T) {
	e := newEnv(t, "sqlite", func(c *Config, _ *Deps) { c.AdminToken = "" })
	if code, _ := e.api("GET", "/api/v1/events", nil, "anything"); code != 503 {
		t.Fatalf("API without a configured token: %d", code)
	}
}

// While the admin token is rotated (SOUK_ADMIN_TOKEN=new,old) both are
// accepted; neither list nor a stranger is.
func TestManagementAPITokenRotation(t *testing.T) {
	e := newEnv(t, "sqlite", func(c *Config, _ *Deps) { c.AdminToken = "the-next-token, " + testAdmin })
	for _, tc := range []struct {
		token string
		want  int
	}{
		{testAdmin, 200},
		{"the-next-token", 200},
		{"the-next-token, " + testAdmin, 401},
		{"stranger", 401},
	} {
		if code, _ := e.api("GET", "/api/v1/events", nil, tc.token); code != tc.want {
			t.Errorf("token %q: HTTP %d, want %d", tc.token, code, tc.want)
		}
	}
}

// A merchant with no vendor app says at start how instances get their
// appInfo, and warns when nothing can complete them.
func TestStartupSaysWhoCompletesInstances(t *testing.T) {
	prov := ProvisionerFunc(func(context.Context, *handoff.Stored) (*Answer, error) { return &Answer{}, nil })
	for _, tc := range []struct {
		name       string
		webhook    string
		admin      string
		prov       Provisioner
		want, none string
	}{
		{name: "webhook", webhook: "http://app.example.com/hook", admin: testAdmin, none: "no vendor app|no webhook URL"},
		{name: "provisioner", prov: prov, none: "no vendor app|no webhook URL"},
		{name: "management API only", admin: testAdmin, want: "level=INFO msg=\"no webhook URL: the vendor app completes real instances with POST /api/v1/instances/{id}/appinfo\"", none: "no vendor app"},
		{name: "nothing", want: "level=WARN msg=\"no vendor app: with neither a webhook URL (--webhook-url, SOUK_WEBHOOK_URL)", none: "no webhook URL:"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var buf bytes.Buffer
			newEnv(t, "sqlite", func(c *Config, d *Deps) {
				c.WebhookURL, c.AdminToken = tc.webhook, tc.admin
				d.Provisioner = tc.prov
				d.Logger = slog.New(slog.NewTextHandler(&buf, nil))
			})
			out := buf.String()
			if tc.want != "" && !strings.Contains(out, tc.want) {
				t.Errorf("log lacks %q:\n%s", tc.want, out)
			}
			for _, s := range strings.Split(tc.none, "|") {
				if strings.Contains(out, s) {
					t.Errorf("log has %q:\n%s", s, out)
				}
			}
		})
	}
}

// Events of other components (the kit directory) are delivered by the same
// webhook; their answers never touch instances.
func TestForeignEventsDelivered(t *testing.T) {
	e := newEnv(t, "sqlite")
	var id string
	err := e.db.Tx(context.Background(), func(tx *db.Tx) error {
		var err error
		id, err = handoff.Emit(context.Background(), tx, e.clock.Now(), handoff.Event{Type: "tenant.synced", Subject: "tenant-1", Data: map[string]string{"tenantId": "tenant-1"}})
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	e.runJobs(time.Second)
	ev, _ := handoff.Get(e.ctx, e.db, id)
	if ev.State != handoff.StateDelivered || len(e.app.eventsOf("tenant.synced")) != 1 {
		t.Fatalf("kit event: %+v", ev)
	}
}

// Sandbox usage is recorded for queryInstance but never pushed.
func TestSandboxUsageNotPushed(t *testing.T) {
	e := newEnv(t, "sqlite")
	r := e.call(newInstanceBody("MOCKONDEMAND", "MOCKONDEMAND-000001", "biz-sbu", true))
	if r.ResultCode != kg.CodeSuccess {
		t.Fatalf("sandbox create: %s", r.ResultCode)
	}
	rec := map[string]any{"meteringSn": "sbx-1", "usageValue": "2", "beginTime": "20260101T000000Z", "endTime": "20260101T010000Z"}
	if code, resp := e.api("POST", "/api/v1/instances/"+r.InstanceID+"/usage", rec, testAdmin); code != 200 {
		t.Fatalf("sandbox usage: %d %v", code, resp)
	}
	e.runJobs(time.Hour)
	e.market.mu.Lock()
	n := len(e.market.pushes)
	e.market.mu.Unlock()
	if n != 0 {
		t.Fatal("sandbox usage was pushed to the marketplace")
	}
	q := e.call(map[string]string{"activity": "queryInstance", "instanceId": r.InstanceID, "testFlag": "1"})
	if q.Info[0].UsageInfo[0].UsageValue != "2" {
		t.Fatalf("sandbox usageInfo: %s", q.raw)
	}
}

// The public and admin sides split the routes: the production address on
// one, the management API and metrics on the other, health on both; Handler
// serves them all.
func TestHandlerSides(t *testing.T) {
	e := newEnv(t, "sqlite")
	pub := httptest.NewServer(e.m.PublicHandler())
	defer pub.Close()
	adm := httptest.NewServer(e.m.AdminHandler())
	defer adm.Close()
	get := func(base, path string) int {
		t.Helper()
		req, _ := http.NewRequest("GET", base+path, nil)
		req.Header.Set("Authorization", "Bearer "+testAdmin)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	post := func(base string) int {
		t.Helper()
		resp, err := http.Post(base+"/koogallery", "application/json", strings.NewReader(`{}`))
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	for _, tc := range []struct {
		name          string
		code          func(base string) int
		pub, adm, all int
	}{
		{"production address", post, 200, 404, 200},
		{"management API", func(b string) int { return get(b, "/api/v1/events") }, 404, 200, 200},
		{"metrics", func(b string) int { return get(b, "/metrics") }, 404, 200, 200},
		{"healthz", func(b string) int { return get(b, "/healthz") }, 200, 200, 200},
		{"readyz", func(b string) int { return get(b, "/readyz") }, 200, 200, 200},
	} {
		if got := tc.code(pub.URL); got != tc.pub {
			t.Errorf("%s on the public side: HTTP %d, want %d", tc.name, got, tc.pub)
		}
		if got := tc.code(adm.URL); got != tc.adm {
			t.Errorf("%s on the admin side: HTTP %d, want %d", tc.name, got, tc.adm)
		}
		if got := tc.code(e.srv.URL); got != tc.all {
			t.Errorf("%s on Handler: HTTP %d, want %d", tc.name, got, tc.all)
		}
	}
}
