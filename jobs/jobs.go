// Package jobs is souk's durable scheduled work: webhook deliveries, dispatch
// retries and lifecycle timers, stored in the application database.
//
// Work is enqueued inside the caller's transaction (so it exists if and only if
// the state change that caused it committed), becomes due at a time read from
// the injected clock, and is claimed by Runners. On PostgreSQL the claim uses
// FOR UPDATE SKIP LOCKED, so several replicas share one queue; a claimed job is
// leased for a stretch of real time, and a job whose worker crashed comes back
// when its lease runs out. Results are written only by the lease holder.
// See docs/storage.md.
package jobs

import (
	"context"
	"database/sql"
	"embed"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/soukhq/souk/db"
)

//go:embed migrations/*.sql
var migrations embed.FS

// Component is the name under which the jobs schema is recorded in schema_migrations.
const Component = "jobs"

// Job states.
const (
	StatePending = "pending"
	StateDone    = "done"
	StateDead    = "dead"
)

// Migrate creates or upgrades the jobs table.
func Migrate(ctx context.Context, d *db.DB) error {
	return d.Migrate(ctx, Component, migrations)
}

// New describes a job to enqueue.
type New struct {
	Kind    string    // handler name
	Key     string    // optional: unique; a second Enqueue with the same Key is a no-op (inserted=false)
	Payload []byte    // usually JSON
	DueAt   time.Time // zero → now (per the clock passed to Enqueue)
}

// Job is a stored job as a handler (or List) sees it.
type Job struct {
	ID          int64
	Kind        string
	Key         string
	Payload     []byte
	Attempt     int // 1 on the first run
	DueAt       time.Time
	CreatedAt   time.Time
	LastError   string    // the error of the previous failed attempt, if any
	State       string    // pending, done or dead (List only; a running job is pending)
	CompletedAt time.Time // when it became done or dead (List only)
}

// Handler runs a job. nil → done. RetryAt(t, err) → run again at t.
// Permanent(err) → dead (dead letter). Any other error → retried after
// Runner.Backoff(kind, attempt); dead after MaxAttempts.
// A handler may run more than once for one job (if its lease is lost, or the
// process dies before the result is recorded): make it idempotent.
type Handler func(ctx context.Context, j *Job) error

// Enqueue adds a job in the caller's transaction and returns its id. With a Key,
// a job with the same key that already exists (in any state, until pruned) makes
// this a no-op that returns the existing id and inserted=false.
func Enqueue(ctx context.Context, tx *db.Tx, now time.Time, j New) (id int64, inserted bool, err error) {
	if j.Kind == "" {
		return 0, false, errors.New("jobs: enqueue: empty Kind")
	}
	due := j.DueAt
	if due.IsZero() {
		due = now
	}
	var key sql.NullString
	if j.Key != "" {
		key = sql.NullString{String: j.Key, Valid: true}
	}
	nowMS := now.UnixMilli()
	err = tx.QueryRow(ctx, `INSERT INTO jobs (kind, unique_key, payload, state, due_at, attempt, last_error, created_at, updated_at)
VALUES ($1, $2, $3, 'pending', $4, 0, '', $5, $5)
ON CONFLICT (unique_key) DO NOTHING
RETURNING id`, j.Kind, key, j.Payload, due.UnixMilli(), nowMS).Scan(&id)
	switch {
	case err == nil:
		return id, true, nil
	case !errors.Is(err, sql.ErrNoRows) || !key.Valid:
		return 0, false, fmt.Errorf("jobs: enqueue %s: %w", j.Kind, err)
	}
	if err := tx.QueryRow(ctx, `SELECT id FROM jobs WHERE unique_key = $1`, j.Key).Scan(&id); err != nil {
		return 0, false, fmt.Errorf("jobs: enqueue %s: existing key %q: %w", j.Kind, j.Key, err)
	}
	return id, false, nil
}

// retryAtError asks for the job to run again at a given time.
type retryAtError struct {
	at  time.Time
	err error
}

func (e *retryAtError) Error() string {
	if e.err == nil {
		return "retry at " + e.at.UTC().Format(time.RFC3339)
	}
	return e.err.Error()
}
func (e *retryAtError) Unwrap() error { return e.err }

