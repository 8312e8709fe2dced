-- Outbox of hand-off events: every state change on the merchant side (and the
-- kit directory) writes one row in the transaction of the change. A job of kind
-- handoff.deliver then delivers it at least once to the vendor's application.
CREATE TABLE handoff_events (
    event_id     TEXT PRIMARY KEY,
    type         TEXT NOT NULL,
    subject      TEXT NOT NULL,
    test_flag    INTEGER NOT NULL DEFAULT 0,
    data         TEXT NOT NULL,
    created_at   BIGINT NOT NULL,
    state        TEXT NOT NULL DEFAULT 'pending',  -- pending | delivered | dead
    attempts     INTEGER NOT NULL DEFAULT 0,
    last_error   TEXT NOT NULL DEFAULT '',
    lease_until  BIGINT NOT NULL DEFAULT 0,
    delivered_at BIGINT NOT NULL DEFAULT 0,
    delivered_to TEXT NOT NULL DEFAULT '',
    replays      INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX handoff_events_state ON handoff_events (state, created_at);
CREATE INDEX handoff_events_subject ON handoff_events (subject, created_at);
