package merchant

import (
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/soukhq/souk/internal/lockedbuf"
	"github.com/soukhq/souk/kg"
	"github.com/soukhq/souk/merchant/handoff"
)

// lastChangeCheckProductInfo is the productInfo of the last
// instance.change_check event the vendor app received.
func (e *env) lastChangeCheckProductInfo() string {
	e.t.Helper()
	evs := e.app.eventsOf(EventChangeCheck)
	if len(evs) == 0 {
		e.t.Fatal("the app received no instance.change_check")
	}
	var d struct {
		ProductInfo json.RawMessage `json:"productInfo"`
	}
	if err := json.Unmarshal(evs[len(evs)-1].Data, &d); err != nil {
		e.t.Fatal(err)
	}
	return string(d.ProductInfo)
}

// changeInstanceCheck's productInfo is undocumented: every documented form
// (object, list of one or more objects, a string holding either) is accepted
// whatever its members and member types, and the vendor app receives it
// exactly as KooGallery sent it.
func TestChangeCheckProductInfoReachesAppAsReceived(t *testing.T) {
	e := newEnv(t, "sqlite")
	id := e.provisioned("PI1")
	for _, tc := range []struct{ name, sent, app string }{
		{"extra members", `{"productId":"p","skuCode":"s","linearValue":10,"periodType":"month","specCode":"c.large","extendParams":[{"name":"n","value":"v"}]}`,
			`{"productId":"p","skuCode":"s","linearValue":10,"periodType":"month","specCode":"c.large","extendParams":[{"name":"n","value":"v"}]}`},
		{"two-element list", `[{"productId":"p1","skuCode":"s1","linearValue":1},{"productId":"p2","skuCode":"s2","linearValue":"2"}]`,
			`[{"productId":"p1","skuCode":"s1","linearValue":1},{"productId":"p2","skuCode":"s2","linearValue":"2"}]`},
		{"linearValue with a unit", `{"productId":"p","linearValue":"10GB"}`, `{"productId":"p","linearValue":"10GB"}`},
		{"string form", `"{\"productId\":\"p\",\"periodType\":\"year\",\"linearValue\":1.50}"`, `{"productId":"p","periodType":"year","linearValue":1.50}`},
		{"string holding a list", `"[{\"productId\":\"p\"},{\"specCode\":\"x\"}]"`, `[{"productId":"p"},{"specCode":"x"}]`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := e.call(`{"activity":"changeInstanceCheck","instanceId":"` + id + `","productInfo":` + tc.sent + `}`)
			if r.ResultCode != kg.CodeSuccess {
				t.Fatalf("%s %s", r.ResultCode, r.ResultMsg)
			}
			if got := e.lastChangeCheckProductInfo(); got != tc.app {
				t.Fatalf("the app received productInfo %s, want %s", got, tc.app)
			}
		})
	}
	for _, tc := range []struct{ name, sent, field string }{
		{"empty list", `[]`, "productInfo"},
		{"list of a string", `["p"]`, "productInfo[0]"},
		{"number", `5`, "productInfo"},
		{"string not JSON", `"p"`, "productInfo"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := e.call(`{"activity":"changeInstanceCheck","instanceId":"` + id + `","productInfo":` + tc.sent + `}`)
			if r.ResultCode != kg.CodeBadParam || !containsField(r.ResultMsg, tc.field) {
				t.Fatalf("%s %s, want 000002 naming %s", r.ResultCode, r.ResultMsg, tc.field)
			}
		})
	}
}

// containsField reports whether a 000002 message names exactly field.
func containsField(msg, field string) bool {
	return strings.Contains(msg, "invalid field "+field+":")
}

