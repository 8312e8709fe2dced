package merchant

import (
	"context"
	"fmt"
	"io/fs"
	"strings"
	"sync"
	"testing"
	"testing/fstest"
	"time"

	"github.com/soukhq/souk/db"
	"github.com/soukhq/souk/db/dbtest"
	"github.com/soukhq/souk/jobs"
	"github.com/soukhq/souk/kg"
	"github.com/soukhq/souk/merchant/handoff"
)

// The vendor app refuses a create with a create-instance code (webhook
// answer, Provisioner result, sandbox webhook): newInstance answers that code
// and message with the instanceId, on the first call and on every retry, and
// so does queryInstance; no second instance is made, and lifecycle calls on
// the failed instance keep working.
func TestCreateRefused(t *testing.T) {
	const msg = "no seats left in region cn-north-4; 余量不足"
	refusal := fmt.Sprintf(`{"resultCode":"000106","resultMsg":%q}`, msg)
	cases := []struct {
		name string
		test bool // testFlag 1
		opt  envOpt
	}{
		{"webhook", false, nil},
		{"provisioner", false, func(c *Config, d *Deps) {
			c.WebhookURL = ""
			d.Provisioner = ProvisionerFunc(func(_ context.Context, ev *handoff.Stored) (*Answer, error) {
				if ev.Type != EventCreated {
					return nil, nil
				}
				return &Answer{ResultCode: kg.CodeSoldOut, ResultMsg: msg}, nil
			})
		}},
		// The sandbox webhook may refuse as well (the tests' one fake app
		// takes both the real and the sandbox events).
		{"sandbox webhook", true, func(c *Config, _ *Deps) { c.SandboxWebhookURL = c.WebhookURL }},
	}
	forBackends(t, func(t *testing.T, backend string) {
		for _, c := range cases {
			t.Run(c.name, func(t *testing.T) {
				var opts []envOpt
				if c.opt != nil {
					opts = append(opts, c.opt)
				}
				e := newEnv(t, backend, opts...)
				e.app.created.Store("sku-gone", refusal)
				e.market.addOrder("REF1", "REF1-000001", ChargingPeriod, "prod-1", "sku-gone")
				tf := ""
				if c.test {
					tf = "1"
				}
				want := func(what string, r kgResp) {
					t.Helper()
					if r.ResultCode != kg.CodeSoldOut || r.ResultMsg != msg || r.InstanceID != "biz-ref-1" {
						t.Fatalf("%s: %s %q %q, want 000106 %q biz-ref-1", what, r.ResultCode, r.ResultMsg, r.InstanceID, msg)
					}
				}
				want("newInstance", e.call(newInstanceBody("REF1", "REF1-000001", "biz-ref-1", c.test)))
				for i := 2; i <= 3; i++ { // the marketplace's hourly retries
					want(fmt.Sprint("retry ", i), e.call(newInstanceBody("REF1", "REF1-000001", fmt.Sprint("biz-ref-", i), c.test)))
				}
				q := e.call(map[string]string{"activity": "queryInstance", "instanceId": "biz-ref-1", "testFlag": tf})
				if q.ResultCode != kg.CodeSoldOut || q.ResultMsg != msg || len(q.Info) != 0 {
					t.Fatalf("queryInstance: %s", q.raw)
				}
				if n := e.count(`SELECT COUNT(*) FROM merchant_instances`); n != 1 {
					t.Fatalf("%d instances, want 1", n)
				}
				if n := e.count(`SELECT COUNT(*) FROM handoff_events WHERE type = 'instance.created' AND state = 'delivered'`); n != 1 {
					t.Fatalf("%d delivered instance.created events, want 1", n)
				}
				_, inst := e.api("GET", "/api/v1/instances/biz-ref-1", nil, testAdmin)
				if f, _ := inst["failure"].(map[string]any); inst["phase"] != PhaseFailed || f["resultCode"] != kg.CodeSoldOut || f["resultMsg"] != msg {
					t.Fatalf("instance view: %v", inst)
				}
				// Lifecycle calls act on a failed instance as on any other.
				for _, body := range []map[string]string{
					{"activity": "updateInstanceStatus", "instanceId": "biz-ref-1", "status": "FREEZE", "testFlag": tf},
					{"activity": "updateInstanceStatus", "instanceId": "biz-ref-1", "status": "UNFREEZE", "testFlag": tf},
					{"activity": "releaseInstance", "instanceId": "biz-ref-1", "testFlag": tf},
				} {
					if r := e.call(body); r.ResultCode != kg.CodeSuccess {
						t.Fatalf("%s %s: %s %s", body["activity"], body["status"], r.ResultCode, r.ResultMsg)
					}
				}
				if !c.test && e.count(`SELECT COUNT(*) FROM merchant_instances WHERE status = 'RELEASED' AND phase = 'failed'`) != 1 {
					t.Fatal("the failed instance was not released")
				}
				// A refusal without a message answers the code's own.
				if c.name == "webhook" {
					e.app.created.Store("sku-dup", `{"resultCode":"000103"}`)
					e.market.addOrder("REF2", "REF2-000001", ChargingPeriod, "prod-1", "sku-dup")
					r := e.call(newInstanceBody("REF2", "REF2-000001", "biz-ref2", false))
					if def, _ := kg.CodeMessage(kg.CodeAlreadyPurchased); r.ResultCode != kg.CodeAlreadyPurchased || r.ResultMsg != def {
						t.Fatalf("refusal without a message: %s %q", r.ResultCode, r.ResultMsg)
					}
				}
			})
		}
	})
}

