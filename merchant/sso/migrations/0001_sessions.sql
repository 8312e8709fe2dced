-- Single sign-on state. Browser-held secrets (the pre-login and session cookie
-- values) are stored only as SHA-256 hashes; OAuth tokens are AES-GCM
-- encrypted at rest.

-- A login in progress: the OAuth state bound to the pre-login cookie. Single use.
CREATE TABLE sso_logins (
    id_hash    TEXT PRIMARY KEY,
    state      TEXT NOT NULL,
    tenant_id  TEXT NOT NULL,
    return_to  TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    expires_at BIGINT NOT NULL
);
CREATE INDEX sso_logins_expires ON sso_logins (expires_at);

-- A signed-in member of a tenant.
CREATE TABLE sso_sessions (
    id_hash            TEXT PRIMARY KEY,
    tenant_id          TEXT NOT NULL,
    test_flag          INTEGER NOT NULL,
    app_id             TEXT NOT NULL,
    user_name          TEXT NOT NULL,
    user_id            TEXT NOT NULL,
    access_token       TEXT NOT NULL,
    refresh_token      TEXT NOT NULL,
    access_expires_at  BIGINT NOT NULL,
    refresh_expires_at BIGINT NOT NULL,
    refreshes          INTEGER NOT NULL DEFAULT 0,
    created_at         BIGINT NOT NULL,
    last_seen_at       BIGINT NOT NULL,
    expires_at         BIGINT NOT NULL
);
CREATE INDEX sso_sessions_user ON sso_sessions (test_flag, tenant_id, user_name);
CREATE INDEX sso_sessions_expires ON sso_sessions (expires_at);
