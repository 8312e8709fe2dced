// Package e2e runs souk's market against souk's merchant over real HTTP on
// loopback, one virtual clock driving both, on SQLite and PostgreSQL.
package e2e

import (
	"context"
	"encoding/json"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/soukhq/souk/clock"
	"github.com/soukhq/souk/db/dbtest"
	"github.com/soukhq/souk/kg"
	"github.com/soukhq/souk/market"
	"github.com/soukhq/souk/merchant"
	"github.com/soukhq/souk/merchant/handoff"
)

const (
	accessKey = "e2e-basic-access-key"
	ak, sk    = "E2EAK000000000000001", "e2e-secret-key-000001"
)

var t0 = time.Date(2026, 3, 2, 8, 0, 0, 0, time.UTC)

// vendor records the merchant's events and answers them.
type vendor struct {
	mu      sync.Mutex
	events  []string // "type subject"
	created map[string]json.RawMessage
	refuse  bool
}

func (v *vendor) Provision(_ context.Context, ev *handoff.Stored) (*merchant.Answer, error) {
	v.mu.Lock()
	defer v.mu.Unlock()
	v.events = append(v.events, ev.Type+" "+ev.Subject)
	switch {
	case ev.Type == merchant.EventCreated:
		if v.created == nil {
			v.created = map[string]json.RawMessage{}
		}
		v.created[ev.Subject] = ev.Data
		return &merchant.Answer{AppInfo: &merchant.AppInfo{FrontEndURL: "https://app.example.com/" + ev.Subject, UserName: "admin", Password: "Pw-" + ev.Subject[:8]}}, nil
	case strings.Contains(ev.Type, "change_check") && v.refuse:
		no := false
		return &merchant.Answer{Allowed: &no, ResultCode: kg.CodeNoResource, ResultMsg: "too many users for the smaller plan"}, nil
	}
	return nil, nil
}

// createdData is the data of the instance.created event of an instance.
func (v *vendor) createdData(subject string) json.RawMessage {
	v.mu.Lock()
	defer v.mu.Unlock()
	return v.created[subject]
}

func (v *vendor) saw(typ, subject string) bool {
	v.mu.Lock()
	defer v.mu.Unlock()
	for _, e := range v.events {
		if e == typ+" "+subject {
			return true
		}
	}
	return false
}

type env struct {
	t      *testing.T
	ctx    context.Context
	clk    *clock.Virtual
	m      *market.Market
	mer    *merchant.Merchant
	v      *vendor
	cust   market.Customer
	seller string
}

func newEnv(t *testing.T, backend string) *env {
	ctx := t.Context()
	clk := clock.NewVirtual(t0)
	m, err := market.New(market.Config{DB: dbtest.Open(t, backend), Clock: clk, WireClock: clk})
	if err != nil {
		t.Fatal(err)
	}
	if err := m.Migrate(ctx); err != nil {
		t.Fatal(err)
	}
	api := httptest.NewServer(m.Handler("tok"))
	t.Cleanup(api.Close)
	xdb := dbtest.Open(t, backend)
	if err := merchant.Migrate(ctx, xdb); err != nil {
		t.Fatal(err)
	}
	v := &vendor{}
	mer, err := merchant.New(merchant.Config{AccessKeys: []string{accessKey}, MarketURL: api.URL, MarketAK: ak, MarketSK: sk},
		merchant.Deps{DB: xdb, Clock: clk, Provisioner: v})
	if err != nil {
		t.Fatal(err)
	}
	msrv := httptest.NewServer(mer.Handler())
	t.Cleanup(msrv.Close)
	rctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); _ = mer.Run(rctx) }()
	t.Cleanup(func() { cancel(); <-done })
	e := &env{t: t, ctx: ctx, clk: clk, m: m, mer: mer, v: v}
	s, err := m.CreateSeller(ctx, "e2e-isv", "E2E ISV")
	e.must(err)
	e.seller = s.ID
	_, err = m.SetAccessKey(ctx, s.ID, market.KeyBasic, accessKey)
	e.must(err)
	_, err = m.CreateCredential(ctx, s.ID, ak, sk)
	e.must(err)
	a, err := m.AddAddress(ctx, s.ID, msrv.URL+mer.Config().BasePath)
	e.must(err)
	a, err = m.VerifyAddress(ctx, a.ID)
	e.must(err)
	if !a.Verified {
		t.Fatalf("merchant address not verified: %s", a.VerifyNote)
	}
	_, err = m.CreateProduct(ctx, market.ProductInput{ID: "e2e-saas", SellerID: s.ID, Name: "E2E SaaS", AddressID: a.ID,
		UpgradeAllowed: true, RenewalChangeAllowed: true, TrialDays: 7, Plans: []market.Plan{
			{ProductCode: "E-MONTH", SKUCode: "std", ChargingMode: market.ModePeriod, PeriodType: "month", PriceCents: 9900},
			{ProductCode: "E-YEAR", SKUCode: "std", ChargingMode: market.ModePeriod, PeriodType: "year", PriceCents: 99000},
			{ProductCode: "E-SEATS", SKUCode: "seats", ChargingMode: market.ModePeriod, PeriodType: "month", PriceCents: 1000,
				Linear: &market.Linear{Name: "users", Min: 1, Max: 100}},
			{ProductCode: "E-DAY", SKUCode: "daily", ChargingMode: market.ModePeriod, PeriodType: "day", PriceCents: 500},
			{ProductCode: "E-ONCE", SKUCode: "once", ChargingMode: market.ModeOneTime, PriceCents: 30000},
			{ProductCode: "E-METERED", SKUCode: "metered", ChargingMode: market.ModeOnDemand, UnitPriceMicros: 10000},
			{ProductCode: "E-PKG", SKUCode: "pkg", ChargingMode: market.ModeOnDemandPkg, PeriodType: "month", PriceCents: 5000},
		}})
	e.must(err)
	e.cust, err = m.CreateCustomer(ctx, market.Customer{ID: "e2e-buyer", Name: "E2E Buyer", Email: "b@example.com"})
	e.must(err)
	return e
}

