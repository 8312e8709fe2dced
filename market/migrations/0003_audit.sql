-- Audit log: one row per management action (admin API call) and per inbound
-- open-API call (Query Order, usage push). Never secrets, never bodies.
CREATE TABLE market_audit (
    id          {{AUTOID}},
    at          BIGINT NOT NULL,            -- market clock, Unix ms
    kind        TEXT NOT NULL,              -- admin | openapi
    actor       TEXT NOT NULL,              -- admin:<token id> | bad-token:<token id> | anonymous | ak:<AK> | seller:<id>
    method      TEXT NOT NULL,
    route       TEXT NOT NULL,              -- the matched route pattern
    path        TEXT NOT NULL,
    status      INTEGER NOT NULL,           -- HTTP status answered
    result      TEXT NOT NULL DEFAULT '',   -- open APIs: resultCode; admin: the error code, if any
    latency_us  BIGINT NOT NULL,            -- real time spent serving the request
    targets     TEXT NOT NULL DEFAULT '',   -- JSON object of the ids the call named
    remote      TEXT NOT NULL DEFAULT ''
);
CREATE INDEX market_audit_at ON market_audit(at, id);
