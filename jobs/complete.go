package jobs

import (
	"context"
	"fmt"
	"time"

	"github.com/soukhq/souk/db"
)

// Complete marks the pending job with unique key done, in the caller's
// transaction, when its work was finished by other means before the job ran
// (for example an inline attempt within a request). A job a runner holds
// right now (an unexpired lease, in real time) is left alone: its handler runs
// to the end and must find the work done. It reports whether a job was
// completed.
func Complete(ctx context.Context, tx *db.Tx, now time.Time, key string) (bool, error) {
	res, err := tx.Exec(ctx, `UPDATE jobs SET state = 'done', locked_by = NULL, locked_until = NULL, completed_at = $2, updated_at = $2
		WHERE unique_key = $1 AND state = 'pending' AND (locked_by IS NULL OR locked_until IS NULL OR locked_until < $3)`,
		key, now.UnixMilli(), time.Now().UnixMilli())
	if err != nil {
		return false, fmt.Errorf("jobs: complete %q: %w", key, err)
	}
	n, err := res.RowsAffected()
	if err != nil {
		return false, fmt.Errorf("jobs: complete %q: %w", key, err)
	}
	return n > 0, nil
}
