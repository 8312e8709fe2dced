package merchant

import (
	"context"
	"fmt"
	"net/http/httptest"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/soukhq/souk/clock"
	"github.com/soukhq/souk/db"
	"github.com/soukhq/souk/db/dbtest"
	"github.com/soukhq/souk/jobs"
	"github.com/soukhq/souk/kg"
)

// secondReplica starts another merchant (another process) on e's database,
// with the same configuration, fakes and clock, and returns it with its URL.
func secondReplica(t *testing.T, e *env) (*Merchant, string) {
	t.Helper()
	d, err := db.Open(e.ctx, e.dsn)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = d.Close() })
	if err := Migrate(e.ctx, d); err != nil {
		t.Fatal(err)
	}
	m := e.newMerchant(d, e.cfg, Deps{Clock: e.clock})
	srv := httptest.NewServer(m.Handler())
	t.Cleanup(srv.Close)
	return m, srv.URL
}

// together runs the calls at once. On PostgreSQL it first locks the row of
// instance id, waits until every call's transaction waits for it, then lets
// them go: each call has made its reads by then, as two replicas' calls do
// when they arrive together (on SQLite, transactions run one after the other
// whole, and the calls simply run at once).
func together(t *testing.T, e *env, id string, calls ...func()) {
	t.Helper()
	dbtest.Together(t, e.db, `SELECT 1 FROM merchant_instances WHERE instance_id = $1 FOR UPDATE`, []any{id}, calls...)
}

// A lifecycle call that KooGallery repeats (a retry after a timeout) may reach
// two replicas at the same time: the repeat is harmless, one state change and
// one event, as on one replica.
func TestLifecycleRepeatOnTwoReplicas(t *testing.T) {
	forBackends(t, func(t *testing.T, backend string) {
		e := newEnv(t, backend)
		_, url2 := secondReplica(t, e)
		e.market.addOrder("REP1", "REP1-000001", ChargingPeriod, "prod-1", "sku-1")
		id := e.call(newInstanceBody("REP1", "REP1-000001", "biz-rep1", false)).InstanceID
		if id == "" {
			t.Fatal("no instance")
		}
		urls := []string{e.srv.URL, url2}
		repeat := func(body map[string]string) {
			t.Helper()
			calls := make([]func(), len(urls))
			for i, u := range urls {
				calls[i] = func() {
					if r := e.call(body, func(o *callOpt) { o.url = u }); r.ResultCode != kg.CodeSuccess {
						t.Errorf("%s on replica %d: %s %s", body["activity"], i+1, r.ResultCode, r.ResultMsg)
					}
				}
			}
			together(t, e, id, calls...)
		}
		for _, c := range []struct {
			event string
			body  map[string]string
		}{
			{EventRenewed, map[string]string{"activity": "refreshInstance", "instanceId": id, "orderId": "REN1", "orderLineId": "REN1-000001",
				"scene": "RENEWAL", "expireTime": "20300101000000"}},
			{EventFrozen, map[string]string{"activity": "updateInstanceStatus", "instanceId": id, "status": "FREEZE"}},
			{EventUnfrozen, map[string]string{"activity": "updateInstanceStatus", "instanceId": id, "status": "UNFREEZE"}},
			{EventReleased, map[string]string{"activity": "releaseInstance", "instanceId": id}},
		} {
			repeat(c.body)
			if n := e.count(`SELECT COUNT(*) FROM handoff_events WHERE type = $1 AND subject = $2`, c.event, id); n != 1 {
				t.Errorf("%s repeated on two replicas: %d %s events, want 1", c.body["activity"], n, c.event)
			}
		}
	})
}