// Concurrent creates share batches (batch.go): the refused ones leave the
// batched record for the one-by-one path and answer their code; the others
// are still completed by the batch and answer 000000.
func TestBatchedCreatesSomeRefused(t *testing.T) {
	forBackends(t, func(t *testing.T, backend string) {
		e := newEnv(t, backend, longBudget)
		e.app.created.Store("sku-none", `{"resultCode":"000100","resultMsg":"no capacity"}`)
		const n = 30
		for i := range n {
			sku := "sku-ok"
			if i%3 == 0 {
				sku = "sku-none"
			}
			e.market.addOrder(fmt.Sprintf("BR%02d", i), fmt.Sprintf("BR%02d-1", i), ChargingPeriod, "prod-1", sku)
		}
		got := make([]kgResp, n)
		var wg sync.WaitGroup
		for i := range n {
			wg.Go(func() {
				got[i] = e.call(newInstanceBody(fmt.Sprintf("BR%02d", i), fmt.Sprintf("BR%02d-1", i), fmt.Sprintf("biz-br-%02d", i), false))
			})
		}
		wg.Wait()
		for i, r := range got {
			want := kg.CodeSuccess
			if i%3 == 0 {
				want = kg.CodeNoResource
			}
			if r.ResultCode != want || r.InstanceID != fmt.Sprintf("biz-br-%02d", i) {
				t.Errorf("create %d: %s %s %q, want %s", i, r.ResultCode, r.ResultMsg, r.InstanceID, want)
			}
		}
		if f := e.count(`SELECT COUNT(*) FROM merchant_instances WHERE phase = 'failed' AND failure_code = '000100'`); f != n/3 {
			t.Errorf("%d failed instances, want %d", f, n/3)
		}
		if r := e.count(`SELECT COUNT(*) FROM merchant_instances WHERE phase = 'ready' AND failure_code = ''`); r != n-n/3 {
			t.Errorf("%d ready instances, want %d", r, n-n/3)
		}
	})
}

