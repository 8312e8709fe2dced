package merchant

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"log/slog"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/soukhq/souk/clock"
	"github.com/soukhq/souk/internal/lockedbuf"
	"github.com/soukhq/souk/kg"
	"github.com/soukhq/souk/merchant/handoff"
)

func TestWebhookRetriesDeadLetterReplay(t *testing.T) {
	forBackends(t, func(t *testing.T, backend string) {
		e := newEnv(t, backend, func(c *Config, _ *Deps) { c.WebhookMaxAttempts = 3; c.Budget = 500 * time.Millisecond })
		e.app.status.Store(http.StatusInternalServerError)
		e.market.addOrder("WH1", "WH1-000001", ChargingPeriod, "prod-1", "sku-1")
		r := e.call(newInstanceBody("WH1", "WH1-000001", "biz-wh", false))
		if r.ResultCode != kg.CodeInProgress {
			t.Fatalf("app failing: %s", r.ResultCode)
		}
		// Inline attempt (1) failed; the job retries with backoff until dead.
		for i := 0; i < 5; i++ {
			e.runJobs(2 * time.Hour)
		}
		evs, err := handoff.List(e.ctx, e.db, handoff.Filter{Type: EventCreated})
		if err != nil || len(evs) != 1 {
			t.Fatalf("events: %v %v", evs, err)
		}
		ev := evs[0]
		if ev.State != handoff.StateDead || ev.Attempts != 3 || !strings.Contains(ev.LastError, "500") {
			t.Fatalf("event after failures: %+v", ev)
		}
		e.app.mu.Lock()
		ids := append([]string(nil), e.app.ids...)
		e.app.mu.Unlock()
		if len(ids) != 3 {
			t.Fatalf("app saw %d deliveries, want 3", len(ids))
		}
		for _, id := range ids {
			if id != ev.ID {
				t.Fatalf("event id header %q, want the same %q on every retry", id, ev.ID)
			}
		}
		// Dead letter is visible through the API and the metric.
		code, body := e.api("GET", "/api/v1/events?state=dead", nil, testAdmin)
		if code != 200 || len(body["events"].([]any)) != 1 {
			t.Fatalf("dead list: %d %v", code, body)
		}
		// Fix the app; replay the dead letter; the instance completes.
		e.app.status.Store(200)
		code, body = e.api("POST", "/api/v1/events/replay-dead", nil, testAdmin)
		if code != http.StatusAccepted || len(body["replayed"].([]any)) != 1 {
			t.Fatalf("replay-dead: %d %v", code, body)
		}
		e.runJobs(time.Second)
		got, _ := handoff.Get(e.ctx, e.db, ev.ID)
		if got.State != handoff.StateDelivered || got.Replays != 1 {
			t.Fatalf("after replay: %+v", got)
		}
		if q := e.call(map[string]string{"activity": "queryInstance", "instanceId": "biz-wh"}); q.ResultCode != kg.CodeSuccess {
			t.Fatalf("query after replay: %s", q.ResultCode)
		}
		// Replaying a delivered event delivers it again (the app dedupes by id).
		before := len(e.app.eventsOf(EventCreated))
		if err := handoff.Replay(e.ctx, e.db, e.clock.Now(), ev.ID); err != nil {
			t.Fatal(err)
		}
		e.runJobs(time.Second)
		if after := len(e.app.eventsOf(EventCreated)); after != before+1 {
			t.Fatalf("replay of a delivered event: %d → %d deliveries", before, after)
		}
		if err := handoff.Replay(e.ctx, e.db, e.clock.Now(), "evt_nope"); err == nil {
			t.Fatal("replay of an unknown event succeeded")
		}
		if e.app.badSig.Load() != 0 {
			t.Fatal("bad webhook signatures")
		}
	})
}

