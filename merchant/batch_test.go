package merchant

import (
	"encoding/json"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/soukhq/souk/db"
	"github.com/soukhq/souk/kg"
	"github.com/soukhq/souk/merchant/handoff"
)

func periodOrder(orderID, lineID string) *Order {
	return &Order{OrderID: orderID, OrderLineID: lineID, ChargingMode: "PERIOD", ProductID: "prod-1", SkuCode: "sku-1",
		Raw: json.RawMessage(`{"orderId":"` + orderID + `"}`)}
}

// One batch holding every case createTx handles one request at a time: new
// lines, a retry of a stored line, two deliveries of one line, a replayed
// nonce (stored before, and twice within the batch), and businessIds that
// are already an instance's id or repeat within the batch.
func TestCreateBatchTx(t *testing.T) {
	forBackends(t, func(t *testing.T, backend string) {
		e := newEnv(t, backend)
		m, ctx := e.m, e.ctx
		now := e.clock.Now()
		// Stored before the batch: an instance (id "biz-old") and a nonce.
		var old CreateResult
		if err := m.db.Tx(ctx, func(tx *db.Tx) error {
			var err error
			old, err = m.createTx(ctx, tx, now, CreateInput{OrderID: "o-old", OrderLineID: "l-old", BusinessID: "biz-old", Order: periodOrder("o-old", "l-old")})
			if err != nil {
				return err
			}
			return insertNonce(ctx, tx, &nonceClaim{nonce: "n-used", at: now})
		}); err != nil {
			t.Fatal(err)
		}
		claim := func(n string) *nonceClaim { return &nonceClaim{nonce: n, at: now} }
		item := func(order, line, biz, nonce string) *createItem {
			it := &createItem{ctx: ctx, in: CreateInput{OrderID: order, OrderLineID: line, BusinessID: biz, Order: periodOrder(order, line)}}
			if nonce != "" {
				it.claim = claim(nonce)
			}
			return it
		}
		items := []*createItem{
			0: item("o1", "l1", "biz-1", "n1"),
			1: item("o2", "l2", "biz-old", "n2"),     // businessId taken by an instance: a UUID
			2: item("o3", "l3", "biz-1", "n3"),       // businessId repeated in the batch: a UUID
			3: item("o1", "l1", "biz-1b", "n4"),      // a second delivery of line o1/l1 in the batch
			4: item("o-old", "l-old", "biz-x", "n5"), // a retry of the stored line
			5: item("o4", "l4", "biz-4", "n-used"),   // a nonce stored before: replay
			6: item("o5", "l5", "biz-5", "n1"),       // a nonce used earlier in the batch: replay
			7: item("o6", "l6", "biz-6", ""),         // no nonce to store
		}
		if err := m.do(ctx, func(tx *db.Tx) error { return m.createBatchTx(ctx, tx, e.clock.Now(), items) }); err != nil {
			t.Fatal(err)
		}
		for _, i := range []int{5, 6} {
			if !errors.Is(items[i].err, errReplay) {
				t.Errorf("item %d: err %v, want a replay", i, items[i].err)
			}
		}
		for _, i := range []int{0, 1, 2, 3, 4, 7} {
			if items[i].err != nil {
				t.Fatalf("item %d: %v", i, items[i].err)
			}
		}
		r := func(i int) CreateResult { return items[i].res }
		if !r(0).Created || r(0).InstanceID != "biz-1" || r(0).Event == nil || r(0).Event.Attempts != 1 {
			t.Errorf("new line: %+v", r(0))
		}
		if !r(1).Created || r(1).InstanceID == "biz-old" || r(2).InstanceID == "biz-1" || !r(2).Created {
			t.Errorf("taken businessIds must get UUIDs: %q, %q", r(1).InstanceID, r(2).InstanceID)
		}
		if r(3).Created || r(3).InstanceID != "biz-1" || r(3).Phase != PhaseProvisioning {
			t.Errorf("second delivery in the batch: %+v, want instance biz-1 not created", r(3))
		}
		if r(4).Created || r(4).InstanceID != old.InstanceID {
			t.Errorf("retry of a stored line: %+v, want %s", r(4), old.InstanceID)
		}
		if !r(7).Created {
			t.Errorf("no-nonce create: %+v", r(7))
		}
		// The store: one instance per line, an event and a job per new instance,
		// the fresh nonces stored.
		if n := e.count(`SELECT COUNT(*) FROM merchant_instances`); n != 5 {
			t.Errorf("%d instances, want 5 (o-old, o1, o2, o3, o6)", n)
		}
		if n := e.count(`SELECT COUNT(*) FROM merchant_instances WHERE order_id IN ('o4', 'o5')`); n != 0 {
			t.Errorf("a replayed create stored %d instances", n)
		}
		if n := e.count(`SELECT COUNT(*) FROM handoff_events WHERE type = $1 AND attempts = 1 AND lease_until > 0`, EventCreated); n != 4 {
			t.Errorf("%d claimed created events, want 4", n)
		}
		// The claimed events get no job up front (handoff.EmitClaimedMany);
		// the stored line's, written by createTx, has one.
		if n := e.count(`SELECT COUNT(*) FROM jobs WHERE kind = $1`, handoff.JobKind); n != 1 {
			t.Errorf("%d delivery jobs, want 1", n)
		}
		if n := e.count(`SELECT COUNT(*) FROM merchant_nonces WHERE nonce IN ('n1', 'n2', 'n3', 'n4', 'n5')`); n != 5 {
			t.Errorf("%d of the batch's fresh nonces stored, want 5", n)
		}

		// Recording the inline deliveries of the new instances, with one
		// event twice and one already delivered: each applied once.
		info := &AppInfo{FrontEndURL: "https://app.example.com/x", UserName: "u", Password: "p"}
		evs := []*handoff.Stored{r(0).Event, r(1).Event, r(2).Event, r(7).Event}
		if _, err := m.deliver.Record(ctx, r(7).Event, "earlier", nil); err != nil {
			t.Fatal(err)
		}
		ds := []*deliveryItem{{ev: evs[0], to: "t", info: info}, {ev: evs[1], to: "t"}, {ev: evs[2], to: "t", info: info},
			{ev: evs[0], to: "t", info: info}, {ev: evs[3], to: "t", info: info}}
		if err := m.do(ctx, func(tx *db.Tx) error { return deliveryBatchTx(ctx, tx, e.clock.Now(), ds) }); err != nil {
			t.Fatal(err)
		}
		if !ds[0].changed || !ds[1].changed || !ds[2].changed || ds[4].changed {
			t.Errorf("changed: %v %v %v %v, want true true true false", ds[0].changed, ds[1].changed, ds[2].changed, ds[4].changed)
		}
		if n := e.count(`SELECT COUNT(*) FROM merchant_instances WHERE phase = $1 AND app_info LIKE '%app.example.com%'`, PhaseReady); n != 2 {
			t.Errorf("%d instances ready with the answered appInfo, want 2", n)
		}
		if n := e.count(`SELECT COUNT(*) FROM handoff_events WHERE state = 'delivered'`); n != 4 {
			t.Errorf("%d delivered events, want 4", n)
		}
		if n := e.count(`SELECT COUNT(*) FROM jobs WHERE kind = $1`, handoff.JobKind); n != 1 {
			t.Errorf("%d delivery jobs after the deliveries, want still 1", n)
		}
	})
}