// An answer to instance.created with a code that is not a refusal, a
// malformed code, a message over 255 characters, or a refusal together with
// appInfo is invalid, as invalid appInfo is: a failed attempt (retried, then
// dead-lettered) whose error says why; the instance stays provisioning.
func TestInvalidRefusalAnswers(t *testing.T) {
	cases := []struct {
		name, answer, why string
	}{
		{"in progress is not a refusal", `{"resultCode":"000004"}`, "resultCode"},
		{"common error code", `{"resultCode":"000005","resultMsg":"boom"}`, "resultCode"},
		{"code past the create codes", `{"resultCode":"000108"}`, "resultCode"},
		{"five digits", `{"resultCode":"00010"}`, "resultCode"},
		{"not digits", `{"resultCode":"00010a"}`, "resultCode"},
		{"message too long", `{"resultCode":"000100","resultMsg":"` + strings.Repeat("长", 256) + `"}`, "resultMsg"},
		{"refusal with appInfo", `{"resultCode":"000100","appInfo":{"frontEndUrl":"https://app.example.com/x"}}`, "appInfo"},
	}
	forBackends(t, func(t *testing.T, backend string) {
		e := newEnv(t, backend)
		for i, c := range cases {
			t.Run(c.name, func(t *testing.T) {
				order, sku, biz := fmt.Sprintf("INV%d", i), fmt.Sprintf("sku-inv-%d", i), fmt.Sprintf("biz-inv-%d", i)
				e.app.created.Store(sku, c.answer)
				e.market.addOrder(order, order+"-1", ChargingPeriod, "prod-1", sku)
				if r := e.call(newInstanceBody(order, order+"-1", biz, false)); r.ResultCode != kg.CodeInProgress || r.InstanceID != biz {
					t.Fatalf("newInstance: %s %s, want 000004", r.ResultCode, r.ResultMsg)
				}
				var state, lastErr, phase string
				if err := e.db.QueryRow(e.ctx, `SELECT state, last_error FROM handoff_events WHERE subject = $1`, biz).Scan(&state, &lastErr); err != nil {
					t.Fatal(err)
				}
				if state != handoff.StatePending || !strings.Contains(lastErr, c.why) {
					t.Fatalf("event %s, last error %q: want pending, naming %s", state, lastErr, c.why)
				}
				if err := e.db.QueryRow(e.ctx, `SELECT phase FROM merchant_instances WHERE instance_id = $1`, biz).Scan(&phase); err != nil || phase != PhaseProvisioning {
					t.Fatalf("phase %s (%v), want provisioning", phase, err)
				}
			})
		}
		// 000000 is no refusal: with appInfo it completes as usual.
		e.app.created.Store("sku-ok0", `{"resultCode":"000000","appInfo":{"frontEndUrl":"https://app.example.com/ok"}}`)
		e.market.addOrder("INVOK", "INVOK-1", ChargingPeriod, "prod-1", "sku-ok0")
		if r := e.call(newInstanceBody("INVOK", "INVOK-1", "biz-inv-ok", false)); r.ResultCode != kg.CodeSuccess {
			t.Fatalf("000000 with appInfo: %s %s", r.ResultCode, r.ResultMsg)
		}
	})
}

