package merchant

import (
	"context"
	"fmt"
	"net"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/soukhq/souk/db"
	"github.com/soukhq/souk/kg"
	"github.com/soukhq/souk/merchant/handoff"
)

// concurrentCreates sends n newInstance deliveries of one order line, with
// distinct businessIds, spread over the given servers, and returns the set of
// instanceIds answered.
func concurrentCreates(t *testing.T, e *env, urls []string, orderID string, n int) map[string]int {
	t.Helper()
	var (
		mu  sync.Mutex
		ids = map[string]int{}
		wg  sync.WaitGroup
	)
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			u := urls[i%len(urls)]
			r := e.call(newInstanceBody(orderID, orderID+"-000001", fmt.Sprintf("biz-%s-%03d", orderID, i), false), func(o *callOpt) { o.url = u })
			mu.Lock()
			defer mu.Unlock()
			if r.ResultCode != kg.CodeSuccess && r.ResultCode != kg.CodeInProgress {
				t.Errorf("delivery %d: %s %s", i, r.ResultCode, r.ResultMsg)
				return
			}
			ids[r.InstanceID]++
		}()
	}
	wg.Wait()
	return ids
}

// longBudget: 200 simultaneous deliveries queue on SQLite's single writer
// (and on the race detector); the point here is idempotency, not latency.
func longBudget(c *Config, _ *Deps) { c.Budget = 60 * time.Second }

func TestConcurrentNewInstanceOneInstance(t *testing.T) {
	forBackends(t, func(t *testing.T, backend string) {
		e := newEnv(t, backend, longBudget)
		e.market.addOrder("CONC1", "CONC1-000001", ChargingPeriod, "prod-1", "sku-1")
		ids := concurrentCreates(t, e, []string{e.srv.URL}, "CONC1", 200)
		if len(ids) != 1 {
			t.Fatalf("200 concurrent deliveries gave %d instanceIds: %v", len(ids), ids)
		}
		if n := e.count(`SELECT COUNT(*) FROM merchant_instances WHERE order_id = 'CONC1'`); n != 1 {
			t.Fatalf("%d instance rows, want 1", n)
		}
		if n := e.count(`SELECT COUNT(*) FROM handoff_events WHERE type = 'instance.created'`); n != 1 {
			t.Fatalf("%d instance.created events, want 1", n)
		}
	})
}

// Two merchants (standing in for two processes) on one database.
func TestConcurrentNewInstanceTwoReplicas(t *testing.T) {
	forBackends(t, func(t *testing.T, backend string) {
		e := newEnv(t, backend, longBudget)
		d2, err := db.Open(e.ctx, e.dsn)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = d2.Close() })
		if err := Migrate(e.ctx, d2); err != nil { // a second migrate is a no-op
			t.Fatal(err)
		}
		m2 := e.newMerchant(d2, e.cfg, Deps{Clock: e.clock})
		srv2 := newServer(t, m2)
		e.market.addOrder("CONC2", "CONC2-000001", ChargingPeriod, "prod-1", "sku-1")
		ids := concurrentCreates(t, e, []string{e.srv.URL, srv2}, "CONC2", 200)
		if len(ids) != 1 {
			t.Fatalf("two replicas gave %d instanceIds: %v", len(ids), ids)
		}
		if n := e.count(`SELECT COUNT(*) FROM merchant_instances WHERE order_id = 'CONC2'`); n != 1 {
			t.Fatalf("%d instance rows, want 1", n)
		}
		// The nonce cache is shared: a nonce used on replica 1 is refused on replica 2.
		n := nonce()
		q := map[string]string{"activity": "queryInstance", "instanceId": "x"}
		e.call(q, func(o *callOpt) { o.nonce = n })
		if r := e.call(q, func(o *callOpt) { o.nonce = n; o.url = srv2 }); r.ResultCode != kg.CodeAuthFailed {
			t.Fatalf("replay on the other replica: %s", r.ResultCode)
		}
	})
}

