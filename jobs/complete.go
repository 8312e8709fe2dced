package jobs

import (
	"context"
	"fmt"
	"strings"
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

// CompleteMany is Complete for several keys in one statement.
func CompleteMany(ctx context.Context, tx *db.Tx, now time.Time, keys []string) error {
	if len(keys) == 0 {
		return nil
	}
	rows := db.SizeClass(len(keys)) // the last key repeated: a no-op
	// Placeholders in the order they appear, none repeated (positional
	// binding on SQLite).
	args := []any{now.UnixMilli(), now.UnixMilli()}
	var in strings.Builder
	for i := 0; i < rows; i++ {
		if i > 0 {
			in.WriteString(", ")
		}
		fmt.Fprintf(&in, "$%d", i+3)
		args = append(args, keys[min(i, len(keys)-1)])
	}
	args = append(args, time.Now().UnixMilli())
	if _, err := tx.Exec(ctx, fmt.Sprintf(`UPDATE jobs SET state = 'done', locked_by = NULL, locked_until = NULL, completed_at = $1, updated_at = $2
		WHERE unique_key IN (%s) AND state = 'pending' AND (locked_by IS NULL OR locked_until IS NULL OR locked_until < $%d)`, in.String(), rows+3), args...); err != nil {
		return fmt.Errorf("jobs: complete %d: %w", len(keys), err)
	}
	return nil
}
