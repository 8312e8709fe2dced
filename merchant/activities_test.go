package merchant

import (
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/soukhq/souk/kg"
)

// provisioned creates a ready instance through newInstance and returns its id.
func (e *env) provisioned(orderID string) string {
	e.t.Helper()
	e.market.addOrder(orderID, orderID+"-000001", ChargingPeriod, "prod-1", "sku-basic")
	r := e.call(newInstanceBody(orderID, orderID+"-000001", "biz-"+orderID, false))
	if r.ResultCode != kg.CodeSuccess {
		e.t.Fatalf("newInstance %s: %s %s", orderID, r.ResultCode, r.ResultMsg)
	}
	return r.InstanceID
}

func TestNewInstanceSyncAndIdempotent(t *testing.T) {
	forBackends(t, func(t *testing.T, backend string) {
		e := newEnv(t, backend)
		e.market.addOrder("CS001", "CS001-000001", ChargingPeriod, "prod-1", "sku-basic")
		r := e.call(newInstanceBody("CS001", "CS001-000001", "biz-1", false))
		if r.ResultCode != kg.CodeSuccess || r.InstanceID != "biz-1" {
			t.Fatalf("first call: %+v", r)
		}
		if err := kg.VerifyBodySignHeader(testKey, r.bodySign, r.raw); err != nil {
			t.Fatalf("Body-Sign: %v", err)
		}
		// Retries carry new businessIds and get the first instanceId.
		for i := 2; i <= 4; i++ {
			r := e.call(newInstanceBody("CS001", "CS001-000001", fmt.Sprintf("biz-%d", i), false))
			if r.ResultCode != kg.CodeSuccess || r.InstanceID != "biz-1" {
				t.Fatalf("retry %d: %+v", i, r)
			}
		}
		if n := e.count(`SELECT COUNT(*) FROM merchant_instances`); n != 1 {
			t.Fatalf("%d instances, want 1", n)
		}
		if got := len(e.app.eventsOf(EventCreated)); got != 1 {
			t.Fatalf("app got %d instance.created events, want 1", got)
		}
		ev := e.app.eventsOf(EventCreated)[0]
		var data map[string]any
		_ = json.Unmarshal(ev.Data, &data)
		if data["productId"] != "prod-1" || data["order"] == nil {
			t.Fatalf("event data lacks the order: %s", ev.Data)
		}
		// queryInstance returns the appInfo, memo escaped to ASCII.
		q := e.call(map[string]string{"activity": "queryInstance", "instanceId": "biz-1"})
		if q.ResultCode != kg.CodeSuccess || len(q.Info) != 1 || q.Info[0].AppInfo == nil {
			t.Fatalf("queryInstance: %s", q.raw)
		}
		if q.Info[0].AppInfo.Password != "P@ssw0rd!" || q.EncryptType != "" {
			t.Fatalf("plaintext credentials expected: %s", q.raw)
		}
		if !strings.Contains(string(q.raw), `\u8bf4\u660e memo`) {
			t.Fatalf("memo not escaped: %s", q.raw)
		}
		if e.count(`SELECT COUNT(*) FROM audit_log WHERE activity = 'newInstance' AND result_code = '000000' AND order_id = 'CS001'`) != 4 {
			t.Fatal("audit log misses newInstance calls")
		}
	})
}

