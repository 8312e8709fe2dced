package market

import (
	"errors"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/soukhq/souk/kg"
)

func TestPeriodLifecycle(t *testing.T) {
	forBackends(t, func(t *testing.T, b string) {
		e := newEnv(t, b)
		o, s := e.buy(BuyInput{ProductCode: "P-BASIC-MONTH", PeriodNumber: 1})
		if o.OrderType != OrderNew || o.AmountCents != 10000 {
			t.Fatalf("order = %+v", o)
		}
		calls := e.fm.received("newInstance")
		if len(calls) != 1 || calls[0].Body["orderId"] != o.OrderID || calls[0].Body["orderLineId"] != o.OrderID+"-000001" ||
			calls[0].Body["testFlag"] != "0" || calls[0].Body["businessId"] == "" {
			t.Fatalf("newInstance calls = %+v", calls)
		}
		if s.Status != SubActive || s.InstanceID != calls[0].Body["businessId"] {
			t.Fatalf("subscription after provisioning = %+v", s)
		}
		if got := e.order(o.OrderID).Status; got != OrderCompleted {
			t.Fatalf("order status = %s", got)
		}
		// The merchant fetched the order through Query Order.
		info, ok := e.fm.order(o.OrderID)
		if !ok {
			t.Fatalf("merchant could not query the order: %v", e.fm.orderErrs)
		}
		expire := bjEnd(2026, 4, 2) // bought 2026-03-02 16:00 in Beijing: a month ends 2026-04-02 23:59:59 there
		l := info.OrderLine[0]
		if info.OrderType != "NEW" || l.ChargingMode != "PERIOD" || l.PeriodType != "month" || l.PeriodNumber != "1" ||
			l.ExpireTime != kg.FormatTime14(expire) || l.ProductInfo[0].ProductID != "P-BASIC-MONTH" || l.ProductInfo[0].SKUCode != "basic" ||
			info.BuyerInfo.CustomerID != "cust-1" || l.OrderAmount != "100.00" || info.CreateTime != kg.FormatTime14(t0) {
			t.Fatalf("Query Order = %+v line %+v", info, l)
		}
		// The buyer's view queries the instance live.
		res, err := e.m.Resource(e.ctx, s.ID)
		e.must(err)
		if res.Instance == nil || res.Instance.AppInfo == nil || res.Instance.AppInfo.Password != "P@ssw0rd!" || res.MessageID == 0 {
			t.Fatalf("resource = %+v", res)
		}

		// Expiry: FREEZE exactly at the expire time, release 15 days later.
		e.advanceTo(expire.Add(-time.Second))
		if n := len(e.fm.received("updateInstanceStatus")); n != 0 {
			t.Fatalf("%d status calls before expiry", n)
		}
		e.advance(time.Second)
		st := e.fm.received("updateInstanceStatus")
		if len(st) != 1 || st[0].Body["status"] != "FREEZE" || !st[0].At.Equal(expire) || st[0].Body["instanceId"] != s.InstanceID {
			t.Fatalf("freeze calls = %+v", st)
		}
		s = e.sub(s.ID)
		if s.Status != SubFrozen || !s.ReleaseAt.Equal(expire.Add(DefaultRetention)) {
			t.Fatalf("after expiry = %+v", s)
		}
		e.advanceTo(s.ReleaseAt.Add(-time.Second))
		if n := len(e.fm.received("releaseInstance")); n != 0 {
			t.Fatalf("released during the retention period")
		}
		e.advance(time.Second)
		rel := e.fm.received("releaseInstance")
		if len(rel) != 1 || !rel[0].At.Equal(s.ReleaseAt) || rel[0].Body["orderId"] != "" {
			t.Fatalf("release calls = %+v", rel)
		}
		if s = e.sub(s.ID); s.Status != SubReleased {
			t.Fatalf("after release = %+v", s)
		}
		msgs, err := e.m.ListMessages(e.ctx, MessageFilter{SubscriptionID: s.ID})
		e.must(err)
		for _, msg := range msgs {
			if msg.State != "succeeded" {
				t.Errorf("message %d %s is %s", msg.ID, msg.Activity, msg.State)
			}
		}
	})
}