func TestSandboxNeverReachesTheApp(t *testing.T) {
	forBackends(t, func(t *testing.T, backend string) {
		e := newEnv(t, backend)
		// MOCK order ids: Query Order answers (or not), the sandbox completes.
		for round := 0; round < 2; round++ { // dial tests replay the saved cases
			for _, c := range []struct{ order, mode string }{{"MOCKPERIODYEARNEW", ChargingPeriod}, {"MOCKONDEMAND", ChargingOnDemand}} {
				r := e.call(newInstanceBody(c.order, c.order+"-000001", "biz-"+c.order+"-"+string(rune('a'+round)), true))
				if r.ResultCode != kg.CodeSuccess {
					t.Fatalf("sandbox %s round %d: %s %s", c.order, round, r.ResultCode, r.ResultMsg)
				}
				id := r.InstanceID
				for _, body := range []map[string]string{
					{"activity": "queryInstance", "instanceId": id, "testFlag": "1"},
					{"activity": "refreshInstance", "instanceId": id, "orderId": "MOCKMONTYRENEW", "orderLineId": "MOCKMONTYRENEW-000001", "scene": "RENEWAL", "expireTime": "20991231000000", "testFlag": "1"},
					{"activity": "updateInstanceStatus", "instanceId": id, "status": "FREEZE", "testFlag": "1"},
					{"activity": "updateInstanceStatus", "instanceId": id, "status": "UNFREEZE", "testFlag": "1"},
					{"activity": "upgradeInstance", "instanceId": id, "orderId": "MOCKMONTYCHANGE", "orderLineId": "MOCKMONTYCHANGE-000001", "testFlag": "1"},
					{"activity": "orderNotify", "orderId": "MOCKPERIODYEARNEW", "orderLineId": "MOCKPERIODYEARNEW-000001", "testFlag": "1"},
				} {
					if r := e.call(body); r.ResultCode != kg.CodeSuccess {
						t.Fatalf("sandbox %s round %d: %s %s", body["activity"], round, r.ResultCode, r.ResultMsg)
					}
				}
				check := `{"activity":"changeInstanceCheck","instanceId":"` + id + `","productInfo":"{\"productId\":\"p\",\"skuCode\":\"s\"}","testFlag":"1"}`
				if r := e.call(check); r.ResultCode != kg.CodeSuccess {
					t.Fatalf("sandbox change check: %s %s", r.ResultCode, r.ResultMsg)
				}
				q := e.call(map[string]string{"activity": "queryInstance", "instanceId": id, "testFlag": "1"})
				if q.ResultCode != kg.CodeSuccess || q.Info[0].AppInfo == nil || !strings.Contains(q.Info[0].AppInfo.FrontEndURL, "sandbox") {
					t.Fatalf("sandbox appInfo: %s", q.raw)
				}
			}
		}
		e.runJobs(time.Minute)
		e.app.mu.Lock()
		n := len(e.app.events)
		e.app.mu.Unlock()
		if n != 0 {
			t.Fatalf("the real app received %d sandbox events", n)
		}
		if e.count(`SELECT COUNT(*) FROM merchant_instances WHERE test_flag = 1`) != 2 {
			t.Fatal("dial-test replays created new instances")
		}
		if e.count(`SELECT COUNT(*) FROM handoff_events WHERE test_flag = 1 AND state = 'delivered' AND delivered_to = 'sandbox'`) == 0 {
			t.Fatal("sandbox events were not delivered to the sandbox")
		}
	})
}

// A debugging request (testFlag "1") that names a real instance is answered
// 000003 and changes nothing: a debug case saved with a real instanceId would
// otherwise freeze or release a paying customer's instance at every dial test.
func TestSandboxNeverTouchesARealInstance(t *testing.T) {
	forBackends(t, func(t *testing.T, backend string) {
		e := newEnv(t, backend)
		e.market.addOrder("ORD-REAL-1", "ORD-REAL-1-1", ChargingPeriod, "prod-1", "sku-1")
		r := e.call(newInstanceBody("ORD-REAL-1", "ORD-REAL-1-1", "biz-real-1", false))
		if r.ResultCode != kg.CodeSuccess {
			t.Fatalf("real create: %s %s", r.ResultCode, r.ResultMsg)
		}
		id := r.InstanceID
		e.runJobs(time.Minute)
		events := e.count(`SELECT COUNT(*) FROM handoff_events`)
		ops := e.count(`SELECT COUNT(*) FROM merchant_operations`)
		for _, body := range []map[string]string{
			{"activity": "refreshInstance", "instanceId": id, "orderId": "MOCKMONTYRENEW", "orderLineId": "MOCKMONTYRENEW-000001", "scene": "RENEWAL", "expireTime": "20991231000000", "testFlag": "1"},
			{"activity": "updateInstanceStatus", "instanceId": id, "status": "FREEZE", "testFlag": "1"},
			{"activity": "releaseInstance", "instanceId": id, "testFlag": "1"},
			{"activity": "upgradeInstance", "instanceId": id, "orderId": "MOCKMONTYCHANGE", "orderLineId": "MOCKMONTYCHANGE-000001", "testFlag": "1"},
			{"activity": "changeInstanceCheck", "instanceId": id, "productInfo": `{"productId":"p","skuCode":"s"}`, "testFlag": "1"},
		} {
			r := e.call(body)
			if r.ResultCode != kg.CodeNoInstance || !strings.Contains(r.ResultMsg, "not a debugging instance") {
				t.Errorf("%s with testFlag 1 on a real instance: %s %s", body["activity"], r.ResultCode, r.ResultMsg)
			}
		}
		if n := e.count(`SELECT COUNT(*) FROM merchant_instances WHERE instance_id = $1 AND status = 'NORMAL' AND expire_at = 0`, id); n != 1 {
			t.Error("the real instance changed")
		}
		if n := e.count(`SELECT COUNT(*) FROM handoff_events`); n != events {
			t.Errorf("%d events emitted for refused debug calls", n-events)
		}
		if n := e.count(`SELECT COUNT(*) FROM merchant_operations`); n != ops {
			t.Errorf("%d operations recorded for refused debug calls", n-ops)
		}
		// Reading stays allowed (it changes nothing), and the real requests act.
		if q := e.call(map[string]string{"activity": "queryInstance", "instanceId": id, "testFlag": "1"}); q.ResultCode != kg.CodeSuccess {
			t.Errorf("debug query of a real instance: %s %s", q.ResultCode, q.ResultMsg)
		}
		if r := e.call(map[string]string{"activity": "updateInstanceStatus", "instanceId": id, "status": "FREEZE"}); r.ResultCode != kg.CodeSuccess {
			t.Errorf("real freeze: %s %s", r.ResultCode, r.ResultMsg)
		}
	})
}

