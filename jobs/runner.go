package jobs

import (
	"cmp"
	"context"
	"crypto/rand"
	"database/sql"
	"encoding/hex"
	"errors"
	"fmt"
	"hash/fnv"
	"log/slog"
	"os"
	"runtime/debug"
	"slices"
	"sort"
	"strings"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/soukhq/souk/clock"
	"github.com/soukhq/souk/db"
)

// Runner defaults.
const (
	DefaultWorkers     = 4
	DefaultPoll        = 200 * time.Millisecond
	DefaultLease       = time.Minute
	DefaultMaxAttempts = 25
	minBackoff         = time.Second
	maxBackoff         = time.Hour
	resultTimeout      = 30 * time.Second
	maxErrorLen        = 4000
)

// Runner claims due jobs and runs their handlers.
//
// Run polls until its context ends; RunDue runs everything due at Clock.Now()
// and returns (for virtual-clock drivers and tests). Both may be used by several
// Runners on one database at once: a job is claimed by one of them at a time.
type Runner struct {
	DB       *db.DB
	Clock    clock.Clock // due times; virtual in the market
	Logger   *slog.Logger
	Handlers map[string]Handler

	Workers     int           // concurrent handlers in Run; default 4
	Poll        time.Duration // Run's polling interval; default 200ms
	Lease       time.Duration // real time a claimed job stays locked (default 1 min); crashed workers' jobs come back after it. Running handlers renew it.
	Backoff     func(kind string, attempt int) time.Duration
	MaxAttempts int // default 25; 0 = default
	// Timeout bounds each handler run (its context is cancelled after it); 0 = no limit.
	Timeout time.Duration
	// Retention, if set, makes Run delete done jobs completed more than Retention
	// ago (by Clock), once at start and then every PruneEvery (default 1h, real
	// time). A pruned job's Key can be enqueued again, so keep Retention longer
	// than any window in which a key may be re-submitted. 0 keeps done jobs.
	Retention  time.Duration
	PruneEvery time.Duration
	// Observe, if set, is called after every run with its outcome — one of
	// Outcome* — and the handler's duration and error (see Metrics). Run calls it
	// from its worker goroutines, so it must be safe for concurrent use.
	Observe func(j *Job, outcome string, took time.Duration, err error)

	// ID names this runner as the lease holder (locked_by); default host-pid-random.
	ID string
	// RealClock is the time source of leases; default clock.Real. Tests set it
	// to simulate expired leases.
	RealClock clock.Clock

	once      sync.Once
	initErr   error
	wake      chan struct{}
	kinds     []string
	claimSQL  string
	peekSQL   string
	wakeOnce  sync.Once
	loopMutex sync.Mutex // one Run loop per Runner
}

func (r *Runner) init() error {
	r.once.Do(func() {
		if r.DB == nil {
			r.initErr = errors.New("jobs: Runner.DB is nil")
			return
		}
		if r.Clock == nil {
			r.initErr = errors.New("jobs: Runner.Clock is nil")
			return
		}
		if len(r.Handlers) == 0 {
			r.initErr = errors.New("jobs: Runner has no Handlers")
			return
		}
		if r.Logger == nil {
			r.Logger = slog.New(slog.DiscardHandler)
		}
		if r.RealClock == nil {
			r.RealClock = clock.Real{}
		}
		if r.ID == "" {
			host, _ := os.Hostname()
			b := make([]byte, 4)
			_, _ = rand.Read(b)
			r.ID = fmt.Sprintf("%s-%d-%s", host, os.Getpid(), hex.EncodeToString(b))
		}
		r.wake = make(chan struct{}, 1)
		for k := range r.Handlers {
			r.kinds = append(r.kinds, k)
		}
		sort.Strings(r.kinds)
		r.claimSQL = claimSQL(r.DB.Dialect, len(r.kinds))
		r.peekSQL = peekSQL(len(r.kinds))
	})
	return r.initErr
}

func (r *Runner) workers() int {
	if r.Workers > 0 {
		return r.Workers
	}
	return DefaultWorkers
}

func (r *Runner) poll() time.Duration {
	if r.Poll > 0 {
		return r.Poll
	}
	return DefaultPoll
}

