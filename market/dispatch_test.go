package market

import (
	"io"
	"net/http"
	"net/http/httptest"
	"reflect"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/soukhq/souk/clock"
	"github.com/soukhq/souk/kg"
)

func hours(hs ...int) []time.Duration {
	var out []time.Duration
	for _, h := range hs {
		out = append(out, time.Duration(h)*time.Hour)
	}
	return out
}

// A merchant failing newInstance is retried hourly for 3 hours; then the
// order fails and is unsubscribed and refunded, and cannot be restarted.
func TestNewInstanceRetriesThenRefunds(t *testing.T) {
	forBackends(t, func(t *testing.T, b string) {
		e := newEnv(t, b)
		e.fm.setFail("newInstance", "code:000005")
		o, s := e.buy(BuyInput{ProductCode: "P-BASIC-MONTH", PeriodNumber: 1})
		e.advance(2*time.Hour + 59*time.Minute)
		if got := e.order(o.OrderID).Status; got != OrderProcessing {
			t.Fatalf("order before the window ends = %s", got)
		}
		e.advance(2 * time.Hour)
		if got := attemptTimes(e.fm.received("newInstance")); !reflect.DeepEqual(got, hours(0, 1, 2, 3)) {
			t.Fatalf("attempts at %v, want 0h 1h 2h 3h", got)
		}
		o = e.order(o.OrderID)
		if o.Status != OrderRefunded || o.RefundCents != 10000 || !strings.Contains(o.StatusNote, "000005") {
			t.Fatalf("order after the window = %+v", o)
		}
		if s = e.sub(s.ID); s.Status != SubFailed {
			t.Fatalf("subscription = %+v", s)
		}
		orders, err := e.m.ListOrders(e.ctx, "", s.ID, 0)
		e.must(err)
		if len(orders) != 2 || orders[0].OrderType != OrderUnsubscribe || orders[0].RefundRule != "create-failed" || orders[0].RelatedOrderID != o.OrderID {
			t.Fatalf("orders = %+v", orders)
		}
		bill, err := e.m.GetBill(e.ctx, e.customer.ID)
		e.must(err)
		if bill.TotalMicros != 0 {
			t.Fatalf("bill total = %d after the refund", bill.TotalMicros)
		}
		msgs, err := e.m.ListMessages(e.ctx, MessageFilter{OrderID: o.OrderID, Activity: "newInstance"})
		e.must(err)
		if len(msgs) != 1 || msgs[0].State != "failed" || msgs[0].Attempts != 4 {
			t.Fatalf("message = %+v", msgs)
		}
		full, err := e.m.GetMessage(e.ctx, msgs[0].ID, true)
		e.must(err)
		for i, a := range full.AttemptLog {
			wantNext := time.Time{}
			if i < 3 {
				wantNext = t0.Add(time.Duration(i+1) * time.Hour)
			}
			if a.Verdict != VerdictFailure || a.ResultCode != "000005" || !a.NextTryAt.Equal(wantNext) || !a.At.Equal(t0.Add(time.Duration(i)*time.Hour)) ||
				!strings.Contains(a.RequestURL, "signature=") || a.BodySign != "ok" {
				t.Fatalf("attempt %d = %+v", i+1, a)
			}
		}
		e.fm.setFail("newInstance", "")
		if _, err := e.m.Restart(e.ctx, msgs[0].ID); !isCode(err, "refused") {
			t.Fatalf("restart of a refunded create: %v", err)
		}
	})
}

