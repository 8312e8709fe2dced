package db

import (
	"context"
	"errors"
	"fmt"
)

// Group commits the small write transactions of concurrent callers together.
//
// Every durable commit waits for an fsync (SQLite synchronous=FULL, PostgreSQL
// synchronous_commit=on); when each request commits alone, a busy server spends
// its time waiting for the disk one request at a time. A Group collects the
// functions submitted while a commit is in flight and runs the next batch of
// them in one transaction, each inside its own SAVEPOINT: a function that fails
// rolls back only its own work and gets its own error, the others commit. Every
// caller returns only after the commit that holds its work is durable, so the
// guarantee of Tx (the answer follows the commit) is kept and the cost of the
// fsync is shared.
//
// If the batch's commit itself fails, each function that had succeeded is run
// again alone through Tx (functions must be re-runnable, as for Tx), so one bad
// batch never fails a caller that would have succeeded alone.
type Group struct {
	db *DB
	b  *Batcher[*groupReq] // queueing and batching
}

type groupReq struct {
	ctx   context.Context
	fn    func(tx *Tx) error
	err   error
	ok    bool // fn succeeded inside the batch
	sent  bool // err is final
	again bool // fn failed with a transient error: run it alone after the batch
}

func (r *groupReq) answer(err error) {
	r.sent = true
	r.err = err
}

// NewGroup starts a Group with the given number of committers (concurrent
// batch transactions; 1 is right for SQLite, which has one writer, 2–4 for
// PostgreSQL) and batch size limit (default 128 when ≤ 0). Close stops it.
func (d *DB) NewGroup(committers, maxBatch int) *Group {
	if committers <= 0 {
		committers = 1
		if d.Dialect == Postgres {
			committers = 3
		}
	}
	g := &Group{db: d}
	g.b = NewBatcher(committers, maxBatch, g.run)
	return g
}

// ErrGroupClosed is returned by Do after Close (and by Batcher.Do).
var ErrGroupClosed = errors.New("db: group closed")

// Do runs fn in a shared transaction and returns once that transaction has
// committed (nil) or fn's own error. fn must only touch the database through
// tx and must be safe to run again. Once queued, the work always runs: a
// caller that stops waiting must not be left unsure whether its work
// committed, so Do waits for the batch.
func (g *Group) Do(ctx context.Context, fn func(tx *Tx) error) error {
	r := &groupReq{ctx: ctx, fn: fn}
	if err := g.b.Do(ctx, r); err != nil {
		return err
	}
	return r.err
}

// Close stops the committers after the queued work is done.
func (g *Group) Close() { g.b.Close() }

func (g *Group) run(batch []*groupReq) {
	if len(batch) == 1 {
		r := batch[0]
		r.answer(g.alone(r))
		return
	}
	bg := context.Background()
	err := g.db.txOnce(bg, nil, func(tx *Tx) error {
		// The functions' statements run on a context that cannot be
		// cancelled: a caller that gives up must not interrupt the shared
		// transaction (its answer waits for the batch anyway).
		tx.fixed = bg
		for _, r := range batch {
			if err := r.ctx.Err(); err != nil {
				r.answer(err)
				continue
			}
			// One savepoint name serves every function: each is released
			// or rolled back before the next begins.
			if _, err := tx.Exec(bg, "SAVEPOINT souk_g"); err != nil {
				return fmt.Errorf("db: group savepoint: %w", err)
			}
			if ferr := g.call(r, tx); ferr != nil {
				if _, err := tx.Exec(bg, "ROLLBACK TO SAVEPOINT souk_g"); err != nil {
					return fmt.Errorf("db: group rollback to savepoint: %w (after %w)", err, ferr)
				}
				if IsRetryable(ferr) {
					r.again = true
				} else {
					r.answer(ferr)
				}
				continue
			}
			if _, err := tx.Exec(bg, "RELEASE SAVEPOINT souk_g"); err != nil {
				return fmt.Errorf("db: group release savepoint: %w", err)
			}
			r.ok = true
		}
		return nil
	})
	for _, r := range batch {
		switch {
		case r.sent:
			// answered with its own error; its work was rolled back
		case r.again:
			r.answer(g.alone(r))
		case err == nil:
			r.answer(nil)
		default:
			// The shared transaction failed (conflict, deadlock, lost
			// connection) and nothing of it committed: run the work again
			// alone, including work the batch never reached.
			r.answer(g.alone(r))
		}
	}
}

// alone runs r's work in a transaction of its own.
func (g *Group) alone(r *groupReq) error {
	return g.db.Tx(r.ctx, func(tx *Tx) error { return g.call(r, tx) })
}

// call runs fn, turning a panic into an error so that one caller cannot take
// the batch down.
func (g *Group) call(r *groupReq, tx *Tx) (err error) {
	defer func() {
		if p := recover(); p != nil {
			err = fmt.Errorf("db: group: panic in transaction function: %v", p)
		}
	}()
	return r.fn(tx)
}