// Audit records in chunks (37 = 32 + 4 + 1), with nonces: a replay is
// recorded as 000001.
func TestAuditBatchTx(t *testing.T) {
	forBackends(t, func(t *testing.T, backend string) {
		e := newEnv(t, backend)
		ctx, now := e.ctx, e.clock.Now()
		before := e.count(`SELECT COUNT(*) FROM audit_log`)
		var items []*auditItem
		for i := 0; i < 37; i++ {
			it := &auditItem{ctx: ctx, auditFor: func(replay bool) auditEntry {
				code := "000000"
				if replay {
					code = "000001"
				}
				return auditEntry{At: now, Source: "kg", Activity: "queryInstance", ResultCode: code, KeyIndex: 0}
			}}
			if i < 3 {
				it.claim = &nonceClaim{nonce: "audit-nonce", at: now} // the same nonce thrice
			}
			items = append(items, it)
		}
		if err := e.m.do(ctx, func(tx *db.Tx) error { return auditBatchTx(ctx, tx, now, items) }); err != nil {
			t.Fatal(err)
		}
		if items[0].replay || !items[1].replay || !items[2].replay || items[3].replay {
			t.Errorf("replays: %v %v %v %v, want false true true false", items[0].replay, items[1].replay, items[2].replay, items[3].replay)
		}
		if n := e.count(`SELECT COUNT(*) FROM audit_log`) - before; n != 37 {
			t.Errorf("%d audit records, want 37", n)
		}
		if n := e.count(`SELECT COUNT(*) FROM audit_log WHERE result_code = '000001'`); n != 2 {
			t.Errorf("%d replay records, want 2", n)
		}
	})
}