func TestResultCodes(t *testing.T) {
	forBackends(t, func(t *testing.T, backend string) {
		e := newEnv(t, backend)
		id := e.provisioned("CS100")
		big := `{"activity":"queryInstance","instanceId":"` + strings.Repeat("x", 70<<10) + `"}`
		manyIDs := make([]string, 101)
		for i := range manyIDs {
			manyIDs[i] = fmt.Sprint("id", i)
		}
		stale := func(o *callOpt) { o.timestamp = fmt.Sprint(e.clock.Now().Add(-2 * time.Minute).UnixMilli()) }
		seconds := func(o *callOpt) { o.timestamp = fmt.Sprint(e.clock.Now().Unix()) }
		rotated := func(o *callOpt) { o.key = testKey2 }
		bad := func(o *callOpt) { o.badSig = true }
		get := func(o *callOpt) { o.method = http.MethodGet }
		cases := []struct {
			name  string
			body  any
			opts  []func(*callOpt)
			code  string
			field string // substring of resultMsg
		}{
			{"query ok", map[string]string{"activity": "queryInstance", "instanceId": id}, nil, kg.CodeSuccess, ""},
			{"query unknown", map[string]string{"activity": "queryInstance", "instanceId": "nope"}, nil, kg.CodeNoInstance, ""},
			{"query some unknown", map[string]string{"activity": "queryInstance", "instanceId": "nope," + id}, nil, kg.CodeSuccess, ""},
			{"query 101 ids", map[string]string{"activity": "queryInstance", "instanceId": strings.Join(manyIDs, ",")}, nil, kg.CodeBadParam, "instanceId"},
			{"missing orderId", map[string]string{"activity": "newInstance", "orderLineId": "l", "businessId": "b"}, nil, kg.CodeBadParam, "orderId"},
			{"oversized field", map[string]string{"activity": "newInstance", "orderId": strings.Repeat("o", 65), "orderLineId": "l", "businessId": "b"}, nil, kg.CodeBadParam, "orderId"},
			{"ill-typed field", `{"activity":"newInstance","orderId":{"x":1},"orderLineId":"l","businessId":"b"}`, nil, kg.CodeBadParam, "orderId"},
			{"unknown activity", map[string]string{"activity": "explode"}, nil, kg.CodeBadParam, "activity"},
			{"not json", `{{{`, nil, kg.CodeBadParam, ""},
			{"oversized body", big, nil, kg.CodeBadParam, "body"},
			{"bad testFlag", map[string]string{"activity": "queryInstance", "instanceId": id, "testFlag": "7"}, nil, kg.CodeBadParam, "testFlag"},
			{"bad signature", map[string]string{"activity": "queryInstance", "instanceId": id}, []func(*callOpt){bad}, kg.CodeAuthFailed, ""},
			{"stale timestamp", map[string]string{"activity": "queryInstance", "instanceId": id}, []func(*callOpt){stale}, kg.CodeAuthFailed, "stale"},
			{"seconds timestamp", map[string]string{"activity": "queryInstance", "instanceId": id}, []func(*callOpt){seconds}, kg.CodeSuccess, ""},
			{"rotated key", map[string]string{"activity": "queryInstance", "instanceId": id}, []func(*callOpt){rotated}, kg.CodeSuccess, ""},
			{"GET", map[string]string{"activity": "queryInstance", "instanceId": id}, []func(*callOpt){get}, kg.CodeBadParam, "method"},
			{"status unknown instance", map[string]string{"activity": "updateInstanceStatus", "instanceId": "nope", "status": "FREEZE"}, nil, kg.CodeNoInstance, ""},
			{"status bad value", map[string]string{"activity": "updateInstanceStatus", "instanceId": id, "status": "MELT"}, nil, kg.CodeBadParam, "status"},
			{"release unknown", map[string]string{"activity": "releaseInstance", "instanceId": "nope"}, nil, kg.CodeNoInstance, ""},
			{"refresh unknown", map[string]string{"activity": "refreshInstance", "instanceId": "nope", "orderId": "o", "orderLineId": "l", "scene": "RENEWAL", "expireTime": "20300101000000"}, nil, kg.CodeNoInstance, ""},
			{"refresh bad expireTime", map[string]string{"activity": "refreshInstance", "instanceId": id, "orderId": "o", "orderLineId": "l", "scene": "RENEWAL", "expireTime": "2030-01-01"}, nil, kg.CodeBadParam, "expireTime"},
			{"upgrade unknown", map[string]string{"activity": "upgradeInstance", "instanceId": "nope", "orderId": "o", "orderLineId": "l"}, nil, kg.CodeNoInstance, ""},
			{"check unknown", `{"activity":"changeInstanceCheck","instanceId":"nope","productInfo":{"productId":"p","skuCode":"s"}}`, nil, kg.CodeNoInstance, ""},
			{"check missing productInfo", map[string]string{"activity": "changeInstanceCheck", "instanceId": id}, nil, kg.CodeBadParam, "productInfo"},
		}
		for _, c := range cases {
			t.Run(c.name, func(t *testing.T) {
				r := e.call(c.body, c.opts...)
				if r.ResultCode != c.code {
					t.Fatalf("code %s (%s), want %s", r.ResultCode, r.ResultMsg, c.code)
				}
				if c.field != "" && !strings.Contains(r.ResultMsg, c.field) {
					t.Fatalf("resultMsg %q does not name %q", r.ResultMsg, c.field)
				}
				key := testKey
				if c.name == "rotated key" {
					key = testKey2
				}
				if err := kg.VerifyBodySignHeader(key, r.bodySign, r.raw); err != nil {
					t.Fatalf("Body-Sign with the verifying key: %v", err)
				}
			})
		}
		// A replayed nonce is refused, on the first replica and on another
		// one sharing the database.
		n := nonce()
		same := func(o *callOpt) { o.nonce = n }
		if r := e.call(map[string]string{"activity": "queryInstance", "instanceId": id}, same); r.ResultCode != kg.CodeSuccess {
			t.Fatalf("first use of nonce: %s", r.ResultCode)
		}
		if r := e.call(map[string]string{"activity": "queryInstance", "instanceId": id}, same); r.ResultCode != kg.CodeAuthFailed || !strings.Contains(r.ResultMsg, "nonce") {
			t.Fatalf("replay: %s %s", r.ResultCode, r.ResultMsg)
		}
		// Old nonces are pruned.
		e.clock.Advance(time.Hour)
		if pruned, err := e.m.pruneNonces(e.ctx, e.clock.Now()); err != nil || pruned == 0 {
			t.Fatalf("prune: %d %v", pruned, err)
		}
		if e.count(`SELECT COUNT(*) FROM audit_log WHERE result_code = '000001'`) < 3 {
			t.Fatal("auth failures are not audited")
		}
	})
}