func TestPayPerUseIdempotentOnProduct(t *testing.T) {
	forBackends(t, func(t *testing.T, backend string) {
		e := newEnv(t, backend)
		// One pay-per-use order whose line id changes between deliveries.
		e.market.addOrder("OD1", "OD1-000001", ChargingOnDemand, "prod-od", "sku-od", "OD1-000002")
		a := e.call(newInstanceBody("OD1", "OD1-000001", "biz-a", false))
		b := e.call(newInstanceBody("OD1", "OD1-000002", "biz-b", false))
		if a.ResultCode != kg.CodeSuccess || b.ResultCode != kg.CodeSuccess || a.InstanceID != b.InstanceID {
			t.Fatalf("pay-per-use: %+v / %+v", a, b)
		}
		// queryInstance carries usageInfo for pay-per-use instances.
		q := e.call(map[string]string{"activity": "queryInstance", "instanceId": a.InstanceID})
		if len(q.Info) != 1 || len(q.Info[0].UsageInfo) != 1 || q.Info[0].UsageInfo[0].UsageValue != "0" {
			t.Fatalf("usageInfo: %s", q.raw)
		}
		// Line 1 arrives while Query Order is down (productId unknown), line 2
		// after: line 1's instance becomes an alias of line 2's once its order
		// is fetched, and both ids show the same appInfo.
		e.market.addOrder("OD2", "OD2-000001", ChargingOnDemand, "prod-od", "sku-od", "OD2-000002")
		e.market.down.Store(true)
		l1 := e.call(newInstanceBody("OD2", "OD2-000001", "biz-l1", false))
		e.market.down.Store(false)
		l2 := e.call(newInstanceBody("OD2", "OD2-000002", "biz-l2", false))
		if l1.ResultCode != kg.CodeInProgress || l2.ResultCode != kg.CodeSuccess || l1.InstanceID == l2.InstanceID {
			t.Fatalf("lines: %+v / %+v", l1, l2)
		}
		e.runJobs(time.Minute)
		inst, err := loadInstance(e.ctx, e.db, l1.InstanceID)
		if err != nil || inst.AliasOf != l2.InstanceID {
			t.Fatalf("line 1 instance: %+v %v", inst, err)
		}
		q = e.call(map[string]string{"activity": "queryInstance", "instanceId": l1.InstanceID + "," + l2.InstanceID})
		if q.ResultCode != kg.CodeSuccess || len(q.Info) != 2 || q.Info[0].AppInfo.FrontEndURL != q.Info[1].AppInfo.FrontEndURL {
			t.Fatalf("alias query: %s", q.raw)
		}
		if r := e.call(newInstanceBody("OD2", "OD2-000001", "biz-l1-retry", false)); r.InstanceID != l2.InstanceID || r.ResultCode != kg.CodeSuccess {
			t.Fatalf("line 1 retry: %+v", r)
		}
		if n := len(e.app.eventsOf(EventCreated)); n != 2 { // OD1 and OD2, one each
			t.Fatalf("%d instance.created events, want 2", n)
		}
	})
}

func TestSlowProvisionerAsync(t *testing.T) {
	forBackends(t, func(t *testing.T, backend string) {
		release := make(chan struct{})
		var calls sync.WaitGroup
		calls.Add(1)
		var once sync.Once
		prov := ProvisionerFunc(func(ctx context.Context, ev *handoff.Stored) (*Answer, error) {
			if ev.Type != EventCreated {
				return nil, nil
			}
			once.Do(calls.Done)
			<-release
			return &Answer{AppInfo: &AppInfo{FrontEndURL: "https://slow.example.com/" + ev.Subject}}, nil
		})
		e := newEnv(t, backend, func(c *Config, d *Deps) {
			c.Budget = 300 * time.Millisecond
			c.WebhookURL = "" // the in-process provisioner replaces the webhook
			d.Provisioner = prov
		})
		e.market.addOrder("SLOW1", "SLOW1-000001", ChargingPeriod, "prod-1", "sku-1")
		start := time.Now()
		r := e.call(newInstanceBody("SLOW1", "SLOW1-000001", "biz-slow", false))
		if r.ResultCode != kg.CodeInProgress || r.InstanceID != "biz-slow" {
			t.Fatalf("slow provisioning: %s %s %q", r.ResultCode, r.ResultMsg, r.InstanceID)
		}
		if el := time.Since(start); el > 2*time.Second {
			t.Fatalf("answer took %v, budget 300ms", el)
		}
		calls.Wait()
		if q := e.call(map[string]string{"activity": "queryInstance", "instanceId": "biz-slow"}); q.ResultCode != kg.CodeInProgress {
			t.Fatalf("query while provisioning: %s", q.ResultCode)
		}
		close(release)
		waitUntil(t, 10*time.Second, "appInfo after slow provisioning", func() bool {
			q := e.call(map[string]string{"activity": "queryInstance", "instanceId": "biz-slow"})
			return q.ResultCode == kg.CodeSuccess && len(q.Info) == 1 && q.Info[0].AppInfo.FrontEndURL == "https://slow.example.com/biz-slow"
		})
		// A retry now answers 000000 at once.
		if r := e.call(newInstanceBody("SLOW1", "SLOW1-000001", "biz-slow-2", false)); r.ResultCode != kg.CodeSuccess || r.InstanceID != "biz-slow" {
			t.Fatalf("retry after completion: %+v", r)
		}
	})
}