// refreshInstance is retried every 15 minutes for an hour; the order is then
// marked failed; a manual restart after the merchant is fixed succeeds.
func TestRefreshRetriesThenManualRestart(t *testing.T) {
	forBackends(t, func(t *testing.T, b string) {
		e := newEnv(t, b)
		_, s := e.buy(BuyInput{ProductCode: "P-BASIC-MONTH", PeriodNumber: 1})
		e.fm.setFail("refreshInstance", "http500")
		renewAt := e.clk.Now()
		o, err := e.m.Renew(e.ctx, RenewInput{SubscriptionID: s.ID, PeriodNumber: 1})
		e.must(err)
		e.advance(3 * time.Hour)
		want := []time.Duration{0, 15 * time.Minute, 30 * time.Minute, 45 * time.Minute, time.Hour}
		if got := attemptTimes(e.fm.received("refreshInstance")); !reflect.DeepEqual(got, want) {
			t.Fatalf("attempts at %v, want %v", got, want)
		}
		if o = e.order(o.OrderID); o.Status != OrderFailed || !strings.Contains(o.StatusNote, "HTTP status 500") {
			t.Fatalf("order = %+v", o)
		}
		msgs, err := e.m.ListMessages(e.ctx, MessageFilter{State: "failed"})
		e.must(err)
		if len(msgs) != 1 || msgs[0].Activity != "refreshInstance" || !msgs[0].FirstTryAt.Equal(renewAt) {
			t.Fatalf("failed messages = %+v", msgs)
		}
		// Restarting a message that is not failed is refused.
		ok, err := e.m.ListMessages(e.ctx, MessageFilter{State: "succeeded", Activity: "newInstance"})
		e.must(err)
		if _, err := e.m.Restart(e.ctx, ok[0].ID); !isCode(err, "conflict") {
			t.Fatalf("restart of a succeeded message: %v", err)
		}
		e.fm.setFail("refreshInstance", "")
		if _, err := e.m.Restart(e.ctx, msgs[0].ID); err != nil {
			t.Fatal(err)
		}
		e.settle()
		msg, err := e.m.GetMessage(e.ctx, msgs[0].ID, true)
		e.must(err)
		if msg.State != "succeeded" || msg.Attempts != 6 || msg.Restarts != 1 || msg.AttemptLog[5].Verdict != VerdictSuccess {
			t.Fatalf("restarted message = %+v", msg)
		}
		if o = e.order(o.OrderID); o.Status != OrderCompleted {
			t.Fatalf("order after restart = %+v", o)
		}
		// A restart that fails again makes a single attempt, no new window.
		e.fm.setFail("updateInstanceStatus", "code:000003")
		_, err = e.m.SetFrozen(e.ctx, s.ID, true)
		e.must(err)
		e.advance(2 * time.Hour)
		fm, err := e.m.ListMessages(e.ctx, MessageFilter{State: "failed", Activity: "updateInstanceStatus"})
		e.must(err)
		if len(fm) != 1 || fm[0].Attempts != 5 {
			t.Fatalf("status message = %+v", fm)
		}
		if _, err := e.m.Restart(e.ctx, fm[0].ID); err != nil {
			t.Fatal(err)
		}
		e.advance(2 * time.Hour)
		if msg, _ := e.m.GetMessage(e.ctx, fm[0].ID, false); msg.State != "failed" || msg.Attempts != 6 {
			t.Fatalf("restart that fails = %+v", msg)
		}
	})
}

// upgradeInstance failing for 3 hours refunds the change order and keeps the spec.
func TestUpgradeFailureRefunds(t *testing.T) {
	forBackends(t, func(t *testing.T, b string) {
		e := newEnv(t, b)
		_, s := e.buy(BuyInput{ProductCode: "P-BASIC-MONTH", PeriodNumber: 1})
		e.fm.setFail("upgradeInstance", "hang")
		o, err := e.m.Upgrade(e.ctx, UpgradeInput{SubscriptionID: s.ID, ProductCode: "P-PRO-MONTH"})
		e.must(err)
		e.advance(4 * time.Hour)
		if got := attemptTimes(e.fm.received("upgradeInstance")); !reflect.DeepEqual(got, hours(0, 1, 2, 3)) {
			t.Fatalf("attempts at %v", got)
		}
		if o = e.order(o.OrderID); o.Status != OrderRefunded || !strings.Contains(o.StatusNote, "timeout") {
			t.Fatalf("order = %+v", o)
		}
		if s = e.sub(s.ID); s.SKUCode != "basic" || s.Status != SubActive {
			t.Fatalf("subscription = %+v", s)
		}
		// Restarting the refunded upgrade would apply it for free: refused.
		e.fm.setFail("upgradeInstance", "")
		msgs, err := e.m.ListMessages(e.ctx, MessageFilter{OrderID: o.OrderID, Activity: "upgradeInstance"})
		e.must(err)
		if _, err := e.m.Restart(e.ctx, msgs[0].ID); !isCode(err, "refused") || !strings.Contains(err.Error(), "refunded") {
			t.Fatalf("restart of a refunded upgrade: %v", err)
		}
		e.advance(time.Hour)
		if s = e.sub(s.ID); s.SKUCode != "basic" || s.ProductCode != "P-BASIC-MONTH" {
			t.Fatalf("subscription after the refused restart = %+v", s)
		}
		if o = e.order(o.OrderID); o.Status != OrderRefunded {
			t.Fatalf("order after the refused restart = %+v", o)
		}
	})
}

