package merchant

import (
	"context"
	"time"

	"github.com/soukhq/souk/db"
)

// ClockSkewWarn is how far this process's clock may be from the PostgreSQL
// server's before housekeeping warns. Replicas on one database compare times
// they each took: a hand-off lease (the inline timeout + 15 s) is read by
// every replica's sweep, a nonce's age by every replica's pruning, and
// request timestamps against the --window by each replica. Clocks a few
// seconds apart keep all of that correct; the warning comes well before
// the 15 s margin.
const ClockSkewWarn = 5 * time.Second

// checkClock measures the database server's clock against this process's
// (PostgreSQL only: SQLite is a file on this machine), keeps it for the
// gauge souk_merchant_database_clock_offset_seconds, and warns when it is
// more than ClockSkewWarn off. Replicas that each see a small offset agree
// with one another.
func (m *Merchant) checkClock(ctx context.Context) {
	if m.db.Dialect != db.Postgres {
		return
	}
	before := m.clock.Now()
	var ms int64
	err := m.db.QueryRow(ctx, `SELECT (EXTRACT(EPOCH FROM clock_timestamp()) * 1000)::BIGINT`).Scan(&ms)
	after := m.clock.Now()
	if err != nil {
		if ctx.Err() == nil {
			m.log.Error("clock check: read the database server's time", "err", err)
		}
		return
	}
	rtt := after.Sub(before)
	offset := time.UnixMilli(ms).Sub(before.Add(rtt / 2))
	m.clockOffset.Store(int64(offset))
	if offset.Abs() > ClockSkewWarn+rtt/2 {
		m.log.Warn("this process's clock is off the database server's: replicas' clocks must agree within a few seconds (hand-off leases, nonce pruning, the request window); check NTP",
			"database_minus_local", offset.Round(100*time.Millisecond).String(), "round_trip", rtt.Round(time.Microsecond).String())
	}
}