func (r *Runner) lease() time.Duration {
	if r.Lease > 0 {
		return r.Lease
	}
	return DefaultLease
}

func (r *Runner) maxAttempts() int {
	if r.MaxAttempts > 0 {
		return r.MaxAttempts
	}
	return DefaultMaxAttempts
}

// ExponentialBackoff is the default retry delay before jitter: 1s after the
// first attempt, doubling, at most 1h.
func ExponentialBackoff(attempt int) time.Duration {
	if attempt < 1 {
		attempt = 1
	}
	if attempt > 13 { // 2^12 s > 1h
		return maxBackoff
	}
	return min(minBackoff<<(attempt-1), maxBackoff)
}

// defaultBackoff is ExponentialBackoff with ±25% jitter derived from the job id
// and attempt: failures of many jobs at once spread out, yet a run is
// reproducible under a virtual clock.
func defaultBackoff(id int64, attempt int) time.Duration {
	h := fnv.New64a()
	fmt.Fprintf(h, "%d/%d", id, attempt)
	frac := float64(h.Sum64()%10001) / 10000 // [0,1]
	d := time.Duration(float64(ExponentialBackoff(attempt)) * (0.75 + 0.5*frac))
	return min(max(d, minBackoff), maxBackoff)
}

func (r *Runner) backoff(c *claimed) time.Duration {
	if r.Backoff != nil {
		return max(r.Backoff(c.Kind, c.Attempt), 0)
	}
	return defaultBackoff(c.ID, c.Attempt)
}

// Wake makes Run poll now (call it after committing new work that is due).
func (r *Runner) Wake() {
	if err := r.init(); err != nil {
		return
	}
	select {
	case r.wake <- struct{}{}:
	default:
	}
}

// Run claims and runs due jobs until ctx ends, with up to Workers handlers at a
// time, polling every Poll (and at once after Wake, after a handler finishes
// while work is waiting, or when a virtual Clock moves). On return every handler
// it started has finished; handlers interrupted by the shutdown give their job
// back without counting the attempt. Run returns nil when ctx ends.
func (r *Runner) Run(ctx context.Context) error {
	if err := r.init(); err != nil {
		return err
	}
	if !r.loopMutex.TryLock() {
		return errors.New("jobs: Runner.Run is already running")
	}
	defer r.loopMutex.Unlock()
	if v, ok := r.Clock.(*clock.Virtual); ok {
		r.wakeOnce.Do(func() { v.OnChange(func(time.Time) { r.Wake() }) })
	}
	var wg sync.WaitGroup
	defer wg.Wait()
	slots := make(chan struct{}, r.workers())
	finished := make(chan struct{}, 1)
	timer := time.NewTimer(r.poll())
	defer timer.Stop()
	claimFailures := 0
	var nextPrune time.Time // real time
	for {
		if r.Retention > 0 && !time.Now().Before(nextPrune) {
			r.prune(ctx)
			every := r.PruneEvery
			if every <= 0 {
				every = time.Hour
			}
			nextPrune = time.Now().Add(every)
		}
		if free := cap(slots) - len(slots); free > 0 && ctx.Err() == nil {
			js, err := r.claim(ctx, r.Clock.Now(), free)
			switch {
			case err != nil && ctx.Err() != nil:
				return nil
			case err != nil:
				claimFailures++
				if claimFailures == 1 || claimFailures%50 == 0 {
					r.Logger.Error("jobs: claim failed", "runner", r.ID, "failures", claimFailures, "err", err)
				}
			default:
				if claimFailures > 0 {
					r.Logger.Info("jobs: claim recovered", "runner", r.ID, "after_failures", claimFailures)
				}
				claimFailures = 0
			}
			for _, c := range js {
				slots <- struct{}{}
				wg.Add(1)
				go func() {
					defer wg.Done()
					r.execute(ctx, c)
					<-slots
					select {
					case finished <- struct{}{}:
					default:
					}
				}()
			}
		}
		timer.Reset(r.poll())
		select {
		case <-ctx.Done():
			return nil
		case <-r.wake:
		case <-finished:
		case <-timer.C:
		}
	}
}