// A batched create whose inline attempt was cut off (the process stopped
// between the create's commit and the attempt's record) leaves its event
// leased with no job; once the lease has run out, the merchant's sweep
// queues the job, which delivers the event and completes the instance.
func TestCutOffCreateDeliveredAfterTheLease(t *testing.T) {
	forBackends(t, func(t *testing.T, backend string) {
		e := newEnv(t, backend)
		m, ctx := e.m, e.ctx
		it := &createItem{ctx: ctx, in: CreateInput{OrderID: "o-cut", OrderLineID: "l-cut", BusinessID: "biz-cut", Order: periodOrder("o-cut", "l-cut")}}
		if err := m.do(ctx, func(tx *db.Tx) error { return m.createBatchTx(ctx, tx, e.clock.Now(), []*createItem{it}) }); err != nil || it.err != nil {
			t.Fatal(err, it.err)
		}
		// No attempt is made: the process "stopped" here.
		if n := e.runJobs(m.deliver.Lease - time.Second); n != 0 || len(e.app.eventsOf(EventCreated)) != 0 {
			t.Fatalf("before the lease ran out: %d jobs ran, %d deliveries", n, len(e.app.eventsOf(EventCreated)))
		}
		if n := e.runJobs(2 * time.Second); n != 1 {
			t.Fatalf("after the lease ran out: %d jobs ran, want the swept event's", n)
		}
		if got := e.app.eventsOf(EventCreated); len(got) != 1 || got[0].ID != it.res.EventID {
			t.Fatalf("deliveries %+v, want event %s once", got, it.res.EventID)
		}
		if q := e.call(map[string]string{"activity": "queryInstance", "instanceId": "biz-cut"}); q.ResultCode != kg.CodeSuccess {
			t.Fatalf("query after the delivery: %s", q.ResultCode)
		}
		if n := e.runJobs(time.Hour); n != 0 {
			t.Fatalf("%d more jobs ran after the delivery", n)
		}
		mfs, err := m.Registry().Gather()
		if err != nil {
			t.Fatal(err)
		}
		swept := -1.0
		for _, mf := range mfs {
			if mf.GetName() == "souk_merchant_handoff_swept_total" {
				swept = mf.GetMetric()[0].GetCounter().GetValue()
			}
		}
		if swept != 1 {
			t.Errorf("souk_merchant_handoff_swept_total %v, want 1", swept)
		}
	})
}

// Known-line checks of concurrent creates share one query: each item gets
// its line's instance, or errNotFound; the same line twice in a batch is
// answered for both.
func TestLookupBatch(t *testing.T) {
	forBackends(t, func(t *testing.T, backend string) {
		e := newEnv(t, backend)
		m, ctx := e.m, e.ctx
		if err := m.db.Tx(ctx, func(tx *db.Tx) error {
			_, err := m.createTx(ctx, tx, e.clock.Now(), CreateInput{OrderID: "o-k", OrderLineID: "l-k", BusinessID: "biz-k", Order: periodOrder("o-k", "l-k")})
			return err
		}); err != nil {
			t.Fatal(err)
		}
		known, unknown := lineKey("o-k", "l-k"), lineKey("o-new", "l-new")
		items := []*lookupItem{{key: known}, {key: unknown}, {key: known}, {key: lineKey("o-k", "l-other")}}
		m.runLookups(items)
		for i, want := range []string{"biz-k", "", "biz-k", ""} {
			it := items[i]
			switch {
			case want != "" && (it.err != nil || it.id != want || it.phase != PhaseProvisioning || it.aliasOf != ""):
				t.Errorf("item %d: %q %v, want %s", i, it.id, it.err, want)
			case want == "" && !errors.Is(it.err, errNotFound):
				t.Errorf("item %d: %q %v, want errNotFound", i, it.id, it.err)
			}
		}
		// Through the Batcher, concurrently.
		var wg sync.WaitGroup
		for i := 0; i < 50; i++ {
			wg.Add(1)
			go func(i int) {
				defer wg.Done()
				it := &lookupItem{key: known}
				if i%2 == 1 {
					it.key = unknown
				}
				if err := m.lookups.Do(ctx, it); err != nil {
					t.Error(err)
					return
				}
				if (i%2 == 0 && (it.err != nil || it.id != "biz-k")) || (i%2 == 1 && !errors.Is(it.err, errNotFound)) {
					t.Errorf("lookup %d: %q %v", i, it.id, it.err)
				}
			}(i)
		}
		wg.Wait()
		// A failing query fails every item of the batch with its error.
		e.db.Close()
		items = []*lookupItem{{key: known}, {key: unknown}}
		m.runLookups(items)
		for i, it := range items {
			if it.err == nil || errors.Is(it.err, errNotFound) {
				t.Errorf("item %d on a closed database: %v, want the query's error", i, it.err)
			}
		}
	})
}