// Messages of one subscription are delivered in order: a queued message waits
// for the failing one before it.
func TestMessagesOfOneSubscriptionInOrder(t *testing.T) {
	forBackends(t, func(t *testing.T, b string) {
		e := newEnv(t, b)
		_, s := e.buy(BuyInput{ProductCode: "P-BASIC-MONTH", PeriodNumber: 1})
		e.advance(t0.AddDate(0, 1, 1).Sub(e.clk.Now())) // frozen
		e.fm.setFail("refreshInstance", "code:000005")
		_, err := e.m.Renew(e.ctx, RenewInput{SubscriptionID: s.ID, PeriodNumber: 1})
		e.must(err)
		e.settle()
		queued, err := e.m.ListMessages(e.ctx, MessageFilter{SubscriptionID: s.ID, State: "queued"})
		e.must(err)
		if len(queued) != 1 || !strings.Contains(string(queued[0].Body), "UNFREEZE") {
			t.Fatalf("queued = %+v", queued)
		}
		e.fm.setFail("refreshInstance", "")
		e.advance(15 * time.Minute)
		if got := e.callOrder(); !strings.HasSuffix(got, "refreshInstance refreshInstance updateInstanceStatus:UNFREEZE ") {
			t.Fatalf("call order = %s", got)
		}
	})
}

func TestDispatchVerdicts(t *testing.T) {
	forBackends(t, func(t *testing.T, b string) {
		e := newEnv(t, b)
		body := activityBody("queryInstance", true, "instanceId", "nope")
		cases := []struct {
			mode, verdict, errPart string
			nosign                 bool
		}{
			{"", VerdictFailure, "000003", false},
			{"code:000001", VerdictFailure, "000001", false},
			{"http500", VerdictFailure, "HTTP status 500", false},
			{"hang", VerdictFailure, "timeout", false},
			{"badsign", VerdictFailure, "Body-Sign", false},
			{"badsignrefuse", VerdictFailure, "resultCode 000001 (authentication failed): signature does not match", false},
			{"code:000000", VerdictSuccess, "", true},
		}
		for _, c := range cases {
			e.fm.setFail("queryInstance", c.mode)
			e.fm.mu.Lock()
			e.fm.noBodySign = c.nosign
			e.fm.mu.Unlock()
			res, err := e.m.Call(e.ctx, Outbound{SellerID: e.seller, Activity: "queryInstance", URL: e.fmURL, Body: body})
			e.must(err)
			if res.Verdict != c.verdict || !strings.Contains(res.Error, c.errPart) {
				t.Errorf("mode %q: verdict %s error %q", c.mode, res.Verdict, res.Error)
			}
			if c.nosign && res.BodySign != "absent" {
				t.Errorf("mode %q: body sign %q", c.mode, res.BodySign)
			}
			msg, err := e.m.GetMessage(e.ctx, res.MessageID, true)
			e.must(err)
			if !strings.Contains(msg.LastError, c.errPart) {
				t.Errorf("mode %q: lastError %q", c.mode, msg.LastError)
			}
			if len(msg.AttemptLog) != 1 || msg.AttemptLog[0].Verdict != c.verdict {
				t.Errorf("mode %q: logged %+v", c.mode, msg.AttemptLog)
			}
		}
		// A seller without the key type cannot be called.
		if _, err := e.m.Call(e.ctx, Outbound{SellerID: e.seller, Activity: "tenantSync", KeyType: KeyKit, URL: e.fmURL, Body: body}); !isCode(err, "refused") {
			t.Fatalf("call without a kit key: %v", err)
		}
	})
}

func TestPolicyNext(t *testing.T) {
	p := DefaultPolicies()
	cases := []struct {
		activity string
		n        int
		want     time.Duration
		ok       bool
	}{
		{"newInstance", 1, time.Hour, true},
		{"newInstance", 3, 3 * time.Hour, true},
		{"newInstance", 4, 0, false},
		{"upgradeInstance", 3, 3 * time.Hour, true},
		{"orderNotify", 4, 0, false},
		{"refreshInstance", 4, time.Hour, true},
		{"releaseInstance", 5, 0, false},
		{"updateInstanceStatus", 1, 15 * time.Minute, true},
		{"tenantSync", 1, 0, false},
		{"changeInstanceCheck", 1, 0, false},
		{ActivityPoll, 180, 3 * time.Hour, true},
		{ActivityPoll, 181, 0, false},
	}
	for _, c := range cases {
		got, ok := p[c.activity].next(t0, c.n)
		if ok != c.ok || (ok && !got.Equal(t0.Add(c.want))) {
			t.Errorf("%s after attempt %d: %v %v, want %v %v", c.activity, c.n, got.Sub(t0), ok, c.want, c.ok)
		}
	}
}

