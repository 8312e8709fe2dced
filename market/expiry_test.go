package market

import (
	"testing"
	"time"
)

// bjEnd is the end of a Beijing calendar day, 23:59:59 UTC+8, as a UTC time:
// where KooGallery's billing periods end.
func bjEnd(y int, m time.Month, d int) time.Time { return time.Date(y, m, d, 15, 59, 59, 0, time.UTC) }

// An upgrade pays the price difference for what is left of the period, the
// period running from 23:59:59 Beijing time one period before the expiry; on
// the purchase day, before that instant, it pays the full difference, never
// more.
func TestUpgradeProratesOverTheBeijingPeriod(t *testing.T) {
	forBackends(t, func(t *testing.T, b string) {
		e := newEnv(t, b)
		_, first := e.buy(BuyInput{ProductCode: "P-SEATS-MONTH", PeriodNumber: 1, LinearValue: 10})
		_, second := e.buy(BuyInput{ProductCode: "P-SEATS-MONTH", PeriodNumber: 1, LinearValue: 10})
		if !first.ExpireAt.Equal(bjEnd(2026, 4, 2)) {
			t.Fatalf("expiry %s", first.ExpireAt)
		}
		twenty := int64(20)
		full := int64(20*1000 - 10*1000)
		o, err := e.m.Upgrade(e.ctx, UpgradeInput{SubscriptionID: first.ID, LinearValue: &twenty})
		e.must(err)
		if o.AmountCents != full {
			t.Fatalf("upgrade on the purchase day costs %d, want the full difference %d", o.AmountCents, full)
		}
		e.settle()
		// Halfway from 2026-03-02 23:59:59 to 2026-04-02 23:59:59 (Beijing): half the difference.
		start := bjEnd(2026, 3, 2)
		e.advanceTo(start.Add(bjEnd(2026, 4, 2).Sub(start) / 2))
		o, err = e.m.Upgrade(e.ctx, UpgradeInput{SubscriptionID: second.ID, LinearValue: &twenty})
		e.must(err)
		if o.AmountCents != full/2 {
			t.Fatalf("upgrade halfway through the period costs %d, want %d", o.AmountCents, full/2)
		}
	})
}