// A blank required member is missing (000002 naming it), never an
// idempotency key or an instance ID.
func TestBlankRequiredMembersRefused(t *testing.T) {
	e := newEnv(t, "sqlite")
	id := e.provisioned("BL1")
	for _, tc := range []struct {
		field string
		body  map[string]string
	}{
		{"orderId", map[string]string{"activity": "newInstance", "orderId": " ", "orderLineId": "BL2-1", "businessId": "biz-bl2"}},
		{"orderLineId", map[string]string{"activity": "newInstance", "orderId": "BL2", "orderLineId": "\t", "businessId": "biz-bl2"}},
		{"businessId", map[string]string{"activity": "newInstance", "orderId": "BL2", "orderLineId": "BL2-1", "businessId": "  "}},
		{"orderId", map[string]string{"activity": "upgradeInstance", "instanceId": id, "orderId": " ", "orderLineId": "U-1"}},
		{"orderLineId", map[string]string{"activity": "refreshInstance", "instanceId": id, "orderId": "R", "orderLineId": " ", "scene": "RENEWAL", "expireTime": "20300101000000"}},
		{"scene", map[string]string{"activity": "refreshInstance", "instanceId": id, "orderId": "R", "orderLineId": "R-1", "scene": " ", "expireTime": "20300101000000"}},
		{"instanceId", map[string]string{"activity": "releaseInstance", "instanceId": " "}},
		{"orderId", map[string]string{"activity": "orderNotify", "orderId": " ", "orderLineId": "N-1"}},
	} {
		if r := e.call(tc.body); r.ResultCode != kg.CodeBadParam || !containsField(r.ResultMsg, tc.field) {
			t.Fatalf("%v: %s %s, want 000002 naming %s", tc.body, r.ResultCode, r.ResultMsg, tc.field)
		}
	}
	if n := e.count(`SELECT COUNT(*) FROM merchant_operations WHERE TRIM(order_id) = '' AND activity <> 'changeInstanceCheck'`); n != 0 {
		t.Fatalf("%d operations keyed on a blank order", n)
	}
	if n := e.count(`SELECT COUNT(*) FROM merchant_instances`); n != 1 {
		t.Fatalf("%d instances, want 1", n)
	}
}