func TestRenewalUnfreezesAndCancelsRelease(t *testing.T) {
	forBackends(t, func(t *testing.T, b string) {
		e := newEnv(t, b)
		_, s := e.buy(BuyInput{ProductCode: "P-BASIC-MONTH", PeriodNumber: 1})
		expire := bjEnd(2026, 4, 2)
		e.advanceTo(expire.Add(48 * time.Hour))
		if s = e.sub(s.ID); s.Status != SubFrozen {
			t.Fatalf("not frozen: %+v", s)
		}
		o, err := e.m.Renew(e.ctx, RenewInput{SubscriptionID: s.ID, PeriodNumber: 2})
		e.must(err)
		e.settle()
		newExpire := bjEnd(2026, 6, 2) // two months from the old expiry, not from the renewal
		ref := e.fm.received("refreshInstance")
		if len(ref) != 1 || ref[0].Body["scene"] != "RENEWAL" || ref[0].Body["expireTime"] != kg.FormatTime14(newExpire) ||
			ref[0].Body["orderId"] != o.OrderID || ref[0].Body["productId"] != "" || ref[0].Body["instanceId"] != s.InstanceID {
			t.Fatalf("refresh = %+v", ref)
		}
		st := e.fm.received("updateInstanceStatus")
		if len(st) != 2 || st[1].Body["status"] != "UNFREEZE" {
			t.Fatalf("status calls = %+v", st)
		}
		if strings.Index(e.callOrder(), "refreshInstance") > strings.LastIndex(e.callOrder(), "UNFREEZE") {
			t.Fatalf("UNFREEZE before refresh: %s", e.callOrder())
		}
		if s = e.sub(s.ID); s.Status != SubActive || !s.ExpireAt.Equal(newExpire) || e.order(o.OrderID).Status != OrderCompleted {
			t.Fatalf("after renewal = %+v", s)
		}
		// The old release timer is void; the next freeze is at the new expiry.
		e.advanceTo(newExpire.Add(-time.Minute))
		if n := len(e.fm.received("releaseInstance")); n != 0 {
			t.Fatal("released after renewal")
		}
		e.advance(time.Minute)
		if st := e.fm.received("updateInstanceStatus"); len(st) != 3 || st[2].Body["status"] != "FREEZE" || !st[2].At.Equal(newExpire) {
			t.Fatalf("status calls = %+v", st)
		}
		// Renewing an active subscription sends no UNFREEZE.
		_, s2 := e.buy(BuyInput{ProductCode: "P-BASIC-YEAR", PeriodNumber: 1})
		_, err = e.m.Renew(e.ctx, RenewInput{SubscriptionID: s2.ID, PeriodNumber: 1})
		e.must(err)
		e.settle()
		for _, c := range e.fm.received("updateInstanceStatus") {
			if c.Body["instanceId"] == s2.InstanceID {
				t.Fatalf("status call for an active renewal: %+v", c)
			}
		}
	})
}

func (e *env) callOrder() string {
	var b strings.Builder
	for _, c := range e.fm.received("") {
		b.WriteString(c.Activity)
		if c.Body["status"] != "" {
			b.WriteString(":" + c.Body["status"])
		}
		b.WriteString(" ")
	}
	return b.String()
}

