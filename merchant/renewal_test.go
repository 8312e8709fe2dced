package merchant

import (
	"encoding/json"
	"testing"
	"time"

	"github.com/soukhq/souk/kg"
)

// RENEWAL_CHANGE fetches the renewal order: the instance takes its new
// specification and the event carries the order; a retry changes nothing.
func TestRenewalChangeFetchesOrder(t *testing.T) {
	forBackends(t, func(t *testing.T, backend string) {
		e := newEnv(t, backend)
		id := e.provisioned("RC0")
		e.market.addOrder("RC1", "RC1-000001", ChargingPeriod, "prod-1", "sku-large")
		body := map[string]string{"activity": "refreshInstance", "instanceId": id, "orderId": "RC1", "orderLineId": "RC1-000001",
			"scene": "RENEWAL_CHANGE", "expireTime": "20310101000000"}
		for range 2 {
			if r := e.call(body); r.ResultCode != kg.CodeSuccess {
				t.Fatalf("refresh: %s %s", r.ResultCode, r.ResultMsg)
			}
		}
		e.runJobs(time.Second)
		inst, _ := loadInstance(e.ctx, e.db, id)
		if inst.SkuCode != "sku-large" {
			t.Fatalf("sku after RENEWAL_CHANGE: %q", inst.SkuCode)
		}
		evs := e.app.eventsOf(EventRenewed)
		if len(evs) != 1 {
			t.Fatalf("%d renewed events, want 1", len(evs))
		}
		var d map[string]any
		_ = json.Unmarshal(evs[0].Data, &d)
		if d["scene"] != "RENEWAL_CHANGE" || d["renewOrder"] == nil || d["skuCode"] != "sku-large" {
			t.Fatalf("event data: %s", evs[0].Data)
		}
		// With the marketplace down the refresh still succeeds, without the order.
		e.market.down.Store(true)
		body["orderId"], body["orderLineId"], body["scene"] = "RC2", "RC2-000001", "TRIAL_TO_FORMAL"
		if r := e.call(body); r.ResultCode != kg.CodeSuccess {
			t.Fatalf("refresh with the market down: %s", r.ResultCode)
		}
	})
}