// RunDue runs, one at a time in due order, every job due at Clock.Now() —
// including jobs that handlers enqueue or reschedule to be due by then — until
// none is left, and returns how many runs it made. Jobs leased by another
// runner are skipped. A handler's failure is recorded on its job, not returned.
func (r *Runner) RunDue(ctx context.Context) (int, error) {
	if err := r.init(); err != nil {
		return 0, err
	}
	n := 0
	for {
		if err := ctx.Err(); err != nil {
			return n, err
		}
		js, err := r.claim(ctx, r.Clock.Now(), 1)
		if err != nil {
			return n, err
		}
		if len(js) == 0 {
			return n, nil
		}
		for _, c := range js {
			r.execute(ctx, c)
			n++
		}
	}
}

// claimed is a job leased by this runner; (ID, Attempt) identifies the lease.
type claimed struct {
	Job
}

func claimSQL(d db.Dialect, nKinds int) string {
	ph := make([]string, nKinds)
	for i := range ph {
		ph[i] = fmt.Sprintf("$%d", 7+i)
	}
	lock := ""
	if d == db.Postgres {
		lock = " FOR UPDATE SKIP LOCKED"
	}
	return `UPDATE jobs SET attempt = attempt + 1, locked_by = $1, locked_until = $2, updated_at = $3
WHERE id IN (
	SELECT id FROM jobs
	WHERE state = 'pending' AND due_at <= $4 AND (locked_until IS NULL OR locked_until < $5)
		AND kind IN (` + strings.Join(ph, ", ") + `)
	ORDER BY due_at, id
	LIMIT $6` + lock + `)
RETURNING id, kind, COALESCE(unique_key, ''), payload, attempt, due_at, created_at, last_error`
}

// peekSQL finds whether anything is claimable, without locking.
func peekSQL(nKinds int) string {
	ph := make([]string, nKinds)
	for i := range ph {
		ph[i] = fmt.Sprintf("$%d", 3+i)
	}
	return `SELECT id FROM jobs
WHERE state = 'pending' AND due_at <= $1 AND (locked_until IS NULL OR locked_until < $2)
	AND kind IN (` + strings.Join(ph, ", ") + `)
ORDER BY due_at, id LIMIT 1`
}

// claim leases up to n jobs due at now, in due order.
func (r *Runner) claim(ctx context.Context, now time.Time, n int) ([]claimed, error) {
	realNow := r.RealClock.Now()
	if r.DB.Dialect == db.SQLite {
		// An idle poll must not take SQLite's single write lock: look first.
		peek := []any{now.UnixMilli(), realNow.UnixMilli()}
		for _, k := range r.kinds {
			peek = append(peek, k)
		}
		var id int64
		err := r.DB.QueryRow(ctx, r.peekSQL, peek...).Scan(&id)
		if errors.Is(err, sql.ErrNoRows) {
			return nil, nil
		}
		if err != nil {
			return nil, fmt.Errorf("jobs: claim: %w", err)
		}
	}
	args := []any{r.ID, realNow.Add(r.lease()).UnixMilli(), now.UnixMilli(), now.UnixMilli(), realNow.UnixMilli(), n}
	for _, k := range r.kinds {
		args = append(args, k)
	}
	var out []claimed
	err := r.DB.Tx(ctx, func(tx *db.Tx) error {
		out = out[:0]
		rows, err := tx.Query(ctx, r.claimSQL, args...)
		if err != nil {
			return err
		}
		defer rows.Close()
		for rows.Next() {
			var c claimed
			var due, created int64
			if err := rows.Scan(&c.ID, &c.Kind, &c.Key, &c.Payload, &c.Attempt, &due, &created, &c.LastError); err != nil {
				return err
			}
			c.DueAt, c.CreatedAt, c.State = ms(due), ms(created), StatePending
			out = append(out, c)
		}
		return rows.Err()
	})
	if err != nil {
		return nil, fmt.Errorf("jobs: claim: %w", err)
	}
	slices.SortFunc(out, func(a, b claimed) int {
		if c := a.DueAt.Compare(b.DueAt); c != 0 {
			return c
		}
		return cmp.Compare(a.ID, b.ID)
	})
	return out, nil
}