func TestLifecycle(t *testing.T) {
	forBackends(t, func(t *testing.T, backend string) {
		e := newEnv(t, backend)
		id := e.provisioned("CS200")
		ok := func(body any) {
			t.Helper()
			if r := e.call(body); r.ResultCode != kg.CodeSuccess {
				t.Fatalf("%v: %s %s", body, r.ResultCode, r.ResultMsg)
			}
		}
		deliver := func() { e.runJobs(time.Second) }
		refresh := func(scene, line, expire string) map[string]string {
			return map[string]string{"activity": "refreshInstance", "instanceId": id, "orderId": "R-" + line, "orderLineId": line, "scene": scene, "expireTime": expire}
		}
		// Every scene, 14 and 17 digits; a retry of the same key emits nothing more.
		ok(refresh("RENEWAL", "L1", "20300101000000"))
		ok(refresh("RENEWAL", "L1", "20300101000000"))
		ok(refresh("RENEWAL_CHANGE", "L2", "20310101000000123"))
		ok(refresh("UNSUBSCRIBE_RENEWAL_PERIOD", "L3", "20300601000000"))
		ok(refresh("TRIAL_TO_FORMAL", "L4", "20300701000000"))
		ok(refresh("SOME_FUTURE_SCENE", "L5", "20300801000000"))
		deliver()
		if got := len(e.app.eventsOf(EventRenewed)); got != 5 {
			t.Fatalf("%d renewed events, want 5", got)
		}
		inst, _ := loadInstance(e.ctx, e.db, id)
		if want := time.Date(2030, 8, 1, 0, 0, 0, 0, time.UTC); !inst.ExpireAt.Equal(want) {
			t.Fatalf("expiry %v, want %v", inst.ExpireAt, want)
		}
		// Freeze twice, unfreeze: two events, data kept.
		ok(map[string]string{"activity": "updateInstanceStatus", "instanceId": id, "status": "FREEZE"})
		ok(map[string]string{"activity": "updateInstanceStatus", "instanceId": id, "status": "FREEZE"})
		q := e.call(map[string]string{"activity": "queryInstance", "instanceId": id})
		if q.ResultCode != kg.CodeSuccess || q.Info[0].AppInfo == nil {
			t.Fatalf("frozen instance lost its data: %s", q.raw)
		}
		ok(map[string]string{"activity": "updateInstanceStatus", "instanceId": id, "status": "UNFREEZE"})
		deliver()
		if len(e.app.eventsOf(EventFrozen)) != 1 || len(e.app.eventsOf(EventUnfrozen)) != 1 {
			t.Fatalf("frozen %d unfrozen %d, want 1 and 1", len(e.app.eventsOf(EventFrozen)), len(e.app.eventsOf(EventUnfrozen)))
		}
		// Upgrade: idempotent on orderId, fetches the upgrade order.
		e.market.addOrder("UP1", "UP1-000001", ChargingPeriod, "prod-1", "sku-pro")
		up := map[string]string{"activity": "upgradeInstance", "instanceId": id, "orderId": "UP1", "orderLineId": "UP1-000001"}
		ok(up)
		ok(up)
		deliver()
		ups := e.app.eventsOf(EventUpgraded)
		if len(ups) != 1 {
			t.Fatalf("%d upgraded events, want 1", len(ups))
		}
		inst, _ = loadInstance(e.ctx, e.db, id)
		if inst.SkuCode != "sku-pro" {
			t.Fatalf("sku after upgrade: %q", inst.SkuCode)
		}
		// Change check: allowed, then refused with the app's code.
		check := `{"activity":"changeInstanceCheck","instanceId":"` + id + `","productInfo":{"productId":"prod-1","skuCode":"sku-mini","linearValue":1}}`
		if r := e.call(check); r.ResultCode != kg.CodeSuccess {
			t.Fatalf("check allowed: %s %s", r.ResultCode, r.ResultMsg)
		}
		e.app.refuse.Store(true)
		if r := e.call(check); r.ResultCode != "000100" || !strings.Contains(r.ResultMsg, "too small") {
			t.Fatalf("check refused: %s %s", r.ResultCode, r.ResultMsg)
		}
		// orderNotify: recorded once, order fetched, event emitted.
		e.market.addOrder("N1", "N1-000001", ChargingOneTime, "prod-2", "sku-x")
		ok(map[string]string{"activity": "orderNotify", "orderId": "N1", "orderLineId": "N1-000001", "testFlag": "0"})
		ok(map[string]string{"activity": "orderNotify", "orderId": "N1", "orderLineId": "N1-000001", "testFlag": "0"})
		deliver()
		if n := len(e.app.eventsOf(EventOrderNotify)); n != 1 {
			t.Fatalf("%d order.notified events, want 1", n)
		}
		// Release: a repeat is a success, one event; lifecycle calls then see 000003.
		ok(map[string]string{"activity": "releaseInstance", "instanceId": id})
		ok(map[string]string{"activity": "releaseInstance", "instanceId": id})
		deliver()
		if n := len(e.app.eventsOf(EventReleased)); n != 1 {
			t.Fatalf("%d released events, want 1", n)
		}
		if r := e.call(map[string]string{"activity": "updateInstanceStatus", "instanceId": id, "status": "UNFREEZE"}); r.ResultCode != kg.CodeNoInstance {
			t.Fatalf("status after release: %s", r.ResultCode)
		}
		// Every event the app saw was signed correctly.
		if e.app.badSig.Load() != 0 {
			t.Fatal("app saw bad signatures")
		}
	})
}