// Kit syncs are signed with the kit key in x-sign headers and not retried.
func TestKitCallSignedWithHeaders(t *testing.T) {
	forBackends(t, func(t *testing.T, b string) {
		e := newEnv(t, b)
		const kitKey = "kit-key-for-tests-1"
		_, err := e.m.SetAccessKey(e.ctx, e.seller, KeyKit, kitKey)
		e.must(err)
		var calls int
		srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			calls++
			body, _ := io.ReadAll(r.Body)
			code := "000000"
			if _, err := kg.VerifyKitSign([]string{kitKey}, r.Header.Get("x-sign"), r.Header.Get("x-nonce"), r.Header.Get("x-timestamp"), body,
				e.clk.Now(), time.Minute); err != nil || r.URL.RawQuery != "" {
				code = "000001"
			}
			_, _ = w.Write([]byte(`{"resultCode":"` + code + `","resultMsg":"x"}`))
		}))
		defer srv.Close()
		body := []byte(`{"instanceId":"i-1","tenantId":"t-1","flag":1,"testFlag":"1"}`)
		res, err := e.m.Call(e.ctx, Outbound{SellerID: e.seller, Activity: "tenantSync", URL: srv.URL + "/produceAPI/v2/tenantSync", KeyType: KeyKit, Body: body})
		e.must(err)
		if res.Verdict != VerdictSuccess {
			t.Fatalf("kit call: %+v", res)
		}
		// Queued kit messages get a single attempt (no automatic retry).
		_, err = e.m.SetAccessKey(e.ctx, e.seller, KeyKit, "rotated-kit-key-2")
		e.must(err)
		id, err := e.m.Send(e.ctx, Outbound{SellerID: e.seller, Activity: "tenantSync", URL: srv.URL + "/produceAPI/v2/tenantSync", KeyType: KeyKit, Body: body})
		e.must(err)
		e.advance(6 * time.Hour)
		msg, err := e.m.GetMessage(e.ctx, id, false)
		e.must(err)
		if msg.State != "failed" || msg.Attempts != 1 || calls != 2 {
			t.Fatalf("kit message %+v after %d calls", msg, calls)
		}
	})
}

// Retries survive a restart: a new Market on the same database (and the
// stored virtual time) carries on at the documented times.
func TestRetriesSurviveRestart(t *testing.T) {
	forBackends(t, func(t *testing.T, b string) {
		e := newEnv(t, b)
		e.fm.setFail("newInstance", "code:000005")
		o, _ := e.buy(BuyInput{ProductCode: "P-BASIC-MONTH", PeriodNumber: 1})
		e.advance(90 * time.Minute) // attempts at 0 and 1 h
		// "Restart": a fresh process with a fresh clock object, same database.
		clk2 := clock.NewVirtual(t0)
		m2, err := New(Config{DB: e.db, Clock: clk2, WireClock: clk2, CallTimeout: 3 * time.Second})
		e.must(err)
		e.must(m2.Migrate(e.ctx))
		e.must(m2.LoadClock(e.ctx))
		if !clk2.Now().Equal(t0.Add(90 * time.Minute)) {
			t.Fatalf("virtual time after restart = %s", clk2.Now())
		}
		e.fm.clk = clk2
		if _, err := m2.Advance(e.ctx, 3*time.Hour); err != nil {
			t.Fatal(err)
		}
		if got := attemptTimes(e.fm.received("newInstance")); !reflect.DeepEqual(got, hours(0, 1, 2, 3)) {
			t.Fatalf("attempts at %v across the restart", got)
		}
		if got, _ := m2.GetOrder(e.ctx, o.OrderID); got.Status != OrderRefunded {
			t.Fatalf("order after the window = %s", got.Status)
		}
	})
}

