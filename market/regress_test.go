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