func TestTrialToFormal(t *testing.T) {
	forBackends(t, func(t *testing.T, b string) {
		e := newEnv(t, b)
		o, s := e.buy(BuyInput{ProductCode: "P-BASIC-MONTH", Trial: true})
		if o.OrderType != OrderTrial || o.AmountCents != 0 || !s.Trial || !s.ExpireAt.Equal(bjEnd(2026, 3, 9)) {
			t.Fatalf("trial order %+v sub %+v", o, s)
		}
		info, _ := e.fm.order(o.OrderID)
		if info.OrderType != "TRIAL" || info.OrderLine[0].TrialFlag != "1" || info.OrderLine[0].PeriodType != "day" {
			t.Fatalf("Query Order of a trial = %+v", info)
		}
		if _, err := e.m.Buy(e.ctx, BuyInput{CustomerID: e.customer.ID, ProductCode: "P-BASIC-MONTH", Trial: true}); !isCode(err, "refused") {
			t.Fatalf("second trial: %v", err)
		}
		if _, err := e.m.Renew(e.ctx, RenewInput{SubscriptionID: s.ID, PeriodNumber: 1}); !isCode(err, "refused") {
			t.Fatalf("renewing a trial: %v", err)
		}
		e.advance(8 * 24 * time.Hour) // the trial expired: frozen
		conv, err := e.m.ConvertTrial(e.ctx, ConvertInput{SubscriptionID: s.ID, ProductCode: "P-BASIC-YEAR", PeriodNumber: 1})
		e.must(err)
		e.settle()
		// converted on 2026-03-10 16:00 Beijing time: a year from then, to the end of that day
		if now := e.clk.Now(); !now.Equal(time.Date(2026, 3, 10, 8, 0, 0, 0, time.UTC)) {
			t.Fatalf("converted at %s", now)
		}
		ref := e.fm.received("refreshInstance")
		if len(ref) != 1 || ref[0].Body["scene"] != "TRIAL_TO_FORMAL" || ref[0].Body["productId"] != "P-BASIC-YEAR" ||
			ref[0].Body["expireTime"] != kg.FormatTime14(bjEnd(2027, 3, 10)) || ref[0].Body["orderId"] != conv.OrderID {
			t.Fatalf("refresh = %+v", ref)
		}
		if st := e.fm.received("updateInstanceStatus"); len(st) != 2 || st[0].Body["status"] != "FREEZE" || !st[0].At.Equal(bjEnd(2026, 3, 9)) ||
			st[1].Body["status"] != "UNFREEZE" {
			t.Fatalf("status calls = %+v", st)
		}
		info, _ = e.fm.order(conv.OrderID)
		if info.OrderType != "TRIAL_TO_FORMAL" || info.OrderLine[0].ProductInfo[0].ProductID != "P-BASIC-YEAR" {
			t.Fatalf("Query Order of the conversion = %+v", info)
		}
		if s = e.sub(s.ID); s.Trial || s.Status != SubActive || s.ProductCode != "P-BASIC-YEAR" {
			t.Fatalf("after conversion = %+v", s)
		}
	})
}

func TestRenewalChange(t *testing.T) {
	forBackends(t, func(t *testing.T, b string) {
		e := newEnv(t, b)
		_, s := e.buy(BuyInput{ProductCode: "P-BASIC-MONTH", PeriodNumber: 1})

		// The merchant refuses: no order, no refresh.
		e.fm.refuse = true
		_, err := e.m.Renew(e.ctx, RenewInput{SubscriptionID: s.ID, PeriodNumber: 1, ProductCode: "P-PRO-MONTH"})
		if !isCode(err, "refused") || !strings.Contains(err.Error(), "000100") {
			t.Fatalf("refused change: %v", err)
		}
		if os, _ := e.m.ListOrders(e.ctx, "", s.ID, 0); len(os) != 1 {
			t.Fatalf("orders after a refused change: %d", len(os))
		}
		e.fm.refuse = false
		o, err := e.m.Renew(e.ctx, RenewInput{SubscriptionID: s.ID, PeriodNumber: 1, ProductCode: "P-PRO-MONTH"})
		e.must(err)
		e.settle()
		chk := e.fm.received("changeInstanceCheck")
		if len(chk) != 2 || !strings.Contains(chk[1].Raw, `"productInfo":{"linearValue":"0","productId":"P-PRO-MONTH","skuCode":"pro"}`) {
			t.Fatalf("changeInstanceCheck = %+v", chk)
		}
		// saas-v2.md §4.7: testFlag "1" for a debugging request, not sent otherwise.
		if strings.Contains(chk[1].Raw, "testFlag") {
			t.Fatalf("changeInstanceCheck of real traffic carries testFlag: %s", chk[1].Raw)
		}
		ref := e.fm.received("refreshInstance")
		if len(ref) != 1 || ref[0].Body["scene"] != "RENEWAL_CHANGE" || ref[0].Body["productId"] != "P-PRO-MONTH" || ref[0].Body["orderId"] != o.OrderID {
			t.Fatalf("refresh = %+v", ref)
		}
		if s = e.sub(s.ID); s.SKUCode != "pro" || !s.ExpireAt.Equal(bjEnd(2026, 5, 2)) {
			t.Fatalf("after renewal change = %+v", s)
		}
		// A period-type change alone is a plain RENEWAL carrying the new productId.
		_, s2 := e.buy(BuyInput{ProductCode: "P-BASIC-MONTH", PeriodNumber: 1})
		_, err = e.m.Renew(e.ctx, RenewInput{SubscriptionID: s2.ID, PeriodNumber: 1, ProductCode: "P-BASIC-YEAR"})
		e.must(err)
		e.settle()
		ref = e.fm.received("refreshInstance")
		last := ref[len(ref)-1]
		if last.Body["scene"] != "RENEWAL" || last.Body["productId"] != "P-BASIC-YEAR" || len(e.fm.received("changeInstanceCheck")) != 2 {
			t.Fatalf("period change = %+v", last)
		}
	})
}