// usageValue is a Double(12,4) (8 integer digits, 4 decimals) at every entry
// point, by kg's one check: usage records, usageInfo from the API and from
// the app. A usageInfo list holds at most MaxUsageInfoEntries entries.
func TestUsageValuesAreDouble12_4Everywhere(t *testing.T) {
	e := newEnv(t, "sqlite")
	e.market.addOrder("DV1", "DV1-000001", ChargingOnDemand, "prod-od", "sku-od")
	id := e.call(newInstanceBody("DV1", "DV1-000001", "biz-dv1", false)).InstanceID
	path := "/api/v1/instances/" + id + "/usage"
	rec := func(sn, v string) map[string]any {
		return map[string]any{"meteringSn": sn, "usageValue": v, "beginTime": "2026-01-01T00:00:00Z", "endTime": "20260101T010000Z"}
	}
	info := func(n int, v any) []map[string]any {
		var out []map[string]any
		for i := range n {
			out = append(out, map[string]any{"usageValue": v, "statisticalTime": "20260101000000000", "relatedInstanceId": fmt.Sprintf("pkg-%d", i)})
		}
		return out
	}
	for _, v := range []string{"100000000", "123456789", "999999999999.9999"} {
		if code, body := e.api("POST", path, map[string]any{"records": []any{rec("big", v)}}, testAdmin); code != 400 || body["field"] != "records[0].usageValue" {
			t.Fatalf("record usageValue %s: %d %v, want 400 naming records[0].usageValue", v, code, body)
		}
		if code, body := e.api("POST", path, map[string]any{"usageInfo": info(1, json.Number(v))}, testAdmin); code != 400 || body["field"] != "usageInfo[0].usageValue" {
			t.Fatalf("usageInfo usageValue %s: %d %v, want 400 naming usageInfo[0].usageValue", v, code, body)
		}
	}
	if code, body := e.api("POST", path, map[string]any{"usageInfo": info(MaxUsageInfoEntries+1, 1)}, testAdmin); code != 400 || body["field"] != "usageInfo" {
		t.Fatalf("%d usageInfo entries: %d %v, want 400 naming usageInfo", MaxUsageInfoEntries+1, code, body)
	}
	if code, body := e.api("POST", path, map[string]any{"usageInfo": info(MaxUsageInfoEntries, 1)}, testAdmin); code != 200 {
		t.Fatalf("%d usageInfo entries: %d %v", MaxUsageInfoEntries, code, body)
	}
	usage := func() []kg.UsageInfo {
		t.Helper()
		q := e.call(map[string]string{"activity": "queryInstance", "instanceId": id})
		if q.ResultCode != kg.CodeSuccess {
			t.Fatalf("queryInstance: %s", q.raw)
		}
		// What souk answers, kg (and so souk market) accepts.
		if _, err := kg.DecodeQueryInstanceResponse(q.raw); err != nil {
			t.Fatalf("kg refuses the answer: %v: %s", err, q.raw)
		}
		return q.Info[0].UsageInfo
	}
	// The largest Double(12,4) is accepted. A cumulative total beyond it
	// cannot go to KooGallery: the records stand and are pushed, and
	// queryInstance keeps the last valid usageInfo.
	if code, body := e.api("POST", path, map[string]any{"records": []any{rec("max", "99999999.9999")}}, testAdmin); code != 200 {
		t.Fatalf("record 99999999.9999: %d %v", code, body)
	}
	if u := usage(); len(u) != 1 || u[0].UsageValue != "99999999.9999" {
		t.Fatalf("usageInfo %+v", u)
	}
	if code, body := e.api("POST", path, map[string]any{"records": []any{rec("more", "0.0001")}}, testAdmin); code != 200 {
		t.Fatalf("record beyond the cumulative maximum: %d %v", code, body)
	}
	if u := usage(); len(u) != 1 || u[0].UsageValue != "99999999.9999" {
		t.Fatalf("usageInfo beyond Double(12,4): %+v", u)
	}
	// A value stored before the check is never sent: it is settled as
	// rejected; the valid records go out.
	if _, err := e.db.Exec(e.ctx, `INSERT INTO merchant_usage (metering_sn, instance_id, usage_value, begin_at, end_at, record_at, relate_pkg_instance, test_flag, pushed_at, push_result, created_at)
		VALUES ('legacy', $1, '123456789012', $2, $3, $3, '', 0, 0, '', $2)`, id, e.clock.Now().Add(-2*time.Hour).UnixMilli(), e.clock.Now().Add(-time.Hour).UnixMilli()); err != nil {
		t.Fatal(err)
	}
	e.runJobs(time.Second)
	e.market.mu.Lock()
	sent := map[string]any{}
	for _, p := range e.market.pushes {
		for _, r := range p {
			sent[r["metering_sn"].(string)] = r["usage_value"]
		}
	}
	e.market.mu.Unlock()
	if len(sent) != 2 || sent["max"] != "99999999.9999" || sent["more"] != "0.0001" {
		t.Fatalf("pushed %v, want max and more", sent)
	}
	var result string
	if err := e.db.QueryRow(e.ctx, `SELECT push_result FROM merchant_usage WHERE metering_sn = 'legacy' AND pushed_at > 0`).Scan(&result); err != nil || !strings.HasPrefix(result, "rejected by souk") {
		t.Fatalf("legacy record: %q %v", result, err)
	}
	// The app's answer: the same checks; a refused answer is a failed
	// delivery naming the field, and the stored usageInfo is unchanged.
	before := usage()
	for i, tc := range []struct{ answer, want string }{
		{`{"usageInfo":[{"usageValue":123456789,"statisticalTime":"20260101000000000"}]}`, "usageInfo[0].usageValue"},
		{`{"usageInfo":` + mustJSON(t, info(MaxUsageInfoEntries+1, 1)) + `}`, "usageInfo: has 101 entries"},
	} {
		e.app.answers.Store(EventRenewed, tc.answer)
		line := fmt.Sprintf("R%d", i)
		if r := e.call(map[string]string{"activity": "refreshInstance", "instanceId": id, "orderId": "R-" + line, "orderLineId": line, "scene": "RENEWAL", "expireTime": "20300101000000"}); r.ResultCode != kg.CodeSuccess {
			t.Fatalf("refresh: %s %s", r.ResultCode, r.ResultMsg)
		}
		e.runJobs(time.Second)
		evs, err := handoff.List(e.ctx, e.db, handoff.Filter{Type: EventRenewed, Limit: 10})
		if err != nil {
			t.Fatal(err)
		}
		found := false
		for _, ev := range evs {
			if strings.Contains(string(ev.Data), `"renewOrderId":"R-`+line+`"`) {
				found = true
				if ev.State == handoff.StateDelivered || !strings.Contains(ev.LastError, tc.want) {
					t.Fatalf("answer %s: event %s, last error %q; want a failed delivery naming %s", tc.answer, ev.State, ev.LastError, tc.want)
				}
			}
		}
		if !found {
			t.Fatalf("no renewed event for %s", line)
		}
		if after := usage(); len(after) != len(before) || after[0] != before[0] {
			t.Fatalf("usageInfo changed by a refused answer: %+v", after)
		}
	}
}

