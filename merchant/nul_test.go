package merchant

import (
	"testing"

	"github.com/soukhq/souk/kg"
)

// A field holding NUL (JSON "\u0000") is valid JSON and valid UTF-8, but no
// PostgreSQL text can hold it: such a request is answered 000002 naming the
// field, on both backends, and leaves its audit record.
func TestNULInFieldsIsABadField(t *testing.T) {
	forBackends(t, func(t *testing.T, backend string) {
		e := newEnv(t, backend)
		id := e.provisioned("CSNUL1")
		cases := []map[string]string{
			newInstanceBody("CS\x00NUL", "CS-000001", "biz-nul-1", false),
			newInstanceBody("CSNUL2", "CSNUL2-\x00", "biz-nul-2", false),
			newInstanceBody("CSNUL3", "CSNUL3-000001", "biz-\x00", false),
			{"activity": "queryInstance", "instanceId": id + ",x\x00y"},
			{"activity": "updateInstanceStatus", "instanceId": "a\x00", "instanceStatus": "FREEZE"},
			{"activity": "refreshInstance", "instanceId": id, "orderId": "o\x00", "orderLineId": "l", "expireTime": "20300101000000", "scene": "RENEWAL"},
			{"activity": "releaseInstance", "instanceId": id + "\x00"},
		}
		for _, body := range cases {
			before := e.count(`SELECT COUNT(*) FROM audit_log`)
			r := e.call(body)
			if r.ResultCode != kg.CodeBadParam {
				t.Errorf("%q: %s %s, want 000002", body, r.ResultCode, r.ResultMsg)
			}
			if e.count(`SELECT COUNT(*) FROM audit_log`) != before+1 {
				t.Errorf("%q left no audit record", body)
			}
		}
	})
}

// The management API answers 400 naming the member (or the path) for a NUL
// character, on both backends (PostgreSQL failed the statement: 500).
func TestNULInManagementAPI(t *testing.T) {
	forBackends(t, func(t *testing.T, backend string) {
		e := newEnv(t, backend)
		e.market.addOrder("CSNULAPI", "CSNULAPI-000001", ChargingOnDemand, "prod-od", "sku-od")
		id := e.call(newInstanceBody("CSNULAPI", "CSNULAPI-000001", "biz-nulapi", false)).InstanceID
		cases := []struct {
			method, path string
			body         any
			field        string
		}{
			{"POST", "/api/v1/instances/" + id + "/usage", map[string]any{"records": []map[string]any{{"meteringSn": "sn\x00", "usageValue": "1",
				"beginTime": "20260101T000000Z", "endTime": "20260101T010000Z"}}}, "records[0].meteringSn"},
			{"POST", "/api/v1/instances/" + id + "/failure", map[string]any{"resultCode": "000106", "resultMsg": "sold\x00out"}, "resultMsg"},
			{"POST", "/api/v1/instances/" + id + "/appinfo", map[string]any{"appInfo": map[string]any{"frontEndUrl": "https://x.example.com", "userName": "a\x00"}}, "appInfo.userName"},
			{"GET", "/api/v1/instances/x%00y", nil, "path"},
			{"GET", "/api/v1/events/evt%00", nil, "path"},
		}
		for _, c := range cases {
			code, body := e.api(c.method, c.path, c.body, testAdmin)
			if code != 400 || body["field"] != c.field {
				t.Errorf("%s %s: %d %v, want 400 naming %s", c.method, c.path, code, body, c.field)
			}
		}
	})
}
