package merchant

import (
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/soukhq/souk/kg"
)

func TestManagementAPIAsyncCompletion(t *testing.T) {
	forBackends(t, func(t *testing.T, backend string) {
		e := newEnv(t, backend, func(c *Config, _ *Deps) { c.Budget = 500 * time.Millisecond })
		e.app.noApp.Store(true) // the app acknowledges and completes later through the API
		e.market.addOrder("API1", "API1-000001", ChargingPeriod, "prod-1", "sku-1")
		r := e.call(newInstanceBody("API1", "API1-000001", "biz-api", false))
		if r.ResultCode != kg.CodeInProgress {
			t.Fatalf("ack without appInfo: %s", r.ResultCode)
		}
		path := "/api/v1/instances/biz-api/appinfo"
		appInfo := map[string]any{"appInfo": map[string]string{"frontEndUrl": "https://later.example.com", "userName": "u", "password": "p"}}
		cases := []struct {
			name   string
			method string
			path   string
			body   any
			token  string
			status int
			field  string
		}{
			{"no token", "POST", path, appInfo, "", 401, ""},
			{"wrong token", "POST", path, appInfo, "nope", 401, ""},
			{"missing frontEndUrl", "POST", path, map[string]any{"appInfo": map[string]string{"adminUrl": "https://x.example.com"}}, testAdmin, 400, "appInfo.frontEndUrl"},
			{"relative url", "POST", path, map[string]any{"appInfo": map[string]string{"frontEndUrl": "/x"}}, testAdmin, 400, "appInfo.frontEndUrl"},
			{"javascript frontEndUrl", "POST", path, map[string]any{"appInfo": map[string]string{"frontEndUrl": "javascript://x.example.com/%0aalert(1)"}}, testAdmin, 400, "appInfo.frontEndUrl"},
			{"ftp adminUrl", "POST", path, map[string]any{"appInfo": map[string]string{"frontEndUrl": "https://x.example.com", "adminUrl": "ftp://x.example.com"}}, testAdmin, 400, "appInfo.adminUrl"},
			{"long memo", "POST", path, map[string]any{"appInfo": map[string]string{"frontEndUrl": "https://x.example.com", "memo": strings.Repeat("m", 1025)}}, testAdmin, 400, "appInfo.memo"},
			{"memo too long as sent", "POST", path, map[string]any{"appInfo": map[string]string{"frontEndUrl": "https://x.example.com", "memo": strings.Repeat("说", 171)}}, testAdmin, 400, "appInfo.memo"},
			{"ill-typed", "POST", path, map[string]any{"appInfo": map[string]any{"frontEndUrl": 5}}, testAdmin, 400, "appInfo.frontEndUrl"},
			{"unknown instance", "POST", "/api/v1/instances/nope/appinfo", appInfo, testAdmin, 404, ""},
			{"usage on a period instance", "POST", "/api/v1/instances/biz-api/usage", map[string]any{"meteringSn": "x", "usageValue": "1", "beginTime": "20260101T000000Z", "endTime": "20260101T010000Z"}, testAdmin, 409, ""},
			{"ok", "POST", path, appInfo, testAdmin, 200, ""},
			{"get instance", "GET", "/api/v1/instances/biz-api", nil, testAdmin, 200, ""},
		}
		for _, c := range cases {
			t.Run(c.name, func(t *testing.T) {
				code, body := e.api(c.method, c.path, c.body, c.token)
				if code != c.status {
					t.Fatalf("status %d (%v), want %d", code, body, c.status)
				}
				if c.field != "" && body["field"] != c.field {
					t.Fatalf("field %v, want %s (%v)", body["field"], c.field, body)
				}
			})
		}
		q := e.call(map[string]string{"activity": "queryInstance", "instanceId": "biz-api"})
		if q.ResultCode != kg.CodeSuccess || q.Info[0].AppInfo.FrontEndURL != "https://later.example.com" {
			t.Fatalf("query after API completion: %s", q.raw)
		}
		// The instance view masks the password; every API call is audited.
		_, inst := e.api("GET", "/api/v1/instances/biz-api", nil, testAdmin)
		if app := inst["appInfo"].(map[string]any); app["password"] != "******" {
			t.Fatalf("password not masked: %v", app)
		}
		if n := e.count(`SELECT COUNT(*) FROM audit_log WHERE source = 'api'`); n < len(cases) {
			t.Fatalf("%d API audit rows, want ≥ %d", n, len(cases))
		}
		if n := e.count(`SELECT COUNT(*) FROM audit_log WHERE message LIKE '%later.example%' OR message LIKE '%admin-token%'`); n != 0 {
			t.Fatal("audit log holds request content")
		}
	})
}

