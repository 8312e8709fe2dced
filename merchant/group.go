package merchant

import (
	"context"
	"database/sql"
	"fmt"
	"time"

	"github.com/soukhq/souk/db"
	"github.com/soukhq/souk/kg"
)

// Group commit on the request path.
//
// Every write a basic-interface request makes goes through m.do: on SQLite a
// db.Group, so that concurrent requests share one durable commit, each in its
// own savepoint, and each answer still follows the commit of its own work; on
// PostgreSQL a transaction of its own (see newRequestGroup). To
// keep round trips down, the request's nonce is not inserted on its own: it
// rides in the request's first write transaction (writeTx), so that a
// replayed request changes nothing, or, for a request that writes nothing
// (queryInstance, refused requests), in the transaction of its audit record.

// nonceClaim is the nonce of the request being served, until it is stored.
type nonceClaim struct {
	nonce  string
	at     time.Time
	stored bool // committed with an earlier write of this request
}

type nonceKey struct{}

func withNonceClaim(ctx context.Context, c *nonceClaim) context.Context {
	return context.WithValue(ctx, nonceKey{}, c)
}

func nonceClaimFrom(ctx context.Context) *nonceClaim {
	c, _ := ctx.Value(nonceKey{}).(*nonceClaim)
	return c
}

var errReplay = &kg.AuthError{Reason: "nonce was already used (replayed request)"}

// insertNonce records c's nonce in tx; errReplay when it was seen before. The
// primary key makes the check hold across replicas sharing the database.
func insertNonce(ctx context.Context, tx *db.Tx, c *nonceClaim) error {
	res, err := tx.Exec(ctx, `INSERT INTO merchant_nonces (nonce, seen_at) VALUES ($1, $2) ON CONFLICT (nonce) DO NOTHING`, c.nonce, c.at.UnixMilli())
	if err != nil {
		return fmt.Errorf("nonce cache: %w", err)
	}
	n, err := res.RowsAffected()
	if err != nil {
		return fmt.Errorf("nonce cache: %w", err)
	}
	if n != 1 {
		return errReplay
	}
	return nil
}

// writeTx runs fn through m.do (group-committed on SQLite; fn must only
// touch the database and be safe to run again). When ctx carries a
// request nonce not stored yet, it is inserted first in the same savepoint: a
// replay fails with 000001 before fn runs, and fn's work and the nonce commit
// or roll back together.
func (m *Merchant) writeTx(ctx context.Context, fn func(tx *db.Tx) error) error {
	c := nonceClaimFrom(ctx)
	if c == nil || c.stored || c.nonce == "" {
		return m.do(ctx, fn)
	}
	err := m.do(ctx, func(tx *db.Tx) error {
		if err := insertNonce(ctx, tx, c); err != nil {
			return err
		}
		return fn(tx)
	})
	if err == nil {
		c.stored = true
	}
	return err
}

// finishRequest stores the audit record of a basic-interface call and, when
// no write of the request carried it, its nonce, in one group-committed
// transaction. It returns errReplay when the nonce turns out to be a replay
// (the request then wrote nothing: every write stores the nonce first); the
// audit record then says 000001. The record is written even when the caller
// gave up (ctx's cancellation is dropped).
func (m *Merchant) finishRequest(ctx context.Context, c *nonceClaim, auditFor func(replay bool) auditEntry) error {
	ctx = context.WithoutCancel(ctx)
	it := &auditItem{ctx: ctx, auditFor: auditFor}
	if c != nil && !c.stored && c.nonce != "" {
		it.claim = c
	}
	if err := m.audits.Do(ctx, it); err == nil {
		if it.replay {
			return errReplay
		}
		return it.err
	}
	// Closed (the server is stopping): alone.
	return m.finishRequestAlone(ctx, c, auditFor)
}

// finishRequestAlone is finishRequest outside a batch.
func (m *Merchant) finishRequestAlone(ctx context.Context, c *nonceClaim, auditFor func(replay bool) auditEntry) error {
	if m.group == nil && (c == nil || c.stored || c.nonce == "") {
		// One statement, committed on its own: no BEGIN and COMMIT round
		// trips (PostgreSQL).
		return insertAudits(ctx, m.db, []auditEntry{auditFor(false)})
	}
	var replay bool
	err := m.do(ctx, func(tx *db.Tx) error {
		replay = false
		if c != nil && !c.stored && c.nonce != "" {
			if err := insertNonce(ctx, tx, c); err == errReplay {
				replay = true
			} else if err != nil {
				return err
			}
		}
		return insertAudits(ctx, tx, []auditEntry{auditFor(replay)})
	})
	if err != nil {
		return err
	}
	if c != nil {
		c.stored = true
	}
	if replay {
		return errReplay
	}
	return nil
}

// execer is a *db.DB or a *db.Tx.
type execer interface {
	Exec(ctx context.Context, query string, args ...any) (sql.Result, error)
}

// newRequestGroup is the group committer of the request path. SQLite has a
// single writer whose every commit waits for an fsync: one committer, up to
// 128 functions a batch. PostgreSQL gets none (nil): every statement is a
// round trip, a batch runs its functions one after the other with two more
// round trips each (savepoints), and PostgreSQL already shares one WAL flush
// among the transactions that commit at the same time; measured, parallel
// transactions of their own were faster there (docs/performance.md).
func newRequestGroup(d *db.DB) *db.Group {
	if d.Dialect == db.Postgres {
		return nil
	}
	return d.NewGroup(1, 128)
}

// do runs fn in a group-committed transaction, or in one of its own without
// a group.
func (m *Merchant) do(ctx context.Context, fn func(tx *db.Tx) error) error {
	if m.group == nil {
		return m.db.Tx(ctx, fn)
	}
	return m.group.Do(ctx, fn)
}