func (e *env) must(err error) {
	e.t.Helper()
	if err != nil {
		e.t.Fatal(err)
	}
}

// settle runs the market's due work until no message is due now.
func (e *env) settle() {
	e.t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for time.Now().Before(deadline) {
		if _, err := e.m.RunDue(e.ctx); err != nil {
			e.t.Fatal(err)
		}
		open, err := e.m.ListMessages(e.ctx, market.MessageFilter{State: "pending", Limit: 1})
		e.must(err)
		if len(open) == 0 || open[0].NextTryAt.After(e.clk.Now()) {
			return
		}
		time.Sleep(10 * time.Millisecond)
	}
	e.t.Fatal("messages still due after 20 s")
}

func (e *env) advance(d time.Duration) {
	e.t.Helper()
	if _, err := e.m.Advance(e.ctx, d); err != nil {
		e.t.Fatal(err)
	}
	e.settle()
}

func (e *env) sub(id string) market.Subscription {
	e.t.Helper()
	s, err := e.m.GetSubscription(e.ctx, id)
	e.must(err)
	return s
}

// eventually waits (real time) for the merchant's asynchronous side.
func (e *env) eventually(what string, f func() bool) {
	e.t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for !f() {
		if time.Now().After(deadline) {
			e.t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func (e *env) buy(in market.BuyInput) market.Subscription {
	e.t.Helper()
	in.CustomerID = e.cust.ID
	o, err := e.m.Buy(e.ctx, in)
	e.must(err)
	e.settle()
	s := e.sub(o.SubscriptionID)
	if s.Status != market.SubActive {
		msgs, _ := e.m.ListMessages(e.ctx, market.MessageFilter{SubscriptionID: s.ID})
		e.t.Fatalf("after buying %s: %s; messages %+v", in.ProductCode, s.Status, msgs)
	}
	return s
}

func (e *env) allDelivered() {
	e.t.Helper()
	failed, err := e.m.ListMessages(e.ctx, market.MessageFilter{State: "failed", Limit: 1000})
	e.must(err)
	for _, f := range failed {
		expected := f.Activity == "changeInstanceCheck" && f.LastCode == kg.CodeNoResource // the refusal the test asked for
		if !expected {
			e.t.Errorf("message %d %s failed: %s %s", f.ID, f.Activity, f.LastCode, f.LastError)
		}
	}
}

func forBackends(t *testing.T, f func(t *testing.T, e *env)) {
	for _, b := range dbtest.Backends() {
		t.Run(b, func(t *testing.T) { f(t, newEnv(t, b)) })
	}
}

func TestE2EPeriodExpiryRenewalRelease(t *testing.T) {
	forBackends(t, func(t *testing.T, e *env) {
		s := e.buy(market.BuyInput{ProductCode: "E-MONTH", PeriodNumber: 1})
		e.eventually("instance.created", func() bool { return e.v.saw(merchant.EventCreated, s.InstanceID) })
		r, err := e.m.Resource(e.ctx, s.ID)
		e.must(err)
		if r.Instance == nil || r.Instance.AppInfo == nil || r.Instance.AppInfo.UserName != "admin" {
			t.Fatalf("purchased resource = %+v", r)
		}
		e.advance(s.ExpireAt.Sub(e.clk.Now()))
		if s = e.sub(s.ID); s.Status != market.SubFrozen {
			t.Fatalf("after expiry: %s", s.Status)
		}
		_, err = e.m.Renew(e.ctx, market.RenewInput{SubscriptionID: s.ID, PeriodNumber: 1})
		e.must(err)
		e.settle()
		if s = e.sub(s.ID); s.Status != market.SubActive {
			t.Fatalf("after renewal: %s", s.Status)
		}
		e.advance(s.ExpireAt.Sub(e.clk.Now()) + market.DefaultRetention)
		if s = e.sub(s.ID); s.Status != market.SubReleased {
			t.Fatalf("after the retention period: %s", s.Status)
		}
		e.eventually("instance released at the vendor", func() bool { return e.v.saw("instance.released", s.InstanceID) })
		e.allDelivered()
	})
}

// A year bought 2026-03-02 16:00 Beijing time (08:00 UTC) ends 2027-03-02
// 23:59:59 Beijing time, 15:59:59 UTC, as KooGallery bills periods: Query
// Order says so, the merchant's newInstance learns it, and FREEZE comes when
// the clock reaches that instant, not before.
func TestE2EYearEndsAtTheEndOfTheBeijingDay(t *testing.T) {
	forBackends(t, func(t *testing.T, e *env) {
		want := time.Date(2027, 3, 2, 15, 59, 59, 0, time.UTC)
		s := e.buy(market.BuyInput{ProductCode: "E-YEAR", PeriodNumber: 1})
		if !s.ExpireAt.Equal(want) {
			t.Fatalf("subscription expires %s, want %s", s.ExpireAt, want)
		}
		info, code, msg := e.m.QueryOrder(e.ctx, e.seller, s.OriginOrder, "")
		if code != kg.MKTSuccess || info.CreateTime != "20260302080000" || info.OrderLine[0].ExpireTime != "20270302155959" {
			t.Fatalf("Query Order: %s %s %+v", code, msg, info)
		}
		e.eventually("instance.created", func() bool { return e.v.saw(merchant.EventCreated, s.InstanceID) })
		var created struct {
			Order struct {
				OrderID   string `json:"orderId"`
				OrderLine []struct {
					ExpireTime string `json:"expireTime"`
				} `json:"orderLine"`
			} `json:"order"`
		}
		e.must(json.Unmarshal(e.v.createdData(s.InstanceID), &created))
		if created.Order.OrderID != s.OriginOrder || len(created.Order.OrderLine) != 1 || created.Order.OrderLine[0].ExpireTime != "20270302155959" {
			t.Fatalf("the merchant's newInstance learnt %+v", created.Order)
		}
		e.advance(want.Sub(e.clk.Now()) - time.Second)
		st, err := e.m.ListMessages(e.ctx, market.MessageFilter{SubscriptionID: s.ID, Activity: "updateInstanceStatus"})
		e.must(err)
		if s = e.sub(s.ID); s.Status != market.SubActive || len(st) != 0 {
			t.Fatalf("a second before the expiry: %s, status calls %+v", s.Status, st)
		}
		e.advance(time.Second)
		st, err = e.m.ListMessages(e.ctx, market.MessageFilter{SubscriptionID: s.ID, Activity: "updateInstanceStatus"})
		e.must(err)
		if s = e.sub(s.ID); s.Status != market.SubFrozen || len(st) != 1 || !strings.Contains(string(st[0].Body), `"FREEZE"`) ||
			!st[0].CreatedAt.Equal(want) {
			t.Fatalf("at the expiry: %s, status calls %+v", s.Status, st)
		}
		e.eventually("instance.frozen", func() bool { return e.v.saw(merchant.EventFrozen, s.InstanceID) })
		e.allDelivered()
	})
}

func TestE2ETrialConversionUpgradeChangeUnsubscribe(t *testing.T) {
	forBackends(t, func(t *testing.T, e *env) {
		tr := e.buy(market.BuyInput{ProductCode: "E-SEATS", Trial: true})
		e.advance(8 * 24 * time.Hour)
		if tr = e.sub(tr.ID); tr.Status != market.SubFrozen {
			t.Fatalf("expired trial: %s", tr.Status)
		}
		_, err := e.m.ConvertTrial(e.ctx, market.ConvertInput{SubscriptionID: tr.ID, ProductCode: "E-SEATS", PeriodNumber: 1, LinearValue: 5})
		e.must(err)
		e.settle()
		if tr = e.sub(tr.ID); tr.Status != market.SubActive || tr.Trial {
			t.Fatalf("converted: %+v", tr)
		}
		ten := int64(10)
		up, err := e.m.Upgrade(e.ctx, market.UpgradeInput{SubscriptionID: tr.ID, LinearValue: &ten})
		e.must(err)
		e.settle()
		if o, _ := e.m.GetOrder(e.ctx, up.OrderID); o.Status != market.OrderCompleted || e.sub(tr.ID).LinearValue != 10 {
			t.Fatalf("upgrade order %s", o.Status)
		}
		// Renewal with a spec change: the merchant (and its vendor app) decide.
		e.v.mu.Lock()
		e.v.refuse = true
		e.v.mu.Unlock()
		three := int64(3)
		if _, err := e.m.Renew(e.ctx, market.RenewInput{SubscriptionID: tr.ID, PeriodNumber: 1, LinearValue: &three}); err == nil {
			t.Fatal("the vendor refused the smaller spec, the renewal went through")
		}
		e.v.mu.Lock()
		e.v.refuse = false
		e.v.mu.Unlock()
		rc, err := e.m.Renew(e.ctx, market.RenewInput{SubscriptionID: tr.ID, PeriodNumber: 1, LinearValue: &three})
		e.must(err)
		e.settle()
		if o, _ := e.m.GetOrder(e.ctx, rc.OrderID); o.Status != market.OrderCompleted {
			t.Fatalf("renewal change order %s", o.Status)
		}
		// Unsubscribe within 5 days of the conversion: full refund, released.
		u, err := e.m.Unsubscribe(e.ctx, market.UnsubscribeInput{SubscriptionID: tr.ID})
		e.must(err)
		e.settle()
		if u.RefundRule != "five-day" || e.sub(tr.ID).Status != market.SubReleased {
			t.Fatalf("unsubscription %+v, sub %s", u, e.sub(tr.ID).Status)
		}
		e.allDelivered()
	})
}

func TestE2EOneTimePayPerUseAndPackage(t *testing.T) {
	forBackends(t, func(t *testing.T, e *env) {
		once := e.buy(market.BuyInput{ProductCode: "E-ONCE"})
		day := e.buy(market.BuyInput{ProductCode: "E-DAY", PeriodNumber: 3})
		pkg := e.buy(market.BuyInput{ProductCode: "E-PKG", PeriodNumber: 1})
		metered := e.buy(market.BuyInput{ProductCode: "E-METERED"})
		e.advance(2 * time.Hour)
		begin := e.clk.Now().Add(-2 * time.Hour).UTC().Truncate(time.Hour)
		n, err := e.mer.RecordUsage(e.ctx, metered.InstanceID, []merchant.UsageRecordInput{
			{MeteringSN: "e2e-sn-1", UsageValue: json.Number("150"), BeginTime: kg.FormatUsageTime(begin), EndTime: kg.FormatUsageTime(begin.Add(time.Hour))},
			{MeteringSN: "e2e-sn-2", UsageValue: json.Number("0.5"), BeginTime: kg.FormatUsageTime(begin.Add(time.Hour)), EndTime: kg.FormatUsageTime(begin.Add(2 * time.Hour))},
		}, "")
		e.must(err)
		if n != 2 {
			t.Fatalf("recorded %d", n)
		}
		var usage int64
		e.eventually("usage pushed and billed", func() bool {
			bill, err := e.m.GetBill(e.ctx, e.cust.ID)
			e.must(err)
			usage = 0
			for _, x := range bill.Entries {
				if x.Kind == "usage" {
					usage += x.AmountMicros
				}
			}
			return usage == 1_505_000 // 150.5 units at 0.01
		})
		e.advance(40 * 24 * time.Hour)
		for _, c := range []struct {
			s    market.Subscription
			want string
		}{{once, market.SubActive}, {day, market.SubReleased}, {pkg, market.SubFrozen}, {metered, market.SubActive}} {
			if got := e.sub(c.s.ID).Status; got != c.want {
				t.Errorf("%s after 40 days: %s, want %s", c.s.ProductCode, got, c.want)
			}
		}
		e.allDelivered()
	})
}