func TestQueryOrderUnreachable(t *testing.T) {
	forBackends(t, func(t *testing.T, backend string) {
		e := newEnv(t, backend)
		e.market.addOrder("DOWN1", "DOWN1-000001", ChargingPeriod, "prod-1", "sku-1")
		e.market.down.Store(true)
		r := e.call(newInstanceBody("DOWN1", "DOWN1-000001", "biz-down", false))
		if r.ResultCode != kg.CodeInProgress || r.InstanceID != "biz-down" {
			t.Fatalf("market down: %s %q", r.ResultCode, r.InstanceID)
		}
		inst, err := loadInstance(e.ctx, e.db, "biz-down")
		if err != nil || inst.Phase != PhaseAwaitingOrder {
			t.Fatalf("instance row: %+v %v", inst, err)
		}
		// The job keeps failing while the market is down...
		e.runJobs(time.Second)
		e.runJobs(time.Hour)
		if q := e.call(map[string]string{"activity": "queryInstance", "instanceId": "biz-down"}); q.ResultCode != kg.CodeInProgress {
			t.Fatalf("query while down: %s", q.ResultCode)
		}
		// ...and completes once it is back: Query Order, hand-off, appInfo.
		e.market.down.Store(false)
		e.runJobs(2 * time.Hour)
		e.runJobs(time.Minute)
		q := e.call(map[string]string{"activity": "queryInstance", "instanceId": "biz-down"})
		if q.ResultCode != kg.CodeSuccess || q.Info[0].AppInfo == nil {
			t.Fatalf("after recovery: %s", q.raw)
		}
		if len(e.app.eventsOf(EventCreated)) != 1 {
			t.Fatal("no instance.created after recovery")
		}
		if e.market.badSig.Load() != 0 {
			t.Fatal("Query Order signature rejected")
		}
	})
}

func newServer(t *testing.T, m *Merchant) string {
	t.Helper()
	srv := httptestServer(m)
	t.Cleanup(srv.Close)
	return srv.URL
}

func TestQueryOrderFallbackHost(t *testing.T) {
	e := newEnv(t, "sqlite", func(c *Config, _ *Deps) {
		c.MarketFallbackURL = c.MarketURL
		c.MarketURL = "http://" + closedAddr(t)
	})
	e.market.addOrder("FB1", "FB1-000001", ChargingPeriod, "prod-1", "sku-1")
	if r := e.call(newInstanceBody("FB1", "FB1-000001", "biz-fb", false)); r.ResultCode != kg.CodeSuccess {
		t.Fatalf("with the primary host down: %s %s", r.ResultCode, r.ResultMsg)
	}
}

// closedAddr is a loopback address nobody listens on.
func closedAddr(t *testing.T) string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	_ = ln.Close()
	return addr
}

// A Provisioner that panics fails its attempt (the process lives on, the
// job retries it) instead of ending the process: the inline hand-off runs
// on a goroutine the HTTP server's recovery does not cover.
func TestProvisionerPanicIsAFailedAttempt(t *testing.T) {
	forBackends(t, func(t *testing.T, backend string) {
		var calls atomic.Int32
		prov := ProvisionerFunc(func(ctx context.Context, ev *handoff.Stored) (*Answer, error) {
			if ev.Type == EventCreated && calls.Add(1) == 1 {
				panic("vendor bug: nil map") // as a runtime error in the vendor's code would
			}
			return &Answer{AppInfo: &AppInfo{FrontEndURL: "https://ok.example.com/" + ev.Subject}}, nil
		})
		e := newEnv(t, backend, func(c *Config, d *Deps) {
			c.WebhookURL = ""
			d.Provisioner = prov
		})
		e.market.addOrder("PANIC1", "PANIC1-000001", ChargingPeriod, "prod-1", "sku-1")
		r := e.call(newInstanceBody("PANIC1", "PANIC1-000001", "biz-panic", false))
		if r.ResultCode != kg.CodeInProgress || r.InstanceID != "biz-panic" {
			t.Fatalf("create with a panicking provisioner: %s %s %q", r.ResultCode, r.ResultMsg, r.InstanceID)
		}
		if n := e.count(`SELECT COUNT(*) FROM handoff_events WHERE subject = 'biz-panic' AND state = 'pending' AND last_error LIKE '%provisioner panicked: vendor bug: nil map%'`); n != 1 {
			t.Fatalf("the failed attempt is not recorded with its cause (%d)", n)
		}
		waitUntil(t, 10*time.Second, "retry after the panic", func() bool {
			e.runJobs(time.Minute)
			q := e.call(map[string]string{"activity": "queryInstance", "instanceId": "biz-panic"})
			return q.ResultCode == kg.CodeSuccess
		})
	})
}
