package market

import (
	"context"
	"fmt"

	"github.com/soukhq/souk/db"
)

// InterruptedCallError is the error a synchronous call cut off by a stopped
// market process is failed with.
const InterruptedCallError = "interrupted: the market stopped before this call's answer was recorded (it may or may not have reached the merchant); restart the message to send it again"

// RecoverInterruptedCalls fails the synchronous calls (Call) that a stopped
// process left in state "sending": those whose call deadline (the call
// timeout after they started, on the wire clock) has passed, so that a call
// still in flight in another replica is left alone. Each gets a failed
// attempt with InterruptedCallError and can be restarted (Restart). Run
// calls it at start; it returns how many it failed.
func (m *Market) RecoverInterruptedCalls(ctx context.Context) (int, error) {
	wireCut := db.Millis(m.wire.Now())
	// Messages written before call_deadline existed: by their market time.
	legacyCut := db.Millis(m.clock.Now().Add(-m.timeout))
	rows, err := m.db.Query(ctx, `SELECT id, url, body FROM market_messages WHERE state = 'sending'
		AND ((call_deadline > 0 AND call_deadline < $1) OR (call_deadline = 0 AND updated_at < $2)) ORDER BY id`, wireCut, legacyCut)
	if err != nil {
		return 0, fmt.Errorf("market: recover interrupted calls: %w", err)
	}
	type stuck struct {
		id        int64
		url, body string
	}
	var list []stuck
	for rows.Next() {
		var s stuck
		if err := rows.Scan(&s.id, &s.url, &s.body); err != nil {
			rows.Close()
			return 0, fmt.Errorf("market: recover interrupted calls: %w", err)
		}
		list = append(list, s)
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return 0, fmt.Errorf("market: recover interrupted calls: %w", err)
	}
	n := 0
	for _, s := range list {
		var done bool
		err := m.db.Tx(ctx, func(tx *db.Tx) error {
			done = false
			now := db.Millis(m.clock.Now())
			r, err := tx.Exec(ctx, `UPDATE market_messages SET state = 'failed', attempts = 1, first_try_at = CASE WHEN first_try_at = 0 THEN created_at ELSE first_try_at END,
				last_error = $1, updated_at = $2 WHERE id = $3 AND state = 'sending'`, InterruptedCallError, now, s.id)
			if err != nil {
				return err
			}
			if k, _ := r.RowsAffected(); k == 0 {
				return nil // finished or recovered meanwhile
			}
			if _, err := tx.Exec(ctx, `INSERT INTO market_attempts (message_id, attempt, at, request_url, request_body, verdict, error, next_try_at)
				VALUES ($1, 1, $2, $3, $4, $5, $6, 0) ON CONFLICT (message_id, attempt) DO NOTHING`,
				s.id, now, s.url, s.body, VerdictFailure, InterruptedCallError); err != nil {
				return err
			}
			done = true
			return nil
		})
		if err != nil {
			return n, fmt.Errorf("market: recover interrupted call %d: %w", s.id, err)
		}
		if done {
			n++
			m.log.WarnContext(ctx, "market: a synchronous call was interrupted by a stop; failed, restartable", "message", s.id)
		}
	}
	return n, nil
}
