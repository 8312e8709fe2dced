-- souk merchant: instances and everything the basic interfaces record.
-- Timestamps are BIGINT Unix milliseconds read from the injected clock.

CREATE TABLE merchant_instances (
    instance_id   TEXT PRIMARY KEY,
    order_id      TEXT NOT NULL,
    order_line_id TEXT NOT NULL,
    business_id   TEXT NOT NULL,
    test_flag     INTEGER NOT NULL DEFAULT 0,
    -- provisioning: awaiting_order → provisioning → ready
    phase         TEXT NOT NULL,
    -- lifecycle: NORMAL | FROZEN | RELEASED
    status        TEXT NOT NULL DEFAULT 'NORMAL',
    alias_of      TEXT NOT NULL DEFAULT '',
    product_id    TEXT NOT NULL DEFAULT '',
    sku_code      TEXT NOT NULL DEFAULT '',
    charging_mode TEXT NOT NULL DEFAULT '',
    order_json    TEXT NOT NULL DEFAULT '',
    app_info      TEXT NOT NULL DEFAULT '',
    usage_info    TEXT NOT NULL DEFAULT '',
    expire_at     BIGINT NOT NULL DEFAULT 0,
    created_at    BIGINT NOT NULL,
    updated_at    BIGINT NOT NULL,
    ready_at      BIGINT NOT NULL DEFAULT 0,
    released_at   BIGINT NOT NULL DEFAULT 0
);
CREATE INDEX merchant_instances_order ON merchant_instances (order_id);

-- Idempotency keys of newInstance: "line|<orderId>|<orderLineId>" always, and
-- "product|<orderId>|<productId>" for pay-per-use orders. The primary key is
-- what makes concurrent retries, across replicas, converge on one instance.
CREATE TABLE merchant_instance_keys (
    idem_key    TEXT PRIMARY KEY,
    instance_id TEXT NOT NULL,
    created_at  BIGINT NOT NULL
);

-- Idempotent operations other than create: refresh (orderId+orderLineId+scene),
-- upgrade (orderId), order notifications (orderId+orderLineId), change checks.
CREATE TABLE merchant_operations (
    op_key      TEXT PRIMARY KEY,
    activity    TEXT NOT NULL,
    instance_id TEXT NOT NULL DEFAULT '',
    order_id    TEXT NOT NULL DEFAULT '',
    order_line_id TEXT NOT NULL DEFAULT '',
    test_flag   INTEGER NOT NULL DEFAULT 0,
    state       TEXT NOT NULL DEFAULT 'done',   -- awaiting_order | done
    request     TEXT NOT NULL DEFAULT '',
    order_json  TEXT NOT NULL DEFAULT '',
    result      TEXT NOT NULL DEFAULT '',
    created_at  BIGINT NOT NULL,
    updated_at  BIGINT NOT NULL
);
CREATE INDEX merchant_operations_instance ON merchant_operations (instance_id);

-- Nonces of verified requests (replay protection shared by every replica).
CREATE TABLE merchant_nonces (
    nonce   TEXT PRIMARY KEY,
    seen_at BIGINT NOT NULL
);
CREATE INDEX merchant_nonces_seen ON merchant_nonces (seen_at);

-- Usage records of pay-per-use instances, pushed to the marketplace.
CREATE TABLE merchant_usage (
    metering_sn   TEXT PRIMARY KEY,
    instance_id   TEXT NOT NULL,
    usage_value   TEXT NOT NULL,
    begin_at      BIGINT NOT NULL,
    end_at        BIGINT NOT NULL,
    record_at     BIGINT NOT NULL,
    relate_pkg_instance TEXT NOT NULL DEFAULT '',
    test_flag     INTEGER NOT NULL DEFAULT 0,
    pushed_at     BIGINT NOT NULL DEFAULT 0,
    push_result   TEXT NOT NULL DEFAULT '',
    created_at    BIGINT NOT NULL
);
CREATE INDEX merchant_usage_pending ON merchant_usage (pushed_at, created_at);

-- One row per inbound call (basic interfaces and management API). Never a
-- secret or a credential.
CREATE TABLE audit_log (
    id            {{AUTOID}},
    at            BIGINT NOT NULL,
    source        TEXT NOT NULL,          -- kg | api
    remote        TEXT NOT NULL DEFAULT '',
    activity      TEXT NOT NULL DEFAULT '',
    result_code   TEXT NOT NULL DEFAULT '',
    key_index     INTEGER NOT NULL DEFAULT -1,
    instance_id   TEXT NOT NULL DEFAULT '',
    order_id      TEXT NOT NULL DEFAULT '',
    order_line_id TEXT NOT NULL DEFAULT '',
    business_id   TEXT NOT NULL DEFAULT '',
    test_flag     INTEGER NOT NULL DEFAULT 0,
    latency_ms    BIGINT NOT NULL DEFAULT 0,
    message       TEXT NOT NULL DEFAULT ''
);
CREATE INDEX audit_log_at ON audit_log (at);