func mustJSON(t *testing.T, v any) string {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// statisticalTime is mandatory (yyyyMMddHHmmssSSS): usageInfo without it is
// refused from the API and from the app, naming usageInfo[i].statisticalTime,
// and queryInstance never answers it empty.
func TestUsageInfoStatisticalTimeRequired(t *testing.T) {
	e := newEnv(t, "sqlite")
	e.market.addOrder("ST1", "ST1-000001", ChargingOnDemand, "prod-od", "sku-od")
	id := e.call(newInstanceBody("ST1", "ST1-000001", "biz-st1", false)).InstanceID
	path := "/api/v1/instances/" + id + "/usage"
	ok := map[string]any{"usageValue": 1, "statisticalTime": "20260101000000000"}
	for _, st := range []any{nil, "", "   ", "2026", "20261301000000000", "2026010100000000x", "20260101000000"} {
		second := map[string]any{"usageValue": 2}
		if st != nil {
			second["statisticalTime"] = st
		}
		body := map[string]any{"usageInfo": []any{ok, second}}
		if code, resp := e.api("POST", path, body, testAdmin); code != 400 || resp["field"] != "usageInfo[1].statisticalTime" {
			t.Fatalf("statisticalTime %v: %d %v, want 400 naming usageInfo[1].statisticalTime", st, code, resp)
		}
	}
	if code, resp := e.api("POST", path, map[string]any{"usageInfo": []any{ok}}, testAdmin); code != 200 {
		t.Fatalf("valid usageInfo: %d %v", code, resp)
	}
	// From the app: a failed delivery naming the field; nothing stored.
	e.app.answers.Store(EventRenewed, `{"usageInfo":[{"usageValue":5}]}`)
	if r := e.call(map[string]string{"activity": "refreshInstance", "instanceId": id, "orderId": "R-ST", "orderLineId": "R-ST-1", "scene": "RENEWAL", "expireTime": "20300101000000"}); r.ResultCode != kg.CodeSuccess {
		t.Fatalf("refresh: %s %s", r.ResultCode, r.ResultMsg)
	}
	e.runJobs(time.Second)
	evs, err := handoff.List(e.ctx, e.db, handoff.Filter{Type: EventRenewed, Limit: 10})
	if err != nil || len(evs) != 1 || evs[0].State == handoff.StateDelivered || !strings.Contains(evs[0].LastError, "usageInfo[0].statisticalTime") {
		t.Fatalf("app answer without statisticalTime: %+v %v", evs, err)
	}
	q := e.call(map[string]string{"activity": "queryInstance", "instanceId": id})
	if u := q.Info[0].UsageInfo; len(u) != 1 || u[0].UsageValue != "1" || u[0].StatisticalTime != "20260101000000000" {
		t.Fatalf("usageInfo after a refused answer: %s", q.raw)
	}
	// A usageInfo stored without it (before souk required it) goes out
	// stamped, never "".
	if _, err := e.db.Exec(e.ctx, `UPDATE merchant_instances SET usage_info = $2 WHERE instance_id = $1`, id, `[{"usageValue":"3","statisticalTime":""}]`); err != nil {
		t.Fatal(err)
	}
	q = e.call(map[string]string{"activity": "queryInstance", "instanceId": id})
	if u := q.Info[0].UsageInfo; len(u) != 1 || u[0].StatisticalTime != statisticalTime(e.clock.Now()) {
		t.Fatalf("stored usageInfo without statisticalTime answered %s", q.raw)
	}
	if _, err := kg.DecodeQueryInstanceResponse(q.raw); err != nil {
		t.Fatalf("kg refuses the answer: %v: %s", err, q.raw)
	}
}

// The vendor app's refusal code reaches KooGallery, the audit log and the
// metrics only when it is a refusal code (0001xx); anything else is answered
// 000100 with a warning naming it (truncated). resultMsg is capped.
func TestChangeCheckVerdictCodeBounded(t *testing.T) {
	var logs lockedbuf.Buffer
	e := newEnv(t, "sqlite", func(_ *Config, d *Deps) {
		d.Logger = slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelWarn}))
	})
	id := e.provisioned("VC1")
	huge := strings.Repeat("7", 5000)
	for _, tc := range []struct{ code, want string }{
		{huge, "000100"}, {"000106", "000106"}, {"000150", "000150"}, {" 000103 ", "000103"}, {"", "000100"},
		{"000000", "000100"}, {"000002", "000100"}, {"000005", "000100"},
		{"123456", "000100"}, {"00010", "000100"}, {"0001x1", "000100"}, {"０００１０１", "000100"},
	} {
		ans, _ := json.Marshal(map[string]any{"allowed": false, "resultCode": tc.code, "resultMsg": "no: " + strings.Repeat("m", 1000)})
		e.app.answers.Store(EventChangeCheck, string(ans))
		r := e.call(`{"activity":"changeInstanceCheck","instanceId":"` + id + `","productInfo":{"productId":"p"}}`)
		if r.ResultCode != tc.want {
			t.Fatalf("app code %.20q: answered %s, want %s", tc.code, r.ResultCode, tc.want)
		}
		if n := len([]rune(r.ResultMsg)); n > 255 || !strings.HasPrefix(r.ResultMsg, "no: mmm") {
			t.Fatalf("app code %.20q: resultMsg of %d characters: %.40q", tc.code, n, r.ResultMsg)
		}
	}
	if l := logs.String(); !strings.Contains(l, `resultCode="\"7777777777`) || strings.Contains(l, strings.Repeat("7", 100)) || !strings.Contains(l, `\"123456\"`) {
		t.Fatalf("warnings do not name the bad codes, truncated:\n%.2000s", l)
	}
	// The audit log and the metrics only ever see bounded codes.
	if n := e.count(`SELECT COUNT(*) FROM audit_log WHERE activity = 'changeInstanceCheck' AND result_code NOT IN ('000100', '000103', '000106', '000150')`); n != 0 {
		t.Fatalf("%d audit rows with another code", n)
	}
	if n := e.count(`SELECT COUNT(*) FROM merchant_operations WHERE activity = 'changeInstanceCheck' AND (LENGTH(result) > 500)`); n != 0 {
		t.Fatalf("%d stored verdicts over 500 bytes", n)
	}
	resp, err := http.Get(e.srv.URL + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	metrics, _ := io.ReadAll(resp.Body)
	if strings.Contains(string(metrics), "7777777") || !strings.Contains(string(metrics), `souk_merchant_requests_total{activity="changeInstanceCheck",code="000100"} 9`) {
		t.Fatalf("metrics:\n%s", metrics)
	}
	// The label is bounded whatever code comes: documented codes and 0001xx.
	for code, want := range map[string]string{"000000": "000000", "000005": "000005", "000107": "000107", "000199": "000199", huge: "other", "000006": "other", "HTTP Not Found": "other"} {
		if got := metricCode(code); got != want {
			t.Errorf("metricCode(%.20q) = %q, want %q", code, got, want)
		}
	}
	// An audit row's result_code is truncated like its other columns.
	if err := insertAudits(e.ctx, e.db, []auditEntry{{At: e.clock.Now(), Source: "kg", Activity: "x-audit", ResultCode: huge, KeyIndex: -1}}); err != nil {
		t.Fatal(err)
	}
	if n := e.count(`SELECT LENGTH(result_code) FROM audit_log WHERE activity = 'x-audit'`); n > 32 {
		t.Fatalf("audit result_code of %d characters", n)
	}
}
