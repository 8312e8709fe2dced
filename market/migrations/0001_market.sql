-- souk market schema. Timestamps are BIGINT Unix milliseconds read from the
-- injected clock; money is BIGINT cents; JSON is TEXT.

CREATE TABLE market_sellers (
    id          TEXT PRIMARY KEY,
    name        TEXT NOT NULL,
    created_at  BIGINT NOT NULL
);

-- Production addresses (生产地址管理). A product may only use a verified address.
CREATE TABLE market_addresses (
    id           TEXT PRIMARY KEY,
    seller_id    TEXT NOT NULL REFERENCES market_sellers(id),
    url          TEXT NOT NULL,
    verified     INTEGER NOT NULL DEFAULT 0,
    verified_at  BIGINT NOT NULL DEFAULT 0,
    verify_note  TEXT NOT NULL DEFAULT '',
    created_at   BIGINT NOT NULL,
    UNIQUE (seller_id, url)
);

-- Access keys (密钥管理), one per interface type per seller; a key value may
-- not be reused across types.
CREATE TABLE market_access_keys (
    seller_id   TEXT NOT NULL REFERENCES market_sellers(id),
    key_type    TEXT NOT NULL,   -- basic | kit | license | general
    key_id      TEXT NOT NULL,
    secret      TEXT NOT NULL,
    created_at  BIGINT NOT NULL,
    PRIMARY KEY (seller_id, key_type),
    UNIQUE (seller_id, secret),
    UNIQUE (key_id)
);

-- The AK/SK the seller's merchant server signs open-API calls with (APIG).
CREATE TABLE market_credentials (
    ak          TEXT PRIMARY KEY,
    seller_id   TEXT NOT NULL REFERENCES market_sellers(id),
    sk          TEXT NOT NULL,
    created_at  BIGINT NOT NULL
);

CREATE TABLE market_products (
    id                     TEXT PRIMARY KEY,
    seller_id              TEXT NOT NULL REFERENCES market_sellers(id),
    name                   TEXT NOT NULL,
    product_type           TEXT NOT NULL DEFAULT 'SaaS',
    address_id             TEXT NOT NULL REFERENCES market_addresses(id),
    encrypt_type           TEXT NOT NULL DEFAULT '',  -- '' plaintext, '1' AES-256, '2' AES-128
    upgrade_allowed        INTEGER NOT NULL DEFAULT 0,
    renewal_change_allowed INTEGER NOT NULL DEFAULT 0,
    trial_days             INTEGER NOT NULL DEFAULT 0,
    retention_days         INTEGER NOT NULL DEFAULT -1, -- -1: market default
    order_notify           INTEGER NOT NULL DEFAULT 0,
    created_at             BIGINT NOT NULL
);

-- One row per (skuCode, period type): the productId KooGallery sends on the wire.
CREATE TABLE market_plans (
    product_code   TEXT PRIMARY KEY,      -- wire productId
    product_id     TEXT NOT NULL REFERENCES market_products(id),
    sku_code       TEXT NOT NULL,
    charging_mode  TEXT NOT NULL,         -- PERIOD | ONE_TIME | ON_DEMAND | ON_DEMAND_PKG
    period_type    TEXT NOT NULL DEFAULT '', -- year | month | day | '' (ONE_TIME, ON_DEMAND)
    price_cents    BIGINT NOT NULL DEFAULT 0, -- per period (per linear unit when linear)
    unit_price_micros BIGINT NOT NULL DEFAULT 0, -- ON_DEMAND: price of one usage unit, in 1e-6 currency
    package_quota  TEXT NOT NULL DEFAULT '',  -- ON_DEMAND_PKG: usage included
    linear_name    TEXT NOT NULL DEFAULT '',
    linear_unit    TEXT NOT NULL DEFAULT '',
    linear_min     BIGINT NOT NULL DEFAULT 0,
    linear_max     BIGINT NOT NULL DEFAULT 0,
    UNIQUE (sku_code, period_type)
);
CREATE INDEX market_plans_product ON market_plans(product_id);

CREATE TABLE market_customers (
    id            TEXT PRIMARY KEY,       -- customerId
    name          TEXT NOT NULL,
    user_id       TEXT NOT NULL,
    user_name     TEXT NOT NULL,
    mobile_phone  TEXT NOT NULL DEFAULT '',
    email         TEXT NOT NULL DEFAULT '',
    created_at    BIGINT NOT NULL
);