func TestUpgrade(t *testing.T) {
	forBackends(t, func(t *testing.T, b string) {
		e := newEnv(t, b)
		_, s := e.buy(BuyInput{ProductCode: "P-SEATS-MONTH", PeriodNumber: 1, LinearValue: 10})
		if _, err := e.m.Buy(e.ctx, BuyInput{CustomerID: e.customer.ID, ProductCode: "P-SEATS-MONTH", PeriodNumber: 1, LinearValue: 501}); !isField(err, "linearValue") {
			t.Fatalf("linear out of range: %v", err)
		}
		e.advance(15 * 24 * time.Hour)
		twenty := int64(20)
		o, err := e.m.Upgrade(e.ctx, UpgradeInput{SubscriptionID: s.ID, LinearValue: &twenty})
		e.must(err)
		full := int64(20*1000 - 10*1000)
		if o.OrderType != OrderChange || o.AmountCents <= 0 || o.AmountCents >= full {
			t.Fatalf("upgrade order = %+v (full difference %d)", o, full)
		}
		e.settle()
		up := e.fm.received("upgradeInstance")
		if len(up) != 1 || up[0].Body["orderId"] != o.OrderID || up[0].Body["instanceId"] != s.InstanceID {
			t.Fatalf("upgrade calls = %+v", up)
		}
		info, _ := e.fm.order(o.OrderID)
		if info.OrderType != "CHANGE" || info.OrderLine[0].ProductInfo[0].LinearValue != "20" {
			t.Fatalf("Query Order of the upgrade = %+v", info)
		}
		if s = e.sub(s.ID); s.LinearValue != 20 || e.order(o.OrderID).Status != OrderCompleted {
			t.Fatalf("after upgrade = %+v", s)
		}
	})
}