func TestSandboxWebhook(t *testing.T) {
	sandbox := newFakeApp(t, clock.Real{})
	e := newEnv(t, "sqlite", func(c *Config, _ *Deps) { c.SandboxWebhookURL = sandbox.srv.URL })
	r := e.call(newInstanceBody("MOCKONETIMENEW", "MOCKONETIMENEW-000001", "biz-sbx", true))
	if r.ResultCode != kg.CodeSuccess {
		t.Fatalf("sandbox webhook: %s %s", r.ResultCode, r.ResultMsg)
	}
	if len(sandbox.eventsOf(EventCreated)) != 1 || len(e.app.eventsOf(EventCreated)) != 0 {
		t.Fatal("sandbox event went to the wrong webhook")
	}
	if !sandbox.eventsOf(EventCreated)[0].TestFlag {
		t.Fatal("sandbox envelope lacks testFlag")
	}
}

func TestEncryptedCredentials(t *testing.T) {
	for _, enc := range []string{"1", "2"} {
		t.Run("encryptType"+enc, func(t *testing.T) {
			e := newEnv(t, "sqlite", func(c *Config, _ *Deps) { c.ProductEncrypt = map[string]string{"prod-1": enc} })
			id := e.provisioned("ENC" + enc)
			for _, key := range []string{testKey, testKey2} {
				q := e.call(map[string]string{"activity": "queryInstance", "instanceId": id}, func(o *callOpt) { o.key = key })
				if q.ResultCode != kg.CodeSuccess || q.EncryptType != enc {
					t.Fatalf("query: %s", q.raw)
				}
				pw, err := kg.DecryptCredential(key, enc, q.Info[0].AppInfo.Password)
				if err != nil || pw != "P@ssw0rd!" {
					t.Fatalf("decrypt with the verifying key: %q %v", pw, err)
				}
				un, err := kg.DecryptCredential(key, enc, q.Info[0].AppInfo.UserName)
				if err != nil || un != "admin@example.com" {
					t.Fatalf("decrypt userName: %q %v", un, err)
				}
			}
			// Another product keeps the default (plaintext).
			e.market.addOrder("PLAIN", "PLAIN-000001", ChargingPeriod, "prod-2", "sku")
			r := e.call(newInstanceBody("PLAIN", "PLAIN-000001", "biz-plain", false))
			q := e.call(map[string]string{"activity": "queryInstance", "instanceId": r.InstanceID})
			if q.EncryptType != "" || q.Info[0].AppInfo.Password != "P@ssw0rd!" {
				t.Fatalf("default plaintext: %s", q.raw)
			}
		})
	}
}

// A merchant configured with two webhook secrets (a rotation) signs with
// both: the app, still on the old one, verifies every delivery.
func TestWebhookSecretRotation(t *testing.T) {
	e := newEnv(t, "sqlite", func(c *Config, _ *Deps) { c.WebhookSecret = "the-new-secret," + testSecret })
	e.market.addOrder("ROT", "ROT-000001", ChargingPeriod, "prod-1", "sku")
	if r := e.call(newInstanceBody("ROT", "ROT-000001", "biz-rot", false)); r.ResultCode != kg.CodeSuccess {
		t.Fatalf("newInstance: %s", r.raw)
	}
	if n := e.app.badSig.Load(); n != 0 {
		t.Fatalf("%d deliveries refused by the app on the old secret", n)
	}
	var sig string
	e.app.mu.Lock()
	if n := len(e.app.sigs); n > 0 {
		sig = e.app.sigs[n-1]
	}
	e.app.mu.Unlock()
	if strings.Count(sig, ",v1=") != 2 {
		t.Fatalf("Souk-Signature %q: want one v1 per secret", sig)
	}
}