// RetryAt makes a handler's job run again at t (or at the next millisecond, if t
// is not in the future). err, which may be nil, is recorded as the job's
// last_error. RetryAt does not count toward MaxAttempts: the handler decides
// (it sees Job.Attempt).
func RetryAt(t time.Time, err error) error { return &retryAtError{at: t, err: err} }

// permanentError marks a failure that retrying cannot fix.
type permanentError struct{ err error }

func (e *permanentError) Error() string {
	if e.err == nil {
		return "permanent failure"
	}
	return e.err.Error()
}
func (e *permanentError) Unwrap() error { return e.err }

// Permanent makes a handler's job dead (dead-lettered) at once, recording err.
func Permanent(err error) error { return &permanentError{err: err} }

// ErrNotFound is returned by Retry for an unknown job id.
var ErrNotFound = errors.New("jobs: no such job")

// ErrNotRetryable is returned by Retry for a job that is done or currently running.
var ErrNotRetryable = errors.New("jobs: job is done or running")

// Retry makes a dead (or waiting) job pending and due at now, with its attempt
// count reset, so that it gets MaxAttempts fresh tries. A job that is done or
// currently leased by a worker is left alone (ErrNotRetryable).
func Retry(ctx context.Context, d *db.DB, now time.Time, id int64) error {
	realNow := time.Now().UnixMilli() // leases are real time
	res, err := d.Exec(ctx, `UPDATE jobs SET state = 'pending', due_at = $1, attempt = 0, locked_by = NULL, locked_until = NULL,
	completed_at = NULL, updated_at = $1
WHERE id = $2 AND (state = 'dead' OR (state = 'pending' AND (locked_until IS NULL OR locked_until < $3)))`,
		now.UnixMilli(), id, realNow)
	if err != nil {
		return fmt.Errorf("jobs: retry %d: %w", id, err)
	}
	if n, err := res.RowsAffected(); err != nil {
		return fmt.Errorf("jobs: retry %d: %w", id, err)
	} else if n == 1 {
		return nil
	}
	var state string
	err = d.QueryRow(ctx, `SELECT state FROM jobs WHERE id = $1`, id).Scan(&state)
	if errors.Is(err, sql.ErrNoRows) {
		return fmt.Errorf("%w: %d", ErrNotFound, id)
	}
	if err != nil {
		return fmt.Errorf("jobs: retry %d: %w", id, err)
	}
	return fmt.Errorf("%w: %d is %s", ErrNotRetryable, id, state)
}

// NextDue returns the earliest due time of a pending job (ok=false if none).
func NextDue(ctx context.Context, d *db.DB) (time.Time, bool, error) {
	var ms sql.NullInt64
	if err := d.QueryRow(ctx, `SELECT MIN(due_at) FROM jobs WHERE state = 'pending'`).Scan(&ms); err != nil {
		return time.Time{}, false, fmt.Errorf("jobs: next due: %w", err)
	}
	if !ms.Valid {
		return time.Time{}, false, nil
	}
	return time.UnixMilli(ms.Int64).UTC(), true, nil
}

// Filter selects jobs for List. Empty fields match everything; Limit defaults to 100.
type Filter struct {
	Kind  string
	State string
	Limit int
	// BeforeID, if set, lists only jobs with a smaller id: pass the last id of a
	// page to get the next one.
	BeforeID int64
}