func TestUnsubscribeRules(t *testing.T) {
	forBackends(t, func(t *testing.T, b string) {
		e := newEnv(t, b)
		// Within 5 days: full refund, releaseInstance carries the unsubscribe order.
		buy, s := e.buy(BuyInput{ProductCode: "P-BASIC-MONTH", PeriodNumber: 1})
		e.advance(4 * 24 * time.Hour)
		u, err := e.m.Unsubscribe(e.ctx, UnsubscribeInput{SubscriptionID: s.ID})
		e.must(err)
		e.settle()
		if u.OrderType != OrderUnsubscribe || u.RefundCents != 10000 || u.RefundRule != "five-day" {
			t.Fatalf("unsubscribe order = %+v", u)
		}
		rel := e.fm.received("releaseInstance")
		if len(rel) != 1 || rel[0].Body["orderId"] != u.OrderID || rel[0].Body["orderLineId"] != u.OrderID+"-000001" {
			t.Fatalf("release = %+v", rel)
		}
		if s = e.sub(s.ID); s.Status != SubReleased || e.order(u.OrderID).Status != OrderCompleted || e.order(buy.OrderID).Status != OrderRefunded {
			t.Fatalf("after unsubscribe: sub %s", s.Status)
		}
		info, _, _ := e.m.QueryOrder(e.ctx, e.seller, u.OrderID, "")
		if info.OrderType != "UNSUBSCRIBE" || info.OrderLine[0].OrderAmount != "100.00" {
			t.Fatalf("Query Order of the unsubscription = %+v", info)
		}
		bill, err := e.m.GetBill(e.ctx, e.customer.ID)
		e.must(err)
		if bill.TotalMicros != 0 || len(bill.Entries) != 2 {
			t.Fatalf("bill = %+v", bill)
		}

		// After 5 days: self-service refused, a negotiated refund accepted.
		_, s2 := e.buy(BuyInput{ProductCode: "P-BASIC-MONTH", PeriodNumber: 1})
		e.advance(5*24*time.Hour + time.Second)
		if _, err := e.m.Unsubscribe(e.ctx, UnsubscribeInput{SubscriptionID: s2.ID}); !isCode(err, "refused") {
			t.Fatalf("after 5 days: %v", err)
		}
		big := int64(10001)
		if _, err := e.m.Unsubscribe(e.ctx, UnsubscribeInput{SubscriptionID: s2.ID, RefundCents: &big}); !isField(err, "refundCents") {
			t.Fatalf("refund above paid: %v", err)
		}
		half := int64(5000)
		u2, err := e.m.Unsubscribe(e.ctx, UnsubscribeInput{SubscriptionID: s2.ID, RefundCents: &half, Reason: "agreed with the seller"})
		e.must(err)
		if u2.RefundRule != "negotiated" || u2.RefundCents != 5000 {
			t.Fatalf("negotiated = %+v", u2)
		}

		// At most 10 no-reason unsubscriptions per natural year.
		for i := 1; i < UnsubscribeYearlyLimit; i++ {
			_, s := e.buy(BuyInput{ProductCode: "P-BASIC-MONTH", PeriodNumber: 1})
			if _, err := e.m.Unsubscribe(e.ctx, UnsubscribeInput{SubscriptionID: s.ID}); err != nil {
				t.Fatalf("unsubscription %d: %v", i+1, err)
			}
		}
		_, s11 := e.buy(BuyInput{ProductCode: "P-BASIC-MONTH", PeriodNumber: 1})
		if _, err := e.m.Unsubscribe(e.ctx, UnsubscribeInput{SubscriptionID: s11.ID}); !isCode(err, "refused") || !strings.Contains(err.Error(), "10") {
			t.Fatalf("11th unsubscription: %v", err)
		}
		// A new natural year (Beijing time) resets the count.
		newYear := time.Date(2027, 1, 1, 0, 0, 0, 0, beijing)
		e.advanceTo(newYear.Add(-6 * time.Hour))
		_, s12 := e.buy(BuyInput{ProductCode: "P-BASIC-YEAR", PeriodNumber: 1})
		e.advance(6 * time.Hour)
		if _, err := e.m.Unsubscribe(e.ctx, UnsubscribeInput{SubscriptionID: s12.ID}); err != nil {
			t.Fatalf("unsubscription in the new year: %v", err)
		}
		// Trials refund nothing.
		c2, err := e.m.CreateCustomer(e.ctx, Customer{Name: "Trier"})
		e.must(err)
		_, tr := e.buy(BuyInput{CustomerID: c2.ID, ProductCode: "P-BASIC-MONTH", Trial: true})
		ut, err := e.m.Unsubscribe(e.ctx, UnsubscribeInput{SubscriptionID: tr.ID})
		e.must(err)
		if ut.RefundCents != 0 || ut.RefundRule != "none" {
			t.Fatalf("trial unsubscription = %+v", ut)
		}
	})
}

func TestAsyncProvisioningPolls(t *testing.T) {
	forBackends(t, func(t *testing.T, b string) {
		e := newEnv(t, b)
		e.fm.async = 3
		o, s := e.buy(BuyInput{ProductCode: "P-BASIC-MONTH", PeriodNumber: 1})
		if s.Status != SubProvisioning || s.InstanceID == "" {
			t.Fatalf("after 000004 = %+v", s)
		}
		e.advance(10 * time.Minute)
		polls := e.fm.receivedFor("queryInstance", s.InstanceID)
		want := []time.Duration{0, time.Minute, 2 * time.Minute, 3 * time.Minute}
		if got := attemptTimes(polls); !reflect.DeepEqual(got, want) {
			t.Fatalf("poll times = %v, want %v", got, want)
		}
		if s = e.sub(s.ID); s.Status != SubActive || e.order(o.OrderID).Status != OrderCompleted || !s.ReadyAt.Equal(t0.Add(3*time.Minute)) {
			t.Fatalf("after polling = %+v", s)
		}
	})
}

func TestAsyncProvisioningNeverReadyRefunds(t *testing.T) {
	forBackends(t, func(t *testing.T, b string) {
		e := newEnv(t, b)
		e.fm.async = 1 << 30
		o, s := e.buy(BuyInput{ProductCode: "P-BASIC-MONTH", PeriodNumber: 1})
		e.advance(4 * time.Hour)
		if n := len(e.fm.receivedFor("queryInstance", s.InstanceID)); n != 181 {
			t.Fatalf("%d polls, want 181 (every minute for 3 h)", n)
		}
		if s = e.sub(s.ID); s.Status != SubReleased || e.order(o.OrderID).Status != OrderRefunded {
			t.Fatalf("after the polling window: sub %s order %s", s.Status, e.order(o.OrderID).Status)
		}
		rel := e.fm.received("releaseInstance")
		if len(rel) != 1 || rel[0].Body["instanceId"] != s.InstanceID || rel[0].Body["orderId"] == "" {
			t.Fatalf("release of the never-ready instance = %+v", rel)
		}
	})
}

