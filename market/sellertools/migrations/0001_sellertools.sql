-- souk seller tools (卖家中心 → 应用工具): saved debug cases, product listing
-- status (on sale / frozen by dial tests) and the dial-test history.
-- Timestamps are BIGINT Unix milliseconds read from the injected clock.

-- Debug cases (调试用例管理). A case is saved only when its debug call
-- passed; saving again under the same name replaces it.
CREATE TABLE sellertools_cases (
    id           {{AUTOID}},
    seller_id    TEXT NOT NULL,
    product_id   TEXT NOT NULL,
    activity     TEXT NOT NULL,
    name         TEXT NOT NULL,
    url          TEXT NOT NULL,
    key_type     TEXT NOT NULL,
    params       TEXT NOT NULL,            -- JSON object of the interface parameters
    body         TEXT NOT NULL,            -- the body that passed
    response     TEXT NOT NULL DEFAULT '', -- the merchant's answer then
    result_code  TEXT NOT NULL DEFAULT '',
    instance_id  TEXT NOT NULL DEFAULT '', -- newInstance: the instanceId answered
    message_id   BIGINT NOT NULL DEFAULT 0, -- the market's message log entry
    last_dial_at      BIGINT NOT NULL DEFAULT 0,
    last_dial_passed  INTEGER NOT NULL DEFAULT 0,
    last_dial_error   TEXT NOT NULL DEFAULT '',
    created_at   BIGINT NOT NULL,
    updated_at   BIGINT NOT NULL,
    UNIQUE (product_id, name)
);
CREATE INDEX sellertools_cases_seller ON sellertools_cases(seller_id, product_id);

-- Listing status of a product. No row: draft (never put on sale).
-- The market core consults this table: status 'frozen' means transactions are
-- frozen and the product is hidden from the catalog; 'off_sale' means delisted.
CREATE TABLE sellertools_listings (
    product_id        TEXT PRIMARY KEY,
    seller_id         TEXT NOT NULL,
    status            TEXT NOT NULL,            -- on_sale | frozen | off_sale
    fail_streak       INTEGER NOT NULL DEFAULT 0, -- consecutive days with a failing dial test
    streak_start_day  TEXT NOT NULL DEFAULT '',  -- YYYY-MM-DD in the market's time zone
    last_fail_day     TEXT NOT NULL DEFAULT '',
    listed_at         BIGINT NOT NULL DEFAULT 0,
    frozen_at         BIGINT NOT NULL DEFAULT 0,
    note              TEXT NOT NULL DEFAULT '',
    updated_at        BIGINT NOT NULL
);
CREATE INDEX sellertools_listings_status ON sellertools_listings(status);

-- Dial-test runs (拨测): one per (slot, product); the unique key keeps
-- replicas and job re-runs from recording a slot twice.
CREATE TABLE sellertools_dial_runs (
    id           {{AUTOID}},
    slot         TEXT NOT NULL,     -- RFC 3339 slot time, or manual:<id>
    kind         TEXT NOT NULL,     -- scheduled | manual
    product_id   TEXT NOT NULL,
    seller_id    TEXT NOT NULL,
    day          TEXT NOT NULL,     -- YYYY-MM-DD in the market's time zone
    started_at   BIGINT NOT NULL,
    finished_at  BIGINT NOT NULL,
    passed       INTEGER NOT NULL,
    cases        INTEGER NOT NULL,
    failures     INTEGER NOT NULL,
    fail_streak  INTEGER NOT NULL,  -- the product's streak after this run
    froze        INTEGER NOT NULL DEFAULT 0,
    note         TEXT NOT NULL DEFAULT '',
    UNIQUE (slot, product_id)
);
CREATE INDEX sellertools_dial_runs_product ON sellertools_dial_runs(product_id, id);
CREATE INDEX sellertools_dial_runs_seller ON sellertools_dial_runs(seller_id, id);

CREATE TABLE sellertools_dial_results (
    run_id       BIGINT NOT NULL,
    case_id      BIGINT NOT NULL,
    seq          INTEGER NOT NULL,
    activity     TEXT NOT NULL,
    name         TEXT NOT NULL,
    message_id   BIGINT NOT NULL DEFAULT 0,
    request_url  TEXT NOT NULL DEFAULT '',
    http_status  INTEGER NOT NULL DEFAULT 0,
    result_code  TEXT NOT NULL DEFAULT '',
    verdict      TEXT NOT NULL,
    passed       INTEGER NOT NULL,
    error        TEXT NOT NULL DEFAULT '',
    latency_ms   BIGINT NOT NULL DEFAULT 0,
    at           BIGINT NOT NULL,
    PRIMARY KEY (run_id, case_id)
);