// Usage recorded for one instance on two replicas at once: the cumulative
// usageInfo that queryInstance reports counts both calls' records.
func TestUsageRecordedOnTwoReplicas(t *testing.T) {
	forBackends(t, func(t *testing.T, backend string) {
		e := newEnv(t, backend)
		m2, _ := secondReplica(t, e)
		e.market.addOrder("UR1", "UR1-000001", ChargingOnDemand, "prod-od", "sku-od")
		id := e.call(newInstanceBody("UR1", "UR1-000001", "biz-ur1", false)).InstanceID
		record := func(m *Merchant, sn string) func() {
			return func() {
				recs := []UsageRecordInput{{MeteringSN: sn, UsageValue: "1.5", BeginTime: "20260101T000000Z", EndTime: "20260101T010000Z"}}
				if _, err := m.RecordUsage(e.ctx, id, recs, ""); err != nil {
					t.Errorf("record %s: %v", sn, err)
				}
			}
		}
		together(t, e, id, record(e.m, "rep-a"), record(m2, "rep-b"))
		q := e.call(map[string]string{"activity": "queryInstance", "instanceId": id})
		if len(q.Info) != 1 || len(q.Info[0].UsageInfo) != 1 || q.Info[0].UsageInfo[0].UsageValue != "3" {
			t.Fatalf("usageInfo after 1.5 + 1.5 on two replicas: %s", q.raw)
		}
	})
}

// The Query Order job of a create may run twice at once (its lease lost to
// another replica, docs/storage.md: handlers must be idempotent): the order
// is applied once, with one instance.created event.
func TestOrderJobTwiceAtOnce(t *testing.T) {
	forBackends(t, func(t *testing.T, backend string) {
		e := newEnv(t, backend)
		m2, _ := secondReplica(t, e)
		e.market.addOrder("OJ1", "OJ1-000001", ChargingPeriod, "prod-1", "sku-1")
		e.market.down.Store(true)
		r := e.call(newInstanceBody("OJ1", "OJ1-000001", "biz-oj1", false))
		e.market.down.Store(false)
		if r.ResultCode != kg.CodeInProgress || r.InstanceID == "" {
			t.Fatalf("create while Query Order is down: %s %s", r.ResultCode, r.ResultMsg)
		}
		js, err := jobs.List(e.ctx, e.db, jobs.Filter{Kind: JobOrder})
		if err != nil || len(js) != 1 {
			t.Fatalf("order jobs: %v %v", js, err)
		}
		run := func(m *Merchant) func() {
			return func() {
				j := js[0]
				if err := m.handleOrderJob(e.ctx, &j); err != nil {
					t.Errorf("order job: %v", err)
				}
			}
		}
		together(t, e, r.InstanceID, run(e.m), run(m2))
		if n := e.count(`SELECT COUNT(*) FROM handoff_events WHERE type = $1 AND subject = $2`, EventCreated, r.InstanceID); n != 1 {
			t.Fatalf("the order job run twice at once: %d instance.created events, want 1", n)
		}
	})
}

// Two replicas run usage push jobs at once (each RecordUsage schedules one):
// every record is pushed once, not by both.
func TestUsagePushOnTwoReplicas(t *testing.T) {
	forBackends(t, func(t *testing.T, backend string) {
		e := newEnv(t, backend)
		m2, _ := secondReplica(t, e)
		e.market.addOrder("UP1", "UP1-000001", ChargingOnDemand, "prod-od", "sku-od")
		id := e.call(newInstanceBody("UP1", "UP1-000001", "biz-up1", false)).InstanceID
		for _, sn := range []string{"push-a", "push-b"} {
			recs := []UsageRecordInput{{MeteringSN: sn, UsageValue: "1", BeginTime: "20260101T000000Z", EndTime: "20260101T010000Z"}}
			if _, err := e.m.RecordUsage(e.ctx, id, recs, ""); err != nil {
				t.Fatal(err)
			}
		}
		// Replica 1's push is held at the marketplace while replica 2 runs
		// the other job.
		started, release := make(chan struct{}), make(chan struct{})
		var held atomic.Bool
		hook := func() {
			if held.CompareAndSwap(false, true) {
				close(started)
				<-release
			}
		}
		e.market.pushHook.Store(&hook)
		done := make(chan error, 1)
		go func() { _, err := e.m.RunDue(e.ctx); done <- err }()
		<-started
		if _, err := m2.RunDue(e.ctx); err != nil {
			t.Fatal(err)
		}
		close(release)
		if err := <-done; err != nil {
			t.Fatal(err)
		}
		// Whatever is left runs later, on either replica.
		for range 3 {
			e.clock.Advance(10 * time.Minute)
			for _, m := range []*Merchant{e.m, m2} {
				if _, err := m.RunDue(e.ctx); err != nil {
					t.Fatal(err)
				}
			}
		}
		pushed := map[string]int{}
		e.market.mu.Lock()
		for _, p := range e.market.pushes {
			for _, r := range p {
				pushed[fmt.Sprint(r["metering_sn"])]++
			}
		}
		e.market.mu.Unlock()
		if pushed["push-a"] != 1 || pushed["push-b"] != 1 || len(pushed) != 2 {
			t.Fatalf("records pushed by two replicas: %v, want each once", pushed)
		}
		if n := e.count(`SELECT COUNT(*) FROM merchant_usage WHERE pushed_at = 0`); n != 0 {
			t.Fatalf("%d records not pushed", n)
		}
		if n := e.count(`SELECT COUNT(*) FROM jobs WHERE kind = $1 AND state <> 'done'`, JobUsagePush); n != 0 {
			t.Fatalf("%d usage push jobs not done", n)
		}
	})
}