func TestOneTimeNeverExpires(t *testing.T) {
	forBackends(t, func(t *testing.T, b string) {
		e := newEnv(t, b)
		o, s := e.buy(BuyInput{ProductCode: "P-ONCE"})
		if o.AmountCents != 50000 || !s.ExpireAt.IsZero() || s.Status != SubActive {
			t.Fatalf("one-time order %+v sub %+v", o, s)
		}
		if _, err := e.m.Buy(e.ctx, BuyInput{CustomerID: e.customer.ID, ProductCode: "P-ONCE", PeriodNumber: 2}); !isField(err, "periodNumber") {
			t.Fatalf("period on a one-time plan: %v", err)
		}
		e.advance(400 * 24 * time.Hour)
		if n := len(e.fm.received("updateInstanceStatus")) + len(e.fm.received("releaseInstance")); n != 0 {
			t.Fatalf("%d lifecycle calls for a one-time purchase", n)
		}
		if _, err := e.m.Renew(e.ctx, RenewInput{SubscriptionID: s.ID, PeriodNumber: 1}); !isCode(err, "refused") {
			t.Fatalf("renewing one-time: %v", err)
		}
		info, _ := e.fm.order(o.OrderID)
		if info.OrderLine[0].ChargingMode != "ONE_TIME" || info.OrderLine[0].ExpireTime != "" {
			t.Fatalf("Query Order of a one-time order = %+v", info.OrderLine[0])
		}
	})
}

func TestPackageExpires(t *testing.T) {
	forBackends(t, func(t *testing.T, b string) {
		e := newEnv(t, b)
		_, s := e.buy(BuyInput{ProductCode: "P-PKG-MONTH", PeriodNumber: 1})
		e.advance(32 * 24 * time.Hour)
		if s = e.sub(s.ID); s.Status != SubFrozen {
			t.Fatalf("package after its month = %+v", s)
		}
		_, m := e.buy(BuyInput{ProductCode: "P-METERED"})
		if m.Status != SubActive || !m.ExpireAt.IsZero() {
			t.Fatalf("pay-per-use = %+v", m)
		}
		// Arrears freeze a pay-per-use instance; clearing them unfreezes it.
		if _, err := e.m.SetFrozen(e.ctx, m.ID, true); err != nil {
			t.Fatal(err)
		}
		if _, err := e.m.SetFrozen(e.ctx, m.ID, false); err != nil {
			t.Fatal(err)
		}
		e.settle()
		var got []string
		for _, c := range e.fm.received("updateInstanceStatus") {
			if c.Body["instanceId"] == m.InstanceID {
				got = append(got, c.Body["status"])
			}
		}
		if !reflect.DeepEqual(got, []string{"FREEZE", "UNFREEZE"}) {
			t.Fatalf("pay-per-use status calls = %v", got)
		}
	})
}

func isCode(err error, code string) bool {
	var me *Error
	return errors.As(err, &me) && me.Code == code
}

func isField(err error, field string) bool {
	var me *Error
	return errors.As(err, &me) && me.Field == field
}