func TestUsageRecordAndPush(t *testing.T) {
	forBackends(t, func(t *testing.T, backend string) {
		e := newEnv(t, backend)
		e.market.addOrder("USE1", "USE1-000001", ChargingOnDemand, "prod-od", "sku-od")
		id := e.call(newInstanceBody("USE1", "USE1-000001", "biz-use", false)).InstanceID
		rec := func(sn, v string) map[string]any {
			return map[string]any{"meteringSn": sn, "usageValue": v, "beginTime": "2026-01-01T00:00:00Z", "endTime": "20260101T010000Z"}
		}
		bad := []struct {
			name  string
			body  any
			field string
		}{
			{"no records", map[string]any{}, "records"},
			{"zero value", map[string]any{"records": []any{rec("a", "0")}}, "records[0].usageValue"},
			{"5 decimals", map[string]any{"records": []any{rec("a", "1.00001")}}, "records[0].usageValue"},
			{"negative", map[string]any{"records": []any{rec("a", "-1")}}, "records[0].usageValue"},
			{"no sn", map[string]any{"records": []any{rec("", "1")}}, "records[0].meteringSn"},
			{"bad time", map[string]any{"records": []any{map[string]any{"meteringSn": "a", "usageValue": "1", "beginTime": "yesterday", "endTime": "20260101T010000Z"}}}, "records[0].beginTime"},
			{"end before begin", map[string]any{"records": []any{map[string]any{"meteringSn": "a", "usageValue": "1", "beginTime": "20260101T020000Z", "endTime": "20260101T010000Z"}}}, "records[0].endTime"},
		}
		for _, c := range bad {
			code, body := e.api("POST", "/api/v1/instances/"+id+"/usage", c.body, testAdmin)
			if code != 400 || body["field"] != c.field {
				t.Fatalf("%s: %d %v, want 400 naming %s", c.name, code, body, c.field)
			}
		}
		// 1500 records in two calls (≤1000 each), one duplicate sn.
		var recs []any
		for i := range 1000 {
			recs = append(recs, rec(fmt.Sprintf("sn-%04d", i), "0.5"))
		}
		if code, body := e.api("POST", "/api/v1/instances/"+id+"/usage", map[string]any{"records": recs, "dashboardUrl": "https://dash.example.com"}, testAdmin); code != 200 || body["recorded"] != float64(1000) {
			t.Fatalf("record 1000: %d %v", code, body)
		}
		recs = recs[:0]
		for i := 999; i < 1500; i++ {
			recs = append(recs, rec(fmt.Sprintf("sn-%04d", i), "0.5"))
		}
		if code, body := e.api("POST", "/api/v1/instances/"+id+"/usage", map[string]any{"records": recs}, testAdmin); code != 200 || body["duplicates"] != float64(1) {
			t.Fatalf("record 501: %d %v", code, body)
		}
		q := e.call(map[string]string{"activity": "queryInstance", "instanceId": id})
		if u := q.Info[0].UsageInfo; len(u) != 1 || u[0].UsageValue != "750" || u[0].DashboardURL != "https://dash.example.com" || len(u[0].StatisticalTime) != 17 {
			t.Fatalf("usageInfo: %s", q.raw)
		}
		// The push is durable: a failure is retried, then every record goes out once.
		e.market.failPush.Store(true)
		e.runJobs(time.Second)
		if e.count(`SELECT COUNT(*) FROM merchant_usage WHERE pushed_at = 0`) != 1500 {
			t.Fatal("records marked pushed although the push failed")
		}
		e.market.failPush.Store(false)
		for range 3 {
			e.runJobs(2 * time.Hour)
		}
		if n := e.count(`SELECT COUNT(*) FROM merchant_usage WHERE pushed_at = 0`); n != 0 {
			t.Fatalf("%d records not pushed", n)
		}
		e.market.mu.Lock()
		seen := map[string]bool{}
		for _, p := range e.market.pushes {
			if len(p) > MaxUsageRecordsPerPush {
				t.Fatalf("push of %d records", len(p))
			}
			for _, r := range p {
				seen[r["metering_sn"].(string)] = true
				if r["instance_id"] != id || r["usage_value"] != "0.5" || len(r["begin_time"].(string)) != 16 {
					t.Fatalf("pushed record: %v", r)
				}
			}
		}
		e.market.mu.Unlock()
		if len(seen) != 1500 {
			t.Fatalf("%d distinct records pushed, want 1500", len(seen))
		}
		if e.market.badSig.Load() != 0 {
			t.Fatal("usage push signature rejected")
		}
	})
}

func TestOperationsEndpoints(t *testing.T) {
	e := newEnv(t, "sqlite")
	id := e.provisioned("OPS1")
	e.call(map[string]string{"activity": "queryInstance", "instanceId": id})
	get := func(path string) (int, string) {
		resp, err := http.Get(e.srv.URL + path)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	if c, _ := get("/healthz"); c != 200 {
		t.Fatalf("healthz %d", c)
	}
	if c, _ := get("/readyz"); c != 200 {
		t.Fatalf("readyz %d", c)
	}
	c, metrics := get("/metrics")
	for _, want := range []string{
		`souk_merchant_requests_total{activity="newInstance",code="000000"} 1`,
		`souk_merchant_requests_total{activity="queryInstance",code="000000"} 1`,
		`souk_merchant_signature_variants_total{variant="timestamp_ms"}`,
		`souk_merchant_request_duration_seconds_bucket{activity="newInstance"`,
		`souk_merchant_handoff_backlog 0`,
		`souk_merchant_handoff_dead 0`,
		`souk_merchant_handoff_attempts_total{outcome="delivered",type="instance.created"} 1`,
	} {
		if c != 200 || !strings.Contains(metrics, want) {
			t.Fatalf("metrics lack %q:\n%s", want, metrics)
		}
	}
	_ = e.db.Close()
	if c, _ := get("/readyz"); c != http.StatusServiceUnavailable {
		t.Fatalf("readyz with a closed database: %d", c)
	}
}