func TestWebhookSignature(t *testing.T) {
	now := time.Unix(1700000000, 0)
	body := []byte(`{"id":"evt_1"}`)
	h := handoff.Sign("s3cret", now, body)
	m := hmac.New(sha256.New, []byte("s3cret"))
	m.Write([]byte("1700000000." + string(body)))
	if want := "t=1700000000,v1=" + hex.EncodeToString(m.Sum(nil)); h != want {
		t.Fatalf("Sign = %q, want %q", h, want)
	}
	cases := []struct {
		name    string
		secrets []string
		header  string
		body    []byte
		now     time.Time
		ok      bool
	}{
		{"valid", []string{"s3cret"}, h, body, now, true},
		{"rotated secrets", []string{"old", "s3cret"}, h, body, now, true},
		{"several v1", []string{"s3cret"}, "t=1700000000,v1=00,v1=" + h[len("t=1700000000,v1="):], body, now, true},
		{"upper-case hex", []string{"s3cret"}, "t=1700000000,v1=" + strings.ToUpper(h[len("t=1700000000,v1="):]), body, now, true},
		{"wrong secret", []string{"other"}, h, body, now, false},
		{"tampered body", []string{"s3cret"}, h, []byte(`{"id":"evt_2"}`), now, false},
		{"stale", []string{"s3cret"}, h, body, now.Add(10 * time.Minute), false},
		{"future", []string{"s3cret"}, h, body, now.Add(-10 * time.Minute), false},
		{"no t", []string{"s3cret"}, "v1=abc", body, now, false},
		{"no v1", []string{"s3cret"}, "t=1700000000", body, now, false},
		{"garbage", []string{"s3cret"}, "garbage", body, now, false},
		{"bad t", []string{"s3cret"}, "t=abc,v1=00", body, now, false},
		{"rotating sender, receiver on the new secret", []string{"new"}, handoff.SignAll([]string{"new", "s3cret"}, now, body), body, now, true},
		{"rotating sender, receiver on the old secret", []string{"s3cret"}, handoff.SignAll([]string{"new", "s3cret"}, now, body), body, now, true},
		{"rotating sender, receiver on neither", []string{"other"}, handoff.SignAll([]string{"new", "s3cret"}, now, body), body, now, false},
	}
	if got := handoff.SignAll([]string{"s3cret"}, now, body); got != h {
		t.Errorf("SignAll with one secret = %q, want Sign's %q", got, h)
	}
	if got := handoff.SignAll([]string{"a", "b"}, now, body); strings.Count(got, ",v1=") != 2 || !strings.HasPrefix(got, "t=1700000000,v1=") {
		t.Errorf("SignAll with two secrets = %q", got)
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			err := handoff.Verify(c.secrets, c.header, c.body, c.now, 0)
			if (err == nil) != c.ok {
				t.Fatalf("Verify = %v, want ok=%v", err, c.ok)
			}
		})
	}
}

// Credentials in the webhook URL are never stored or logged with the event's
// deliveredTo.
func TestWebhookURLCredentialsHidden(t *testing.T) {
	forBackends(t, func(t *testing.T, backend string) {
		logs := &lockedbuf.Buffer{}
		e := newEnv(t, backend, func(c *Config, d *Deps) {
			c.WebhookURL = strings.Replace(c.WebhookURL, "http://", "http://hookuser:hookpass@", 1) + "?token=tok3n"
			d.Logger = slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
		})
		e.market.addOrder("CRED1", "CRED1-000001", ChargingPeriod, "prod-1", "sku-1")
		if r := e.call(newInstanceBody("CRED1", "CRED1-000001", "biz-cred", false)); r.ResultCode != kg.CodeSuccess {
			t.Fatalf("create: %s %s", r.ResultCode, r.ResultMsg)
		}
		if n := e.count(`SELECT COUNT(*) FROM handoff_events WHERE subject = 'biz-cred' AND state = 'delivered' AND delivered_to LIKE 'webhook http://hookuser:xxxxx@%token=xxxxx'`); n != 1 {
			var to string
			_ = e.db.QueryRow(e.ctx, `SELECT delivered_to FROM handoff_events WHERE subject = 'biz-cred'`).Scan(&to)
			t.Fatalf("deliveredTo = %q", to)
		}
		if !strings.Contains(logs.String(), "xxxxx") || strings.Contains(logs.String(), "hookpass") || strings.Contains(logs.String(), "tok3n") {
			t.Fatal("the log holds the webhook URL's credentials")
		}
	})
}