// execute runs c's handler, renewing the lease while it runs, and records the result.
func (r *Runner) execute(ctx context.Context, c claimed) {
	hctx, cancel := context.WithCancel(ctx)
	if r.Timeout > 0 {
		hctx, cancel = context.WithTimeout(ctx, r.Timeout)
	}
	defer cancel()
	hbDone := make(chan struct{})
	go func() {
		defer close(hbDone)
		r.heartbeat(hctx, c, cancel)
	}()
	job := c.Job
	start := time.Now()
	err := r.call(hctx, &job)
	took := time.Since(start)
	cancel()
	<-hbDone
	outcome := r.finish(ctx, c, err)
	if r.Observe != nil {
		r.Observe(&job, outcome, took, err)
	}
}

func (r *Runner) call(ctx context.Context, j *Job) (err error) {
	h := r.Handlers[j.Kind]
	defer func() {
		if p := recover(); p != nil {
			err = fmt.Errorf("handler panicked: %v\n%s", p, debug.Stack())
		}
	}()
	return h(ctx, j)
}

// heartbeat extends c's lease every third of Lease until ctx ends. If the lease
// turns out to be lost (another runner took the job), it cancels the handler.
func (r *Runner) heartbeat(ctx context.Context, c claimed, cancel context.CancelFunc) {
	every := r.lease() / 3
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		res, err := r.DB.Exec(ctx, `UPDATE jobs SET locked_until = $1
WHERE id = $2 AND locked_by = $3 AND attempt = $4 AND state = 'pending'`,
			r.RealClock.Now().Add(r.lease()).UnixMilli(), c.ID, r.ID, c.Attempt)
		if err != nil {
			if ctx.Err() == nil {
				r.Logger.Warn("jobs: lease renewal failed", "job", c.ID, "kind", c.Kind, "err", err)
			}
			continue
		}
		if n, _ := res.RowsAffected(); n == 0 {
			r.Logger.Warn("jobs: lease lost while running; cancelling handler", "job", c.ID, "kind", c.Kind, "attempt", c.Attempt)
			cancel()
			return
		}
	}
}

// finish records the outcome of one run, only if this runner still holds the lease.
func (r *Runner) finish(ctx context.Context, c claimed, herr error) string {
	// Record the result even if ctx was cancelled meanwhile.
	fctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), resultTimeout)
	defer cancel()
	now := r.Clock.Now()
	nowMS := now.UnixMilli()
	var (
		q       string
		args    []any
		outcome string
		log     = r.Logger.With("job", c.ID, "kind", c.Kind, "attempt", c.Attempt)
	)
	var retryAt *retryAtError
	var perm *permanentError
	switch {
	case herr == nil:
		outcome = OutcomeDone
		q = `UPDATE jobs SET state = 'done', locked_by = NULL, locked_until = NULL, completed_at = $1, updated_at = $1`
		args = []any{nowMS}
	case ctx.Err() != nil:
		// Shutdown interrupted the handler: give the job back untouched.
		outcome = OutcomeReleased
		q = `UPDATE jobs SET attempt = attempt - 1, locked_by = NULL, locked_until = NULL, updated_at = $1`
		args = []any{nowMS}
	case errors.As(herr, &perm):
		outcome = OutcomeDead
		q = `UPDATE jobs SET state = 'dead', last_error = $2, locked_by = NULL, locked_until = NULL, completed_at = $1, updated_at = $1`
		args = []any{nowMS, truncate(herr.Error())}
	case errors.As(herr, &retryAt):
		outcome = OutcomeRescheduled
		due := max(retryAt.at.UnixMilli(), nowMS+1)
		msg := ""
		if retryAt.err != nil {
			msg = truncate(retryAt.err.Error())
		}
		q = `UPDATE jobs SET due_at = $2, last_error = $3, locked_by = NULL, locked_until = NULL, updated_at = $1`
		args = []any{nowMS, due, msg}
	case c.Attempt >= r.maxAttempts():
		outcome = OutcomeDead
		q = `UPDATE jobs SET state = 'dead', last_error = $2, locked_by = NULL, locked_until = NULL, completed_at = $1, updated_at = $1`
		args = []any{nowMS, truncate(herr.Error())}
	default:
		outcome = OutcomeRetry
		due := max(now.Add(r.backoff(&c)).UnixMilli(), nowMS+1)
		q = `UPDATE jobs SET due_at = $2, last_error = $3, locked_by = NULL, locked_until = NULL, updated_at = $1`
		args = []any{nowMS, due, truncate(herr.Error())}
	}
	// Only the lease holder may write the result.
	n := len(args)
	q += fmt.Sprintf(" WHERE id = $%d AND locked_by = $%d AND attempt = $%d AND state = 'pending'", n+1, n+2, n+3)
	args = append(args, c.ID, r.ID, c.Attempt)
	res, err := r.DB.Exec(fctx, q, args...)
	if err != nil {
		// The lease will expire and the job run again.
		log.Error("jobs: recording result failed", "outcome", outcome, "handler_err", herr, "err", err)
		return OutcomeUnrecorded
	}
	if k, _ := res.RowsAffected(); k == 0 {
		log.Warn("jobs: lease lost before the result was recorded; result discarded", "outcome", outcome, "handler_err", herr)
		return OutcomeLeaseLost
	}
	switch outcome {
	case OutcomeDone:
		log.Debug("jobs: done")
	case OutcomeDead:
		log.Error("jobs: dead", "err", herr)
	case OutcomeReleased:
		log.Info("jobs: released on shutdown")
	default:
		log.Warn("jobs: failed, will retry", "outcome", outcome, "err", herr)
	}
	return outcome
}