// A replica that stops while its push holds records (a crash between the
// claim and the answer): the records are pushed once the claim runs out.
func TestUsagePushClaimOfAStoppedReplica(t *testing.T) {
	forBackends(t, func(t *testing.T, backend string) {
		e := newEnv(t, backend)
		e.market.addOrder("UP2", "UP2-000001", ChargingOnDemand, "prod-od", "sku-od")
		id := e.call(newInstanceBody("UP2", "UP2-000001", "biz-up2", false)).InstanceID
		recs := []UsageRecordInput{{MeteringSN: "held", UsageValue: "1", BeginTime: "20260101T000000Z", EndTime: "20260101T010000Z"}}
		if _, err := e.m.RecordUsage(e.ctx, id, recs, ""); err != nil {
			t.Fatal(err)
		}
		// The claim of a push whose process stopped.
		if _, err := e.db.Exec(e.ctx, `UPDATE merchant_usage SET push_lease_until = $1`, e.clock.Now().Add(usagePushLease).UnixMilli()); err != nil {
			t.Fatal(err)
		}
		e.runJobs(time.Second)
		e.market.mu.Lock()
		n := len(e.market.pushes)
		e.market.mu.Unlock()
		if n != 0 {
			t.Fatalf("%d pushes while another push holds the record", n)
		}
		e.runJobs(usagePushLease)
		if n := e.count(`SELECT COUNT(*) FROM merchant_usage WHERE pushed_at = 0`); n != 0 {
			t.Fatal("the record of a stopped push was not pushed after its claim ran out")
		}
		if n := e.count(`SELECT COUNT(*) FROM jobs WHERE kind = $1 AND state <> 'done'`, JobUsagePush); n != 0 {
			t.Fatalf("%d usage push jobs not done", n)
		}
	})
}

// Replicas' clocks differ a little. A nonce pruned by a replica whose clock
// is ahead must not become replayable on a replica whose clock is behind,
// even for a request at the edge of the window, and even with a long window.
func TestNoncePrunedByAReplicaAhead(t *testing.T) {
	forBackends(t, func(t *testing.T, backend string) {
		const window = 10 * time.Minute
		e := newEnv(t, backend, func(c *Config, _ *Deps) { c.Window = window })
		d2, err := db.Open(e.ctx, e.dsn)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = d2.Close() })
		ahead := clock.NewVirtual(e.clock.Now().Add(3 * time.Second)) // replica 2's clock, 3 s ahead
		m2 := e.newMerchant(d2, e.cfg, Deps{Clock: ahead})
		base := e.clock.Now()
		ts := fmt.Sprint(base.Add(window - time.Second).UnixMilli()) // a caller's clock ahead by almost the window
		n := nonce()
		q := map[string]string{"activity": "queryInstance", "instanceId": "nn-1"}
		opt := func(o *callOpt) { o.nonce, o.timestamp = n, ts }
		if r := e.call(q, opt); r.ResultCode == kg.CodeAuthFailed {
			t.Fatalf("first call refused: %s", r.ResultMsg)
		}
		// Later, replica 2 prunes with its clock; the replay reaches replica
		// 1, whose window still takes the timestamp.
		e.clock.Advance(2*window - 2*time.Second)
		ahead.Set(e.clock.Now().Add(3 * time.Second))
		m2.housekeep(e.ctx)
		if r := e.call(q, opt); r.ResultCode != kg.CodeAuthFailed {
			t.Fatalf("replay after a prune by a replica 3 s ahead: %s %s, want %s", r.ResultCode, r.ResultMsg, kg.CodeAuthFailed)
		}
	})
}

