package merchant

import (
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/soukhq/souk/kg"
)

// A restart loses nothing: a pending hand-off left by one process is
// delivered by the next one on the same database.
func TestRestartLosesNothing(t *testing.T) {
	forBackends(t, func(t *testing.T, backend string) {
		e := newEnv(t, backend, func(c *Config, _ *Deps) { c.Budget = 300 * time.Millisecond })
		e.app.status.Store(http.StatusServiceUnavailable)
		e.market.addOrder("RS1", "RS1-000001", ChargingPeriod, "prod-1", "sku-1")
		if r := e.call(newInstanceBody("RS1", "RS1-000001", "biz-rs", false)); r.ResultCode != kg.CodeInProgress {
			t.Fatalf("first process: %s", r.ResultCode)
		}
		e.srv.Close()
		_ = e.m.Close()
		_ = e.db.Close()

		// "Process 2": a fresh connection and merchant on the same database.
		e2 := reopen(t, e)
		e.app.status.Store(200)
		e2.runJobs(10 * time.Second)
		q := e2.call(map[string]string{"activity": "queryInstance", "instanceId": "biz-rs"})
		if q.ResultCode != kg.CodeSuccess || !strings.HasSuffix(q.Info[0].AppInfo.FrontEndURL, "/biz-rs") {
			t.Fatalf("after restart: %s", q.raw)
		}
		if r := e2.call(newInstanceBody("RS1", "RS1-000001", "biz-rs-2", false)); r.InstanceID != "biz-rs" || r.ResultCode != kg.CodeSuccess {
			t.Fatalf("retry after restart: %+v", r)
		}
	})
}
