package merchant

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/soukhq/souk/kg"
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