// List returns jobs matching f, newest first.
func List(ctx context.Context, d *db.DB, f Filter) ([]Job, error) {
	limit := f.Limit
	if limit <= 0 {
		limit = 100
	}
	var (
		where []string
		args  []any
	)
	if f.Kind != "" {
		args = append(args, f.Kind)
		where = append(where, fmt.Sprintf("kind = $%d", len(args)))
	}
	if f.State != "" {
		args = append(args, f.State)
		where = append(where, fmt.Sprintf("state = $%d", len(args)))
	}
	if f.BeforeID > 0 {
		args = append(args, f.BeforeID)
		where = append(where, fmt.Sprintf("id < $%d", len(args)))
	}
	q := `SELECT id, kind, COALESCE(unique_key, ''), payload, attempt, due_at, created_at, last_error, state, COALESCE(completed_at, 0) FROM jobs`
	if len(where) > 0 {
		q += " WHERE " + strings.Join(where, " AND ")
	}
	args = append(args, limit)
	q += fmt.Sprintf(" ORDER BY id DESC LIMIT $%d", len(args))
	rows, err := d.Query(ctx, q, args...)
	if err != nil {
		return nil, fmt.Errorf("jobs: list: %w", err)
	}
	defer rows.Close()
	var out []Job
	for rows.Next() {
		var (
			j                     Job
			due, created, compled int64
		)
		if err := rows.Scan(&j.ID, &j.Kind, &j.Key, &j.Payload, &j.Attempt, &due, &created, &j.LastError, &j.State, &compled); err != nil {
			return nil, fmt.Errorf("jobs: list: %w", err)
		}
		j.DueAt, j.CreatedAt = ms(due), ms(created)
		if compled != 0 {
			j.CompletedAt = ms(compled)
		}
		out = append(out, j)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("jobs: list: %w", err)
	}
	return out, nil
}

// Counts returns the number of jobs by state (pending, done, dead; always present).
func Counts(ctx context.Context, d *db.DB) (map[string]int, error) {
	rows, err := d.Query(ctx, `SELECT state, COUNT(*) FROM jobs GROUP BY state`)
	if err != nil {
		return nil, fmt.Errorf("jobs: counts: %w", err)
	}
	defer rows.Close()
	out := map[string]int{StatePending: 0, StateDone: 0, StateDead: 0}
	for rows.Next() {
		var s string
		var n int
		if err := rows.Scan(&s, &n); err != nil {
			return nil, fmt.Errorf("jobs: counts: %w", err)
		}
		out[s] = n
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("jobs: counts: %w", err)
	}
	return out, nil
}

// pruneBatch bounds each DELETE of Prune, keeping transactions short.
const pruneBatch = 1000

// Prune deletes done jobs completed before olderThan (dead jobs are kept for
// inspection and Retry) and returns how many it deleted. A pruned job's Key can
// be enqueued again.
func Prune(ctx context.Context, d *db.DB, olderThan time.Time) (int64, error) {
	var total int64
	for {
		res, err := d.Exec(ctx, `DELETE FROM jobs WHERE id IN (
	SELECT id FROM jobs WHERE state = 'done' AND completed_at < $1 ORDER BY id LIMIT $2)`, olderThan.UnixMilli(), pruneBatch)
		if err != nil {
			return total, fmt.Errorf("jobs: prune: %w", err)
		}
		n, err := res.RowsAffected()
		if err != nil {
			return total, fmt.Errorf("jobs: prune: %w", err)
		}
		total += n
		if n < pruneBatch {
			return total, nil
		}
	}
}

func ms(v int64) time.Time { return time.UnixMilli(v).UTC() }

// EnqueueMany is Enqueue for several jobs in one multi-row statement (a
// batch of requests sharing a transaction). Each job must have a Key; a job
// whose Key exists already is skipped, as Enqueue skips it. Job ids are not
// returned.
func EnqueueMany(ctx context.Context, tx *db.Tx, now time.Time, js []New) error {
	if len(js) == 0 {
		return nil
	}
	rows := db.SizeClass(len(js)) // the last job repeated: a no-op by its key
	args := make([]any, 0, rows*9)
	nowMS := now.UnixMilli()
	for i := 0; i < rows; i++ {
		j := js[min(i, len(js)-1)]
		if j.Kind == "" || j.Key == "" {
			return errors.New("jobs: enqueue many: every job needs a Kind and a Key")
		}
		due := j.DueAt
		if due.IsZero() {
			due = now
		}
		args = append(args, j.Kind, j.Key, j.Payload, due.UnixMilli(), nowMS, nowMS, "pending", 0, "")
	}
	q := `INSERT INTO jobs (kind, unique_key, payload, due_at, created_at, updated_at, state, attempt, last_error) VALUES ` +
		db.Values(rows, 9, 1) + ` ON CONFLICT (unique_key) DO NOTHING`
	if _, err := tx.Exec(ctx, q, args...); err != nil {
		return fmt.Errorf("jobs: enqueue %d: %w", len(js), err)
	}
	return nil
}
