-- Durable scheduled work. Times: due_at, created_at, updated_at, completed_at are
-- Unix ms from the injected clock (virtual in the market); locked_until is real-time
-- Unix ms (leases protect against crashed workers, whatever the virtual time).
CREATE TABLE jobs (
	id           INTEGER PRIMARY KEY AUTOINCREMENT,
	kind         TEXT    NOT NULL,
	unique_key   TEXT    NULL UNIQUE,
	payload      BLOB    NULL,
	state        TEXT    NOT NULL DEFAULT 'pending' CHECK (state IN ('pending', 'done', 'dead')),
	due_at       BIGINT  NOT NULL,
	attempt      INTEGER NOT NULL DEFAULT 0,
	last_error   TEXT    NOT NULL DEFAULT '',
	locked_by    TEXT    NULL,
	locked_until BIGINT  NULL,
	created_at   BIGINT  NOT NULL,
	updated_at   BIGINT  NOT NULL,
	completed_at BIGINT  NULL
);
-- The poll walks this index from the oldest due pending job: its cost depends on
-- how many jobs are due, not on how many wait in the future or are done.
CREATE INDEX jobs_state_due ON jobs (state, due_at, id);
CREATE INDEX jobs_done_completed ON jobs (completed_at) WHERE state = 'done';
