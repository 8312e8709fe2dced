package market

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"

	"github.com/soukhq/souk/clock"
	"github.com/soukhq/souk/db"
)

// Step is one stop of the virtual clock while it advances.
type Step struct {
	At   time.Time `json:"at"`
	Runs int       `json:"runs"` // job runs at that time
}

// AdvanceResult reports a clock advance.
type AdvanceResult struct {
	From  time.Time `json:"from"`
	To    time.Time `json:"to"`
	Runs  int       `json:"runs"`
	Steps []Step    `json:"steps"`
}

// ErrRealClock means the market does not run on a virtual clock.
var ErrRealClock = &Error{Status: 409, Code: "conflict", Msg: "the market runs on the real clock; start it with a virtual clock to advance time"}

func (m *Market) virtual() (*clock.Virtual, bool) {
	v, ok := m.clock.(*clock.Virtual)
	return v, ok
}

// ErrVirtualDatabase means a market on the real clock was started on a
// database that has run on a virtual clock.
var ErrVirtualDatabase = errors.New("market: the database ran on a virtual clock")

// LoadClock sets a virtual clock from the time stored in the database (the
// virtual time survives restarts and is shared by replicas). It stores the
// clock's time when none is stored yet. A market on the real clock refuses a
// database that stores a virtual time (ErrVirtualDatabase): switching it to
// real time silently would fire or void every timer and retry set on the
// virtual timeline at once.
func (m *Market) LoadClock(ctx context.Context) error {
	var now int64
	err := m.db.QueryRow(ctx, `SELECT now_ms FROM market_clock WHERE id = 1`).Scan(&now)
	v, ok := m.virtual()
	if !ok {
		switch {
		case errors.Is(err, sql.ErrNoRows):
			return nil
		case err != nil:
			return fmt.Errorf("market: load clock: %w", err)
		}
		return fmt.Errorf("%w (virtual time %s); start with --virtual-clock (any time: the stored one is kept when later) or use another database",
			ErrVirtualDatabase, db.FromMillis(now).UTC().Format(time.RFC3339))
	}
	if errors.Is(err, sql.ErrNoRows) {
		return m.saveClock(ctx, v.Now())
	}
	if err != nil {
		return fmt.Errorf("market: load clock: %w", err)
	}
	if t := db.FromMillis(now); t.After(v.Now()) {
		v.Set(t)
		return nil
	}
	// A later start time given at start moves the stored clock forward too, so
	// that the next restart does not go back in time.
	return m.saveClock(ctx, v.Now())
}

func (m *Market) saveClock(ctx context.Context, t time.Time) error {
	_, err := m.db.Exec(ctx, `INSERT INTO market_clock (id, now_ms) VALUES (1, $1)
		ON CONFLICT (id) DO UPDATE SET now_ms = CASE WHEN excluded.now_ms > market_clock.now_ms THEN excluded.now_ms ELSE market_clock.now_ms END`, db.Millis(t))
	if err != nil {
		return fmt.Errorf("market: save clock: %w", err)
	}
	return nil
}

// FollowClock keeps a virtual clock in step with the time another replica
// stored, polling every interval until ctx ends.
func (m *Market) FollowClock(ctx context.Context, every time.Duration) {
	if _, ok := m.virtual(); !ok {
		return
	}
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			if err := m.LoadClock(ctx); err != nil && ctx.Err() == nil {
				m.log.WarnContext(ctx, "market: follow clock", "err", err)
			}
		}
	}
}

// Advance moves the virtual clock forward by d, stopping at every due timer
// in order (the runner's NextDue: jobs of the kinds it handles) and running what is due there (RunDue), so that
// retries, expiries, freezes and releases happen at their exact times. The
// cost of a step depends on the jobs due, not on how many subscriptions exist.
func (m *Market) Advance(ctx context.Context, d time.Duration) (AdvanceResult, error) {
	if d < 0 {
		return AdvanceResult{}, badField("duration", "must not be negative")
	}
	v, ok := m.virtual()
	if !ok {
		return AdvanceResult{}, ErrRealClock
	}
	res := AdvanceResult{From: v.Now()}
	target := res.From.Add(d)
	idle := 0
	for {
		if err := ctx.Err(); err != nil {
			return res, err
		}
		n, err := m.RunDue(ctx)
		if err != nil {
			return res, fmt.Errorf("market: advance: %w", err)
		}
		if n > 0 {
			res.Runs += n
			res.Steps = append(res.Steps, Step{At: v.Now(), Runs: n})
		}
		// Only kinds this market's runner handles: a foreign job in the
		// database (no handler here) must not hold the clock.
		next, ok, err := m.runner.NextDue(ctx)
		if err != nil {
			return res, fmt.Errorf("market: advance: %w", err)
		}
		if !ok || next.After(target) {
			break
		}
		if next.After(v.Now()) {
			// The stored time is written once at the end: after a crash
			// mid-advance the clock resumes earlier, which only re-runs nothing
			// (what ran is done) and keeps each step at one commit less.
			v.Set(next)
			idle = 0
			continue
		}
		if n == 0 {
			// A job due now is leased by another worker (Run, or a replica):
			// give it a moment to finish before looking again.
			idle++
			if idle > 1000 {
				return res, fmt.Errorf("market: advance: a job due at %s stays claimed by another worker", next.Format(time.RFC3339))
			}
			select {
			case <-ctx.Done():
				return res, ctx.Err()
			case <-time.After(10 * time.Millisecond):
			}
		}
	}
	if target.After(v.Now()) {
		v.Set(target)
	}
	if err := m.saveClock(ctx, v.Now()); err != nil {
		return res, err
	}
	n, err := m.RunDue(ctx)
	res.Runs += n
	if n > 0 {
		res.Steps = append(res.Steps, Step{At: v.Now(), Runs: n})
	}
	res.To = v.Now()
	return res, err
}