// Every newInstance attempt carries a fresh businessId (saas-v2.md §4.1),
// recorded in the attempt log; the rest of the body is the same, so a
// merchant keyed on orderId+orderLineId answers the retry idempotently.
func TestNewInstanceRetryFreshBusinessID(t *testing.T) {
	forBackends(t, func(t *testing.T, b string) {
		e := newEnv(t, b)
		e.fm.setFail("newInstance", "lost")
		o, s := e.buy(BuyInput{ProductCode: "P-BASIC-MONTH", PeriodNumber: 1})
		e.advance(time.Hour)
		e.fm.setFail("newInstance", "")
		e.advance(time.Hour)
		calls := e.fm.received("newInstance")
		if len(calls) != 3 {
			t.Fatalf("%d newInstance calls, want 3", len(calls))
		}
		seen := map[string]bool{}
		for i, c := range calls {
			id := c.Body["businessId"]
			if id == "" || seen[id] {
				t.Fatalf("call %d businessId %q repeats an earlier one", i+1, id)
			}
			seen[id] = true
			for _, k := range []string{"activity", "orderId", "orderLineId", "testFlag"} {
				if c.Body[k] != calls[0].Body[k] {
					t.Fatalf("call %d %s = %q, first call had %q", i+1, k, c.Body[k], calls[0].Body[k])
				}
			}
			if len(c.Body) != len(calls[0].Body) {
				t.Fatalf("call %d body %s, first %s", i+1, c.Raw, calls[0].Raw)
			}
		}
		if calls[0].Body["businessId"] != s.BusinessID {
			t.Fatalf("first businessId %q, subscription's %q", calls[0].Body["businessId"], s.BusinessID)
		}
		if s = e.sub(s.ID); s.Status != SubActive || s.InstanceID != calls[0].Body["businessId"] {
			t.Fatalf("subscription = %+v; the merchant's instance is %s", s, calls[0].Body["businessId"])
		}
		msgs, err := e.m.ListMessages(e.ctx, MessageFilter{OrderID: o.OrderID, Activity: "newInstance"})
		e.must(err)
		full, err := e.m.GetMessage(e.ctx, msgs[0].ID, true)
		e.must(err)
		if len(full.AttemptLog) != 3 {
			t.Fatalf("attempt log = %+v", full.AttemptLog)
		}
		for i, a := range full.AttemptLog {
			if a.RequestBody != calls[i].Raw {
				t.Fatalf("attempt %d logged body %s, sent %s", i+1, a.RequestBody, calls[i].Raw)
			}
		}
	})
}

func TestWithBusinessID(t *testing.T) {
	for _, c := range []struct{ in, want string }{
		{`{"activity":"newInstance","orderId":"CS1","businessId":"old","testFlag":"0"}`, `{"activity":"newInstance","orderId":"CS1","businessId":"new","testFlag":"0"}`},
		{`{"businessId": "old", "x":"businessId"}`, `{"businessId": "new", "x":"businessId"}`},
		{`{"activity":"newInstance"}`, `{"activity":"newInstance"}`},
		{`{"businessId":7}`, `{"businessId":7}`},
	} {
		if got := string(withBusinessID([]byte(c.in), "new")); got != c.want {
			t.Errorf("withBusinessID(%s) = %s, want %s", c.in, got, c.want)
		}
	}
}

// License 2.0 callbacks are retried 60 times, every 2 minutes (README policy 8).
func TestLicenseCodeCallbacksRetry60Times(t *testing.T) {
	forBackends(t, func(t *testing.T, b string) {
		e := newEnv(t, b)
		for _, act := range []string{"refreshLicenseCode", "updateLicenseCodeStatus", "releaseLicenseCode"} {
			e.fm.setFail(act, "code:000005")
			id, err := e.m.Send(e.ctx, Outbound{SellerID: e.seller, Activity: act, URL: e.fmURL,
				Body: []byte(`{"activity":"` + act + `","instanceId":"lic-1","testFlag":"1"}`)})
			e.must(err)
			e.advance(3 * time.Hour)
			var want []time.Duration
			for i := 0; i < 60; i++ {
				want = append(want, time.Duration(2*i)*time.Minute)
			}
			if got := attemptTimes(e.fm.received(act)); !reflect.DeepEqual(got, want) {
				t.Fatalf("%s attempts at %v, want 60 every 2 minutes", act, got)
			}
			msg, err := e.m.GetMessage(e.ctx, id, false)
			e.must(err)
			if msg.State != "failed" || msg.Attempts != 60 {
				t.Fatalf("%s message = %+v", act, msg)
			}
		}
	})
}