// TestGeneralKey: orderNotify is verified with the general keys when set, and
// the basic interfaces are not accepted with a general key.
func TestGeneralKey(t *testing.T) {
	forBackends(t, func(t *testing.T, backend string) {
		const general = "general-key-0123456789"
		e := newEnv(t, backend, func(c *Config, _ *Deps) { c.GeneralKeys = []string{general} })
		withGeneral := func(o *callOpt) { o.key = general }
		e.market.addOrder("G1", "G1-000001", ChargingOneTime, "prod-2", "sku-x")
		notify := map[string]string{"activity": "orderNotify", "orderId": "G1", "orderLineId": "G1-000001", "testFlag": "0"}
		r := e.call(notify, withGeneral)
		if r.ResultCode != kg.CodeSuccess {
			t.Fatalf("orderNotify with the general key: %s %s", r.ResultCode, r.ResultMsg)
		}
		if err := kg.VerifyBodySignHeader(general, r.bodySign, r.raw); err != nil {
			t.Fatalf("answer not signed with the general key: %v", err)
		}
		if r := e.call(notify); r.ResultCode != kg.CodeAuthFailed {
			t.Fatalf("orderNotify with an access key: %s %s, want 000001", r.ResultCode, r.ResultMsg)
		}
		basic := map[string]string{"activity": "releaseInstance", "instanceId": "nope"}
		if r := e.call(basic, withGeneral); r.ResultCode != kg.CodeAuthFailed {
			t.Fatalf("basic interface with the general key: %s %s, want 000001", r.ResultCode, r.ResultMsg)
		}
		if r := e.call(basic); r.ResultCode == kg.CodeAuthFailed {
			t.Fatalf("basic interface with the access key: %s %s", r.ResultCode, r.ResultMsg)
		}
		// A second, differently cased "activity" naming orderNotify does not
		// make a basic call acceptable with the general key: the key kind is
		// read from the activity the call is dispatched on.
		e.market.addOrder("G2", "G2-000001", ChargingOneTime, "prod-2", "sku-x")
		for _, body := range []string{
			`{"activity":"newInstance","Activity":"orderNotify","orderId":"G2","orderLineId":"G2-000001","businessId":"biz-g2"}`,
			`{"activity":"releaseInstance","ACTIVITY":"orderNotify","instanceId":"nope"}`,
			`{"Activity":"orderNotify","activity":"releaseInstance","instanceId":"nope"}`,
		} {
			if r := e.call(body, withGeneral); r.ResultCode != kg.CodeAuthFailed {
				t.Errorf("%s with the general key: %s %s, want 000001", body, r.ResultCode, r.ResultMsg)
			}
		}
		if n := e.count(`SELECT COUNT(*) FROM merchant_instances WHERE order_id = 'G2'`); n != 0 {
			t.Errorf("a general-key call created %d instances", n)
		}
	})
}

