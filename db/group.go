package db

import (
	"context"
	"errors"
	"fmt"
	"sync"
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
	db       *DB
	maxBatch int
	reqs     chan *groupReq
	stop     chan struct{}
	wg       sync.WaitGroup
	mu       sync.RWMutex // held for reading while enqueueing; Close takes it to stop new work
	closed   bool
}

type groupReq struct {
	ctx   context.Context
	fn    func(tx *Tx) error
	done  chan error
	ok    bool // fn succeeded inside the batch
	sent  bool // done has been answered
	again bool // fn failed with a transient error: run it alone after the batch
}

func (r *groupReq) answer(err error) {
	r.sent = true
	r.done <- err
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
	if maxBatch <= 0 {
		maxBatch = 128
	}
	g := &Group{db: d, maxBatch: maxBatch, reqs: make(chan *groupReq, 4*maxBatch), stop: make(chan struct{})}
	for i := 0; i < committers; i++ {
		g.wg.Add(1)
		go g.loop()
	}
	return g
}

// ErrGroupClosed is returned by Do after Close.
var ErrGroupClosed = errors.New("db: group closed")

// Do runs fn in a shared transaction and returns once that transaction has
// committed (nil) or fn's own error. fn must only touch the database through
// tx and must be safe to run again.
func (g *Group) Do(ctx context.Context, fn func(tx *Tx) error) error {
	r := &groupReq{ctx: ctx, fn: fn, done: make(chan error, 1)}
	g.mu.RLock()
	if g.closed {
		g.mu.RUnlock()
		return ErrGroupClosed
	}
	select {
	case g.reqs <- r:
		g.mu.RUnlock()
	case <-ctx.Done():
		g.mu.RUnlock()
		return ctx.Err()
	}
	// Once queued, the request is always answered: a caller that stops waiting
	// must not be left unsure whether its work committed, so wait for the batch.
	return <-r.done
}

// Close stops the committers after the queued work is done.
func (g *Group) Close() {
	g.mu.Lock()
	if !g.closed {
		g.closed = true
		close(g.stop)
	}
	g.mu.Unlock()
	g.wg.Wait()
}

func (g *Group) loop() {
	defer g.wg.Done()
	for {
		var first *groupReq
		select {
		case first = <-g.reqs:
		case <-g.stop:
			// drain what is queued, then stop
			for {
				select {
				case r := <-g.reqs:
					g.run([]*groupReq{r})
				default:
					return
				}
			}
		}
		batch := []*groupReq{first}
	fill:
		for len(batch) < g.maxBatch {
			select {
			case r := <-g.reqs:
				batch = append(batch, r)
			default:
				break fill
			}
		}
		g.run(batch)
	}
}

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