func TestCancelRenewal(t *testing.T) {
	forBackends(t, func(t *testing.T, b string) {
		e := newEnv(t, b)
		_, s := e.buy(BuyInput{ProductCode: "P-BASIC-MONTH", PeriodNumber: 1})
		expire := s.ExpireAt
		if _, err := e.m.CancelRenewal(e.ctx, s.ID); !isCode(err, "refused") {
			t.Fatalf("cancel without a renewal: %v", err)
		}
		r, err := e.m.Renew(e.ctx, RenewInput{SubscriptionID: s.ID, PeriodNumber: 3})
		e.must(err)
		e.settle()
		e.advance(10 * 24 * time.Hour)
		c, err := e.m.CancelRenewal(e.ctx, s.ID)
		e.must(err)
		e.settle()
		if c.OrderType != OrderUnsubscribe || c.RefundRule != "renewal-cancel" || c.RefundCents != 30000 || c.RelatedOrderID != r.OrderID {
			t.Fatalf("cancellation = %+v", c)
		}
		ref := e.fm.received("refreshInstance")
		last := ref[len(ref)-1]
		if last.Body["scene"] != "UNSUBSCRIBE_RENEWAL_PERIOD" || last.Body["orderId"] != r.OrderID || last.Body["expireTime"] != kg.FormatTime14(expire) {
			t.Fatalf("refresh = %+v", last.Body)
		}
		if s = e.sub(s.ID); !s.ExpireAt.Equal(expire) || e.order(r.OrderID).Status != OrderRefunded {
			t.Fatalf("after cancellation: %+v", s)
		}
		// The restored expiry freezes the instance on time; the renewal's timer is void.
		e.advanceTo(expire)
		if st := e.fm.received("updateInstanceStatus"); len(st) != 1 || !st[0].At.Equal(expire) {
			t.Fatalf("freeze after cancellation = %+v", st)
		}
		// A renewal whose period has begun cannot be cancelled.
		_, s2 := e.buy(BuyInput{ProductCode: "P-BASIC-MONTH", PeriodNumber: 1})
		_, err = e.m.Renew(e.ctx, RenewInput{SubscriptionID: s2.ID, PeriodNumber: 1})
		e.must(err)
		e.settle()
		e.advance(s2.ExpireAt.Sub(e.clk.Now()) + time.Hour)
		if _, err := e.m.CancelRenewal(e.ctx, s2.ID); !isCode(err, "refused") {
			t.Fatalf("cancel a begun renewal: %v", err)
		}
	})
}

// A subscription frozen by the admin that reaches its expiry stays frozen
// and is released when the retention period after the expiry ends.
func TestAdminFrozenExpiresAndIsReleased(t *testing.T) {
	forBackends(t, func(t *testing.T, b string) {
		e := newEnv(t, b)
		_, s := e.buy(BuyInput{ProductCode: "P-BASIC-MONTH", PeriodNumber: 1})
		expire := bjEnd(2026, 4, 2)
		e.advance(24 * time.Hour)
		_, err := e.m.SetFrozen(e.ctx, s.ID, true)
		e.must(err)
		e.advanceTo(expire)
		s = e.sub(s.ID)
		if s.Status != SubFrozen || !s.ReleaseAt.Equal(expire.Add(DefaultRetention)) {
			t.Fatalf("after expiry = %+v", s)
		}
		if st := e.fm.received("updateInstanceStatus"); len(st) != 1 || st[0].Body["status"] != "FREEZE" {
			t.Fatalf("status calls = %+v", st)
		}
		e.advanceTo(s.ReleaseAt.Add(-time.Second))
		if n := len(e.fm.received("releaseInstance")); n != 0 {
			t.Fatal("released during the retention period")
		}
		e.advance(time.Second)
		if rel := e.fm.received("releaseInstance"); len(rel) != 1 || !rel[0].At.Equal(s.ReleaseAt) || rel[0].Body["instanceId"] != s.InstanceID {
			t.Fatalf("release calls = %+v", rel)
		}
		if s = e.sub(s.ID); s.Status != SubReleased {
			t.Fatalf("after the retention period = %+v", s)
		}
	})
}