-- Subscriptions: what the buyer owns (one instance at the merchant).
CREATE TABLE market_subscriptions (
    id             TEXT PRIMARY KEY,
    customer_id    TEXT NOT NULL REFERENCES market_customers(id),
    seller_id      TEXT NOT NULL REFERENCES market_sellers(id),
    product_id     TEXT NOT NULL REFERENCES market_products(id),
    product_code   TEXT NOT NULL,
    sku_code       TEXT NOT NULL,
    charging_mode  TEXT NOT NULL,
    period_type    TEXT NOT NULL DEFAULT '',
    linear_value   BIGINT NOT NULL DEFAULT 0,
    trial          INTEGER NOT NULL DEFAULT 0,
    test_flag      INTEGER NOT NULL DEFAULT 0,
    status         TEXT NOT NULL,   -- PROVISIONING | ACTIVE | FROZEN | RELEASING | RELEASED | FAILED
    instance_id    TEXT NOT NULL DEFAULT '',
    origin_order   TEXT NOT NULL,
    expire_at      BIGINT NOT NULL DEFAULT 0,  -- 0: never (ON_DEMAND)
    frozen_at      BIGINT NOT NULL DEFAULT 0,
    release_at     BIGINT NOT NULL DEFAULT 0,
    released_at    BIGINT NOT NULL DEFAULT 0,
    ready_at       BIGINT NOT NULL DEFAULT 0,
    business_id    TEXT NOT NULL DEFAULT '',
    created_at     BIGINT NOT NULL,
    updated_at     BIGINT NOT NULL
);
CREATE INDEX market_subscriptions_customer ON market_subscriptions(customer_id);
CREATE INDEX market_subscriptions_instance ON market_subscriptions(instance_id);

CREATE TABLE market_orders (
    order_id         TEXT PRIMARY KEY,
    order_type       TEXT NOT NULL,   -- NEW | TRIAL | TRIAL_TO_FORMAL | RENEW | UNSUBSCRIBE | CHANGE
    customer_id      TEXT NOT NULL REFERENCES market_customers(id),
    seller_id        TEXT NOT NULL REFERENCES market_sellers(id),
    product_id       TEXT NOT NULL REFERENCES market_products(id),
    subscription_id  TEXT NOT NULL,
    status           TEXT NOT NULL,   -- PROCESSING | COMPLETED | FAILED | REFUNDED
    amount_cents     BIGINT NOT NULL DEFAULT 0,
    refund_cents     BIGINT NOT NULL DEFAULT 0,
    related_order_id TEXT NOT NULL DEFAULT '',  -- UNSUBSCRIBE: the order refunded
    refund_rule      TEXT NOT NULL DEFAULT '',  -- UNSUBSCRIBE: five-day | negotiated | none
    status_note      TEXT NOT NULL DEFAULT '',
    extend_params    TEXT NOT NULL DEFAULT '[]',
    idempotency_key  TEXT,
    created_at       BIGINT NOT NULL,
    updated_at       BIGINT NOT NULL,
    UNIQUE (idempotency_key)
);
CREATE INDEX market_orders_subscription ON market_orders(subscription_id);
CREATE INDEX market_orders_customer ON market_orders(customer_id, created_at);

CREATE TABLE market_order_lines (
    order_line_id  TEXT PRIMARY KEY,
    order_id       TEXT NOT NULL REFERENCES market_orders(order_id),
    charging_mode  TEXT NOT NULL,
    period_type    TEXT NOT NULL DEFAULT '',
    period_number  INTEGER NOT NULL DEFAULT 0,
    product_code   TEXT NOT NULL,
    sku_code       TEXT NOT NULL,
    linear_value   BIGINT NOT NULL DEFAULT 0,
    trial          INTEGER NOT NULL DEFAULT 0,
    expire_at      BIGINT NOT NULL DEFAULT 0,
    amount_cents   BIGINT NOT NULL DEFAULT 0,
    created_at     BIGINT NOT NULL
);
CREATE INDEX market_order_lines_order ON market_order_lines(order_id);

