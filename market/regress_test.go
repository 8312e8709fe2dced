package market

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/soukhq/souk/clock"
)

// Several renewals placed at the same (virtual) instant: cancelling takes the
// one that ends last, whatever the random order ids.
func TestCancelRenewalPicksTheLastOfSameInstantRenewals(t *testing.T) {
	forBackends(t, func(t *testing.T, b string) {
		e := newEnv(t, b)
		_, s := e.buy(BuyInput{ProductCode: "P-BASIC-MONTH", PeriodNumber: 1})
		var last Order
		for i := 0; i < 6; i++ {
			r, err := e.m.Renew(e.ctx, RenewInput{SubscriptionID: s.ID, PeriodNumber: 1})
			e.must(err)
			e.settle()
			last = r
		}
		c, err := e.m.CancelRenewal(e.ctx, s.ID)
		e.must(err)
		if c.RelatedOrderID != last.OrderID {
			t.Fatalf("cancelled %s, want the last renewal %s", c.RelatedOrderID, last.OrderID)
		}
	})
}

// A later --virtual-clock start is stored, so a restart with an earlier one
// does not take the market back in time.
func TestLaterStartTimeIsStored(t *testing.T) {
	forBackends(t, func(t *testing.T, b string) {
		e := newEnv(t, b)
		later := t0.Add(4 * 365 * 24 * time.Hour)
		restart := func(start time.Time) *clock.Virtual {
			clk := clock.NewVirtual(start)
			m, err := New(Config{DB: e.db, Clock: clk, WireClock: clk})
			e.must(err)
			e.must(m.LoadClock(e.ctx))
			return clk
		}
		restart(later)
		if got := restart(t0).Now(); !got.Equal(later) {
			t.Fatalf("after restarting with an earlier start the clock is %s, want %s", got, later)
		}
	})
}

// A market on the real clock refuses a database that ran on a virtual clock
// instead of switching it to real time; a fresh database is fine.
func TestRealClockRefusesVirtualDatabase(t *testing.T) {
	forBackends(t, func(t *testing.T, b string) {
		e := newEnv(t, b)
		real, err := New(Config{DB: e.db, Clock: clock.Real{}})
		e.must(err)
		e.must(real.LoadClock(e.ctx)) // nothing stored yet
		clk := clock.NewVirtual(t0)
		m, err := New(Config{DB: e.db, Clock: clk, WireClock: clk})
		e.must(err)
		e.must(m.LoadClock(e.ctx))
		err = real.LoadClock(e.ctx)
		if !errors.Is(err, ErrVirtualDatabase) || !strings.Contains(err.Error(), "--virtual-clock") {
			t.Fatalf("real clock on a virtual database: %v", err)
		}
	})
}

// Month and year periods clamp to the last day of a shorter month, as Java's
// LocalDate does (Jan 31 + 1 month = Feb 28, not Mar 3); the calendar
// arithmetic under Expiry.
func TestAddPeriodClampsMonthEnd(t *testing.T) {
	d := func(y int, m time.Month, day int) time.Time { return time.Date(y, m, day, 8, 30, 15, 0, time.UTC) }
	for _, c := range []struct {
		from   time.Time
		period string
		n      int
		want   time.Time
	}{
		{d(2026, 1, 31), "month", 1, d(2026, 2, 28)},
		{d(2028, 1, 31), "month", 1, d(2028, 2, 29)},
		{d(2026, 3, 31), "month", 1, d(2026, 4, 30)},
		{d(2026, 1, 31), "month", 2, d(2026, 3, 31)},
		{d(2026, 8, 31), "month", 6, d(2027, 2, 28)},
		{d(2026, 12, 31), "month", 14, d(2028, 2, 29)},
		{d(2028, 2, 29), "year", 1, d(2029, 2, 28)},
		{d(2028, 2, 29), "year", 4, d(2032, 2, 29)},
		{d(2026, 3, 2), "month", 1, d(2026, 4, 2)},
		{d(2026, 1, 31), "day", 1, d(2026, 2, 1)},
	} {
		if got := addPeriod(c.from, c.period, c.n); !got.Equal(c.want) {
			t.Errorf("%s + %d %s = %s, want %s", c.from.Format(time.DateOnly), c.n, c.period, got, c.want)
		}
	}
}