// Cancelling a RENEWAL_CHANGE renewal restores the spec it replaced, not
// only the expiry; the merchant hears the restored productId.
func TestCancelRenewalChangeRestoresSpec(t *testing.T) {
	forBackends(t, func(t *testing.T, b string) {
		e := newEnv(t, b)
		_, s := e.buy(BuyInput{ProductCode: "P-BASIC-MONTH", PeriodNumber: 1})
		expire := s.ExpireAt
		r, err := e.m.Renew(e.ctx, RenewInput{SubscriptionID: s.ID, PeriodNumber: 1, ProductCode: "P-PRO-MONTH"})
		e.must(err)
		e.settle()
		if s = e.sub(s.ID); s.SKUCode != "pro" {
			t.Fatalf("after the renewal change = %+v", s)
		}
		_, err = e.m.CancelRenewal(e.ctx, s.ID)
		e.must(err)
		e.settle()
		s = e.sub(s.ID)
		if s.ProductCode != "P-BASIC-MONTH" || s.SKUCode != "basic" || s.PeriodType != "month" || !s.ExpireAt.Equal(expire) {
			t.Fatalf("after cancelling the renewal change = %+v", s)
		}
		ref := e.fm.received("refreshInstance")
		last := ref[len(ref)-1]
		if last.Body["scene"] != "UNSUBSCRIBE_RENEWAL_PERIOD" || last.Body["orderId"] != r.OrderID || last.Body["productId"] != "P-BASIC-MONTH" {
			t.Fatalf("refresh = %s", last.Raw)
		}
		// A linear value changed on renewal comes back too.
		ten := int64(10)
		_, s2 := e.buy(BuyInput{ProductCode: "P-SEATS-MONTH", PeriodNumber: 1, LinearValue: 5})
		_, err = e.m.Renew(e.ctx, RenewInput{SubscriptionID: s2.ID, PeriodNumber: 1, LinearValue: &ten})
		e.must(err)
		e.settle()
		_, err = e.m.CancelRenewal(e.ctx, s2.ID)
		e.must(err)
		e.settle()
		if s2 = e.sub(s2.ID); s2.LinearValue != 5 || s2.SKUCode != "seats" {
			t.Fatalf("after cancelling the linear change = %+v", s2)
		}
		ref = e.fm.received("refreshInstance")
		if last = ref[len(ref)-1]; last.Body["productId"] != "" {
			t.Fatalf("refresh with the same plan carries productId: %s", last.Raw)
		}
	})
}

// orderNotify follows every order of a product that subscribed to it,
// including the UNSUBSCRIBE orders of a cancelled renewal and of a failed create.
func TestOrderNotifyForUnsubscribeOrders(t *testing.T) {
	forBackends(t, func(t *testing.T, b string) {
		e := newEnv(t, b, func(in *ProductInput) { in.OrderNotify = true })
		notified := func(orderID string) bool {
			t.Helper()
			msgs, err := e.m.ListMessages(e.ctx, MessageFilter{OrderID: orderID, Activity: "orderNotify"})
			e.must(err)
			return len(msgs) == 1 && msgs[0].KeyType == KeyGeneral &&
				strings.Contains(string(msgs[0].Body), `"orderId":"`+orderID+`"`)
		}
		_, s := e.buy(BuyInput{ProductCode: "P-BASIC-MONTH", PeriodNumber: 1})
		_, err := e.m.Renew(e.ctx, RenewInput{SubscriptionID: s.ID, PeriodNumber: 1})
		e.must(err)
		e.settle()
		c, err := e.m.CancelRenewal(e.ctx, s.ID)
		e.must(err)
		if !notified(c.OrderID) {
			t.Fatalf("no orderNotify for the renewal-cancel order %s", c.OrderID)
		}
		e.fm.setFail("newInstance", "code:000005")
		o, s2 := e.buy(BuyInput{ProductCode: "P-BASIC-MONTH", PeriodNumber: 1})
		e.advance(4 * time.Hour)
		orders, err := e.m.ListOrders(e.ctx, "", s2.ID, 0)
		e.must(err)
		if len(orders) != 2 || orders[0].OrderType != OrderUnsubscribe || orders[0].RelatedOrderID != o.OrderID {
			t.Fatalf("orders = %+v", orders)
		}
		if !notified(orders[0].OrderID) {
			t.Fatalf("no orderNotify for the create-failed order %s", orders[0].OrderID)
		}
	})
}

// changeInstanceCheck carries testFlag "1" on a debugging subscription and no
// testFlag otherwise (saas-v2.md §4.7).
func TestChangeCheckBodyTestFlag(t *testing.T) {
	info := `{"productId":"P","skuCode":"s"}`
	if got, want := string(changeCheckBody(Subscription{InstanceID: "i-1"}, info)),
		`{"activity":"changeInstanceCheck","instanceId":"i-1","productInfo":{"productId":"P","skuCode":"s"}}`; got != want {
		t.Errorf("real: %s, want %s", got, want)
	}
	if got, want := string(changeCheckBody(Subscription{InstanceID: "i-1", TestFlag: true}, info)),
		`{"activity":"changeInstanceCheck","instanceId":"i-1","productInfo":{"productId":"P","skuCode":"s"},"testFlag":"1"}`; got != want {
		t.Errorf("debugging: %s, want %s", got, want)
	}
}