// POST /api/v1/instances/{id}/failure refuses a create later (an app that
// provisions asynchronously); POST appinfo recovers a failed instance, and
// the marketplace's next retry gets 000000.
func TestFailureAPI(t *testing.T) {
	forBackends(t, func(t *testing.T, backend string) {
		e := newEnv(t, backend, func(c *Config, _ *Deps) { c.Budget = 500 * time.Millisecond })
		ready := e.provisioned("FAPI0")
		e.app.noApp.Store(true) // acknowledges; completes (or refuses) later
		e.market.addOrder("FAPI1", "FAPI1-1", ChargingPeriod, "prod-1", "sku-1")
		if r := e.call(newInstanceBody("FAPI1", "FAPI1-1", "biz-fapi", false)); r.ResultCode != kg.CodeInProgress {
			t.Fatalf("newInstance: %s", r.ResultCode)
		}
		e.market.addOrder("FAPI2", "FAPI2-1", ChargingPeriod, "prod-1", "sku-1")
		if r := e.call(newInstanceBody("FAPI2", "FAPI2-1", "biz-fapi-2", false)); r.ResultCode != kg.CodeInProgress {
			t.Fatalf("newInstance: %s", r.ResultCode)
		}
		path := "/api/v1/instances/biz-fapi/failure"
		sold := map[string]string{"resultCode": "000106", "resultMsg": "sold out in this region"}
		cases := []struct {
			name   string
			path   string
			body   any
			token  string
			status int
			field  string
		}{
			{"no token", path, sold, "", 401, ""},
			{"missing code", path, map[string]string{"resultMsg": "x"}, testAdmin, 400, "resultCode"},
			{"not a create code", path, map[string]string{"resultCode": "000004"}, testAdmin, 400, "resultCode"},
			{"success is no refusal", path, map[string]string{"resultCode": "000000"}, testAdmin, 400, "resultCode"},
			{"seven digits", path, map[string]string{"resultCode": "0001060"}, testAdmin, 400, "resultCode"},
			{"numeric code", path, map[string]any{"resultCode": 106}, testAdmin, 400, "resultCode"},
			{"long message", path, map[string]string{"resultCode": "000106", "resultMsg": strings.Repeat("m", 256)}, testAdmin, 400, "resultMsg"},
			{"not json", path, "{", testAdmin, 400, ""},
			{"unknown instance", "/api/v1/instances/nope/failure", sold, testAdmin, 404, ""},
			{"ready instance", "/api/v1/instances/" + ready + "/failure", sold, testAdmin, 409, ""},
			{"ok", path, sold, testAdmin, 200, ""},
			{"again, another code", "/api/v1/instances/biz-fapi-2/failure", map[string]string{"resultCode": "000102"}, testAdmin, 200, ""},
		}
		for _, c := range cases {
			t.Run(c.name, func(t *testing.T) {
				code, body := e.api("POST", c.path, c.body, c.token)
				if code != c.status {
					t.Fatalf("status %d (%v), want %d", code, body, c.status)
				}
				if c.field != "" && body["field"] != c.field {
					t.Fatalf("field %v, want %s (%v)", body["field"], c.field, body)
				}
			})
		}
		if n := e.count(`SELECT COUNT(*) FROM audit_log WHERE source = 'api' AND activity = 'POST failure'`); n != len(cases) {
			t.Fatalf("%d audit records of the failure endpoint, want %d", n, len(cases))
		}
		if n := e.count(`SELECT COUNT(*) FROM audit_log WHERE activity = 'POST failure' AND result_code = '200' AND message = 'resultCode 000106'`); n != 1 {
			t.Fatal("the audit record does not name the refusal's code")
		}
		if n := e.count(`SELECT COUNT(*) FROM merchant_instances WHERE instance_id = $1 AND phase = 'ready'`, ready); n != 1 {
			t.Fatal("a refused refusal changed the ready instance")
		}
		if r := e.call(newInstanceBody("FAPI1", "FAPI1-1", "biz-fapi-r1", false)); r.ResultCode != "000106" || r.ResultMsg != "sold out in this region" || r.InstanceID != "biz-fapi" {
			t.Fatalf("retry after the refusal: %+v", r)
		}
		// queryInstance: the refusal when nothing asked for is ready and
		// nothing is still provisioning; 000004 while one is provisioning;
		// the ready ones when there are.
		e.market.addOrder("FAPI3", "FAPI3-1", ChargingPeriod, "prod-1", "sku-1")
		if r := e.call(newInstanceBody("FAPI3", "FAPI3-1", "biz-fapi-3", false)); r.ResultCode != kg.CodeInProgress {
			t.Fatalf("newInstance: %s", r.ResultCode)
		}
		for _, c := range []struct {
			ids, code string
			info      int
		}{
			{"biz-fapi", "000106", 0},
			{"nope,biz-fapi-2,biz-fapi", "000102", 0}, // the first failed one
			{"biz-fapi,biz-fapi-3", kg.CodeInProgress, 0},
			{"biz-fapi," + ready, kg.CodeSuccess, 1},
		} {
			q := e.call(map[string]string{"activity": "queryInstance", "instanceId": c.ids})
			if q.ResultCode != c.code || len(q.Info) != c.info {
				t.Errorf("queryInstance %s: %s, want %s with %d info", c.ids, q.raw, c.code, c.info)
			}
		}
		// The vendor recovers: appInfo completes the failed instance.
		code, body := e.api("POST", "/api/v1/instances/biz-fapi/appinfo", map[string]any{"appInfo": map[string]string{"frontEndUrl": "https://late.example.com"}}, testAdmin)
		if code != 200 || body["phase"] != PhaseReady {
			t.Fatalf("appinfo on a failed instance: %d %v", code, body)
		}
		if r := e.call(newInstanceBody("FAPI1", "FAPI1-1", "biz-fapi-r2", false)); r.ResultCode != kg.CodeSuccess || r.InstanceID != "biz-fapi" {
			t.Fatalf("retry after the recovery: %+v", r)
		}
		if q := e.call(map[string]string{"activity": "queryInstance", "instanceId": "biz-fapi"}); q.ResultCode != kg.CodeSuccess || q.Info[0].AppInfo.FrontEndURL != "https://late.example.com" {
			t.Fatalf("queryInstance after the recovery: %s", q.raw)
		}
		if _, inst := e.api("GET", "/api/v1/instances/biz-fapi", nil, testAdmin); inst["failure"] != nil || inst["phase"] != PhaseReady {
			t.Fatalf("the failure was not cleared: %v", inst)
		}
		if code, _ := e.api("POST", path, sold, testAdmin); code != 409 {
			t.Fatalf("refusing the recovered instance: %d, want 409", code)
		}
	})
}