-- Production-interface messages (生产接口消息): one per logical call, with
-- its attempts below. Messages of one subscription are delivered in seq order.
CREATE TABLE market_messages (
    id               {{AUTOID}},
    seller_id        TEXT NOT NULL,
    subscription_id  TEXT NOT NULL DEFAULT '',
    order_id         TEXT NOT NULL DEFAULT '',
    activity         TEXT NOT NULL,
    url              TEXT NOT NULL,
    key_type         TEXT NOT NULL,
    body             TEXT NOT NULL,
    effect           TEXT NOT NULL DEFAULT '',  -- what success means to the lifecycle engine (JSON)
    policy           TEXT NOT NULL,
    state            TEXT NOT NULL,   -- queued | pending | succeeded | failed
    attempts         INTEGER NOT NULL DEFAULT 0,
    first_try_at     BIGINT NOT NULL DEFAULT 0,
    next_try_at      BIGINT NOT NULL DEFAULT 0,
    last_code        TEXT NOT NULL DEFAULT '',
    last_error       TEXT NOT NULL DEFAULT '',
    response         TEXT NOT NULL DEFAULT '',
    restarts         INTEGER NOT NULL DEFAULT 0,
    created_at       BIGINT NOT NULL,
    updated_at       BIGINT NOT NULL
);
CREATE INDEX market_messages_sub ON market_messages(subscription_id, state);
CREATE INDEX market_messages_seller ON market_messages(seller_id, id);
CREATE INDEX market_messages_state ON market_messages(state, id);

CREATE TABLE market_attempts (
    message_id     BIGINT NOT NULL,
    attempt        INTEGER NOT NULL,
    at             BIGINT NOT NULL,
    request_url    TEXT NOT NULL,
    request_body   TEXT NOT NULL,
    http_status    INTEGER NOT NULL DEFAULT 0,
    response_body  TEXT NOT NULL DEFAULT '',
    body_sign      TEXT NOT NULL DEFAULT '',  -- ok | bad | absent
    latency_ms     BIGINT NOT NULL DEFAULT 0,
    result_code    TEXT NOT NULL DEFAULT '',
    verdict        TEXT NOT NULL,   -- success | in-progress | failure
    error          TEXT NOT NULL DEFAULT '',
    next_try_at    BIGINT NOT NULL DEFAULT 0,
    PRIMARY KEY (message_id, attempt)
);

-- Pay-per-use usage records pushed by merchants; metering_sn is the idempotency key.
CREATE TABLE market_usage (
    metering_sn      TEXT PRIMARY KEY,
    seller_id        TEXT NOT NULL,
    subscription_id  TEXT NOT NULL,
    instance_id      TEXT NOT NULL,
    customer_id      TEXT NOT NULL,
    record_time      BIGINT NOT NULL,
    begin_time       BIGINT NOT NULL,
    end_time         BIGINT NOT NULL,
    usage_value      TEXT NOT NULL,
    usage_micros     BIGINT NOT NULL,
    amount_micros    BIGINT NOT NULL,
    relate_pkg       TEXT NOT NULL DEFAULT '',
    received_at      BIGINT NOT NULL
);
CREATE INDEX market_usage_customer ON market_usage(customer_id, record_time);

-- The buyer's bill: charges and refunds.
CREATE TABLE market_bill (
    id               {{AUTOID}},
    customer_id      TEXT NOT NULL,
    kind             TEXT NOT NULL,   -- charge | refund | usage
    order_id         TEXT NOT NULL DEFAULT '',
    subscription_id  TEXT NOT NULL DEFAULT '',
    ref              TEXT NOT NULL,   -- unique reference (order id, refund:<id>, usage:<sn>)
    amount_micros    BIGINT NOT NULL,
    note             TEXT NOT NULL DEFAULT '',
    at               BIGINT NOT NULL,
    UNIQUE (ref)
);
CREATE INDEX market_bill_customer ON market_bill(customer_id, at);

-- Shared virtual clock, so that several replicas agree on virtual time.
CREATE TABLE market_clock (
    id      INTEGER PRIMARY KEY,
    now_ms  BIGINT NOT NULL
);

-- Nonces of signed open-API requests seen within the replay window.
CREATE TABLE market_nonces (
    nonce    TEXT PRIMARY KEY,
    seen_at  BIGINT NOT NULL
);
CREATE INDEX market_nonces_seen ON market_nonces(seen_at);
