package merchant

import (
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/soukhq/souk/kg"
)

// A newInstance whose budget runs out while its create transaction waits
// still stores the instance and answers 000000 or 000004, never 000005 with
// nothing stored.
func TestNewInstanceBudgetExpiresDuringWrite(t *testing.T) {
	forBackends(t, func(t *testing.T, backend string) {
		e := newEnv(t, backend, func(c *Config, _ *Deps) { c.Budget = time.Millisecond })
		const n = 16
		for i := 0; i < n; i++ {
			e.market.addOrder(fmt.Sprintf("BUD%d", i), fmt.Sprintf("BUD%d-1", i), ChargingPeriod, "prod-1", "sku-1")
		}
		var wg sync.WaitGroup
		answers := make([]kgResp, n)
		for i := 0; i < n; i++ {
			wg.Add(1)
			go func(i int) {
				defer wg.Done()
				answers[i] = e.call(newInstanceBody(fmt.Sprintf("BUD%d", i), fmt.Sprintf("BUD%d-1", i), fmt.Sprintf("biz-bud-%d", i), false))
			}(i)
		}
		wg.Wait()
		for i, r := range answers {
			if r.ResultCode != kg.CodeSuccess && r.ResultCode != kg.CodeInProgress {
				t.Errorf("order %d: answer %s (%s), want 000000 or 000004", i, r.ResultCode, r.raw)
				continue
			}
			if r.InstanceID == "" {
				t.Errorf("order %d: no instanceId in %s", i, r.raw)
			}
			if got := e.count(`SELECT COUNT(*) FROM merchant_instances WHERE order_id = $1 AND instance_id = $2`, fmt.Sprintf("BUD%d", i), r.InstanceID); got != 1 {
				t.Errorf("order %d: %d instances %s stored, want 1", i, got, r.InstanceID)
			}
		}
	})
}

// The lifecycle writes (renew, freeze, unfreeze, release) are not abandoned
// when the budget runs out either: with a 1 ms budget each still succeeds and
// is stored, instead of answering 000005.
func TestLifecycleWritesOutliveTheBudget(t *testing.T) {
	forBackends(t, func(t *testing.T, backend string) {
		e := newEnv(t, backend, func(c *Config, _ *Deps) { c.Budget = time.Millisecond })
		e.market.addOrder("LBUD", "LBUD-1", ChargingPeriod, "prod-1", "sku-1")
		r := e.call(newInstanceBody("LBUD", "LBUD-1", "biz-lbud", false))
		if r.ResultCode != kg.CodeSuccess && r.ResultCode != kg.CodeInProgress {
			t.Fatalf("newInstance: %s", r.raw)
		}
		id := r.InstanceID
		for _, body := range []map[string]string{
			{"activity": "refreshInstance", "instanceId": id, "orderId": "LBUD-R", "orderLineId": "LBUD-R-1", "scene": "RENEWAL", "expireTime": "20301231000000"},
			{"activity": "updateInstanceStatus", "instanceId": id, "status": "FREEZE"},
			{"activity": "updateInstanceStatus", "instanceId": id, "status": "UNFREEZE"},
			{"activity": "releaseInstance", "instanceId": id},
		} {
			if r := e.call(body); r.ResultCode != kg.CodeSuccess {
				t.Fatalf("%s with a 1 ms budget: %s", body["activity"], r.raw)
			}
		}
		if got := e.count(`SELECT COUNT(*) FROM merchant_instances WHERE instance_id = $1 AND status = $2`, id, StatusReleased); got != 1 {
			t.Fatalf("instance not released in the store (%d rows)", got)
		}
	})
}