// Outcomes of a run, as passed to Runner.Observe.
const (
	OutcomeDone        = "done"        // handler returned nil
	OutcomeRetry       = "retry"       // failed; pending after backoff
	OutcomeRescheduled = "rescheduled" // RetryAt
	OutcomeDead        = "dead"        // Permanent, or MaxAttempts reached
	OutcomeReleased    = "released"    // interrupted by shutdown, given back
	OutcomeLeaseLost   = "lease_lost"  // another runner holds the job now; result discarded
	OutcomeUnrecorded  = "unrecorded"  // the result could not be written; the lease will expire
)

func truncate(s string) string {
	if len(s) <= maxErrorLen {
		return s
	}
	s = s[:maxErrorLen]
	for len(s) > 0 && !utf8.ValidString(s) {
		s = s[:len(s)-1]
	}
	return s + "…"
}

// NextDue returns the earliest due time of a pending job of a kind this Runner
// handles (ok=false if none) — what a virtual-clock driver should step to next.
// Unlike the package-level NextDue it ignores jobs no handler here would run.
// A job currently leased by a worker counts (it is still pending).
func (r *Runner) NextDue(ctx context.Context) (time.Time, bool, error) {
	if err := r.init(); err != nil {
		return time.Time{}, false, err
	}
	ph := make([]string, len(r.kinds))
	args := make([]any, len(r.kinds))
	for i, k := range r.kinds {
		ph[i] = fmt.Sprintf("$%d", i+1)
		args[i] = k
	}
	var due int64
	err := r.DB.QueryRow(ctx, `SELECT due_at FROM jobs WHERE state = 'pending' AND kind IN (`+strings.Join(ph, ", ")+`)
ORDER BY due_at, id LIMIT 1`, args...).Scan(&due)
	if errors.Is(err, sql.ErrNoRows) {
		return time.Time{}, false, nil
	}
	if err != nil {
		return time.Time{}, false, fmt.Errorf("jobs: next due: %w", err)
	}
	return ms(due), true, nil
}

func (r *Runner) prune(ctx context.Context) {
	n, err := Prune(ctx, r.DB, r.Clock.Now().Add(-r.Retention))
	switch {
	case err != nil && ctx.Err() == nil:
		r.Logger.Error("jobs: prune failed", "err", err)
	case n > 0:
		r.Logger.Info("jobs: pruned done jobs", "count", n, "retention", r.Retention)
	}
}
