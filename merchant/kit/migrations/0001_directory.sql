-- The joint-operation directory a merchant learns from the five kit sync
-- interfaces (joint-kit.md §2–§5). Rows are keyed by test_flag first, so that
-- debugging data (testFlag 1) never mixes with real tenants.

-- Nonces of verified kit requests, for replay protection (±60 s window).
CREATE TABLE kit_nonces (
    nonce   TEXT PRIMARY KEY,
    seen_at BIGINT NOT NULL
);
CREATE INDEX kit_nonces_seen_at ON kit_nonces (seen_at);

-- tenantSync: the enterprise and its login domain.
CREATE TABLE kit_tenants (
    test_flag   INTEGER NOT NULL,
    tenant_id   TEXT NOT NULL,
    tenant_code TEXT NOT NULL,
    name        TEXT NOT NULL,
    domain_name TEXT NOT NULL,
    instance_id TEXT NOT NULL,
    order_id    TEXT NOT NULL,
    deleted     INTEGER NOT NULL DEFAULT 0,
    sync_time   TEXT NOT NULL,
    created_at  BIGINT NOT NULL,
    updated_at  BIGINT NOT NULL,
    PRIMARY KEY (test_flag, tenant_id)
);

-- applicationSync: the OAuth client of a tenant's app. client_secret holds the
-- secret RSA-OAEP-encrypted under the merchant's own public key (never plaintext).
CREATE TABLE kit_apps (
    test_flag     INTEGER NOT NULL,
    tenant_id     TEXT NOT NULL,
    app_id        TEXT NOT NULL,
    instance_id   TEXT NOT NULL,
    client_id     TEXT NOT NULL,
    client_secret TEXT NOT NULL,
    deleted       INTEGER NOT NULL DEFAULT 0,
    sync_time     TEXT NOT NULL,
    created_at    BIGINT NOT NULL,
    updated_at    BIGINT NOT NULL,
    PRIMARY KEY (test_flag, tenant_id, app_id)
);

-- authSync: the members authorized for an app. state is authorized | deleted | cancelled.
CREATE TABLE kit_users (
    test_flag     INTEGER NOT NULL,
    tenant_id     TEXT NOT NULL,
    app_id        TEXT NOT NULL,
    user_name     TEXT NOT NULL,
    name          TEXT NOT NULL,
    org_code      TEXT NOT NULL,
    position      TEXT NOT NULL,
    employee_code TEXT NOT NULL,
    employee_type INTEGER NOT NULL,
    role          TEXT NOT NULL,
    enabled       INTEGER NOT NULL,
    mobile        TEXT NOT NULL,
    email         TEXT NOT NULL,
    work_place    TEXT NOT NULL,
    entry_date    TEXT NOT NULL,
    state         TEXT NOT NULL,
    instance_id   TEXT NOT NULL,
    sync_time     TEXT NOT NULL,
    created_at    BIGINT NOT NULL,
    updated_at    BIGINT NOT NULL,
    PRIMARY KEY (test_flag, tenant_id, app_id, user_name)
);
CREATE INDEX kit_users_org ON kit_users (test_flag, tenant_id, org_code);

-- singleOrgSync / allOrgSync: the department tree (parent_code '' = top).
CREATE TABLE kit_orgs (
    test_flag   INTEGER NOT NULL,
    tenant_id   TEXT NOT NULL,
    org_code    TEXT NOT NULL,
    org_name    TEXT NOT NULL,
    parent_code TEXT NOT NULL,
    created_at  BIGINT NOT NULL,
    updated_at  BIGINT NOT NULL,
    PRIMARY KEY (test_flag, tenant_id, org_code)
);