// A newInstance answer whose instanceId exceeds 64 characters is a failed
// answer (saas-v2.md §4.1): the subscription does not become ACTIVE.
func TestNewInstanceLongInstanceIDFails(t *testing.T) {
	if v, msg := verdict("newInstance", Response{ResultCode: "000000", InstanceID: strings.Repeat("i", 64)}); v != VerdictSuccess {
		t.Fatalf("64-character instanceId: %s %s", v, msg)
	}
	for _, code := range []string{"000000", "000004"} {
		v, msg := verdict("newInstance", Response{ResultCode: code, InstanceID: strings.Repeat("i", 65)})
		if v != VerdictFailure || !strings.Contains(msg, "at most 64") {
			t.Fatalf("%s with a 65-character instanceId: %s %q", code, v, msg)
		}
	}
	forBackends(t, func(t *testing.T, b string) {
		e := newEnv(t, b)
		e.fm.setFail("newInstance", "longid")
		o, s := e.buy(BuyInput{ProductCode: "P-BASIC-MONTH", PeriodNumber: 1})
		if s.Status != SubProvisioning || s.InstanceID != "" {
			t.Fatalf("subscription after a 300-character instanceId = %+v", s)
		}
		msgs, err := e.m.ListMessages(e.ctx, MessageFilter{OrderID: o.OrderID, Activity: "newInstance"})
		e.must(err)
		if len(msgs) != 1 || msgs[0].State != "pending" || !strings.Contains(msgs[0].LastError, "instanceId of 300 bytes (at most 64") {
			t.Fatalf("message = %+v", msgs)
		}
		e.advance(4 * time.Hour)
		if s = e.sub(s.ID); s.Status != SubFailed || e.order(o.OrderID).Status != OrderRefunded {
			t.Fatalf("after the window = %+v", s)
		}
	})
}

// An answer with bytes after the JSON object is not valid JSON.
func TestParseResponseRefusesTrailingBytes(t *testing.T) {
	for _, body := range []string{
		`{"resultCode":"000000","instanceId":"i"}garbage`,
		`{"resultCode":"000000","instanceId":"i"}{"resultCode":"000001"}`,
		`{"resultCode":"000000","instanceId":"i"} 1`,
		`{"resultCode":"000000","instanceId":"i"}}`,
	} {
		if _, err := ParseResponse([]byte(body)); err == nil || !strings.Contains(err.Error(), "not valid JSON") {
			t.Errorf("ParseResponse(%s) = %v, want invalid JSON", body, err)
		}
	}
	for _, body := range []string{`{"resultCode":"000000","instanceId":"i"}`, "{\"resultCode\":\"000000\"}\r\n \t"} {
		if _, err := ParseResponse([]byte(body)); err != nil {
			t.Errorf("ParseResponse(%q) = %v", body, err)
		}
	}
}

// A merchant answering with bytes that are not UTF-8 text (an error page in
// GBK, a NUL), or with an instanceId holding NUL, has its attempt recorded and
// judged like any other failed answer, on both backends: PostgreSQL refused
// the record of the attempt, and the message never advanced.
func TestAnswerNotUTF8IsRecorded(t *testing.T) {
	forBackends(t, func(t *testing.T, b string) {
		for _, mode := range []string{"gbk500", "nulid"} {
			e := newEnv(t, b)
			e.fm.setFail("newInstance", mode)
			o, s := e.buy(BuyInput{ProductCode: "P-BASIC-MONTH", PeriodNumber: 1})
			if s.Status != SubProvisioning || s.InstanceID != "" {
				t.Fatalf("%s: subscription = %+v", mode, s)
			}
			msgs, err := e.m.ListMessages(e.ctx, MessageFilter{OrderID: o.OrderID, Activity: "newInstance"})
			e.must(err)
			if len(msgs) != 1 || msgs[0].State != "pending" || msgs[0].Attempts != 1 || msgs[0].LastError == "" {
				t.Fatalf("%s: message = %+v", mode, msgs)
			}
			full, err := e.m.GetMessage(e.ctx, msgs[0].ID, true)
			e.must(err)
			if len(full.AttemptLog) != 1 || !utf8.ValidString(full.AttemptLog[0].Response) || strings.ContainsRune(full.AttemptLog[0].Response, 0) {
				t.Fatalf("%s: attempts = %+v", mode, full.AttemptLog)
			}
		}
	})
}