// Three replicas starting at once on a fresh database each migrate it (jobs,
// handoff, merchant): every migration applies once, and all three start.
func TestReplicasMigrateAtOnce(t *testing.T) {
	forBackends(t, func(t *testing.T, backend string) {
		dsn := dbtest.DSN(t, backend)
		var wg sync.WaitGroup
		errs := make([]error, 3)
		start := make(chan struct{})
		for i := range errs {
			d, err := db.Open(context.Background(), dsn)
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { _ = d.Close() })
			wg.Add(1)
			go func() {
				defer wg.Done()
				<-start
				errs[i] = Migrate(context.Background(), d)
			}()
		}
		close(start)
		wg.Wait()
		for i, err := range errs {
			if err != nil {
				t.Errorf("replica %d: migrate: %v", i+1, err)
			}
		}
		d, err := db.Open(context.Background(), dsn)
		if err != nil {
			t.Fatal(err)
		}
		defer d.Close()
		all, err := db.Migrations(migrationFS, d.Dialect)
		if err != nil {
			t.Fatal(err)
		}
		applied, err := d.Applied(context.Background(), "merchant")
		if err != nil || len(applied) != len(all) {
			t.Fatalf("merchant migrations recorded: %v (%v), want %d", applied, err, len(all))
		}
	})
}

// A change check waits for the app's verdict while another replica, whose
// clock runs 10 s ahead, runs its due jobs: the question is asked once, by
// the request, which gets the verdict. The request's transaction stores the
// event already claimed for its own attempt (as a create's event is), so the
// other replica's job finds it leased.
func TestChangeCheckWithAReplicaAhead(t *testing.T) {
	forBackends(t, func(t *testing.T, backend string) {
		e := newEnv(t, backend)
		id := e.provisioned("CS-CHK-AHEAD")
		d2, err := db.Open(e.ctx, e.dsn)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = d2.Close() })
		ahead := clock.NewVirtual(e.clock.Now().Add(10 * time.Second))
		m2 := e.newMerchant(d2, e.cfg, Deps{Clock: ahead})
		e.app.delay.Store(int64(400 * time.Millisecond))
		done := make(chan kgResp, 1)
		go func() {
			done <- e.call(map[string]any{"activity": "changeInstanceCheck", "instanceId": id, "productInfo": map[string]string{"productId": "prod-1", "skuCode": "sku-big"}})
		}()
		deadline := time.Now().Add(5 * time.Second)
		for e.count(`SELECT COUNT(*) FROM handoff_events WHERE type = $1`, EventChangeCheck) == 0 && time.Now().Before(deadline) {
			time.Sleep(5 * time.Millisecond)
		}
		if _, err := m2.RunDue(e.ctx); err != nil {
			t.Fatal(err)
		}
		if r := <-done; r.ResultCode != kg.CodeSuccess {
			t.Fatalf("change check: %s %s, want 000000", r.ResultCode, r.ResultMsg)
		}
		e.app.mu.Lock()
		asked := 0
		for _, ev := range e.app.events {
			if ev.Type == EventChangeCheck {
				asked++
			}
		}
		e.app.mu.Unlock()
		if asked != 1 {
			t.Fatalf("the app was asked %d times, want once", asked)
		}
	})
}
