-- souk buyer center (买家中心 > 联营服务 > 企业管理): enterprises, departments,
-- members, apps bound to enterprises, authorizations, and the log of the kit
-- sync calls they cause. Timestamps are BIGINT Unix milliseconds from the
-- injected clock; booleans INTEGER 0/1; JSON TEXT.

CREATE TABLE buyer_enterprises (
    id           TEXT PRIMARY KEY,          -- tenantId
    code         TEXT NOT NULL UNIQUE,      -- tenantCode
    name         TEXT NOT NULL,
    customer_id  TEXT NOT NULL DEFAULT '',  -- the market customer owning it ('' = any)
    domain_name  TEXT NOT NULL,             -- the IdP base URL sent in tenantSync
    created_at   BIGINT NOT NULL,
    updated_at   BIGINT NOT NULL
);

-- The department tree; parent_code '' = top level.
CREATE TABLE buyer_departments (
    enterprise_id  TEXT NOT NULL REFERENCES buyer_enterprises(id),
    org_code       TEXT NOT NULL,
    org_name       TEXT NOT NULL,
    parent_code    TEXT NOT NULL DEFAULT '',
    created_at     BIGINT NOT NULL,
    updated_at     BIGINT NOT NULL,
    PRIMARY KEY (enterprise_id, org_code),
    UNIQUE (enterprise_id, parent_code, org_name)
);

CREATE TABLE buyer_members (
    id             TEXT PRIMARY KEY,        -- userId
    enterprise_id  TEXT NOT NULL REFERENCES buyer_enterprises(id),
    user_name      TEXT NOT NULL,
    name           TEXT NOT NULL,
    org_code       TEXT NOT NULL,
    role           TEXT NOT NULL DEFAULT 'user',  -- user | admin
    enabled        INTEGER NOT NULL DEFAULT 1,
    position       TEXT NOT NULL DEFAULT '',
    employee_code  TEXT NOT NULL DEFAULT '',
    employee_type  INTEGER NOT NULL DEFAULT 0,
    mobile         TEXT NOT NULL DEFAULT '',
    email          TEXT NOT NULL DEFAULT '',
    work_place     TEXT NOT NULL DEFAULT '',
    entry_date     TEXT NOT NULL DEFAULT '',
    password_hash  TEXT NOT NULL DEFAULT '',
    epoch          BIGINT NOT NULL DEFAULT 0, -- bumped on disable and password change: voids IdP sessions and tokens issued before
    created_at     BIGINT NOT NULL,
    updated_at     BIGINT NOT NULL,
    UNIQUE (enterprise_id, user_name),
    FOREIGN KEY (enterprise_id, org_code) REFERENCES buyer_departments(enterprise_id, org_code)
);
CREATE INDEX buyer_members_org ON buyer_members(enterprise_id, org_code);

-- A purchased joint-operation app bound to an enterprise: the OAuth2 client
-- of the IdP. The client secret is stored only as its SHA-256 digest; the
-- merchant receives it RSA-encrypted in applicationSync.
CREATE TABLE buyer_bindings (
    id                  TEXT PRIMARY KEY,
    enterprise_id       TEXT NOT NULL REFERENCES buyer_enterprises(id),
    instance_id         TEXT NOT NULL UNIQUE,
    order_id            TEXT NOT NULL DEFAULT '',
    seller_id           TEXT NOT NULL DEFAULT '',
    app_id              TEXT NOT NULL,
    client_id           TEXT NOT NULL UNIQUE,
    client_secret_hash  TEXT NOT NULL,
    client_secret_enc   TEXT NOT NULL,          -- the RSA-OAEP ciphertext sent in applicationSync
    redirect_uris       TEXT NOT NULL,          -- JSON array of registered login addresses
    test_flag           INTEGER NOT NULL DEFAULT 0,
    enabled             INTEGER NOT NULL DEFAULT 1,
    created_at          BIGINT NOT NULL,
    updated_at          BIGINT NOT NULL,
    UNIQUE (enterprise_id, app_id)
);

-- What the buyer authorized: single members or whole departments (with
-- their sub-departments).
CREATE TABLE buyer_grants (
    binding_id  TEXT NOT NULL REFERENCES buyer_bindings(id),
    kind        TEXT NOT NULL,   -- member | department
    subject     TEXT NOT NULL,   -- member id | org code
    created_at  BIGINT NOT NULL,
    PRIMARY KEY (binding_id, kind, subject)
);

-- The authorized users of each binding as last told to the merchant
-- (authSync): the reconciler diffs the grants against this table.
CREATE TABLE buyer_app_users (
    binding_id  TEXT NOT NULL REFERENCES buyer_bindings(id),
    member_id   TEXT NOT NULL,
    user_json   TEXT NOT NULL,
    updated_at  BIGINT NOT NULL,
    PRIMARY KEY (binding_id, member_id)
);

-- Kit sync calls (one row per call), sent once after the change that caused
-- them commits; never retried automatically, retried by the buyer.
CREATE TABLE buyer_kit_messages (
    id             {{AUTOID}},
    enterprise_id  TEXT NOT NULL,
    binding_id     TEXT NOT NULL,
    instance_id    TEXT NOT NULL,
    seller_id      TEXT NOT NULL DEFAULT '',
    batch          TEXT NOT NULL,   -- the operation that caused it
    seq            INTEGER NOT NULL,
    iface          TEXT NOT NULL,   -- tenantSync | applicationSync | authSync | singleOrgSync | allOrgSync
    flag           INTEGER NOT NULL DEFAULT -1,
    body           TEXT NOT NULL,
    state          TEXT NOT NULL,   -- pending | sending | succeeded | failed
    attempts       INTEGER NOT NULL DEFAULT 0,
    last_code      TEXT NOT NULL DEFAULT '',
    last_error     TEXT NOT NULL DEFAULT '',
    claimed_at     BIGINT NOT NULL DEFAULT 0,
    created_at     BIGINT NOT NULL,
    updated_at     BIGINT NOT NULL,
    UNIQUE (batch, seq)
);
CREATE INDEX buyer_kit_messages_ent ON buyer_kit_messages(enterprise_id, id);
CREATE INDEX buyer_kit_messages_state ON buyer_kit_messages(state, id);
CREATE INDEX buyer_kit_messages_seller ON buyer_kit_messages(seller_id, id);

CREATE TABLE buyer_kit_attempts (
    message_id     BIGINT NOT NULL,
    attempt        INTEGER NOT NULL,
    at             BIGINT NOT NULL,
    url            TEXT NOT NULL,
    http_status    INTEGER NOT NULL DEFAULT 0,
    response_body  TEXT NOT NULL DEFAULT '',
    result_code    TEXT NOT NULL DEFAULT '',
    verdict        TEXT NOT NULL,   -- success | failure
    error          TEXT NOT NULL DEFAULT '',
    latency_ms     BIGINT NOT NULL DEFAULT 0,
    manual         INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (message_id, attempt)
);
