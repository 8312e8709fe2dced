package db

import (
	"context"
	"database/sql"
	"strings"
	"sync"
)

// stmtCache keeps one prepared *sql.Stmt per query text (SQLite).
//
// modernc.org/sqlite compiles a statement every time one is run from its text;
// a database/sql Stmt is compiled once per pooled connection and reused, also
// inside transactions (Tx.StmtContext finds the connection's copy). Parsing
// was the largest single cost of a create on SQLite (docs/performance.md).
// Queries are the constant strings of souk's code; texts built at run time
// (IN lists, filters) may be many, so the cache stops growing at
// maxCachedStmts and further texts are run unprepared. PostgreSQL needs none
// of this: pgx caches prepared statements per connection itself.
type stmtCache struct {
	db      *sql.DB
	mu      sync.RWMutex
	m       map[string]*sql.Stmt
	pending map[string]bool
	closed  bool
	// ctx ends when the cache closes, so that a preparation waiting for a
	// connection gives up; inflight counts the preparations running, which
	// close waits for: a connection they hold would otherwise outlive
	// DB.Close (and keep the database files open after it returns).
	ctx      context.Context
	cancel   context.CancelFunc
	inflight sync.WaitGroup
}

const maxCachedStmts = 1024

func newStmtCache(d *sql.DB) *stmtCache {
	ctx, cancel := context.WithCancel(context.Background())
	return &stmtCache{db: d, m: map[string]*sql.Stmt{}, pending: map[string]bool{}, ctx: ctx, cancel: cancel}
}

// get returns the prepared statement of q, or nil when there is none yet
// (the caller then runs q from its text). On a miss it prepares q in the
// background: preparing needs a pooled connection, and a caller inside a
// transaction holds one already, so waiting for another could deadlock a
// full pool. Scripts and texts beyond maxCachedStmts are never cached.
func (c *stmtCache) get(q string) *sql.Stmt {
	if c == nil {
		return nil
	}
	c.mu.RLock()
	st, ok := c.m[q]
	c.mu.RUnlock()
	if ok {
		return st
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if st, ok := c.m[q]; ok || c.closed || len(c.m)+len(c.pending) >= maxCachedStmts || c.pending[q] || strings.Contains(q, ";") {
		return st
	}
	c.pending[q] = true
	c.inflight.Add(1)
	go c.prepare(q)
	return nil
}

func (c *stmtCache) prepare(q string) {
	defer c.inflight.Done()
	st, err := c.db.PrepareContext(c.ctx, q)
	c.mu.Lock()
	defer c.mu.Unlock()
	delete(c.pending, q)
	if err != nil {
		// Not cached; running q reports the error. A failure from a
		// missing table (before a migration) is tried again next time.
		return
	}
	if c.closed {
		_ = st.Close()
		return
	}
	c.m[q] = st
}

func (c *stmtCache) close() {
	if c == nil {
		return
	}
	// A preparation still in flight is cancelled and waited for; it closes
	// its statement itself when it sees the cache closed.
	c.mu.Lock()
	c.closed = true
	c.mu.Unlock()
	c.cancel()
	c.inflight.Wait()
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, st := range c.m {
		_ = st.Close()
	}
	clear(c.m)
}