// A released instance is no longer listed by queryInstance (000003 when it is
// the only one), as the lifecycle calls answer; a sandbox instance stays
// listed (the dial tests query it again after their release step).
func TestQueryAfterRelease(t *testing.T) {
	forBackends(t, func(t *testing.T, backend string) {
		e := newEnv(t, backend)
		gone, live := e.provisioned("REL1"), e.provisioned("REL2")
		if r := e.call(map[string]string{"activity": "releaseInstance", "instanceId": gone}); r.ResultCode != kg.CodeSuccess {
			t.Fatalf("release: %s %s", r.ResultCode, r.ResultMsg)
		}
		if q := e.call(map[string]string{"activity": "queryInstance", "instanceId": gone}); q.ResultCode != kg.CodeNoInstance {
			t.Errorf("query of a released instance: %s", q.raw)
		}
		if q := e.call(map[string]string{"activity": "queryInstance", "instanceId": gone + "," + live}); q.ResultCode != kg.CodeSuccess || len(q.Info) != 1 || q.Info[0].InstanceID != live {
			t.Errorf("query of a released and a live instance: %s", q.raw)
		}
		r := e.call(newInstanceBody("MOCKPERIODYEARNEW", "MOCKPERIODYEARNEW-000001", "biz-sandbox-rel", true))
		if r.ResultCode != kg.CodeSuccess {
			t.Fatalf("sandbox create: %s %s", r.ResultCode, r.ResultMsg)
		}
		if x := e.call(map[string]string{"activity": "releaseInstance", "instanceId": r.InstanceID, "testFlag": "1"}); x.ResultCode != kg.CodeSuccess {
			t.Fatalf("sandbox release: %s %s", x.ResultCode, x.ResultMsg)
		}
		if q := e.call(map[string]string{"activity": "queryInstance", "instanceId": r.InstanceID, "testFlag": "1"}); q.ResultCode != kg.CodeSuccess || len(q.Info) != 1 {
			t.Errorf("query of a released sandbox instance: %s", q.raw)
		}
	})
}

// TestChangeCheckAnswers: "allowed" decides a change check when given;
// without it an empty answer or resultCode 000000 allows the change and any
// other resultCode refuses it (an app answering as it refuses a create); a
// failed attempt is answered 000005 with a message that names the event, not
// a timeout.
func TestChangeCheckAnswers(t *testing.T) {
	forBackends(t, func(t *testing.T, backend string) {
		e := newEnv(t, backend)
		id := e.provisioned("CS210")
		check := `{"activity":"changeInstanceCheck","instanceId":"` + id + `","productInfo":{"productId":"prod-1","skuCode":"sku-mini"}}`
		for _, c := range []struct{ answer, code, msg string }{
			{``, kg.CodeSuccess, ""},
			{`{}`, kg.CodeSuccess, ""},
			{`{"resultCode":"000000"}`, kg.CodeSuccess, ""},
			{`{"allowed":true,"resultCode":"000106"}`, kg.CodeSuccess, ""},
			{`{"resultCode":"000106","resultMsg":"sold out"}`, kg.CodeSoldOut, "sold out"},
			{`{"resultCode":"000005"}`, kg.CodeNoResource, ""}, // not a refusal code: 000100
			{`{"allowed":false}`, kg.CodeNoResource, ""},
			{`{"allowed":false,"resultCode":"000103","resultMsg":"no"}`, kg.CodeAlreadyPurchased, "no"},
		} {
			e.app.answers.Store(EventChangeCheck, c.answer)
			if r := e.call(check); r.ResultCode != c.code || (c.msg != "" && r.ResultMsg != c.msg) {
				t.Fatalf("answer %q: %s %q, want %s %q", c.answer, r.ResultCode, r.ResultMsg, c.code, c.msg)
			}
		}
		e.app.answers.Delete(EventChangeCheck)
		e.app.status.Store(http.StatusInternalServerError)
		r := e.call(check)
		if r.ResultCode != kg.CodeInternal || !strings.Contains(r.ResultMsg, "webhook failed") {
			t.Fatalf("failed attempt: %s %q, want 000005 naming a failed webhook", r.ResultCode, r.ResultMsg)
		}
	})
}