// Migration 0002 applies to a database that a merchant with only 0001 made:
// existing instances read as before, with no failure.
func TestMigrationFailureColumnsOnExistingDatabase(t *testing.T) {
	forBackends(t, func(t *testing.T, backend string) {
		ctx := context.Background()
		d := dbtest.Open(t, backend)
		if err := jobs.Migrate(ctx, d); err != nil {
			t.Fatal(err)
		}
		if err := handoff.Migrate(ctx, d); err != nil {
			t.Fatal(err)
		}
		v1, err := fs.ReadFile(migrationFS, "migrations/0001_merchant.sql")
		if err != nil {
			t.Fatal(err)
		}
		if err := d.Migrate(ctx, "merchant", fstest.MapFS{"0001_merchant.sql": {Data: v1}}); err != nil {
			t.Fatal(err)
		}
		for _, id := range []string{"old-ready", "old-prov"} {
			phase := PhaseReady
			if id == "old-prov" {
				phase = PhaseProvisioning
			}
			if _, err := d.Exec(ctx, `INSERT INTO merchant_instances (instance_id, order_id, order_line_id, business_id, phase, app_info, created_at, updated_at)
				VALUES ($1, 'O', $1, $1, $2, '{"frontEndUrl":"https://x.example.com"}', 1, 1)`, id, phase); err != nil {
				t.Fatal(err)
			}
		}
		if err := Migrate(ctx, d); err != nil {
			t.Fatalf("migrate an existing database: %v", err)
		}
		all, err := db.Migrations(migrationFS, d.Dialect)
		if err != nil {
			t.Fatal(err)
		}
		var v int64
		if err := d.QueryRow(ctx, `SELECT MAX(version) FROM schema_migrations WHERE component = 'merchant'`).Scan(&v); err != nil || v != all[len(all)-1].Version {
			t.Fatalf("merchant schema version %d (%v), want %d", v, err, all[len(all)-1].Version)
		}
		inst, err := loadInstance(ctx, d, "old-ready")
		if err != nil || inst.Phase != PhaseReady || inst.Failure != nil || inst.AppInfo == nil {
			t.Fatalf("old instance: %+v %v", inst, err)
		}
		m, err := New(Config{AccessKeys: []string{testKey}, AdminToken: testAdmin}, Deps{DB: d})
		if err != nil {
			t.Fatal(err)
		}
		defer m.Close()
		if err := m.FailInstance(ctx, "old-prov", kg.CodeNoResource, ""); err != nil {
			t.Fatal(err)
		}
		if inst, err := loadInstance(ctx, d, "old-prov"); err != nil || inst.Phase != PhaseFailed || inst.Failure == nil || inst.Failure.ResultCode != kg.CodeNoResource {
			t.Fatalf("refused old instance: %+v %v", inst, err)
		}
		if err := Migrate(ctx, d); err != nil { // again: a no-op
			t.Fatal(err)
		}
	})
}
